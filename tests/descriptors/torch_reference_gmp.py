"""Independent plain-PyTorch GMP (spec section 4), vectorised over (pair, Gaussian).

Independent of the fpcore kernels on purpose: the solid harmonics come from symbolic differentiation
of 1/r (sympy), not from the closed-form rule; P_k by its binomial sum, not by the recurrence; the
inclusion radii and the normalisation are recomputed here. Neighbour entries come from
fpcore.neighbor_list (tested on its own) plus the self entry. Differentiable in positions/cell.
"""

from __future__ import annotations

import functools
import math

import sympy
import torch

THRESHOLD_FACTOR = [1.0, 1.0, 1.0, 1.0, 1e-1, 1e-2, 1e-4, 1e-5, 1e-7, 1e-9, 1e-11]  # n = -1..9


@functools.cache
def solid_harmonics(n: int):
    """[(multiplicity, {(a, b, c): coeff})] over lambda, |lambda| = n, from (-1)^n r^(2n+1) d^lambda (1/r)."""
    x, y, z = sympy.symbols("x y z")
    r = sympy.sqrt(x**2 + y**2 + z**2)
    out = []
    for lx in range(n + 1):
        for ly in range(n + 1 - lx):
            lz = n - lx - ly
            expr = 1 / r
            for var, k in ((x, lx), (y, ly), (z, lz)):
                if k:
                    expr = sympy.diff(expr, var, k)
            poly = sympy.Poly(sympy.expand(sympy.simplify((-1) ** n * expr * r ** (2 * n + 1))), x, y, z)
            mult = math.factorial(n) // (math.factorial(lx) * math.factorial(ly) * math.factorial(lz))
            out.append((mult, {m: int(c) for m, c in poly.terms()}))
    return out


def gaussian_moment(k: int, u: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """P_k(u) = sum_m C(k, 2m) (2m-1)!! (2 gamma)^-m u^(k-2m)."""
    total = torch.zeros_like(u)
    for m in range(k // 2 + 1):
        dfact = math.prod(range(2 * m - 1, 0, -2)) if m else 1
        total = total + math.comb(k, 2 * m) * dfact * (2 * gamma) ** (-m) * u ** (k - 2 * m)
    return total


def gmp_reference(
    atoms_positions,
    numbers,
    cell,
    pbc,
    orders,
    sigmas,
    density,
    overlap_threshold=1e-11,
    square=False,
    scaling_mode="radial",
):
    """density: {Z: [(B, beta), ...]}. Returns (N, F) in the GMPFeaturizer feature order."""

    pos = atoms_positions
    dtype = pos.dtype
    feats = [
        (n, None) if n < 0 else (n, s) for n in sorted(set(orders)) for s in ([None] if n < 0 else sorted(set(sigmas)))
    ]
    zs = sorted(set(int(z) for z in numbers.tolist()))

    def radius2(n, s, b, beta):
        t = overlap_threshold * THRESHOLD_FACTOR[n + 1]
        if n < 0:
            c1, c2 = abs(b), -beta
        else:
            alpha = 1 / (2 * s * s)
            c1 = abs(b / (s * math.sqrt(2 * math.pi)) * (math.pi / (alpha + beta)) ** 1.5)
            c2 = -alpha * beta / (alpha + beta)
        return (math.log(t) - c1) / c2

    r_glob = math.sqrt(max(radius2(n, s, b, be) for n, s in feats for z in zs for b, be in density[z]))
    i, j, shifts, _, _ = torch.ops.fpcore.neighbor_list(
        pos.detach(), cell.detach().reshape(1, 3, 3), pbc.reshape(1, 3), torch.tensor([0, pos.shape[0]]), r_glob
    )
    n_atoms = pos.shape[0]
    self_idx = torch.arange(n_atoms)
    i = torch.cat([i, self_idx])
    j = torch.cat([j, self_idx])
    shifts = torch.cat([shifts, torch.zeros(n_atoms, 3, dtype=shifts.dtype)])
    vec = pos[j] - pos[i] + shifts.to(dtype) @ cell
    is_self = torch.zeros(len(i), dtype=torch.bool)
    is_self[-n_atoms:] = True
    # the self entry is a constant: detach so its zero vector carries no gradient path
    vec = torch.where(is_self[:, None], vec.detach() * 0, vec)
    d2 = (vec**2).sum(1)

    # expand over Gaussians of the neighbour's element
    g_pair, g_B, g_beta = [], [], []
    for z in zs:
        sel = torch.nonzero(numbers[j] == z).flatten()
        for b, be in density[z]:
            g_pair.append(sel)
            g_B.append(torch.full((len(sel),), b, dtype=dtype))
            g_beta.append(torch.full((len(sel),), be, dtype=dtype))
    g_pair, g_B, g_beta = torch.cat(g_pair), torch.cat(g_B), torch.cat(g_beta)
    gi, gv, gd2 = i[g_pair], vec[g_pair], d2[g_pair]

    columns = []
    for n, s in feats:
        r2 = torch.tensor([radius2(n, s, b, be) for b, be in zip(g_B.tolist(), g_beta.tolist())], dtype=dtype)
        keep = gd2 <= r2
        if n < 0:
            contrib = torch.where(keep, g_B * torch.exp(-g_beta * gd2), torch.zeros_like(gd2))
            dens = torch.zeros(n_atoms, dtype=dtype).index_add(0, gi, contrib)
            columns.append(dens**2 if square else dens.abs())
            continue
        alpha = 1 / (2 * s * s)
        if scaling_mode == "radial":
            amp = (s * math.sqrt(2 * math.pi)) ** -3
        else:
            c = [
                1.0,
                0.75,
                5.625,
                147.65625,
                9302.34375,
                1151165.0390625,
                246924900.87890625,
                84263122424.92676,
                42974192436712.65,
                3.163831150894136e16,
            ][n]
            amp = 1 / math.sqrt(c * alpha ** (-n) * (math.pi / (2 * alpha)) ** 1.5)
        gamma = alpha + g_beta
        c1 = amp * g_B * (math.pi / gamma) ** 1.5
        pref = torch.where(keep, c1 * torch.exp(-alpha * g_beta / gamma * gd2), torch.zeros_like(gd2))
        u = (g_beta / gamma)[:, None] * gv
        P = [[gaussian_moment(k, u[:, a], gamma) for k in range(n + 1)] for a in range(3)]
        total = torch.zeros(n_atoms, dtype=dtype)
        for mult, poly in solid_harmonics(n):
            mu = sum(c * P[0][a] * P[1][b] * P[2][cc] for (a, b, cc), c in poly.items())
            S = torch.zeros(n_atoms, dtype=dtype).index_add(0, gi, pref * mu)
            total = total + mult * S**2
        columns.append(total if square else torch.sqrt(total))
    return torch.stack(columns, 1)
