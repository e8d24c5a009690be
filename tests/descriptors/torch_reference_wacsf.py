"""Independent plain-PyTorch wACSF written from spec section 2 (no fpcore operator code).

Neighbour entries come from ASE's neighbor_list; vectors are rebuilt in torch from positions and
cell, so the result is differentiable in both. Triplets are enumerated vectorised over pairs.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list

from .torch_cutoff import cutoff_function


def neighbour_entries(positions, numbers, cell, pbc, cutoff):
    """i, j, shifts of all entries 0 < d < cutoff (ASE), grouped by ascending i."""
    atoms = Atoms(
        numbers=numbers.detach().cpu().numpy(),
        positions=positions.detach().cpu().double().numpy(),
        cell=cell.detach().cpu().double().numpy(),
        pbc=[bool(p) for p in pbc],
    )
    i, j, shifts = neighbor_list("ijS", atoms, cutoff)
    order = np.argsort(i, kind="stable")
    to = lambda a: torch.as_tensor(a[order], dtype=torch.long, device=positions.device)  # noqa: E731
    return to(i), to(j), to(shifts)


def unordered_pairs(i: torch.Tensor, n_atoms: int):
    """Indices (p, q), p < q, of every two entries with the same centre (entries sorted by i)."""
    counts = torch.bincount(i, minlength=n_atoms)
    end = torch.cumsum(counts, 0)[i]  # one past the last entry of p's centre
    n_after = end - torch.arange(len(i), device=i.device) - 1
    p = torch.repeat_interleave(torch.arange(len(i), device=i.device), n_after)
    first = torch.repeat_interleave(torch.cumsum(n_after, 0) - n_after, n_after)
    q = p + 1 + (torch.arange(len(p), device=i.device) - first)
    return p, q


def reference_wacsf(
    positions, numbers, cell, pbc, *, cutoff, cutoff_fn="cosine", g2_eta, g2_rs, g4_zeta, g4_lambda, g4_eta,
    g4_rs, g5_zeta=(), g5_lambda=(), g5_eta=(), g5_rs=(),
):  # fmt: skip
    """(N, n_features) for one structure, layout [G2 | G4 | G5] as in spec 2.5."""
    n = positions.shape[0]
    dtype = positions.dtype
    i, j, shifts = neighbour_entries(positions, numbers, cell, pbc, cutoff)
    vec = positions[j] - positions[i] + shifts.to(dtype) @ cell
    d = torch.linalg.vector_norm(vec, dim=1)
    fc = cutoff_function(cutoff_fn, d, cutoff)
    z = numbers.to(dtype)
    t = lambda v: torch.as_tensor(list(v), dtype=dtype, device=positions.device)  # noqa: E731

    eta2, rs2 = t(g2_eta), t(g2_rs)
    g2_terms = z[j] * fc * torch.exp(-eta2[:, None, None] * (d - rs2[None, :, None]) ** 2)  # (eta, Rs, P)
    g2 = torch.zeros(len(eta2) * len(rs2), n, dtype=dtype).index_add(1, i, g2_terms.reshape(-1, len(d)))
    blocks = [g2.T]

    p, q = unordered_pairs(i, n)
    a, b = vec[p], vec[q]
    rij, rik = d[p], d[q]
    rjk = torch.linalg.vector_norm(b - a, dim=1)
    cos = (a * b).sum(1) / (rij * rik)
    weight = z[j[p]] * z[j[q]]
    for zeta, lam, eta, rs, with_jk in (
        (g4_zeta, g4_lambda, g4_eta, g4_rs, True),
        (g5_zeta, g5_lambda, g5_eta, g5_rs, False),
    ):
        if not len(zeta):
            continue
        zeta, lam, eta, rs = t(zeta), t(lam), t(eta), t(rs)
        zeta_ = zeta[:, None, None, None, None]
        lam_ = lam[None, :, None, None, None]
        eta_ = eta[None, None, :, None, None]
        rs_ = rs[None, None, None, :, None]
        if with_jk:
            exponent = -eta_ * (rij**2 + rik**2 + rjk**2 - 3 * rs_**2)
            cut = fc[p] * fc[q] * cutoff_function(cutoff_fn, rjk, cutoff)
        else:
            exponent = -eta_ * (rij**2 + rik**2 - 2 * rs_**2)
            cut = fc[p] * fc[q]
        base = 1 + lam_ * cos
        # fpcore's convention for non-integral zeta (|lambda| <= 1): a base rounded below 0 (cos = -1
        # for opposite images) counts as 0, where PyXtal_FF's np.power gives NaN.
        base = torch.where(zeta_ == torch.floor(zeta_), base, base.clamp(min=0))
        terms = 2.0 ** (1 - zeta_) * base**zeta_ * torch.exp(exponent) * cut * weight
        g = torch.zeros(terms[..., 0].numel(), n, dtype=dtype).index_add(1, i[p], terms.reshape(-1, len(p)))
        blocks.append(g.T)
    return torch.cat(blocks, dim=1)
