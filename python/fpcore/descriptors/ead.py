"""EAD (embedded atom density) descriptor, exact to PyXtal_FF 0.2.3 `EAD` (maths: docs/descriptors/ead.md)."""

from __future__ import annotations

import torch

from .. import ops
from . import _ead_ops  # noqa: F401  (registers fake kernels and autograd formulas)
from .base import CUTOFF_FUNCTIONS, Descriptor, as_float_list

MAX_L = 8


class EAD(Descriptor):
    """Embedded atom density fingerprint of each atom.

    rho_i(lambda; eta, Rs) = sum_{(j,T), d < Rc} Z_j f_c(d) exp(-eta (d - Rs)^2) x^lx y^ly z^lz over every
    neighbour entry (periodic images of i included, i itself excluded), and, for l = 0..L,

        EAD_i(l; eta, Rs) = l! / Rc^(2l) * sum_{|lambda| <= l} rho_i(lambda; eta, Rs)^2 / (lx! ly! lz!)

    which is PyXtal_FF's cumulative-over-orders definition. The output column of (l, eta, Rs) is
    (l * n_eta + i_eta) * n_rs + i_rs. L may go beyond PyXtal_FF's 0..3, up to MAX_L = 8, with the
    same formula. Pairs at exactly d = Rc are excluded (every cutoff function vanishes there); an
    atom with no neighbour gets zeros.

    Args:
        cutoff: Rc in Angstrom (PyXtal_FF default 5.0).
        L: maximum monomial order, integer 0..8.
        eta: Gaussian widths (1/Angstrom^2), finite and >= 0, used in the order given.
        rs: Gaussian centres (Angstrom), used in the order given.
        cutoff_fn: one of "cosine", "tanh", "poly1", "poly2", "poly3", "poly4", "exponent".
        dtype: float64 (default) or float32, used for ase input.
    """

    def __init__(
        self,
        cutoff: float = 5.0,
        L: int = 2,
        eta=(1.0,),
        rs=(0.0,),
        cutoff_fn: str = "cosine",
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__(cutoff, dtype)
        if isinstance(L, bool) or not isinstance(L, int) or not 0 <= L <= MAX_L:
            raise ValueError(f"EAD: L must be an integer in 0..{MAX_L}, got {L!r}")
        eta = as_float_list(eta, "eta", "EAD")
        if any(e < 0 for e in eta):
            raise ValueError(f"EAD: eta must be >= 0, got {eta}")
        rs = as_float_list(rs, "rs", "EAD")
        if cutoff_fn not in CUTOFF_FUNCTIONS:
            raise ValueError(f"EAD: cutoff_fn must be one of {list(CUTOFF_FUNCTIONS)}, got {cutoff_fn!r}")
        self.L = L
        self.eta = eta
        self.rs = rs
        self.cutoff_fn = cutoff_fn

    @property
    def n_features(self) -> int:
        """Number of output columns: (L + 1) * len(eta) * len(rs)."""
        return (self.L + 1) * len(self.eta) * len(self.rs)

    @property
    def feature_labels(self) -> list[str]:
        """One label per output column, in column order."""
        return [f"EAD(L={l},eta={e},Rs={r})" for l in range(self.L + 1) for e in self.eta for r in self.rs]

    def _features(self, positions, numbers, cells, batch, neighbors, row_ptr) -> torch.Tensor:
        return ops.ead(
            vectors=neighbors.vectors,
            row_ptr=row_ptr,
            neighbors_j=neighbors.j,
            numbers=numbers,
            eta=self.eta,
            rs=self.rs,
            L=self.L,
            cutoff_fn=self.cutoff_fn,
            cutoff=self.cutoff,
        )

    def extra_repr(self) -> str:
        """Parameters shown by ``print(module)``."""
        return f"cutoff={self.cutoff}, L={self.L}, eta={self.eta}, rs={self.rs}, cutoff_fn={self.cutoff_fn!r}"
