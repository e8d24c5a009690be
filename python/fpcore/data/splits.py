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


def random_split(n: int, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 111) -> dict[str, torch.Tensor]:
    """Random partition of range(n) into {"train", "val", "test"} LongTensors (each sorted ascending).

    `fractions` are three non-negative numbers summing to 1; every index lands in exactly one split. The same
    (n, fractions, seed) always gives the same split.
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
    return {
        name: torch.from_numpy(np.sort(perm[bounds[k] : bounds[k + 1]]).astype(np.int64))
        for k, name in enumerate(SPLIT_NAMES)
    }


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
