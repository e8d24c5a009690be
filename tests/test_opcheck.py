"""torch.library.opcheck over every fpcore operator: schema, fake kernel (shapes, dtypes, strides),
autograd registration and AOT dispatch, on each structure kind x dtype x requires_grad x device.

Structure kinds: "pairs" (a skewed periodic cell), "no_pairs" (atoms out of each other's reach),
"no_atoms", and "column_major" (the pairs' float inputs with transposed strides). A new operator
must get a sample builder in SAMPLES, or test_every_operator_has_samples fails.
"""

from __future__ import annotations

import ase
import pytest
import torch

import fpcore
from fpcore._structures import batch_from_atoms
from fpcore.descriptors.base import pair_row_ptr

from .conftest import DEVICES

CUTOFF = 3.2
KINDS = ("pairs", "no_pairs", "no_atoms", "column_major")
DTYPES = (torch.float32, torch.float64)
# The backward ops without a double backward raise when differentiated, so AOT dispatch (which
# differentiates outputs that require grad) is left out of their requires_grad samples.
NO_DOUBLE_BACKWARD = {"wacsf_backward", "gmp_backward"}

WACSF = fpcore.WACSF(
    cutoff=CUTOFF, g2_eta=[0.7], g2_rs=[0.0, 1.7], g4_zeta=[1.0, 2.5], g4_lambda=[1.0, -0.6],
    g4_eta=[0.3], g4_rs=[0.0], g5_zeta=[2.0], g5_lambda=[-1.0], g5_eta=[0.1], g5_rs=[0.3],
)  # fmt: skip
EAD_PARAMS = ([0.5, 1.0], [0.0, 1.5], 2, "poly2", CUTOFF)
GMP = fpcore.GMP(orders=[-1, 0, 1, 2], sigmas=[0.5, 1.0])


def structure(kind: str) -> ase.Atoms:
    if kind == "no_atoms":
        return ase.Atoms(cell=[4.0, 4.0, 4.0], pbc=False)
    if kind == "no_pairs":
        return ase.Atoms("SiO", positions=[[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]], cell=[20.0, 20.0, 20.0], pbc=False)
    return ase.Atoms(
        "SiO2",
        scaled_positions=[[0.1, 0.2, 0.3], [0.6, 0.1, 0.9], [0.4, 0.7, 0.2]],
        cell=[[3.0, 0.0, 0.0], [1.2, 2.9, 0.0], [-0.8, 0.6, 3.1]],
        pbc=True,
    )


def column_major(t: torch.Tensor) -> torch.Tensor:
    return t.t().contiguous().t() if t.dim() == 2 else t


class Inputs:
    """One structure's batch tensors and pairs on a device, in a dtype."""

    def __init__(self, kind, dtype, device, requires_grad):
        data = batch_from_atoms(structure(kind), dtype=dtype, device=device)
        self.positions, self.cells, self.pbc, self.batch, self.ptr = (
            data.positions, data.cells, data.pbc, data.batch, data.ptr,
        )  # fmt: skip
        nl = torch.ops.fpcore.neighbor_list(self.positions, self.cells, self.pbc, self.ptr, CUTOFF, True)
        self.i, self.j, self.shifts, vectors, self.distances = nl
        self.numbers = torch.tensor(structure(kind).numbers, dtype=torch.long, device=device)
        self.row_ptr = pair_row_ptr(self.i, self.numbers.shape[0])
        self.strided = column_major if kind == "column_major" else (lambda t: t)
        self.requires_grad = requires_grad
        self.vectors = self.float_input(vectors)

    def float_input(self, t: torch.Tensor) -> torch.Tensor:
        t = self.strided(t.detach().clone())
        return t.requires_grad_(self.requires_grad)

    def random(self, *shape) -> torch.Tensor:
        g = torch.Generator().manual_seed(sum(shape) + 1)
        t = torch.randn(shape, generator=g, dtype=self.vectors.dtype).to(self.vectors.device)
        return self.float_input(t)


def neighbor_list_samples(x: Inputs):
    # The search takes detached inputs by contract (neighbors_of_batch detaches them); its
    # differentiable twin is pair_geometry.
    for geometry in (False, True):
        yield (x.strided(x.positions), x.cells, x.pbc, x.ptr, CUTOFF, geometry)


def pair_geometry_samples(x: Inputs):
    yield (x.float_input(x.positions), x.float_input(x.cells), x.batch, x.i, x.j, x.shifts)
    yield (x.float_input(x.positions), x.cells, x.batch, x.i, x.j, x.shifts)


def pair_geometry_backward_samples(x: Inputs):
    n = x.vectors.shape[0]
    grad_v, grad_d = x.random(n, 3), x.random(n)
    tail = (x.vectors.detach(), x.distances, x.batch, x.i, x.j, x.shifts, x.positions.shape[0], x.cells.shape[0])
    for gv, gd in ((grad_v, grad_d), (None, grad_d), (grad_v, None)):
        yield (gv, gd, *tail)


def wacsf_samples(x: Inputs):
    yield (x.vectors, x.row_ptr, x.j, x.numbers, *WACSF._op_params.values())


def wacsf_backward_samples(x: Inputs):
    grad = x.random(x.numbers.shape[0], WACSF.n_features)
    yield (grad, x.vectors, x.row_ptr, x.j, x.numbers, *WACSF._op_params.values())


def ead_samples(x: Inputs):
    yield (x.vectors, x.row_ptr, x.j, x.numbers, *EAD_PARAMS)


def ead_backward_samples(x: Inputs):
    eta, rs, L = EAD_PARAMS[:3]
    grad = x.random(x.numbers.shape[0], (L + 1) * len(eta) * len(rs))
    yield (grad, x.vectors, x.row_ptr, x.j, x.numbers, *EAD_PARAMS)


def gmp_tables(x: Inputs):
    return GMP._tables(x.vectors.dtype, x.vectors.device)


def gmp_samples(x: Inputs):
    for square in (False, True):
        yield (x.vectors, x.row_ptr, x.j, x.numbers, *gmp_tables(x), GMP.n_moments, square)


def gmp_backward_samples(x: Inputs):
    tables = gmp_tables(x)
    for square in (False, True):
        _, moments = torch.ops.fpcore.gmp(x.vectors.detach(), x.row_ptr, x.j, x.numbers, *tables, GMP.n_moments, square)
        grad_features = x.random(x.numbers.shape[0], GMP.n_features)
        for grad_moments in (None, x.random(*moments.shape)):
            head = (grad_features, grad_moments, moments, x.vectors, x.row_ptr, x.j, x.numbers)
            yield (*head, *tables, GMP.n_moments, square)


SAMPLES = {
    "neighbor_list": neighbor_list_samples,
    "pair_geometry": pair_geometry_samples,
    "pair_geometry_backward": pair_geometry_backward_samples,
    "wacsf": wacsf_samples,
    "wacsf_backward": wacsf_backward_samples,
    "ead": ead_samples,
    "ead_backward": ead_backward_samples,
    "gmp": gmp_samples,
    "gmp_backward": gmp_backward_samples,
}


def registered_operators() -> set[str]:
    return {name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names() if name.startswith("fpcore::")}


def test_every_operator_has_samples():
    assert registered_operators() == set(SAMPLES)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("op", sorted(SAMPLES))
def test_opcheck(op, kind, dtype, device):
    for requires_grad in (False, True):
        if requires_grad and op == "neighbor_list":
            continue
        x = Inputs(kind, dtype, device, requires_grad)
        utils = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
        if requires_grad and op in NO_DOUBLE_BACKWARD:
            utils = utils[:3]
        for args in SAMPLES[op](x):
            torch.library.opcheck(getattr(torch.ops.fpcore, op).default, args, test_utils=utils)
