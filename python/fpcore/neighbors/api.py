"""Periodic neighbor lists: `neighbor_list` for ase.Atoms, `compute` for batched tensors."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import ops
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


def pair_geometry(positions, cells, batch, i, j, shifts) -> ops.PairGeometry:
    """Vectors and distances of given pairs, in one pass (fpcore::pair_geometry).

    vectors = positions[j] - positions[i] + shifts @ cells[batch[i]] (P, 3) and distances = |vectors| (P,),
    in the dtype of the positions, differentiable with respect to positions and cells to any order.

    positions (N, 3); cells (B, 3, 3) or (3, 3); batch (N,) int64 structure of each atom (None: one
    structure); i, j (P,) int64; shifts (P, 3) int64 integer cell translations.
    """
    cells = cells.unsqueeze(0) if cells.dim() == 2 else cells
    if batch is None:
        batch = torch.zeros(positions.shape[0], dtype=torch.long, device=positions.device)
    return ops.pair_geometry(positions=positions, cells=cells, batch=batch, i=i, j=j, shifts=shifts)


def compute(positions, cell, pbc, batch=None, cutoff: float = 5.0) -> Neighbors:
    """Neighbor list of a batch of structures given as tensors (any device).

    positions: (N, 3) float32/float64 Cartesian positions in Angstrom (may lie outside the cell).
    cell: (B, 3, 3) cell vectors as rows (or (3, 3) for one structure); ignored in non-periodic
        directions, where it may be zero.
    pbc: (B, 3) bool periodicity per cell vector (or (3,) / a bool for all).
    batch: (N,) int64 non-decreasing structure index of each atom; None for a single structure.
    cutoff: pairs with distance strictly below it, in Angstrom.

    Meta tensors are refused (the number of pairs depends on the values); under FakeTensorMode and
    torch.compile the pair count is a dynamic size.
    """
    positions, cells, pbc, batch, ptr = normalize_batch_tensors(positions, cell, pbc, batch)
    return neighbors_of_batch(positions, cells, pbc, batch, ptr, cutoff)


def neighbors_of_batch(positions, cells, pbc, batch, ptr, cutoff: float) -> Neighbors:
    """`compute` on inputs already in canonical form (normalize_batch_tensors or batch_from_atoms)."""
    if positions.device.type == "meta":
        raise NotImplementedError(
            "fpcore.neighbors.compute: meta tensors are not supported (the number of pairs depends on the "
            "positions, which meta tensors do not have); use FakeTensorMode or torch.compile for shapes"
        )
    differentiable = torch.is_grad_enabled() and (positions.requires_grad or cells.requires_grad)
    # Without gradients the search itself emits vectors and distances; with them, the separate
    # differentiable operator recomputes them from the pairs (same formula, same values).
    i, j, shifts, vectors, distances = ops.neighbor_list(
        positions=positions.detach(),
        cells=cells.detach(),
        pbc=pbc,
        ptr=ptr,
        cutoff=float(cutoff),
        geometry=not differentiable,
    )
    if differentiable:
        vectors, distances = ops.pair_geometry(positions=positions, cells=cells, batch=batch, i=i, j=j, shifts=shifts)
    return Neighbors(i, j, shifts, vectors, distances)


def neighbor_list(
    structures: Structures, cutoff: float, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Neighbors:
    """Neighbor list of one ase.Atoms or a list of them, computed in one batched call.

    Indices refer to the atoms of the list concatenated in order. Same pairs as
    `ase.neighborlist.neighbor_list("ijS", atoms, cutoff)`.
    """
    data = batch_from_atoms(structures, dtype=dtype, device=device)
    return neighbors_of_batch(data.positions, data.cells, data.pbc, data.batch, data.ptr, cutoff)
