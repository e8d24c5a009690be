"""fpcore.EAD: parity with PyXtal_FF reference values and derivatives, an independent torch
reference, autograd/opcheck, invariances and argument validation."""

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

import fpcore

from ..conftest import DEVICES, OTHER_DEVICES
from . import shared_reference as ref
from .torch_reference_ead import ead_reference

SETS = ["ead", "ead_L3_poly2"]
STRUCTURE_NAMES = [
    "w_bcc_conventional_2x2x2",
    "si_diamond_primitive",
    "cscl_primitive",
    "tio2_rutile",
    "hbn_hexagonal",
    "monoclinic_70deg_CaGeO",
    "mos2_monolayer_slab",
    "benzene_molecule",
    "gaas_atom_at_frac_1p5",
    "random12_AlNiO",
]


def descriptor_for(set_name, dtype=torch.float64) -> fpcore.EAD:
    p = ref.params()["sets"][set_name]["params"]
    return fpcore.EAD(cutoff=p["Rc"], L=p["L"], eta=p["eta"], rs=p["Rs"], cutoff_fn=p["cutoff"], dtype=dtype)


def tensors(atoms, dtype=torch.float64, device="cpu"):
    return (
        torch.tensor(atoms.positions, dtype=dtype, device=device),
        torch.tensor(atoms.numbers, device=device),
        torch.tensor(np.asarray(atoms.cell), dtype=dtype, device=device),
        torch.tensor(atoms.pbc, device=device),
    )


# ---------------------------------------------------------------- reference values and derivatives


@pytest.mark.parametrize("set_name", SETS)
@pytest.mark.parametrize("name", STRUCTURE_NAMES)
@pytest.mark.parametrize("device", DEVICES)
def test_values_match_reference(device, set_name, name):
    spec = ref.params()["sets"][set_name]
    ead = descriptor_for(set_name).to(device)
    assert ead.feature_labels == spec["feature_order"]
    assert ead.n_features == spec["n_features"]
    got = ead(ref.structures()[name])
    assert got.device.type == device
    ref.assert_matches(
        got.cpu().numpy(), ref.values()[f"{set_name}/{name}"], spec["column_scale"], f"{set_name}/{name}"
    )


@pytest.mark.parametrize("set_name", SETS)
@pytest.mark.parametrize("device", DEVICES)
def test_derivatives_match_reference(device, set_name):
    spec = ref.params()["sets"][set_name]
    ead = descriptor_for(set_name).to(device)
    derivs = ref.derivatives()
    for name in spec["derivative_structures"]:
        dxdr, rdxdr = (t.cpu() for t in fpcore.descriptors.dense_derivatives(ead, ref.structures()[name]))
        ref.assert_matches(dxdr.numpy(), derivs[f"dxdr/{set_name}/{name}"], spec["dxdr_column_scale"], f"dxdr {name}")
        ref.assert_matches(
            rdxdr.numpy(), derivs[f"rdxdr/{set_name}/{name}"], spec["rdxdr_column_scale"], f"rdxdr {name}"
        )


# ---------------------------------------------------------------- independent torch reference


def random_structures():
    rng = np.random.default_rng(7)
    small = Atoms(
        "SiC", positions=[[0, 0, 0], [0.9, 1.1, 0.8]], cell=[[2.6, 0, 0], [0.3, 2.7, 0], [0.2, 0.4, 2.9]], pbc=True
    )
    skew_cell = np.array([[4.2, 0, 0], [2.9, 3.1, 0], [-1.7, 1.3, 3.6]])
    skewed = Atoms("AlNiOO", scaled_positions=rng.random((4, 3)) * 1.4 - 0.2, cell=skew_cell, pbc=True)
    slab = Atoms(
        "MoSS",
        positions=[[0, 0, 5], [1.6, 0.9, 6.5], [1.6, 0.9, 3.5]],
        cell=[[3.2, 0, 0], [-1.6, 2.77, 0], [0, 0, 10]],
        pbc=[True, True, False],
    )
    mol = molecule("CH3CH2OH")
    mol.cell = np.zeros((3, 3))
    return {"small": small, "skewed": skewed, "slab": slab, "molecule": mol}


CASES = [
    ("small", 3.5, 0, "cosine"),
    ("small", 3.0, 3, "poly2"),
    ("skewed", 4.0, 2, "tanh"),
    ("skewed", 3.5, 5, "exponent"),
    ("slab", 4.0, 3, "poly4"),
    ("molecule", 3.0, 8, "poly1"),
    ("skewed", 3.0, 8, "poly3"),
]


@pytest.mark.parametrize("name,rc,L,cutoff_fn", CASES)
@pytest.mark.parametrize("device", DEVICES)
def test_matches_torch_reference_values_and_gradients(device, name, rc, L, cutoff_fn):
    atoms = random_structures()[name]
    eta, rs = [0.3, 1.1], [0.0, 1.2, 2.1]
    ead = fpcore.EAD(cutoff=rc, L=L, eta=eta, rs=rs, cutoff_fn=cutoff_fn).to(device)
    # fpcore on the device under test, the reference on the CPU
    pos_d, numbers_d, cell_d, pbc_d = tensors(atoms, device=device)
    pos, numbers, cell, pbc = tensors(atoms)
    for t in (pos_d, cell_d, pos, cell):
        t.requires_grad_(True)
    got = ead.compute(pos_d, numbers_d, cell_d, pbc_d)
    want = ead_reference(pos, numbers, cell, atoms.pbc, rc, L, eta, rs, cutoff_fn)
    scale = want.abs().amax(0).clamp_min(1e-300)
    assert got.shape == (len(atoms), ead.n_features) and got.device.type == device
    assert torch.all((got.cpu() - want).abs() <= 1e-11 * torch.maximum(want.abs(), scale))
    weights = torch.randn(got.shape, dtype=got.dtype, generator=torch.Generator().manual_seed(1))
    g_got = torch.autograd.grad((got * weights.to(device)).sum(), (pos_d, cell_d))
    g_want = torch.autograd.grad((want * weights).sum(), (pos, cell))
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-10 * float(b.abs().max()))


# ---------------------------------------------------------------- autograd and operator checks


def small_problem(dtype=torch.float64, L=3, device="cpu"):
    atoms = random_structures()["skewed"]
    pos, numbers, cell, pbc = tensors(atoms, dtype, device)
    ead = fpcore.EAD(cutoff=3.2, L=L, eta=[0.5], rs=[0.0, 1.5], cutoff_fn="cosine").to(device)
    return ead, pos, numbers, cell, pbc


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_positions_and_cell(device):
    ead, pos, numbers, cell, pbc = small_problem(device=device)
    pos.requires_grad_(True)
    cell.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, c: ead.compute(p, numbers, c, pbc), (pos, cell))


@pytest.mark.parametrize("device", DEVICES)
def test_double_backward_gradgradcheck(device):
    ead, pos, numbers, cell, pbc = small_problem(L=2, device=device)
    pos.requires_grad_(True)
    cell.requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda p, c: ead.compute(p, numbers, c, pbc), (pos, cell))


def op_sample(dtype=torch.float64, device="cpu"):
    atoms = random_structures()["skewed"]
    nl = fpcore.neighbor_list(atoms, 3.2, dtype=dtype, device=device)
    n = len(atoms)
    row_ptr = torch.zeros(n + 1, dtype=torch.long, device=device)
    row_ptr[1:] = torch.cumsum(torch.bincount(nl.i, minlength=n), 0)
    numbers = torch.tensor(atoms.numbers, device=device)
    return nl.vectors, row_ptr, nl.j, numbers


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    vectors, row_ptr, j, numbers = op_sample(device=device)
    args = (vectors.clone().requires_grad_(True), row_ptr, j, numbers, [0.5, 1.0], [0.0, 1.5], 3, "poly2", 3.2)
    torch.library.opcheck(torch.ops.fpcore.ead.default, args)
    grad = torch.randn(numbers.shape[0], (3 + 1) * 2 * 2, dtype=vectors.dtype, device=device)
    torch.library.opcheck(torch.ops.fpcore.ead_backward.default, (grad,) + (vectors,) + args[1:])


@pytest.mark.parametrize("device", DEVICES)
def test_float32_matches_float64(device):
    atoms = random_structures()["skewed"]
    x64 = fpcore.EAD(cutoff=4.0, L=3, eta=[0.4, 1.2], rs=[0.0, 2.0]).to(device)(atoms)
    x32 = fpcore.EAD(cutoff=4.0, L=3, eta=[0.4, 1.2], rs=[0.0, 2.0], dtype=torch.float32).to(device)(atoms)
    assert x32.dtype == torch.float32 and x32.device.type == device
    scale = x64.abs().amax(0)
    assert torch.all((x32.double() - x64).abs() <= 1e-5 * torch.maximum(x64.abs(), scale))


# ---------------------------------------------------------------- invariances and edge cases


def rotation(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_rotation_translation_permutation_invariance():
    ead = fpcore.EAD(cutoff=4.5, L=4, eta=[0.4, 1.2], rs=[0.0, 1.0, 2.5], cutoff_fn="poly2")
    atoms = random_structures()["skewed"]
    x = ead(atoms)
    moved = atoms.copy()
    R = rotation(3)
    moved.positions = atoms.positions @ R.T + [1.3, -0.7, 2.2]
    moved.cell = np.asarray(atoms.cell) @ R.T
    torch.testing.assert_close(ead(moved), x, rtol=1e-10, atol=1e-12 * float(x.abs().max()))
    perm = np.array([2, 0, 3, 1])
    torch.testing.assert_close(ead(atoms[perm]), x[perm], rtol=1e-12, atol=0.0)


def test_supercell_invariance():
    ead = fpcore.EAD(cutoff=4.0, L=3, eta=[0.5], rs=[0.0, 2.0])
    atoms = random_structures()["skewed"]
    x = ead(atoms)
    big = atoms.repeat((2, 1, 3))
    torch.testing.assert_close(ead(big), x.repeat(6, 1), rtol=1e-11, atol=1e-12 * float(x.abs().max()))


@pytest.mark.parametrize("cutoff_fn", ["cosine", "tanh", "poly1", "poly2", "poly3", "poly4", "exponent"])
def test_continuous_at_cutoff(cutoff_fn):
    rc = 3.0
    ead = fpcore.EAD(cutoff=rc, L=3, eta=[0.1], rs=[0.0], cutoff_fn=cutoff_fn)

    def dimer(d):
        return Atoms("CO", positions=[[0, 0, 0], [d, 0, 0]])

    inside = ead(dimer(rc * (1 - 1e-6)))
    assert torch.all(inside.abs() < 1e-8)
    if cutoff_fn != "exponent":  # exp(1 - 1/(1 - x^2)) underflows to exactly 0 this close to Rc
        assert torch.any(inside != 0)
    assert torch.all(ead(dimer(rc)) == 0)
    assert torch.all(ead(dimer(rc * (1 + 1e-9))) == 0)
    assert torch.all(ead(dimer(0.5 * rc)) > 0)


def test_batch_equals_separate_calls():
    ead = fpcore.EAD(cutoff=3.5, L=2, eta=[0.4, 1.0], rs=[0.0, 1.5])
    structs = list(random_structures().values())
    batched = ead(structs)
    separate = torch.cat([ead(a) for a in structs])
    torch.testing.assert_close(batched, separate, rtol=1e-13, atol=0.0)


def test_isolated_atom_is_zero_with_zero_gradient():
    ead = fpcore.EAD(cutoff=3.0, L=2, eta=[0.4], rs=[0.0, 1.0])
    atoms = Atoms("CuH", positions=[[0, 0, 0], [10, 0, 0]])
    pos, numbers, cell, pbc = tensors(atoms)
    pos.requires_grad_(True)
    x = ead.compute(pos, numbers, cell, pbc)
    assert x.shape == (2, ead.n_features) and torch.all(x == 0)
    (g,) = torch.autograd.grad(x.sum(), pos)
    assert torch.all(g == 0)


def test_known_dimer_value():
    # Two atoms: rho(lambda) = Z f_c(d) g(d) x^lx..., so EAD(0) = (Z f g)^2 and EAD(1) = (Z f g)^2 (1 + d^2) / Rc^2: the l = 0 term is divided by Rc^2 too.
    rc, d, eta, rs = 4.0, 1.7, 0.6, 0.5
    ead = fpcore.EAD(cutoff=rc, L=1, eta=[eta], rs=[rs])
    x = ead(Atoms("HO", positions=[[0, 0, 0], [d, 0, 0]]))
    w = 0.5 * (math.cos(math.pi * d / rc) + 1) * math.exp(-eta * (d - rs) ** 2)
    torch.testing.assert_close(x[0], torch.tensor([(8 * w) ** 2, (8 * w) ** 2 * (1 + d**2) / rc**2], dtype=x.dtype))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(L=-1), "L must be"),
        (dict(L=9), "L must be"),
        (dict(L=2.0), "L must be"),
        (dict(L=True), "L must be"),
        (dict(eta=[]), "eta must not be empty"),
        (dict(eta=[-0.1]), "eta must be >= 0"),
        (dict(eta=[float("nan")]), "eta must be finite"),
        (dict(rs="abc"), "rs must be"),
        (dict(cutoff=0.0), "cutoff must be"),
        (dict(cutoff_fn="gauss"), "cutoff_fn must be one of"),
        (dict(dtype=torch.int32), "dtype must be"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fpcore.EAD(**kwargs)


@pytest.mark.parametrize("device", DEVICES)
def test_bad_operator_inputs_raise(device):
    vectors, row_ptr, j, numbers = op_sample(device=device)
    op = torch.ops.fpcore.ead
    with pytest.raises(RuntimeError, match="L must be in 0..8"):
        op(vectors, row_ptr, j, numbers, [1.0], [0.0], 9, "cosine", 3.2)
    with pytest.raises(RuntimeError, match="unknown cutoff function"):
        op(vectors, row_ptr, j, numbers, [1.0], [0.0], 2, "gauss", 3.2)
    with pytest.raises(RuntimeError, match="row_ptr"):
        op(vectors, row_ptr[:-1], j, numbers, [1.0], [0.0], 2, "cosine", 3.2)
    bad_ptr = row_ptr.clone()
    bad_ptr[-1] += 1
    with pytest.raises(RuntimeError, match="row_ptr"):
        op(vectors, bad_ptr, j, numbers, [1.0], [0.0], 2, "cosine", 3.2)
    with pytest.raises(RuntimeError, match="neighbors_j"):
        op(vectors, row_ptr, j + 100, numbers, [1.0], [0.0], 2, "cosine", 3.2)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        op(vectors.long(), row_ptr, j, numbers, [1.0], [0.0], 2, "cosine", 3.2)
    with pytest.raises(RuntimeError, match="grad_features"):
        torch.ops.fpcore.ead_backward(
            torch.zeros(1, 3, dtype=vectors.dtype, device=device),
            vectors,
            row_ptr,
            j,
            numbers,
            [1.0],
            [0.0],
            2,
            "cosine",
            3.2,
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("numbers, got", [([0, 8], "0..8"), ([1, 119], "1..119")])
def test_atomic_numbers_out_of_range_raise(device, numbers, got):
    pos, _, cell, pbc = tensors(Atoms("HO", positions=[[0, 0, 0], [1, 0, 0]]), device=device)
    with pytest.raises(ValueError, match=rf"EAD: atomic numbers must lie in 1\.\.118, got {got}"):
        fpcore.EAD().compute(pos, torch.tensor(numbers, device=device), cell, pbc)


# ---------------------------------------------------------------- other devices against the CPU


@pytest.mark.parametrize("device", OTHER_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("L", [0, 3, 8])
def test_device_matches_cpu(dtype, L, device):
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    args = ([0.4, 1.2], [0.0, 1.0, 2.0], L, "poly2", 3.2)
    vectors, row_ptr, j, numbers = op_sample(dtype)
    v_cpu = vectors.clone().requires_grad_(True)
    x_cpu = torch.ops.fpcore.ead(v_cpu, row_ptr, j, numbers, *args)
    w = torch.randn_like(x_cpu)
    (g_cpu,) = torch.autograd.grad((x_cpu * w).sum(), v_cpu)
    v_dev = vectors.to(device).requires_grad_(True)
    x_dev = torch.ops.fpcore.ead(v_dev, row_ptr.to(device), j.to(device), numbers.to(device), *args)
    (g_dev,) = torch.autograd.grad((x_dev * w.to(device)).sum(), v_dev)
    torch.testing.assert_close(x_dev.cpu(), x_cpu, rtol=tol, atol=tol * float(x_cpu.abs().max()))
    torch.testing.assert_close(g_dev.cpu(), g_cpu, rtol=tol, atol=tol * float(g_cpu.abs().max()))
