"""Datasets of periodic structures for the fpcore trainer.

>>> from fpcore.data import load_dataset, random_split, builtin_dataset
>>> ds = load_dataset("matbench_phonons.extxyz.gz", targets=["last_phdos_peak"])
>>> ds[0]          # Data(pos, z, cell (1,3,3), pbc (1,3), natoms, idx, y (1,1))
>>> split = random_split(len(ds), (0.6, 0.2, 0.2), seed=111)   # the trainer saves it with the run

Graph edges are not stored: models build them on the fly with fpcore.neighbors.compute.
"""

from __future__ import annotations

import glob
import os
import pathlib
import sys
import time
import warnings
from collections.abc import Sequence

from . import builtin as _builtin
from . import cache as _cache
from ._flat import VALIDATION_VERSION, FlatStructures, concatenate, validate
from .dataset import StructureDataset
from .readers import FORMATS, READER_VERSION, READERS, detect_format
from .splits import element_coverage_warning, kfold_split, random_split, structure_elements

Source = str | os.PathLike | Sequence[str | os.PathLike]

__all__ = [
    "StructureDataset",
    "builtin_dataset",
    "element_coverage_warning",
    "kfold_split",
    "load_dataset",
    "random_split",
    "structure_elements",
    "FORMATS",
]

_GLOB_CHARS = set("*?[")


def _log(progress, message):
    if progress:
        print(f"fpcore.data: {message}", file=sys.stderr, flush=True)


def _expand(source) -> list[pathlib.Path]:
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not items:
        raise ValueError("fpcore.data: no input given (an empty list of sources)")
    paths = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"fpcore.data: a source must be a path or a list of paths, got {type(item).__name__}")
        text = os.path.expanduser(os.fspath(item))
        if _GLOB_CHARS & set(text) and not os.path.exists(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(f"fpcore.data: no file matches {text!r}")
            paths += [pathlib.Path(m) for m in matches]
        else:
            path = pathlib.Path(text)
            if not path.exists():
                raise FileNotFoundError(f"fpcore.data: {text!r} does not exist")
            paths.append(path)
    return paths


def _normalize_targets(targets) -> list[str]:
    if targets is None:
        return []
    if isinstance(targets, str):
        targets = [targets]
    targets = list(targets)
    for t in targets:
        if not isinstance(t, str) or not t:
            raise TypeError(f"fpcore.data: target names must be non-empty strings, got {t!r}")
    if len(set(targets)) != len(targets):
        raise ValueError(f"fpcore.data: duplicate target names in {targets}")
    return targets


def _load_entry(entry: pathlib.Path, source: str, warned: list) -> FlatStructures | None:
    try:
        return _cache.load(entry)
    except _cache.DamagedEntry as err:
        if not warned:
            warnings.warn(
                f"fpcore.data: the cache entry {entry} is damaged ({err}); rebuilding it from {source}", stacklevel=4
            )
            warned.append(err)
        return None


def _cached(description: dict, cache_dir, produce, source: str, progress: bool) -> StructureDataset:
    if cache_dir is False:
        flat = produce()
        validate(flat, source)
        return StructureDataset(flat, source=source)
    root = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else _cache.default_cache_dir()
    # Entries are validated once, when written: a stricter validate() must not trust entries an older one accepted.
    description = {**description, "validation_version": VALIDATION_VERSION}
    entry = _cache.entry_path(root, _cache.cache_key(description))
    warned: list = []
    flat = _load_entry(entry, source, warned)
    if flat is not None:
        _cache.remove_stale_tmp(root)
        _log(progress, f"{source}: {len(flat)} structures from cache {entry}")
        return StructureDataset(flat, source=source, cache_entry=entry)
    lock = _cache.conversion_lock(root, entry.name)
    if not lock.acquire(blocking=False):
        _log(progress, f"{source}: waiting for another process converting it ({lock.holder()})")
        lock.acquire()
    try:
        _cache.remove_stale_tmp(root, held_key=entry.name)
        # The process we waited for has usually written the entry by now.
        flat = _load_entry(entry, source, warned)
        if flat is not None:
            _log(progress, f"{source}: {len(flat)} structures from cache {entry}")
            return StructureDataset(flat, source=source, cache_entry=entry)
        _cache.discard(entry)
        t0 = time.perf_counter()
        flat = produce()
        validate(flat, source)  # before saving: invalid data never reaches the cache
        _cache.save(flat, root, entry.name, description)
    finally:
        lock.release()
    _log(
        progress,
        f"{source}: {len(flat)} structures, {len(flat.numbers)} atoms converted in "
        f"{time.perf_counter() - t0:.1f} s, cached in {entry}",
    )
    reloaded = _load_entry(entry, source, warned)
    return StructureDataset(reloaded if reloaded is not None else flat, source=source, cache_entry=entry)


def load_dataset(
    source: Source,
    targets: Sequence[str] | str | None = None,
    cache_dir=None,
    progress: bool = True,
    format: str | None = None,
) -> StructureDataset:
    """Reads structures (and labels) into a StructureDataset, through the on-disk cache.

    Args:
        source: .extxyz/.xyz[.gz] file, ASE .db, CIF folder with id_prop.csv, MatBench matbench_*.json[.gz], a list
            of such paths or a glob (parts are concatenated in order; a glob is sorted), or
            "builtin:pretrain"/"builtin:finetune".
        targets: label names (atoms.info / calculator results for extxyz, key_value_pairs / data for db,
            id_prop.csv columns, MatBench target column); None reads no labels (built-ins then use their default
            targets).
        cache_dir: folder of the cache (default $FPCORE_CACHE or ~/.cache/fpcore); False disables caching.
        progress: print what is read or reloaded to stderr.
        format: force a reader (one of FORMATS) instead of guessing from the suffix.

    Returns:
        A StructureDataset of B structures: item i is a torch_geometric Data with pos (n, 3) float64 Angstrom,
        z (n,) int64, cell (1, 3, 3) float64 Angstrom (rows), pbc (1, 3) bool, natoms, idx and, with targets,
        y (1, T) float32 in the units of the source's labels.

    Raises:
        FileNotFoundError: a path, or every match of a glob, is missing.
        TypeError: a source or target name of the wrong type.
        ValueError: an unknown format, duplicate targets, or content the reader rejects (named by file).
    """
    if isinstance(source, str) and source.startswith("builtin:"):
        return builtin_dataset(source.split(":", 1)[1], targets=targets, cache_dir=cache_dir, progress=progress)
    targets = _normalize_targets(targets)
    if format is not None and format not in FORMATS:
        raise ValueError(f"fpcore.data: unknown format {format!r}; expected one of {FORMATS}")
    paths = _expand(source)
    formats = [format or detect_format(p) for p in paths]
    for p, fmt in zip(paths, formats):
        if fmt != "cif" and p.is_dir():
            raise ValueError(f"fpcore.data: {p} is a folder, but format {fmt!r} reads files")
    label = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
    description = {
        "reader_version": READER_VERSION,
        "targets": targets,
        "inputs": [[fmt, _cache.input_fingerprint(p)] for p, fmt in zip(paths, formats)],
    }

    def produce() -> FlatStructures:
        parts = []
        for k, (p, fmt) in enumerate(zip(paths, formats)):
            t0 = time.perf_counter()
            parts.append(READERS[fmt](p, targets))
            _log(
                progress,
                f"read {p} ({k + 1}/{len(paths)}): {len(parts[-1])} structures in {time.perf_counter() - t0:.1f} s",
            )
        return concatenate(parts)

    return _cached(description, cache_dir, produce, label, progress)


def builtin_dataset(
    name: str,
    targets: Sequence[str] | str | None = None,
    cache_dir=None,
    progress: bool = False,
    size: int | None = None,
) -> StructureDataset:
    """A bundled default dataset ("pretrain" or "finetune"), generated deterministically with ase and cached.

    Args:
        name: "pretrain" or "finetune".
        targets: label names; None gives the dataset's default targets (none for pretrain, ["energy_per_atom"],
            eV/atom, for finetune).
        cache_dir: folder of the cache, as in `load_dataset`; False disables caching.
        progress: print what is generated or reloaded to stderr.
        size: number of structures (default: the dataset's own, 3,000 for pretrain and 500 for finetune); a smaller
            size gives the first structures of the same draw.

    Returns:
        A StructureDataset, items as in `load_dataset`.
    """
    available, default = _builtin.builtin_info(name)
    params = _builtin.builtin_params(name, size)
    targets = default if targets is None else _normalize_targets(targets)
    # Everything that changes the data is in the key: the generator version, its parameters (size, seed), the labels.
    description = {"builtin": name, "builtin_version": _builtin.BUILTIN_VERSION, "params": params, "targets": targets}
    return _cached(
        description, cache_dir, lambda: _builtin.generate(name, targets, params), f"builtin:{name}", progress
    )
