"""On-disk cache of converted datasets.

One folder per cache key holding uncompressed .npy arrays (memory-mappable, so datasets larger than memory are read
lazily) plus ids.json and meta.json. The folder is written under a temporary name and renamed into place, so a reader
sees either nothing or a complete entry. The key hashes the input files' contents, the reader version and every
parameter that changes the output, so a stale entry is never reused: a changed input gets a new key.

Damage from outside (a file deleted or replaced by hand, a full disk, a copy cut short) is caught by `load`, which
checks every file against meta.json before anything is used and raises DamagedEntry naming what is wrong; the
caller then rebuilds the entry. A conversion holds the key's lock (`locks/<key>.lock`, fcntl.flock) from before it
reads the input until its entry is in place, so a second process converting the same input waits and then finds the
entry instead of converting it again, and a temporary folder `.<key>.tmp-<pid>-<random>` whose key is not locked was
left by a killed conversion and is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import secrets
import shutil
import time

import numpy as np

from .._io import TMP_MARKER, FileLock, pid_alive, tmp_owner_pid
from ._flat import FlatStructures

CACHE_FORMAT = 1
ARRAYS = ("numbers", "positions", "offsets", "cells", "pbc", "y")
# Files bigger than this are keyed by size + mtime instead of content: hashing them on every load would cost
# seconds (a rewrite of such a file without changing size or mtime is not detected).
HASH_CONTENT_LIMIT = 2 << 30
# Temporary folders that cannot be attributed to a key's lock (made by fpcore before the locks existed, or on a system
# without fcntl and a pid from another host) are removed only once this old: writing an entry takes seconds.
STALE_TMP_AGE_S = 3600.0


class DamagedEntry(ValueError):
    """A cache entry that exists but is incomplete or inconsistent with its meta.json; the text says what is wrong."""


def default_cache_dir() -> pathlib.Path:
    env = os.environ.get("FPCORE_CACHE")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "fpcore"


def file_fingerprint(path: pathlib.Path) -> str:
    st = path.stat()
    if st.st_size > HASH_CONTENT_LIMIT:
        return f"size={st.st_size},mtime_ns={st.st_mtime_ns}"
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return "sha256=" + h.hexdigest()


def input_fingerprint(path: pathlib.Path) -> list:
    if path.is_dir():
        # CIF folder: its id_prop.csv and every CIF (names and contents).
        files = sorted(
            p for p in path.iterdir() if p.is_file() and (p.suffix.lower() == ".cif" or p.name == "id_prop.csv")
        )
        return [str(path.resolve()), [[p.name, file_fingerprint(p)] for p in files]]
    return [str(path.resolve()), file_fingerprint(path)]


def cache_key(description: dict) -> str:
    blob = json.dumps({"cache_format": CACHE_FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def entry_path(cache_dir: pathlib.Path, key: str) -> pathlib.Path:
    return pathlib.Path(cache_dir) / "datasets" / key


def conversion_lock(cache_dir: pathlib.Path, key: str) -> FileLock:
    """The lock a conversion of `key` holds while it reads the input and writes the entry (parent folder created)."""
    folder = pathlib.Path(cache_dir) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / f"{key}.lock")


def _tmp_folder(final: pathlib.Path) -> pathlib.Path:
    tmp = final.with_name(f".{final.name}{TMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir(mode=0o777)  # the umask decides, as for the cache's other folders (a shared cache stays shared)
    return tmp


def save(flat: FlatStructures, cache_dir: pathlib.Path, key: str, description: dict) -> pathlib.Path:
    final = entry_path(cache_dir, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_folder(final)
    try:
        numbers = flat.numbers.astype(np.uint8)  # Z <= 118 (validated before saving)
        arrays = {
            "numbers": numbers,
            "positions": np.ascontiguousarray(flat.positions, dtype=np.float64),
            "offsets": flat.offsets.astype(np.int64),
            "cells": np.ascontiguousarray(flat.cells, dtype=np.float64),
            "pbc": np.ascontiguousarray(flat.pbc, dtype=bool),
        }
        if flat.y is not None:
            arrays["y"] = np.ascontiguousarray(flat.y, dtype=np.float64)
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        (tmp / "ids.json").write_text(json.dumps(flat.ids))
        meta = {
            "cache_format": CACHE_FORMAT,
            "target_names": flat.target_names,
            "origins": flat.origins,
            "n_structures": len(flat),
            "n_atoms": int(len(flat.numbers)),
            "description": description,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, default=str))
        try:
            os.replace(tmp, final)
        except OSError:
            # A complete entry for the same key is already there (written by a process that did not take the lock,
            # e.g. an older fpcore): both are identical, keep theirs.
            if not (final / "meta.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def discard(entry: pathlib.Path) -> None:
    """Removes a (damaged) entry; renamed away first, so that no reader ever sees it half deleted."""
    entry = pathlib.Path(entry)
    doomed = entry.with_name(f".{entry.name}{TMP_MARKER}{os.getpid()}-discarded")
    try:
        os.replace(entry, doomed)
    except FileNotFoundError:
        return
    except OSError:
        doomed = entry
    shutil.rmtree(doomed, ignore_errors=True)


def _is_key(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def remove_stale_tmp(cache_dir: pathlib.Path, held_key: str | None = None) -> list[pathlib.Path]:
    """Removes the temporary folders that killed conversions left under cache_dir/datasets, and returns them.

    A folder belongs to a live conversion exactly when its key's lock is held (by `held_key`, the caller's own
    conversion, whose leftovers are stale by definition, or by another process, whose are not). Folders without a
    lockable key (older fpcore, or no fcntl) go by their owner's pid on this machine, else by age."""
    folder = pathlib.Path(cache_dir) / "datasets"
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(".") and TMP_MARKER in p.name]
    except OSError:
        return []
    removed = []
    for path in candidates:
        key = path.name[1:].split(TMP_MARKER, 1)[0]
        if key == held_key:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            continue
        if _is_key(key) and FileLock.supported:
            try:
                lock = conversion_lock(cache_dir, key)
                if not lock.acquire(blocking=False):
                    continue
            except OSError:  # a read-only cache: leave it to someone who can write it
                continue
            try:
                if path.exists():
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            finally:
                lock.release()
            continue
        pid = tmp_owner_pid(path.name) if _is_key(key) else None  # older names end in mkdtemp's random text
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            continue
        if (pid is not None and not pid_alive(pid)) or age > STALE_TMP_AGE_S:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _expected_arrays(meta: dict) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    B, N, T = meta["n_structures"], meta["n_atoms"], len(meta["target_names"])
    expected = {
        "numbers": ((N,), np.dtype(np.uint8)),
        "positions": ((N, 3), np.dtype(np.float64)),
        "offsets": ((B + 1,), np.dtype(np.int64)),
        "cells": ((B, 3, 3), np.dtype(np.float64)),
        "pbc": ((B, 3), np.dtype(np.bool_)),
    }
    if T:
        expected["y"] = ((B, T), np.dtype(np.float64))
    return expected


def _read_meta(entry: pathlib.Path) -> dict:
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        raise DamagedEntry("meta.json is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise DamagedEntry(f"meta.json is unreadable ({err})") from None
    if not isinstance(meta, dict):
        raise DamagedEntry("meta.json is not an object")
    if meta.get("cache_format") != CACHE_FORMAT:
        raise DamagedEntry(f"meta.json has cache_format {meta.get('cache_format')!r}, expected {CACHE_FORMAT}")
    for name in ("n_structures", "n_atoms"):
        value = meta.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DamagedEntry(f"meta.json has {name}={value!r}, expected a non-negative integer")
    names = meta.get("target_names")
    if not isinstance(names, list) or not all(isinstance(t, str) for t in names):
        raise DamagedEntry(f"meta.json has target_names={names!r}, expected a list of names")
    origins = meta.get("origins")
    if not isinstance(origins, list) or not all(isinstance(o, list) and len(o) == 3 for o in origins):
        raise DamagedEntry("meta.json has no valid origins")
    return meta


def load(entry: pathlib.Path, mmap: bool = True) -> FlatStructures | None:
    """The cached entry, or None when there is none.

    Raises DamagedEntry, naming the first problem, when the entry exists but a file is missing or unreadable, or an
    array's shape or dtype (or the ids, or the offsets) disagree with meta.json: then the caller rebuilds it."""
    entry = pathlib.Path(entry)
    if not entry.exists():
        return None
    meta = _read_meta(entry)
    mode = "r" if mmap else None
    arrays = {}
    for name, (shape, dtype) in _expected_arrays(meta).items():
        path = entry / f"{name}.npy"
        if not path.is_file():
            raise DamagedEntry(f"{name}.npy is missing")
        try:
            arr = np.load(path, mmap_mode=mode, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise DamagedEntry(f"{name}.npy is unreadable ({' '.join(str(err).split())})") from None
        if arr.shape != shape or arr.dtype != dtype:
            raise DamagedEntry(
                f"{name}.npy holds {arr.dtype} {list(arr.shape)}, but meta.json describes {dtype} {list(shape)}"
            )
        arrays[name] = arr
    offsets = np.asarray(arrays["offsets"])
    if offsets[0] != 0 or offsets[-1] != meta["n_atoms"] or (np.diff(offsets) < 0).any():
        raise DamagedEntry(f"offsets.npy does not partition the {meta['n_atoms']} atoms into structures")
    try:
        ids = json.loads((entry / "ids.json").read_text())
    except FileNotFoundError:
        raise DamagedEntry("ids.json is missing") from None
    except (OSError, ValueError) as err:
        raise DamagedEntry(f"ids.json is unreadable ({err})") from None
    if not isinstance(ids, list) or len(ids) != meta["n_structures"] or not all(isinstance(i, str) for i in ids):
        raise DamagedEntry(f"ids.json does not hold the {meta['n_structures']} structure ids of meta.json")
    return FlatStructures(
        numbers=arrays["numbers"],
        positions=arrays["positions"],
        offsets=offsets,
        cells=arrays["cells"],
        pbc=arrays["pbc"],
        y=arrays.get("y"),
        ids=ids,
        target_names=list(meta["target_names"]),
        origins=[tuple(o) for o in meta["origins"]],
    )
