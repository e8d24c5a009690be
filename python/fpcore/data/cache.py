"""On-disk cache of converted datasets.

One folder per cache key holding uncompressed .npy arrays (memory-mappable, so datasets larger than memory are read
lazily) plus ids.json and meta.json. The folder is written under a temporary name and renamed into place, so a reader
sees either nothing or a complete entry. The key hashes the input files' contents, the reader version and every
parameter that changes the output, so a stale entry is never reused: a changed input gets a new key.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import tempfile

import numpy as np

from ._flat import FlatStructures

CACHE_FORMAT = 1
ARRAYS = ("numbers", "positions", "offsets", "cells", "pbc", "y")
# Files bigger than this are keyed by size + mtime instead of content: hashing them on every load would cost
# seconds (a rewrite of such a file without changing size or mtime is not detected).
HASH_CONTENT_LIMIT = 2 << 30


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


def save(flat: FlatStructures, cache_dir: pathlib.Path, key: str, description: dict) -> pathlib.Path:
    final = entry_path(cache_dir, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{key[:16]}.tmp-", dir=final.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would hide a shared cache from other users
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
        # meta.json last: an entry without it is incomplete (only possible for a folder left by a crash, which
        # never has the final name anyway).
        (tmp / "meta.json").write_text(json.dumps(meta, default=str))
        try:
            os.replace(tmp, final)
        except OSError:
            # Another process renamed a complete entry for the same key first: both are identical, keep theirs.
            if not (final / "meta.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load(entry: pathlib.Path, mmap: bool = True) -> FlatStructures | None:
    """The cached entry, or None when absent or unreadable (then the caller re-reads the input)."""
    meta_path = entry / "meta.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("cache_format") != CACHE_FORMAT:
            return None
        mode = "r" if mmap else None
        arrays = {}
        for name in ARRAYS:
            p = entry / f"{name}.npy"
            arrays[name] = np.load(p, mmap_mode=mode, allow_pickle=False) if p.exists() else None
        ids = json.loads((entry / "ids.json").read_text())
    except (OSError, ValueError):
        return None
    if len(ids) != meta["n_structures"] or len(arrays["offsets"]) != len(ids) + 1:
        return None
    return FlatStructures(
        numbers=arrays["numbers"],
        positions=arrays["positions"],
        offsets=np.asarray(arrays["offsets"]),
        cells=arrays["cells"],
        pbc=arrays["pbc"],
        y=arrays["y"],
        ids=ids,
        target_names=list(meta["target_names"]),
        origins=[tuple(o) for o in meta["origins"]],
    )
