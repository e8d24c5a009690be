"""Independent plain-PyTorch EAD (spec section 3), vectorised over pairs, for the tests.

Pairs come from ase's neighbour list (not fpcore's), and the vectors are rebuilt in torch so that
autograd gives reference gradients with respect to positions and cell.
"""

import math

import numpy as np
import torch
from ase.neighborlist import primitive_neighbor_list

from .torch_cutoff import cutoff_function


def monomial_exponents(L: int) -> torch.Tensor:
    """(M, 3) exponents (lx, ly, lz) of every monomial of total order <= L."""
    return torch.tensor([(a, b, c) for a in range(L + 1) for b in range(L + 1) for c in range(L + 1) if a + b + c <= L])


def ead_from_pairs(vectors, i, j, numbers, n_atoms, rc, L, eta, rs, cutoff_fn) -> torch.Tensor:
    dtype = vectors.dtype
    exps = monomial_exponents(L)
    order = exps.sum(1)
    inv_fact = torch.tensor([1.0 / math.prod(math.factorial(int(e)) for e in row) for row in exps], dtype=dtype)
    d = vectors.norm(dim=1)
    eta = torch.tensor(eta, dtype=dtype)
    rs = torch.tensor(rs, dtype=dtype)
    w = numbers[j].to(dtype) * cutoff_function(cutoff_fn, d, rc)
    g = torch.exp(-eta[None, :, None] * (d[:, None, None] - rs[None, None, :]) ** 2)  # (P, ne, nr)
    mono = torch.prod(vectors[:, None, :] ** exps[None].to(dtype), dim=-1)  # (P, M)
    terms = w[:, None, None, None] * mono[:, :, None, None] * g[:, None]  # (P, M, ne, nr)
    rho = torch.zeros((n_atoms,) + terms.shape[1:], dtype=dtype).index_add(0, i, terms)
    sq = rho**2 * inv_fact[None, :, None, None]
    out = [sq[:, order <= l].sum(1) * math.factorial(l) / rc ** (2 * l) for l in range(L + 1)]
    return torch.stack(out, 1).reshape(n_atoms, -1)


def ead_reference(positions, numbers, cell, pbc, rc, L, eta, rs, cutoff_fn) -> torch.Tensor:
    """positions (N, 3), cell (3, 3) rows, tensors possibly requiring grad; pbc (3,) bools."""
    pos_np = positions.detach().numpy()
    cell_np = cell.detach().numpy()
    box = cell_np.copy()
    for k in range(3):  # ase needs a non-degenerate cell even in non-periodic directions
        if not pbc[k] and np.linalg.norm(box[k]) == 0:
            box[k, k] = 1.0
    i, j, S = primitive_neighbor_list("ijS", np.asarray(pbc, bool), box, pos_np, rc, self_interaction=False)
    i, j, S = torch.from_numpy(i).long(), torch.from_numpy(j).long(), torch.from_numpy(S).to(positions.dtype)
    vectors = positions[j] - positions[i] + S @ cell
    return ead_from_pairs(vectors, i, j, torch.as_tensor(numbers), positions.shape[0], rc, L, eta, rs, cutoff_fn)
