"""Typed entry points of fpcore's compiled operators (`torch.ops.fpcore.*`), one function per operator.

Every fpcore module calls the operators through these functions, with keyword arguments, so their
arguments, shapes, dtypes and units are written down once, here. The functions add no work: each is
one call of the registered operator, so autograd (registered in `fpcore.descriptors._*_ops` and
`fpcore.neighbors._ops`), fake kernels and `torch.compile` see the operator itself.

Conventions shared by all operators:

- Lengths are in Angstrom; float tensors are float32 or float64 and all float inputs of one call
  share a dtype and a device (outputs take them).
- A pair list is in CSR form, grouped by centre: `vectors` (P, 3) are the pair vectors
  r_j + shifts @ cell - r_i, `row_ptr` (N + 1,) int64 holds the first pair of each centre atom
  (pairs of centre a are `row_ptr[a]:row_ptr[a + 1]`), `neighbors_j` (P,) int64 is the neighbour atom
  of each pair. `fpcore.descriptors.base.pair_row_ptr` builds `row_ptr` from a neighbor list's `i`.
- Atomic numbers are (N,) int64.
- A `*_backward` operator maps the gradient of the loss with respect to the outputs to the gradient
  with respect to the pair vectors, (P, 3) contiguous in the dtype of `vectors`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class NeighborListResult(NamedTuple):
    """Outputs of `neighbor_list`: the full (both directions) pair list of a batch.

    Attributes:
        i: (P,) int64 centre atom of each pair, ascending.
        j: (P,) int64 neighbour atom of each pair.
        shifts: (P, 3) int64 integer cell translations: r_ij = positions[j] - positions[i] + shifts @ cells[b].
        vectors: (P, 3) r_ij in Angstrom, dtype of the positions, without gradient; (0, 3) unless geometry.
        distances: (P,) |r_ij| in Angstrom, strictly below the cutoff; (0,) unless geometry.
    """

    i: Tensor
    j: Tensor
    shifts: Tensor
    vectors: Tensor
    distances: Tensor


class PairGeometry(NamedTuple):
    """Outputs of `pair_geometry`.

    Attributes:
        vectors: (P, 3) pair vectors in Angstrom, dtype of the positions.
        distances: (P,) their lengths in Angstrom.
    """

    vectors: Tensor
    distances: Tensor


class PairGeometryGrad(NamedTuple):
    """Outputs of `pair_geometry_backward`.

    Attributes:
        grad_positions: (N, 3) gradient of the loss with respect to the positions.
        grad_cells: (B, 3, 3) gradient of the loss with respect to the cells.
    """

    grad_positions: Tensor
    grad_cells: Tensor


class GMPTables(NamedTuple):
    """The parameter tables of the GMP operators, built by `fpcore.GMP` (its `_tables(dtype, device)`).

    Float tables are in the dtype of the pair vectors. K sigma groups (and the order -1 group),
    Z elements, G Gaussians per element, F features.

    Attributes:
        group_consts: (K, Z, G, 5) per group: C2, lambda, 1/(2 gamma), max r^2 (Angstrom^2), group index;
            per (Z, G) the K rows are sorted by descending max r^2.
        group_ptr: (K + 1,) int64 features of group k are `group_features[group_ptr[k]:group_ptr[k + 1]]`.
        group_features: (F,) int64 feature indices, grouped.
        group_max_order: (K,) int64 highest order in each group.
        orders: (F,) int64 order of each feature (-1 .. 9).
        offsets: (F,) int64 first moment column of each feature.
        c1: (F, Z, G) amplitude C1 (B for order -1).
        radii2: (F, Z, G) squared inclusion radii in Angstrom^2 (-1: no cut).
        coeffs: (10, 55, 55) solid-harmonic monomial coefficients.
        multiplicity: (10, 55) multinomial weights n! / (lx! ly! lz!).
    """

    group_consts: Tensor
    group_ptr: Tensor
    group_features: Tensor
    group_max_order: Tensor
    orders: Tensor
    offsets: Tensor
    c1: Tensor
    radii2: Tensor
    coeffs: Tensor
    multiplicity: Tensor


class GMPResult(NamedTuple):
    """Outputs of `gmp`.

    Attributes:
        features: (N, F) GMP features, dtype of the pair vectors.
        moments: (N, n_moments) the per-centre moments the backward reuses.
    """

    features: Tensor
    moments: Tensor


# ---------------------------------------------------------------- neighbor lists and geometry
def neighbor_list(
    *, positions: Tensor, cells: Tensor, pbc: Tensor, ptr: Tensor, cutoff: float, geometry: bool = False
) -> NeighborListResult:
    """Periodic neighbor list of a batch of structures (`fpcore::neighbor_list`), not differentiable.

    Args:
        positions: (N, 3) Cartesian positions in Angstrom, float32/float64 (may lie outside the cell).
        cells: (B, 3, 3) cell vectors as rows, dtype of the positions.
        pbc: (B, 3) bool periodicity of each cell vector.
        ptr: (B + 1,) int64 atoms of structure b are `ptr[b]:ptr[b + 1]`.
        cutoff: pairs with distance strictly below it, in Angstrom (>= 0).
        geometry: also return the pair vectors and distances, computed as the pairs are written.

    Returns:
        The pair list; the self pair (i, i, 0) never appears, periodic images of i do.
    """
    return NeighborListResult(*torch.ops.fpcore.neighbor_list(positions, cells, pbc, ptr, cutoff, geometry))


def pair_geometry(
    *, positions: Tensor, cells: Tensor, batch: Tensor, i: Tensor, j: Tensor, shifts: Tensor
) -> PairGeometry:
    """Vectors and distances of given pairs in one pass (`fpcore::pair_geometry`), differentiable to any order.

    vectors = positions[j] - positions[i] + shifts @ cells[batch[i]], distances = |vectors|.

    Args:
        positions: (N, 3) positions in Angstrom, float32/float64.
        cells: (B, 3, 3) cell vectors as rows, dtype of the positions.
        batch: (N,) int64 structure of each atom.
        i: (P,) int64 centre atoms.
        j: (P,) int64 neighbour atoms.
        shifts: (P, 3) int64 integer cell translations.
    """
    return PairGeometry(*torch.ops.fpcore.pair_geometry(positions, cells, batch, i, j, shifts))


def pair_geometry_backward(
    *,
    grad_vectors: Tensor | None,
    grad_distances: Tensor | None,
    vectors: Tensor,
    distances: Tensor,
    batch: Tensor,
    i: Tensor,
    j: Tensor,
    shifts: Tensor,
    n_atoms: int,
    n_structures: int,
) -> PairGeometryGrad:
    """Adjoint of `pair_geometry` (`fpcore::pair_geometry_backward`).

    With g = grad_vectors + grad_distances * vectors / distances (the distance term is 0 where a
    distance is 0): grad_positions += g at j, -= g at i; grad_cells[b] += shifts^T g over its pairs.

    Args:
        grad_vectors: (P, 3) gradient of the loss with respect to the vectors, or None (zero).
        grad_distances: (P,) gradient of the loss with respect to the distances, or None (zero).
        vectors: (P, 3) the forward's vectors.
        distances: (P,) the forward's distances.
        batch: (N,) int64 structure of each atom.
        i: (P,) int64 centre atoms.
        j: (P,) int64 neighbour atoms.
        shifts: (P, 3) int64 integer cell translations.
        n_atoms: N, the rows of grad_positions.
        n_structures: B, the rows of grad_cells.
    """
    return PairGeometryGrad(
        *torch.ops.fpcore.pair_geometry_backward(
            grad_vectors, grad_distances, vectors, distances, batch, i, j, shifts, n_atoms, n_structures
        )
    )


# ---------------------------------------------------------------- wACSF
def wacsf(
    *,
    vectors: Tensor,
    row_ptr: Tensor,
    neighbors_j: Tensor,
    numbers: Tensor,
    g2_eta: list[float],
    g2_rs: list[float],
    g4_zeta: list[float],
    g4_lambda: list[float],
    g4_eta: list[float],
    g4_rs: list[float],
    g5_zeta: list[float],
    g5_lambda: list[float],
    g5_eta: list[float],
    g5_rs: list[float],
    cutoff_fn: str,
    cutoff: float,
) -> Tensor:
    """Weighted atom-centred symmetry functions (`fpcore::wacsf`, maths: docs/descriptors/wacsf.md).

    Args:
        vectors: (P, 3) pair vectors in Angstrom, grouped by centre (see the module conventions).
        row_ptr: (N + 1,) int64 first pair of each centre.
        neighbors_j: (P,) int64 neighbour atom of each pair.
        numbers: (N,) int64 atomic numbers, the weights Z_j.
        g2_eta: G2 widths in 1/Angstrom^2 (outer); an empty list switches the G2 block off.
        g2_rs: G2 shifts in Angstrom (inner).
        g4_zeta: G4 angular exponents.
        g4_lambda: G4 angular signs/weights.
        g4_eta: G4 widths in 1/Angstrom^2.
        g4_rs: G4 shifts in Angstrom (innermost).
        g5_zeta: G5 angular exponents.
        g5_lambda: G5 angular signs/weights.
        g5_eta: G5 widths in 1/Angstrom^2.
        g5_rs: G5 shifts in Angstrom.
        cutoff_fn: a name in `fpcore.descriptors.base.CUTOFF_FUNCTIONS`.
        cutoff: cutoff radius Rc in Angstrom.

    Returns:
        (N, n_features) features, blocks [G2 | G4 | G5], dtype of `vectors`.
    """
    return torch.ops.fpcore.wacsf(
        vectors, row_ptr, neighbors_j, numbers,
        g2_eta, g2_rs, g4_zeta, g4_lambda, g4_eta, g4_rs, g5_zeta, g5_lambda, g5_eta, g5_rs, cutoff_fn, cutoff,
    )  # fmt: skip


def wacsf_backward(
    *,
    grad_features: Tensor,
    vectors: Tensor,
    row_ptr: Tensor,
    neighbors_j: Tensor,
    numbers: Tensor,
    g2_eta: list[float],
    g2_rs: list[float],
    g4_zeta: list[float],
    g4_lambda: list[float],
    g4_eta: list[float],
    g4_rs: list[float],
    g5_zeta: list[float],
    g5_lambda: list[float],
    g5_eta: list[float],
    g5_rs: list[float],
    cutoff_fn: str,
    cutoff: float,
) -> Tensor:
    """Gradient of `wacsf` with respect to the pair vectors (`fpcore::wacsf_backward`); no double backward.

    Args:
        grad_features: (N, n_features) gradient of the loss with respect to the features.
        vectors: see `wacsf`; the other arguments are those of the forward call.
        row_ptr: see `wacsf`.
        neighbors_j: see `wacsf`.
        numbers: see `wacsf`.
        g2_eta: see `wacsf`.
        g2_rs: see `wacsf`.
        g4_zeta: see `wacsf`.
        g4_lambda: see `wacsf`.
        g4_eta: see `wacsf`.
        g4_rs: see `wacsf`.
        g5_zeta: see `wacsf`.
        g5_lambda: see `wacsf`.
        g5_eta: see `wacsf`.
        g5_rs: see `wacsf`.
        cutoff_fn: see `wacsf`.
        cutoff: see `wacsf`.

    Returns:
        (P, 3) gradient of the loss with respect to `vectors`.
    """
    return torch.ops.fpcore.wacsf_backward(
        grad_features, vectors, row_ptr, neighbors_j, numbers,
        g2_eta, g2_rs, g4_zeta, g4_lambda, g4_eta, g4_rs, g5_zeta, g5_lambda, g5_eta, g5_rs, cutoff_fn, cutoff,
    )  # fmt: skip


# ---------------------------------------------------------------- EAD
def ead(
    *,
    vectors: Tensor,
    row_ptr: Tensor,
    neighbors_j: Tensor,
    numbers: Tensor,
    eta: list[float],
    rs: list[float],
    L: int,
    cutoff_fn: str,
    cutoff: float,
) -> Tensor:
    """Embedded atom density features (`fpcore::ead`, maths: docs/descriptors/ead.md).

    Args:
        vectors: (P, 3) pair vectors in Angstrom, grouped by centre (see the module conventions).
        row_ptr: (N + 1,) int64 first pair of each centre.
        neighbors_j: (P,) int64 neighbour atom of each pair.
        numbers: (N,) int64 atomic numbers, the weights Z_j.
        eta: Gaussian widths in 1/Angstrom^2.
        rs: Gaussian centres in Angstrom.
        L: highest monomial order, 0 .. 8.
        cutoff_fn: a name in `fpcore.descriptors.base.CUTOFF_FUNCTIONS`.
        cutoff: cutoff radius Rc in Angstrom.

    Returns:
        (N, (L + 1) * len(eta) * len(rs)) features, column (l * len(eta) + i_eta) * len(rs) + i_rs.
    """
    return torch.ops.fpcore.ead(vectors, row_ptr, neighbors_j, numbers, eta, rs, L, cutoff_fn, cutoff)


def ead_backward(
    *,
    grad_features: Tensor,
    vectors: Tensor,
    row_ptr: Tensor,
    neighbors_j: Tensor,
    numbers: Tensor,
    eta: list[float],
    rs: list[float],
    L: int,
    cutoff_fn: str,
    cutoff: float,
) -> Tensor:
    """Gradient of `ead` with respect to the pair vectors (`fpcore::ead_backward`), itself differentiable.

    Args:
        grad_features: (N, n_features) gradient of the loss with respect to the features.
        vectors: see `ead`; the other arguments are those of the forward call.
        row_ptr: see `ead`.
        neighbors_j: see `ead`.
        numbers: see `ead`.
        eta: see `ead`.
        rs: see `ead`.
        L: see `ead`.
        cutoff_fn: see `ead`.
        cutoff: see `ead`.

    Returns:
        (P, 3) gradient of the loss with respect to `vectors`.
    """
    return torch.ops.fpcore.ead_backward(
        grad_features, vectors, row_ptr, neighbors_j, numbers, eta, rs, L, cutoff_fn, cutoff
    )


# ---------------------------------------------------------------- GMP
def gmp(
    *,
    vectors: Tensor,
    row_ptr: Tensor,
    neighbors_j: Tensor,
    numbers: Tensor,
    tables: GMPTables,
    n_moments: int,
    square: bool,
) -> GMPResult:
    """Gaussian multipole features (`fpcore::gmp`, maths: docs/descriptors/gmp.md).

    The self term (j = i, no shift) is added by the kernel.

    Args:
        vectors: (P, 3) pair vectors in Angstrom, grouped by centre (see the module conventions).
        row_ptr: (N + 1,) int64 first pair of each centre.
        neighbors_j: (P,) int64 neighbour atom of each pair.
        numbers: (N,) int64 atomic numbers (rows of the density tables).
        tables: the parameter tables of a `fpcore.GMP`, in the dtype and on the device of `vectors`.
        n_moments: columns of the moments output.
        square: return the squared norms of the moments instead of the norms.
    """
    return GMPResult(*torch.ops.fpcore.gmp(vectors, row_ptr, neighbors_j, numbers, *tables, n_moments, square))


def gmp_backward(
    *,
    grad_features: Tensor,
    grad_moments: Tensor | None,
    moments: Tensor,
    vectors: Tensor,
    row_ptr: Tensor,
    neighbors_j: Tensor,
    numbers: Tensor,
    tables: GMPTables,
    n_moments: int,
    square: bool,
) -> Tensor:
    """Gradient of `gmp` with respect to the pair vectors (`fpcore::gmp_backward`); no double backward.

    Args:
        grad_features: (N, F) gradient of the loss with respect to the features.
        grad_moments: (N, n_moments) gradient of the loss with respect to the moments, or None (zero).
        moments: (N, n_moments) the forward's moments.
        vectors: see `gmp`; the other arguments are those of the forward call.
        row_ptr: see `gmp`.
        neighbors_j: see `gmp`.
        numbers: see `gmp`.
        tables: see `gmp`.
        n_moments: see `gmp`.
        square: see `gmp`.

    Returns:
        (P, 3) gradient of the loss with respect to `vectors`.
    """
    return torch.ops.fpcore.gmp_backward(
        grad_features, grad_moments, moments, vectors, row_ptr, neighbors_j, numbers, *tables, n_moments, square
    )
