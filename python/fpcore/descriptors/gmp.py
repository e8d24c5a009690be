"""GMP: Gaussian multipole descriptors, exact to GMPFeaturizer (maths: docs/descriptors/gmp.md), with analytic gradients.

For every centre i and feature (n, sigma) the operator sums, over every neighbour entry (j, T) within
the inclusion radius (the centre itself included) and every Gaussian (B, beta) of j's density, the
analytic overlap of the density Gaussian with the probe A_sigma exp(-r^2/(2 sigma^2)) Phi_lambda(r),
where Phi_lambda are the solid Maxwell-Cartesian harmonics of order n (|lambda| = n), and returns

    GMP_i(n, sigma) = sqrt( sum_{|lambda|=n} n!/(lx! ly! lz!) S_i(lambda)^2 ),   GMP_i(-1) = |density at i|

(squared sums with square=True). Inclusion follows GMPFeaturizer's custom_cutoff=4 rule exactly: a
Gaussian g of element e contributes to feature (n, sigma) iff d^2 <= d_g^2 with
d_g^2 = (ln t_n - c1) / c2 (see `inclusion_radii2`).

Neighbour search radius: R_glob, the largest inclusion radius over all features and over the elements
present (in a batch: present anywhere in the batch). The search keeps d < R_glob (strict) while the
per-Gaussian rule keeps d <= d_g; the two differ only in the measure-zero case d == R_glob exactly.
The batch-wide radius never changes a value: every (entry, Gaussian) pair still obeys its own radius.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from .. import ops
from . import _gmp_ops  # noqa: F401  (registers fake kernels and autograd formulas)
from .base import Descriptor, as_float_list
from .gpsp import DensityModel, default_density, read_gpsp

MAX_ORDER = 9
MAX_MONOMIALS = (MAX_ORDER + 1) * (MAX_ORDER + 2) // 2
N_ELEMENTS = 119  # table rows indexed by atomic number (row 0 unused)

# custom_cutoff = 4 threshold factors f_n for n = -1, 0, ..., 9 (GMPFeaturizer).
ORDER_THRESHOLD_FACTOR = {
    -1: 1.0,
    0: 1.0,
    1: 1.0,
    2: 1.0,
    3: 1e-1,
    4: 1e-2,
    5: 1e-4,
    6: 1e-5,
    7: 1e-7,
    8: 1e-9,
    9: 1e-11,
}
# scaling_mode "both": A_{n,sigma} = 1 / sqrt(c_n alpha^-n (pi / (2 alpha))^(3/2)) (GMPFeaturizer constants).
BOTH_SCALING_C = (
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
)


def monomials(n: int) -> list[tuple[int, int, int]]:
    """Exponents (a, b, c), a + b + c = n, in the kernels' order: a = n..0, then b = n-a..0."""
    return [(a, b, n - a - b) for a in range(n, -1, -1) for b in range(n - a, -1, -1)]


def _double_factorial(k: int) -> int:
    return 1 if k <= 0 else k * _double_factorial(k - 2)


def solid_harmonic(lam: tuple[int, int, int]) -> dict[tuple[int, int, int], int]:
    """Exact integer coefficients {(a, b, c): c} of Phi_lambda = (-1)^n r^(2n+1) d^lambda (1/r), from the
    closed form sum_k (-1)^k (2n-2k-1)!! prod_a l_a!/(2^k_a k_a! (l_a-2k_a)!) x^(l-2k) (x^2+y^2+z^2)^k."""
    n = sum(lam)
    out: dict[tuple[int, int, int], int] = {}
    f = math.factorial
    for kx in range(lam[0] // 2 + 1):
        for ky in range(lam[1] // 2 + 1):
            for kz in range(lam[2] // 2 + 1):
                k = kx + ky + kz
                coef = (-1) ** k * _double_factorial(2 * n - 2 * k - 1)
                for la, ka in zip(lam, (kx, ky, kz)):
                    num = f(la)
                    den = 2**ka * f(ka) * f(la - 2 * ka)
                    assert num % den == 0
                    coef *= num // den
                # (x^2 + y^2 + z^2)^k by the multinomial theorem
                for i in range(k + 1):
                    for j in range(k - i + 1):
                        l_ = k - i - j
                        mono = (lam[0] - 2 * kx + 2 * i, lam[1] - 2 * ky + 2 * j, lam[2] - 2 * kz + 2 * l_)
                        out[mono] = out.get(mono, 0) + coef * (f(k) // (f(i) * f(j) * f(l_)))
    return {m: c for m, c in out.items() if c != 0}


def coefficient_tables() -> tuple[np.ndarray, np.ndarray]:
    """coeffs (10, 55, 55) [n, component, monomial] and multiplicity (10, 55) n!/(lx! ly! lz!), float64
    (every coefficient up to order 9 is an integer below 2^53, so the conversion is exact)."""
    coeffs = np.zeros((MAX_ORDER + 1, MAX_MONOMIALS, MAX_MONOMIALS))
    mult = np.zeros((MAX_ORDER + 1, MAX_MONOMIALS))
    for n in range(MAX_ORDER + 1):
        monos = monomials(n)
        index = {m: q for q, m in enumerate(monos)}
        for comp, lam in enumerate(monos):
            for m, c in solid_harmonic(lam).items():
                assert abs(c) < 2**53
                coeffs[n, comp, index[m]] = c
            mult[n, comp] = math.factorial(n) // (
                math.factorial(lam[0]) * math.factorial(lam[1]) * math.factorial(lam[2])
            )
    return coeffs, mult


def inclusion_radii2(order: int, sigma: float, b: np.ndarray, beta: np.ndarray, overlap_threshold: float) -> np.ndarray:
    """Squared inclusion radii d_g^2 of GMPFeaturizer's custom_cutoff=4, literally (ln t_n - c1) / c2 with
    c1 = |a1 B (pi/(alpha+beta))^1.5|, a1 = 1/(sigma sqrt(2 pi)) (not cubed), c2 = -alpha beta/(alpha+beta);
    for order -1, c1 = |B| and c2 = -beta."""
    t = overlap_threshold * ORDER_THRESHOLD_FACTOR[order]
    if order < 0:
        c1, c2 = np.abs(b), -beta
    else:
        alpha = 1.0 / (2.0 * sigma * sigma)
        a1 = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
        c1 = np.abs(a1 * b * (math.pi / (alpha + beta)) ** 1.5)
        c2 = -alpha * beta / (alpha + beta)
    return (math.log(t) - c1) / c2


class GMP(Descriptor):
    """Gaussian multipole (GMP) descriptors of GMPFeaturizer (custom_cutoff=4).

    Args:
        orders: orders n in -1..9 (sorted and de-duplicated; -1 gives one feature, the density at the atom).
            GMPFeaturizer's own order-9 kernel is wrong; fpcore computes the correct maths (double-precision
            cancellation limits order 9 to about 1e-8 relative).
        sigmas: probe widths sigma (Angstrom, positive; sorted, de-duplicated).
        density: path of a .gpsp file (e.g. GMPFeaturizer's QE-kjpaw.gpsp), a `DensityModel`, or None for
            the built-in default model (see `fpcore.descriptors.gpsp.default_density`: per element two
            valence-normalised Gaussians of widths r_cov/2 and r_cov; no file needed).
        overlap_threshold: the threshold t of the inclusion rule (0 < t < 1).
        square: return the sum of squares instead of its square root (order -1: the squared density).
        scaling_mode: "radial" (A_sigma = (sigma sqrt(2 pi))^-3) or "both" (order-dependent normalisation).
        dtype: float64 or float32 for ase input.

    Features are ordered order-ascending outer, sigma-ascending inner, order -1 first and once.
    """

    def __init__(
        self,
        orders=(-1, 0, 1, 2),
        sigmas=(0.333, 0.667, 1.0),
        density=None,
        overlap_threshold: float = 1e-11,
        square: bool = False,
        scaling_mode: str = "radial",
        dtype: torch.dtype = torch.float64,
    ):
        owner = "GMP"
        if isinstance(orders, int):
            orders = [orders]
        try:
            orders_int = sorted({int(o) for o in orders})
            if any(int(o) != o for o in orders):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"{owner}: orders must be a list of integers, got {orders!r}") from None
        if not orders_int:
            raise ValueError(f"{owner}: orders must not be empty")
        if orders_int[0] < -1 or orders_int[-1] > MAX_ORDER:
            raise ValueError(f"{owner}: orders must lie in -1..{MAX_ORDER}, got {orders_int}")
        sig = sorted(set(as_float_list(sigmas, "sigmas", owner)))
        if any(s <= 0.0 for s in sig):
            raise ValueError(f"{owner}: sigmas must be positive, got {sig}")
        overlap_threshold = float(overlap_threshold)
        if not (0.0 < overlap_threshold < 1.0):
            raise ValueError(f"{owner}: overlap_threshold must lie in (0, 1), got {overlap_threshold}")
        if scaling_mode not in ("radial", "both"):
            raise ValueError(f"{owner}: scaling_mode must be 'radial' or 'both', got {scaling_mode!r}")
        if density is None:
            model = default_density()
        elif isinstance(density, DensityModel):
            model = density
        elif isinstance(density, (str, os.PathLike)):
            model = read_gpsp(density)
        else:
            raise TypeError(f"{owner}: density must be a .gpsp path, a DensityModel or None, got {type(density)}")

        self.orders, self.sigmas, self.density = orders_int, sig, model
        self.overlap_threshold, self.square, self.scaling_mode = overlap_threshold, bool(square), scaling_mode
        self._feature_params = [(n, None) if n < 0 else (n, s) for n in orders_int for s in ([None] if n < 0 else sig)]
        tables, self._radius_per_element = self._build_tables()
        super().__init__(cutoff=max(float(self._radius_per_element.max()), 1e-6), dtype=dtype)
        for name, value in tables.items():
            self.register_buffer(name, value, persistent=False)
        self._cast_cache: dict = {}

    # ---------------------------------------------------------------- tables
    def _build_tables(self):
        model = self.density
        n_gauss = max([len(v) for v in model.gaussians.values()] + [1])
        B = np.zeros((N_ELEMENTS, n_gauss))
        beta = np.ones((N_ELEMENTS, n_gauss))
        valid = np.zeros((N_ELEMENTS, n_gauss), dtype=bool)
        for z, entries in model.gaussians.items():
            if 0 <= z < N_ELEMENTS:
                for g, (b, be) in enumerate(entries):
                    B[z, g], beta[z, g], valid[z, g] = b, be, True
        F = len(self._feature_params)
        c1 = np.zeros((F, N_ELEMENTS, n_gauss))
        radii2 = np.full((F, N_ELEMENTS, n_gauss), -1.0)
        orders = np.array([n for n, _ in self._feature_params], dtype=np.int64)
        offsets = np.zeros(F, dtype=np.int64)
        n_moments = 0
        groups: dict = {}  # sigma (None for order -1) -> list of features
        for f, (n, s) in enumerate(self._feature_params):
            offsets[f] = n_moments
            n_moments += 1 if n < 0 else (n + 1) * (n + 2) // 2
            groups.setdefault(s, []).append(f)
            r2 = inclusion_radii2(n, s, B, beta, self.overlap_threshold)
            radii2[f] = np.where(valid, r2, -1.0)
            if n < 0:
                c1[f] = np.where(valid, B, 0.0)
            else:
                alpha = 1.0 / (2.0 * s * s)
                if self.scaling_mode == "radial":
                    amp = (s * math.sqrt(2.0 * math.pi)) ** -3
                else:
                    amp = 1.0 / math.sqrt(BOTH_SCALING_C[n] * alpha ** (-n) * (math.pi / (2.0 * alpha)) ** 1.5)
                c1[f] = np.where(valid, amp * B * (math.pi / (alpha + beta)) ** 1.5, 0.0)
        K = len(groups)
        group_consts = np.zeros((K, N_ELEMENTS, n_gauss, 5))
        group_ptr = np.zeros(K + 1, dtype=np.int64)
        group_features, group_max_order = [], []
        for k, (s, feats) in enumerate(groups.items()):
            if s is None:
                group_consts[k, ..., 0] = -beta
            else:
                alpha = 1.0 / (2.0 * s * s)
                gamma = alpha + beta
                group_consts[k, ..., 0] = -alpha * beta / gamma
                group_consts[k, ..., 1] = beta / gamma
                group_consts[k, ..., 2] = 1.0 / (2.0 * gamma)
            group_consts[k, ..., 3] = radii2[feats].max(axis=0)
            group_consts[k, ..., 4] = k
            group_features += feats
            group_ptr[k + 1] = len(group_features)
            group_max_order.append(max(orders[f] for f in feats))
        # per (element, Gaussian), rows by descending radius: the kernels stop at the first exclusion
        rank = np.argsort(-group_consts[..., 3], axis=0, kind="stable")
        group_consts = np.take_along_axis(group_consts, rank[..., None], axis=0)
        coeffs, mult = coefficient_tables()
        self.n_moments = n_moments
        radius = np.sqrt(np.maximum(radii2.max(axis=(0, 2)), 0.0))  # per element
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        tables = {
            "_group_consts": t(group_consts),
            "_group_ptr": t(group_ptr),
            "_group_features": t(np.array(group_features, dtype=np.int64)),
            "_group_max_order": t(np.array(group_max_order, dtype=np.int64)),
            "_orders": t(orders),
            "_offsets": t(offsets),
            "_c1": t(c1),
            "_radii2": t(radii2),
            "_coeffs": t(coeffs),
            "_multiplicity": t(mult),
        }
        return tables, torch.from_numpy(radius)

    def _tables(self, dtype: torch.dtype, device: torch.device) -> ops.GMPTables:
        key = (dtype, device, self._c1.data_ptr())
        cached = self._cast_cache.get(key)
        if cached is None:
            # the buffers are named after the tables' fields, with a leading underscore
            buffers = [getattr(self, f"_{name}") for name in ops.GMPTables._fields]
            cached = ops.GMPTables(
                *(t.to(device=device, dtype=dtype if t.is_floating_point() else None).contiguous() for t in buffers)
            )
            self._cast_cache = {key: cached}
        return cached

    # ---------------------------------------------------------------- API
    @property
    def n_features(self) -> int:
        """Number of output columns: One per (order, sigma), and one for order -1."""
        return len(self._feature_params)

    @property
    def feature_labels(self) -> list[str]:
        """One label per output column, in column order."""
        return [f"GMP(order={n})" if s is None else f"GMP(order={n},sigma={s:g})" for n, s in self._feature_params]

    def neighbor_cutoff(self, numbers: torch.Tensor) -> float:
        """R_glob: the largest inclusion radius over the features and the elements present."""
        present = torch.unique(numbers).cpu().tolist()
        self.density.require(present)
        return max(float(self._radius_per_element[present].max()), 0.0) if present else 0.0

    def _features(self, positions, numbers, cells, batch, neighbors, row_ptr):
        # neighbor_cutoff(numbers) has required the density of these elements (a torch.unique and a host read,
        # two syncs on a GPU, not repeated here)
        tables = self._tables(positions.dtype, positions.device)
        return ops.gmp(
            vectors=neighbors.vectors,
            row_ptr=row_ptr,
            neighbors_j=neighbors.j,
            numbers=numbers,
            tables=tables,
            n_moments=self.n_moments,
            square=self.square,
        ).features

    def extra_repr(self) -> str:
        """Parameters shown by ``print(module)``."""
        return (
            f"orders={self.orders}, sigmas={self.sigmas}, density={self.density.source}, "
            f"overlap_threshold={self.overlap_threshold}, square={self.square}, "
            f"scaling_mode={self.scaling_mode!r}, n_features={self.n_features}"
        )
