"""Dense derivative arrays of a descriptor, in the layout of the reference codes (PyXtal_FF's dxdr / rdxdr).

Training code never needs these (autograd gives forces and stress directly); they are for comparing with other
codes and for small-system analysis: memory is n_atoms^2 * n_features * 3.
"""

from __future__ import annotations

import torch

from .._structures import batch_from_atoms


def dense_derivatives(descriptor, atoms) -> tuple[torch.Tensor, torch.Tensor]:
    """(dxdr, rdxdr) of one structure from fpcore's autograd.

    dxdr[i, f, j, c] = d x[i, f] / d r[j, c]: atom j moved with all its periodic images (self term included).
    rdxdr[i, f, a, b] = (1/V) d x[i, f] / d F[a, b] at F = I, for the homogeneous deformation r -> F r applied to
    every position and cell vector (V = |det cell|; the strain derivative used for stress).
    """
    data = batch_from_atoms(atoms, dtype=torch.float64, device=descriptor.device)
    positions, cell = data.positions, data.cells[0]

    def features(positions, cell):
        return descriptor.compute(positions, data.numbers, cell, data.pbc[0])

    d_positions, d_cell = torch.autograd.functional.jacobian(features, (positions, cell))
    strain = torch.einsum("ifpa,pb->ifab", d_positions, positions) + torch.einsum("ifka,kb->ifab", d_cell, cell)
    return d_positions, strain / torch.linalg.det(cell).abs()
