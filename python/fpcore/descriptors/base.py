"""Common machinery of the fingerprint descriptors (WACSF, EAD, GMP).

A descriptor is a torch.nn.Module. Calling it on an ase.Atoms (or a list) returns an
(n_atoms, n_features) tensor, rows concatenated in order; `compute(positions, numbers, cell, pbc,
batch)` does the same for tensors on any device. Descriptor operators are functions of the
neighbor-pair vectors, so gradients with respect to positions and cell flow through
`fpcore.neighbors.pair_geometry` (fused operator with an analytic backward, periodic images of an
atom included).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._structures import batch_from_atoms, normalize_batch_tensors, values_available
from ..neighbors import Neighbors, neighbors_of_batch

MAX_ATOMIC_NUMBER = 118


class Descriptor(torch.nn.Module):
    """Base class of the fingerprint modules (WACSF, EAD, GMP): one row of features per atom.

    Call it on an ase.Atoms or a list of them (rows concatenated in order), or on tensors through
    `compute`. The output is (n_atoms, n_features) in `dtype` for ase input and in the dtype of the
    positions for tensor input, differentiable with respect to positions and cell.

    Subclasses implement `_features`, `n_features` and `feature_labels`.

    Args:
        cutoff: neighbor-search radius in Angstrom (positive, finite); pairs with d < cutoff count.
        dtype: torch.float64 (default) or torch.float32, the dtype ase input is converted to.
    """

    def __init__(self, cutoff: float, dtype: torch.dtype = torch.float64):
        super().__init__()
        cutoff = float(cutoff)
        if not (cutoff > 0.0) or cutoff != cutoff or cutoff == float("inf"):
            raise ValueError(f"{type(self).__name__}: cutoff must be a positive finite number, got {cutoff}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{type(self).__name__}: dtype must be torch.float32 or torch.float64, got {dtype}")
        self.cutoff = cutoff
        self.dtype = dtype
        # Zero-size buffer that follows .to(device) so ase input lands on the module's device.
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    @property
    def device(self) -> torch.device:
        """Device of the module's buffers; ase input is placed there."""
        return self._device_anchor.device

    @property
    def n_features(self) -> int:
        """Number of feature columns of the output."""
        raise NotImplementedError

    @property
    def feature_labels(self) -> list[str]:
        """One label per output column, naming its parameters, e.g. ``EAD(L=1,eta=0.5,Rs=0.0)``."""
        raise NotImplementedError

    def forward(self, structures, numbers=None, cell=None, pbc=None, batch=None) -> torch.Tensor:
        """Features of an ase.Atoms, a list of them, or tensors.

        Args:
            structures: an ase.Atoms, a list of them, or a (N, 3) positions tensor in Angstrom.
            numbers: (N,) integer atomic numbers; tensor input only.
            cell: (B, 3, 3) or (3, 3) cell vectors as rows, Angstrom; tensor input only.
            pbc: (B, 3) or (3,) bool; tensor input only.
            batch: (N,) non-decreasing structure index of each atom, None for one structure; tensor input only.

        Returns:
            (N, n_features) tensor, one row per atom in input order (see `compute`).
        """
        if isinstance(structures, torch.Tensor):
            if numbers is None or cell is None or pbc is None:
                raise TypeError(f"{type(self).__name__}: tensor input needs positions, numbers, cell and pbc")
            return self.compute(structures, numbers, cell, pbc, batch)
        data = batch_from_atoms(structures, dtype=self.dtype, device=self.device)
        # The conversion produced canonical tensors: only the atomic numbers still need checking.
        numbers = self._check_numbers(data.numbers, data.positions)
        return self._compute_batch(data.positions, numbers, data.cells, data.pbc, data.batch, data.ptr)

    def compute(self, positions, numbers, cell, pbc, batch=None) -> torch.Tensor:
        """Features (N, n_features) in the dtype of `positions`, differentiable in positions and cell.

        positions (N, 3) Angstrom; numbers (N,) atomic numbers; cell (B, 3, 3) rows or (3, 3);
        pbc (B, 3) / (3,) bool; batch (N,) non-decreasing structure index, None for one structure.
        """
        positions, cells, pbc, batch, ptr = normalize_batch_tensors(positions, cell, pbc, batch)
        return self._compute_batch(positions, self._check_numbers(numbers, positions), cells, pbc, batch, ptr)

    def _compute_batch(self, positions, numbers, cells, pbc, batch, ptr) -> torch.Tensor:
        neighbors = neighbors_of_batch(positions, cells, pbc, batch, ptr, self.neighbor_cutoff(numbers))
        row_ptr = pair_row_ptr(neighbors.i, positions.shape[0])
        return self._features(positions, numbers, cells, batch, neighbors, row_ptr)

    def neighbor_cutoff(self, numbers: torch.Tensor) -> float:
        """Radius of the neighbor search (GMP overrides it: its radius depends on the elements)."""
        return self.cutoff

    def _check_numbers(self, numbers, positions) -> torch.Tensor:
        numbers = torch.as_tensor(numbers, device=positions.device)
        if numbers.dtype.is_floating_point or numbers.dtype == torch.bool or numbers.shape != (positions.shape[0],):
            raise ValueError(
                f"{type(self).__name__}: numbers must be an integer tensor of shape ({positions.shape[0]},), "
                f"got {numbers.dtype} {tuple(numbers.shape)}"
            )
        numbers = numbers.long()
        if numbers.numel() and values_available(numbers):
            # one read of both ends: on a GPU each read from the host is a sync
            low, high = torch.stack(torch.aminmax(numbers)).tolist()
            if low < 1 or high > MAX_ATOMIC_NUMBER:
                raise ValueError(
                    f"{type(self).__name__}: atomic numbers must lie in 1..{MAX_ATOMIC_NUMBER}, got {low}..{high}"
                )
        return numbers

    def _features(self, positions, numbers, cells, batch, neighbors: Neighbors, row_ptr) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        """Parameters shown by ``print(module)``."""
        return f"cutoff={self.cutoff}, n_features={self.n_features}"


def pair_row_ptr(i: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """CSR pointer (n_atoms + 1,) of a pair list grouped by ascending centre index i.

    searchsorted rather than bincount: its output size does not depend on the values, so the
    descriptors trace under torch.compile / FakeTensorMode.
    """
    return torch.searchsorted(i, torch.arange(n_atoms + 1, dtype=i.dtype, device=i.device))


def as_float_list(values, name: str, owner: str) -> list[float]:
    """Parameter list validation shared by the descriptors: a non-empty sequence of finite numbers."""
    if isinstance(values, (int, float)):
        values = [values]
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a list of numbers, got {values!r}") from None
    if not values:
        raise ValueError(f"{owner}: {name} must not be empty")
    for v in values:
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"{owner}: {name} must be finite, got {values}")
    return values


CUTOFF_FUNCTIONS: Sequence[str] = ("cosine", "tanh", "poly1", "poly2", "poly3", "poly4", "exponent")


def register_no_double_backward(op: str, owner: str) -> None:
    """Makes differentiating the backward operator `op` raise NotImplementedError, the one error type
    of every descriptor without second derivatives (instead of silently zero ones)."""

    def refuse(ctx, *grads):
        raise NotImplementedError(
            f"{owner}: double backward (second derivatives: differentiating the gradient of the features, e.g. "
            "training on forces with create_graph=True) is not implemented; only first derivatives are available"
        )

    torch.library.register_autograd(op, refuse, setup_context=lambda ctx, inputs, output: None)
