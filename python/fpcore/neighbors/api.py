"""Periodic neighbor lists: `neighbor_list` for ase.Atoms, `compute` for batched tensors."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._structures import Structures, batch_from_atoms, normalize_batch_tensors


class Neighbors(NamedTuple):
    """Full (both directions) pair list.

    i, j: (P,) int64 atom indices (into the concatenated atoms of a batch), grouped by ascending i.
    shifts: (P, 3) int64 integer cell translations, so that
        vectors = positions[j] - positions[i] + shifts @ cell[batch[i]]   (Angstrom)
    vectors: (P, 3) in the dtype of the positions, differentiable with respect to positions and cell.
    distances: (P,) = |vectors|, all strictly below the cutoff; the self pair (i, i, 0) never appears,
    but periodic images of i do when the cell is smaller than the cutoff.
    """

    i: torch.Tensor
    j: torch.Tensor
    shifts: torch.Tensor
    vectors: torch.Tensor
    distances: torch.Tensor


def pair_vectors(positions, cells, batch, i, j, shifts):
    """r_ij = positions[j] - positions[i] + shifts @ cells[batch[i]], differentiable in positions and cells."""
    # index_select is several times faster than advanced indexing here (forward and backward).
    vectors = positions.index_select(0, j) - positions.index_select(0, i)
    shifts = shifts.to(positions.dtype)
    if cells.shape[0] == 1:  # one structure: a plain matmul instead of a per-pair (P, 3, 3) gather
        return torch.addmm(vectors, shifts, cells[0])
    cell_of_pair = cells.index_select(0, batch.index_select(0, i))
    return vectors + torch.bmm(shifts.unsqueeze(1), cell_of_pair).squeeze(1)


def compute(positions, cell, pbc, batch=None, cutoff: float = 5.0) -> Neighbors:
    """Neighbor list of a batch of structures given as tensors (any device).

    positions: (N, 3) float32/float64 Cartesian positions in Angstrom (may lie outside the cell).
    cell: (B, 3, 3) cell vectors as rows (or (3, 3) for one structure); ignored in non-periodic
        directions, where it may be zero.
    pbc: (B, 3) bool periodicity per cell vector (or (3,) / a bool for all).
    batch: (N,) int64 non-decreasing structure index of each atom; None for a single structure.
    cutoff: pairs with distance strictly below it, in Angstrom.
    """
    positions, cells, pbc, batch, ptr = normalize_batch_tensors(positions, cell, pbc, batch)
    i, j, shifts = torch.ops.fpcore.neighbor_list(positions, cells, pbc, ptr, float(cutoff))
    vectors = pair_vectors(positions, cells, batch, i, j, shifts)
    return Neighbors(i, j, shifts, vectors, torch.linalg.vector_norm(vectors, dim=1))


def neighbor_list(
    structures: Structures, cutoff: float, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Neighbors:
    """Neighbor list of one ase.Atoms or a list of them, computed in one batched call.

    Indices refer to the atoms of the list concatenated in order. Same pairs as
    `ase.neighborlist.neighbor_list("ijS", atoms, cutoff)`.
    """
    data = batch_from_atoms(structures, dtype=dtype, device=device)
    return compute(data.positions, data.cells, data.pbc, data.batch, cutoff)
