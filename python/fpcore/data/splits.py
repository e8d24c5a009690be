"""Seeded train/val/test splits over dataset indices.

The split is a pure function of (n, fractions or k, seed): the trainer saves the resulting index tensors with each run
(so a run can be evaluated later on exactly the structures it never saw, whatever numpy/torch versions do to random
streams).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

SPLIT_NAMES = ("train", "val", "test")


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"fpcore.data: n must be an int (the dataset length), got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"fpcore.data: cannot split {n} structures (n must be >= 1)")
    return int(n)


def _permutation(n: int, seed: int) -> np.ndarray:
    # RandomState's stream is frozen by numpy's compatibility policy (Generator's is not), so a seed gives the same
    # split on every numpy version.
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"fpcore.data: seed must be an int, got {type(seed).__name__}")
    return np.random.RandomState(int(seed) % (2**32)).permutation(n)


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes summing exactly to n, each as close as possible to fraction * n (largest-remainder rounding)."""
    exact = [f * n for f in fractions]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda k: (-(exact[k] - counts[k]), k))
    for k in order[: n - sum(counts)]:
        counts[k] += 1
    return counts


def random_split(
    n: int, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 111, elements: Sequence | None = None
) -> dict[str, torch.Tensor]:
    """Random partition of range(n) into {"train", "val", "test"} LongTensors (each sorted ascending).

    `fractions` are three non-negative numbers summing to 1; every index lands in exactly one split. The same
    (n, fractions, seed) always gives the same split. With `elements` (per structure, its atomic numbers, e.g.
    `structure_elements(dataset)`) the split is element-aware: a val/test structure with an element that no training
    structure has is moved to train (see `cover_elements`), so validation never measures pure extrapolation.
    """
    n = _check_n(n)
    try:
        fractions = [float(f) for f in fractions]
    except TypeError as e:
        raise TypeError(f"fpcore.data: fractions must be a sequence of 3 numbers, got {fractions!r}") from e
    if len(fractions) != 3:
        raise ValueError(f"fpcore.data: fractions must have 3 entries (train, val, test), got {len(fractions)}")
    if not all(math.isfinite(f) and f >= 0 for f in fractions):
        raise ValueError(f"fpcore.data: fractions must be finite and >= 0, got {fractions}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fpcore.data: fractions must sum to 1, got {fractions} (sum {sum(fractions)})")
    perm = _permutation(n, seed)
    counts = split_counts(n, fractions)
    bounds = np.cumsum([0] + counts)
    split = {
        name: torch.from_numpy(np.sort(perm[bounds[k] : bounds[k + 1]]).astype(np.int64))
        for k, name in enumerate(SPLIT_NAMES)
    }
    if elements is not None:
        if len(elements) != n:
            raise ValueError(f"fpcore.data: elements has {len(elements)} entries for {n} structures")
        split = cover_elements(split, elements)
    return split


def structure_elements(dataset) -> list[frozenset[int]]:
    """The set of atomic numbers of every structure of a StructureDataset (or any dataset of Data with `z`)."""
    flat = getattr(dataset, "_flat", None)
    if flat is not None:
        numbers, offsets = np.asarray(flat.numbers), np.asarray(flat.offsets)
        return [frozenset(np.unique(numbers[offsets[k] : offsets[k + 1]]).tolist()) for k in range(len(offsets) - 1)]
    return [frozenset(torch.unique(dataset[k].z).tolist()) for k in range(len(dataset))]


def _as_lists(split) -> dict[str, list[int]]:
    return {
        name: [int(i) for i in (split[name].tolist() if torch.is_tensor(split[name]) else split[name])]
        for name in SPLIT_NAMES
    }


def uncovered_elements(split, elements: Sequence) -> dict[str, dict[int, list[int]]]:
    """For val and test: {atomic number absent from every training structure: [structure indices holding it]}."""
    lists = _as_lists(split)
    covered = set().union(*(elements[i] for i in lists["train"])) if lists["train"] else set()
    out = {}
    for name in ("val", "test"):
        missing: dict[int, list[int]] = {}
        for i in lists[name]:
            for z in sorted(set(elements[i]) - covered):
                missing.setdefault(int(z), []).append(i)
        out[name] = missing
    return out


def cover_elements(split, elements: Sequence) -> dict[str, torch.Tensor]:
    """Moves every val/test structure holding an element absent from train into train (deterministic; moving one
    only adds elements to train, so one pass suffices). Returns sorted LongTensors like `random_split`."""
    lists = _as_lists(split)
    moved = set()
    for per_element in uncovered_elements(lists, elements).values():
        for indices in per_element.values():
            moved.update(indices)
    out = {
        "train": sorted(set(lists["train"]) | moved),
        "val": [i for i in lists["val"] if i not in moved],
        "test": [i for i in lists["test"] if i not in moved],
    }
    return {name: torch.tensor(out[name], dtype=torch.int64) for name in SPLIT_NAMES}


def element_coverage_warning(split, elements: Sequence) -> str | None:
    """One line naming the val/test elements that the training split lacks (None when every element is covered)."""
    from ase.data import chemical_symbols

    parts = []
    for name, missing in uncovered_elements(split, elements).items():
        if missing:
            n_structures = len({i for indices in missing.values() for i in indices})
            symbols = ", ".join(chemical_symbols[z] for z in missing)
            parts.append(f"{name}: {symbols} ({n_structures} structure(s))")
    if not parts:
        return None
    return (
        "element(s) absent from the training split appear in " + "; ".join(parts) + ": the model extrapolates there "
        "and their errors can dominate the metric (use more data, another split seed, or a split file)"
    )


def kfold_split(n: int, k: int = 5, seed: int = 111) -> list[dict[str, torch.Tensor]]:
    """k cross-validation folds: fold f tests on chunk f, validates on chunk (f + 1) % k and trains on the rest.

    Chunks are a seeded random partition into k near-equal parts, so every index is in exactly one test set
    (and one val set) over the k folds; with k = 5 each fold is a 60/20/20 split.
    """
    n = _check_n(n)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"fpcore.data: k must be an int, got {type(k).__name__}")
    if k < 3:
        raise ValueError(f"fpcore.data: k must be >= 3 (one chunk each for test and val, the rest for train), got {k}")
    if k > n:
        raise ValueError(f"fpcore.data: k = {k} folds need at least k structures, got n = {n}")
    perm = _permutation(n, seed)
    chunks = [np.sort(c) for c in np.array_split(perm, k)]
    folds = []
    for f in range(k):
        train = np.sort(np.concatenate([chunks[c] for c in range(k) if c not in (f, (f + 1) % k)]))
        folds.append(
            {
                "train": torch.from_numpy(train.astype(np.int64)),
                "val": torch.from_numpy(chunks[(f + 1) % k].astype(np.int64)),
                "test": torch.from_numpy(chunks[f].astype(np.int64)),
            }
        )
    return folds
