"""wACSF: atomic-number weighted atom-centred symmetry functions (maths: docs/descriptors/wacsf.md), as PyXtal_FF's
`ACSF(..., atom_weighted=True)` computes them, with analytic gradients.

Per centre atom i, over neighbour entries (j, T) with 0 < d < cutoff (strict; images of i included):

    G2(eta, Rs)               = sum_j Z_j exp(-eta (r_ij - Rs)^2) f_c(r_ij)
    G4(zeta, lambda, eta, Rs) = 2^(1-zeta) sum_{j<k} Z_j Z_k (1 + lambda cos theta)^zeta
                                 exp(-eta (r_ij^2 + r_ik^2 + r_jk^2 - 3 Rs^2)) f_c(r_ij) f_c(r_ik) f_c(r_jk)
    G5(zeta, lambda, eta, Rs) = as G4 without the r_jk terms, exponent -eta (r_ij^2 + r_ik^2 - 2 Rs^2)

Each unordered pair of distinct entries counts once. Rs in G4/G5 is the reference code's convention
(a constant factor exp(3 eta Rs^2), resp. exp(2 eta Rs^2)), not a shifted Gaussian. Centres without
neighbours, or with fewer than two (angular terms), get zeros where the reference code crashes.
Output columns: [G2 | G4 | G5]; G2 with eta outer and Rs inner; G4/G5 with zeta outermost, then
lambda, eta and Rs innermost. Parameter lists are used in the order given (never sorted).
"""

from __future__ import annotations

import math

import torch

from .. import ops
from . import _wacsf_ops
from .base import CUTOFF_FUNCTIONS, Descriptor, as_float_list

# Mirrors kMaxIntegerZeta in csrc/descriptors/wacsf_checks.h: larger integral zeta use pow().
_MAX_INTEGER_ZETA = 2**20
_LOG_FLOAT64_MAX = math.log(torch.finfo(torch.float64).max)


class WACSF(Descriptor):
    """Weighted ACSF descriptor module (see the module docstring for the formulas).

    Args:
        cutoff: radius Rc in Angstrom (strict: entries at exactly Rc are excluded; every cutoff
            function vanishes there anyway).
        g2_eta: G2 widths eta (1/Angstrom^2, > 0), used in the order given.
        g2_rs: G2 shifts Rs (Angstrom).
        g4_eta: G4 widths eta (1/Angstrom^2, > 0).
        g4_lambda: G4 lambda values (any sign; |lambda| <= 1 when some zeta is not integral).
        g4_zeta: G4 exponents zeta (>= 1).
        g4_rs: G4 Rs (Angstrom; the reference convention, a constant factor exp(3 eta Rs^2)).
        g5_eta: G5 widths; the G5 block is off unless some g5_* argument is given, and its missing keys
            then take the reference defaults eta = [1], lambda = [1], zeta = [1], Rs = [0].
        g5_lambda: G5 lambda values.
        g5_zeta: G5 exponents zeta (>= 1).
        g5_rs: G5 Rs (Angstrom; a constant factor exp(2 eta Rs^2)).
        cutoff_fn: one of "cosine" (default), "tanh", "poly1", "poly2", "poly3", "poly4", "exponent".
        dtype: torch.float64 (default) or torch.float32 for ase input.

    zeta >= 1 is required (below 1 the derivative is infinite where 1 + lambda cos theta = 0). An
    integral zeta allows any lambda; a non-integral zeta needs |lambda| <= 1 so that the base of the
    power is non-negative (a base that rounds below 0 is taken as 0, where the reference gives NaN).
    The defaults are a small general-purpose set: 4 G2 + 4 G4 = 8 features at Rc = 6 Angstrom.
    """

    def __init__(
        self,
        cutoff: float = 6.0,
        g2_eta=(0.5, 1.0),
        g2_rs=(0.0, 1.5),
        g4_eta=(0.05,),
        g4_lambda=(-1.0, 1.0),
        g4_zeta=(1.0, 2.0),
        g4_rs=(0.0,),
        cutoff_fn: str = "cosine",
        g5_eta=None,
        g5_lambda=None,
        g5_zeta=None,
        g5_rs=None,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__(cutoff, dtype)
        owner = "WACSF"
        if not isinstance(cutoff_fn, str) or cutoff_fn not in CUTOFF_FUNCTIONS:
            raise ValueError(f"{owner}: unknown cutoff_fn {cutoff_fn!r}; valid names are {', '.join(CUTOFF_FUNCTIONS)}")
        self.cutoff_fn = cutoff_fn
        self.g2_eta = _positive(as_float_list(g2_eta, "g2_eta", owner), "g2_eta", owner)
        self.g2_rs = as_float_list(g2_rs, "g2_rs", owner)
        self.g4_zeta, self.g4_lambda, self.g4_eta, self.g4_rs = _angular("g4", g4_zeta, g4_lambda, g4_eta, g4_rs, owner)
        if all(v is None for v in (g5_eta, g5_lambda, g5_zeta, g5_rs)):
            self.g5_zeta, self.g5_lambda, self.g5_eta, self.g5_rs = [], [], [], []
        else:
            self.g5_zeta, self.g5_lambda, self.g5_eta, self.g5_rs = _angular(
                "g5",
                [1.0] if g5_zeta is None else g5_zeta,
                [1.0] if g5_lambda is None else g5_lambda,
                [1.0] if g5_eta is None else g5_eta,
                [0.0] if g5_rs is None else g5_rs,
                owner,
            )
        for name, _zeta, _lam, eta, rs, m in (
            ("G4", self.g4_zeta, self.g4_lambda, self.g4_eta, self.g4_rs, 3),
            ("G5", self.g5_zeta, self.g5_lambda, self.g5_eta, self.g5_rs, 2),
        ):
            for e in eta:
                for r in rs:
                    if m * e * r * r > 700.0:
                        raise ValueError(
                            f"{owner}: {name} factor exp({m} eta Rs^2) overflows for eta={e}, Rs={r}; "
                            "Rs in G4/G5 multiplies the value by this constant (reference convention)"
                        )

    @property
    def _op_params(self) -> dict:
        """The keyword arguments of fpcore.ops.wacsf after the pair list, in schema order."""
        return {name: getattr(self, name) for name in _wacsf_ops.PARAM_NAMES}

    @property
    def n_features(self) -> int:
        """Number of output columns: n_G2 + n_G4 + n_G5 (see the output layout in docs/descriptors/wacsf.md)."""
        return _wacsf_ops.n_features(self._op_params)

    @property
    def feature_labels(self) -> list[str]:
        """One label per output column, in column order."""
        labels = [f"G2(eta={e},Rs={r})" for e in self.g2_eta for r in self.g2_rs]
        for name, zeta, lam, eta, rs in (
            ("G4", self.g4_zeta, self.g4_lambda, self.g4_eta, self.g4_rs),
            ("G5", self.g5_zeta, self.g5_lambda, self.g5_eta, self.g5_rs),
        ):
            labels += [
                f"{name}(zeta={z},lambda={l},eta={e},Rs={r})" for z in zeta for l in lam for e in eta for r in rs
            ]
        return labels

    def _features(self, positions, numbers, cells, batch, neighbors, row_ptr) -> torch.Tensor:
        return ops.wacsf(
            vectors=neighbors.vectors, row_ptr=row_ptr, neighbors_j=neighbors.j, numbers=numbers, **self._op_params
        )

    def extra_repr(self) -> str:
        """Parameters shown by ``print(module)``."""
        text = (
            f"cutoff={self.cutoff}, cutoff_fn={self.cutoff_fn!r}, g2_eta={self.g2_eta}, g2_rs={self.g2_rs}, "
            f"g4_zeta={self.g4_zeta}, g4_lambda={self.g4_lambda}, g4_eta={self.g4_eta}, g4_rs={self.g4_rs}"
        )
        if self.g5_eta:
            text += f", g5_zeta={self.g5_zeta}, g5_lambda={self.g5_lambda}, g5_eta={self.g5_eta}, g5_rs={self.g5_rs}"
        return text + f", n_features={self.n_features}"


def _positive(values: list[float], name: str, owner: str) -> list[float]:
    for v in values:
        if not v > 0.0:
            raise ValueError(f"{owner}: {name} values must be > 0, got {values}")
    return values


def _angular(prefix: str, zeta, lam, eta, rs, owner: str):
    zeta = as_float_list(zeta, f"{prefix}_zeta", owner)
    lam = as_float_list(lam, f"{prefix}_lambda", owner)
    eta = _positive(as_float_list(eta, f"{prefix}_eta", owner), f"{prefix}_eta", owner)
    rs = as_float_list(rs, f"{prefix}_rs", owner)
    for z in zeta:
        if z < 1.0:
            raise ValueError(
                f"{owner}: {prefix}_zeta values must be >= 1 (the gradient of (1 + lambda cos)^zeta is infinite "
                f"for zeta < 1), got {zeta}"
            )
    if any(z != math.floor(z) or z > _MAX_INTEGER_ZETA for z in zeta) and any(abs(l) > 1.0 for l in lam):
        raise ValueError(
            f"{owner}: a non-integer {prefix}_zeta needs |lambda| <= 1 (otherwise 1 + lambda cos theta < 0 has no "
            f"real power), got zeta={zeta}, lambda={lam}"
        )
    # The kernels evaluate 2^(1-zeta) (1 + lambda cos)^zeta as 2 h^zeta, h = (1 + lambda cos) / 2: bounded by 2 for
    # |lambda| <= 1 at any zeta, but up to 2 ((1 + |lambda|) / 2)^zeta otherwise (the operator re-checks per dtype).
    for z in zeta:
        for l in lam:
            if abs(l) > 1.0 and math.log(2.0) + z * math.log((1.0 + abs(l)) / 2.0) >= _LOG_FLOAT64_MAX:
                raise ValueError(
                    f"{owner}: {prefix}_lambda={l} with {prefix}_zeta={z} overflows float64 "
                    f"(2 ((1 + |lambda|) / 2)^zeta); use |lambda| <= 1, bounded at any zeta, or a smaller zeta"
                )
    return zeta, lam, eta, rs
