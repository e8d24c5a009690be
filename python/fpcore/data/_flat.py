"""Flat (concatenated) array form of a list of structures: the format readers produce and the cache stores."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_Z = 118
# Bump when validate() rejects more: part of the cache key, so entries accepted by an older validate() are redone.
VALIDATION_VERSION = 2


@dataclass
class FlatStructures:
    """Structure b has atoms offsets[b]:offsets[b+1] of numbers (N,) and positions (N, 3) (Cartesian, Angstrom).

    cells (B, 3, 3) (rows are cell vectors), pbc (B, 3) bool, y (B, T) float64 or None, ids (B,) str,
    origins: (file, first structure, end) spans naming the input file each structure came from (error messages).
    """

    numbers: np.ndarray
    positions: np.ndarray
    offsets: np.ndarray
    cells: np.ndarray
    pbc: np.ndarray
    y: np.ndarray | None
    ids: list[str]
    target_names: list[str]
    origins: list[tuple[str, int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def origin(self, b: int) -> str:
        for name, start, stop in self.origins:
            if start <= b < stop:
                return name
        return "<unknown source>"

    def describe(self, b: int) -> str:
        return f"structure {self.ids[b]!r} (#{b}) of {self.origin(b)}"


class Collector:
    """Accumulates structures one at a time (readers necessarily visit each parsed structure once) and concatenates
    them with a single numpy call per array at the end."""

    def __init__(self, target_names):
        self.target_names = list(target_names or [])
        self.numbers, self.positions, self.cells, self.pbc, self.ids, self.labels = [], [], [], [], [], []
        self.origins: list[tuple[str, int, int]] = []
        self._origin_start = 0

    def __len__(self):
        return len(self.ids)

    def add(self, sid, numbers, positions, cell, pbc, labels=None):
        self.ids.append(str(sid))
        self.numbers.append(np.asarray(numbers, dtype=np.int64).reshape(-1))
        self.positions.append(np.asarray(positions, dtype=np.float64).reshape(-1, 3))
        self.cells.append(np.asarray(cell, dtype=np.float64).reshape(3, 3))
        self.pbc.append(np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)))
        if self.target_names:
            self.labels.append(labels)

    def end_source(self, name: str):
        self.origins.append((name, self._origin_start, len(self.ids)))
        self._origin_start = len(self.ids)

    def finish(self) -> FlatStructures:
        counts = np.fromiter((len(z) for z in self.numbers), dtype=np.int64, count=len(self.numbers))
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        B = len(counts)
        flat = FlatStructures(
            numbers=np.concatenate(self.numbers) if B else np.zeros(0, np.int64),
            positions=np.concatenate(self.positions) if B else np.zeros((0, 3)),
            offsets=offsets,
            cells=np.stack(self.cells) if B else np.zeros((0, 3, 3)),
            pbc=np.stack(self.pbc) if B else np.zeros((0, 3), bool),
            y=np.asarray(self.labels, dtype=np.float64).reshape(B, len(self.target_names))
            if self.target_names
            else None,
            ids=self.ids,
            target_names=self.target_names,
            origins=self.origins,
        )
        return flat


def concatenate(parts: list[FlatStructures]) -> FlatStructures:
    if len(parts) == 1:
        return parts[0]
    origins, shift = [], 0
    for p in parts:
        origins += [(name, a + shift, b + shift) for name, a, b in p.origins]
        shift += len(p)
    counts = np.concatenate([np.diff(p.offsets) for p in parts])
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return FlatStructures(
        numbers=np.concatenate([p.numbers for p in parts]),
        positions=np.concatenate([p.positions for p in parts]),
        offsets=offsets,
        cells=np.concatenate([p.cells for p in parts]),
        pbc=np.concatenate([p.pbc for p in parts]),
        y=None if parts[0].y is None else np.concatenate([p.y for p in parts]),
        ids=[i for p in parts for i in p.ids],
        target_names=parts[0].target_names,
        origins=origins,
    )


# Relative tolerance of linear dependence, the same as the neighbor list's (csrc/neighbors/cell_grid.h make_basis),
# so that conversion rejects exactly the cells the operators would reject later.
CELL_DEPENDENCE_TOL = 1e-10


def degenerate_cells(cells: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """(B,) bool: the periodic rows of cells (B, 3, 3) are zero or (nearly) linearly dependent."""
    norms = np.linalg.norm(cells, axis=2)
    bad = (pbc & ~(norms > 0)).any(axis=1)
    n_periodic = pbc.sum(axis=1)
    full = n_periodic == 3
    if full.any():
        volume = np.abs(np.linalg.det(cells[full]))
        bad[full] |= ~(volume > CELL_DEPENDENCE_TOL * norms[full].prod(axis=1))
    for i, j in ((0, 1), (0, 2), (1, 2)):
        pair = (n_periodic == 2) & pbc[:, i] & pbc[:, j]
        if pair.any():
            area = np.linalg.norm(np.cross(cells[pair, i], cells[pair, j]), axis=1)
            bad[pair] |= ~(area > CELL_DEPENDENCE_TOL * norms[pair, i] * norms[pair, j])
    return bad


def validate(flat: FlatStructures, source: str) -> None:
    """Vectorised checks; the first offending structure is named (id, index, file)."""
    B = len(flat)
    if B == 0:
        raise ValueError(f"fpcore.data: the dataset {source} is empty (no structures were read)")
    counts = np.diff(flat.offsets)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        raise ValueError(f"fpcore.data: {flat.describe(int(empty[0]))} has no atoms")

    def owner(atom_index):
        return int(np.searchsorted(flat.offsets, atom_index, side="right") - 1)

    bad_z = np.flatnonzero((flat.numbers < 1) | (flat.numbers > MAX_Z))
    if len(bad_z):
        a = int(bad_z[0])
        raise ValueError(
            f"fpcore.data: {flat.describe(owner(a))} has atomic number {int(flat.numbers[a])} at atom "
            f"{a - int(flat.offsets[owner(a)])} (unknown element or placeholder 'X'; elements 1..{MAX_Z} are accepted)"
        )
    bad_pos = np.flatnonzero(~np.isfinite(flat.positions).all(axis=1))
    if len(bad_pos):
        a = int(bad_pos[0])
        raise ValueError(
            f"fpcore.data: {flat.describe(owner(a))} has a non-finite position (NaN or inf) at atom "
            f"{a - int(flat.offsets[owner(a)])}"
        )
    bad_cell = np.flatnonzero(~np.isfinite(flat.cells).all(axis=(1, 2)))
    if len(bad_cell):
        raise ValueError(f"fpcore.data: {flat.describe(int(bad_cell[0]))} has a non-finite cell (NaN or inf)")
    # A periodic direction needs a non-zero cell vector, else the neighbor list has no images to build.
    flat_dir = flat.pbc & (np.abs(flat.cells).sum(axis=2) == 0)
    bad = np.flatnonzero(flat_dir.any(axis=1))
    if len(bad):
        raise ValueError(
            f"fpcore.data: {flat.describe(int(bad[0]))} is periodic along a direction whose cell vector is zero"
        )
    bad = np.flatnonzero(degenerate_cells(np.asarray(flat.cells, dtype=np.float64), np.asarray(flat.pbc, dtype=bool)))
    if len(bad):
        b = int(bad[0])
        raise ValueError(
            f"fpcore.data: {flat.describe(b)} has a degenerate cell: its periodic cell vectors "
            f"{np.asarray(flat.cells[b]).tolist()} (pbc {np.asarray(flat.pbc[b]).tolist()}) are linearly dependent; fix "
            "the cell or set pbc=False along the dependent direction"
        )
    if flat.y is not None:
        bad_y = np.argwhere(~np.isfinite(flat.y))
        if len(bad_y):
            b, t = (int(v) for v in bad_y[0])
            raise ValueError(
                f"fpcore.data: label {flat.target_names[t]!r} of {flat.describe(b)} is {flat.y[b, t]} (NaN or inf labels "
                f"are not accepted; drop those structures from the input)"
            )
