"""fpcore.GMP against GMPFeaturizer's reference values/derivatives and an independent torch implementation."""

import functools
import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

import fpcore
from fpcore.descriptors.gmp import coefficient_tables, monomials, solid_harmonic
from fpcore.descriptors.gpsp import default_density, read_gpsp

from ..conftest import DEVICES, OTHER_DEVICES, SHARED
from . import shared_reference as sr
from .torch_reference_gmp import gmp_reference

GPSP = SHARED / "data" / "gmp" / "QE-kjpaw.gpsp"
SETS = ["gmp", "gmp_high_order"]


def require_gpsp():
    if not GPSP.exists():
        pytest.skip(f"GMP density file {GPSP} not found (shared data absent)")
    return str(GPSP)


def reference_gmp(set_name):
    p = sr.params()["sets"][set_name]["params"]
    return fpcore.GMP(
        orders=p["orders"],
        sigmas=p["sigmas"],
        density=require_gpsp(),
        overlap_threshold=p["overlap_threshold"],
        square=p["square"],
        scaling_mode=p["scaling_mode"],
    )


def tensors(atoms, dtype=torch.float64, device="cpu"):
    return (
        torch.tensor(atoms.positions, dtype=dtype, device=device),
        torch.tensor(atoms.numbers, device=device),
        torch.tensor(np.asarray(atoms.cell), dtype=dtype, device=device),
        torch.tensor(atoms.pbc, device=device),
    )


def small_structure(seed=0):
    rng = np.random.default_rng(seed)
    cell = np.array([[4.1, 0.2, 0.1], [0.3, 3.7, -0.2], [0.4, 0.5, 4.4]])
    return Atoms("CuOH", scaled_positions=rng.random((3, 3)), cell=cell, pbc=True)


# ------------------------------------------------------------------ reference values and derivatives
@pytest.mark.parametrize("set_name", SETS)
@pytest.mark.parametrize("device", DEVICES)
def test_reference_values(device, set_name):
    gmp = reference_gmp(set_name).to(device)
    spec = sr.params()["sets"][set_name]
    assert gmp.feature_labels == spec["feature_order"]
    for name, atoms in sr.structures().items():
        got = gmp(atoms).cpu().numpy()
        sr.assert_matches(got, sr.values()[f"{set_name}/{name}"], spec["column_scale"], f"{set_name}/{name}")


@functools.cache
def reference_jacobians(set_name, name, device="cpu"):
    """(full derivative dx[i,f]/dr[j,c], fixed-reference-point derivative without its diagonal)."""
    gmp = reference_gmp(set_name)
    atoms = sr.structures()[name]
    pos, numbers, cell, pbc = tensors(atoms, device=device)
    nb = fpcore.neighbors.compute(pos, cell, pbc, None, gmp.neighbor_cutoff(numbers))
    row_ptr = torch.searchsorted(nb.i, torch.arange(len(atoms) + 1, device=device))
    tables = gmp._tables(torch.float64, torch.device(device))

    def from_vectors(v):
        return fpcore.ops.gmp(
            vectors=v,
            row_ptr=row_ptr,
            neighbors_j=nb.j,
            numbers=numbers,
            tables=tables,
            n_moments=gmp.n_moments,
            square=False,
        ).features

    jv = torch.autograd.functional.jacobian(from_vectors, nb.vectors.detach())  # (N, F, P, 3)
    n = len(atoms)
    # vectors = r_j - r_i + T: moving j moves the pair's end, moving i (the evaluation point) its start
    jv, j, i = jv.cpu(), nb.j.cpu(), nb.i.cpu()
    neighbour_part = torch.zeros(n, gmp.n_features, n, 3, dtype=torch.float64).index_add_(2, j, jv)
    centre_part = torch.zeros(n, gmp.n_features, n, 3, dtype=torch.float64).index_add_(2, i, jv)
    return (neighbour_part - centre_part).numpy(), neighbour_part.numpy()


@pytest.mark.parametrize("set_name", SETS)
@pytest.mark.parametrize("device", DEVICES)
def test_reference_full_derivatives(device, set_name):
    spec = sr.params()["sets"][set_name]
    for name in spec["derivative_structures"]:
        full, _ = reference_jacobians(set_name, name, device)
        sr.assert_matches(
            full, sr.derivatives()[f"dxdr/{set_name}/{name}"], spec["dxdr_column_scale"], f"dxdr/{set_name}/{name}"
        )


def test_full_derivative_equals_autograd_through_positions():
    gmp = reference_gmp("gmp")
    atoms = sr.structures()["gaas_atom_at_frac_1p5"]
    pos, numbers, cell, pbc = tensors(atoms)
    got = torch.autograd.functional.jacobian(lambda p: gmp.compute(p, numbers, cell, pbc), pos).numpy()
    np.testing.assert_allclose(got, reference_jacobians("gmp", "gaas_atom_at_frac_1p5")[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("set_name", SETS)
def test_reference_fixed_reference_point_derivatives(set_name):
    """GMPFeaturizer's own derivative keeps the evaluation points fixed. Off the diagonal it is our
    derivative with respect to the pair ends; on the diagonal it also holds the self term's slope
    (which cancels in the full derivative). The README's relation turns it into dxdr, which must
    equal our full derivative."""
    spec = sr.params()["sets"][set_name]
    for name in spec["derivative_structures"]:
        full, neighbour_part = reference_jacobians(set_name, name)
        fixed = sr.derivatives()[f"dxdr_fixedref/{set_name}/{name}"]
        n = fixed.shape[0]
        off = ~np.eye(n, dtype=bool)[:, None, :, None].repeat(fixed.shape[1], 1).repeat(3, 3)
        sr.assert_matches(
            np.where(off, neighbour_part, 0.0),
            np.where(off, fixed, 0.0),
            spec["dxdr_fixedref_column_scale"],
            f"dxdr_fixedref (j != i)/{set_name}/{name}",
        )
        related = fixed.copy()
        for i in range(n):
            related[i, :, i, :] -= fixed[i].sum(axis=1)
        sr.assert_matches(full, related, spec["dxdr_column_scale"], f"dxdr from dxdr_fixedref/{set_name}/{name}")


# ------------------------------------------------------------------ independent torch implementation
@pytest.mark.parametrize("square, scaling_mode", [(False, "radial"), (True, "both")])
@pytest.mark.parametrize("device", DEVICES)
def test_matches_torch_reference_values_and_gradients(device, square, scaling_mode):
    density = read_gpsp(require_gpsp()) if GPSP.exists() else default_density()
    gmp = fpcore.GMP(
        orders=[-1, 0, 1, 2, 3, 4], sigmas=[0.3, 0.8], density=density, square=square, scaling_mode=scaling_mode
    )
    gmp = gmp.to(device)
    atoms = small_structure(1)
    # fpcore on the device under test, the reference on the CPU
    pos_d, numbers_d, cell_d, pbc_d = tensors(atoms, device=device)
    pos, numbers, cell, pbc = tensors(atoms)
    pos_d.requires_grad_(True)
    pos.requires_grad_(True)
    got = gmp.compute(pos_d, numbers_d, cell_d, pbc_d)
    assert got.device.type == device
    want = gmp_reference(
        pos, numbers, cell, pbc, gmp.orders, gmp.sigmas, density.gaussians, square=square, scaling_mode=scaling_mode
    )
    scale = want.detach().abs().amax(0)
    sr.assert_matches(got.detach().cpu(), want.detach(), scale, "values vs torch reference", rtol=1e-11)
    w = torch.randn(got.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    (g_got,) = torch.autograd.grad((got * w.to(device)).sum(), pos_d)
    (g_want,) = torch.autograd.grad((want * w).sum(), pos)
    torch.testing.assert_close(g_got.cpu(), g_want, rtol=1e-10, atol=1e-12 * float(g_want.abs().max()))


def test_radius_is_largest_inclusion_radius_of_present_elements():
    gmp = fpcore.GMP(orders=[-1, 0, 4], sigmas=[0.5, 1.0])
    model = gmp.density
    want = 0.0
    for z in (1, 8):
        for b, beta in model.gaussians[z]:
            for n in (-1, 0, 4):
                for s in (0.5, 1.0):
                    t = 1e-11 * {-1: 1.0, 0: 1.0, 4: 1e-2}[n]
                    if n < 0:
                        c1, c2 = abs(b), -beta
                    else:
                        a = 1 / (2 * s * s)
                        c1, c2 = (
                            abs(b / (s * math.sqrt(2 * math.pi)) * (math.pi / (a + beta)) ** 1.5),
                            -a * beta / (a + beta),
                        )
                    want = max(want, math.sqrt((math.log(t) - c1) / c2))
    assert gmp.neighbor_cutoff(torch.tensor([1, 8, 8])) == pytest.approx(want, rel=1e-14)
    assert gmp.neighbor_cutoff(torch.tensor([1])) < want or gmp.neighbor_cutoff(torch.tensor([8])) == pytest.approx(
        want
    )


# ------------------------------------------------------------------ solid harmonics
def test_solid_harmonics_match_spec_table_and_are_harmonic():
    assert solid_harmonic((2, 0, 0)) == {(2, 0, 0): 2, (0, 2, 0): -1, (0, 0, 2): -1}
    assert solid_harmonic((3, 2, 0)) == {
        (5, 0, 0): -60,
        (3, 2, 0): 615,
        (3, 0, 2): -15,
        (1, 4, 0): -270,
        (1, 2, 2): -225,
        (1, 0, 4): 45,
    }
    assert solid_harmonic((2, 2, 1)) == {
        (4, 0, 1): -90,
        (2, 2, 1): 765,
        (2, 0, 3): -75,
        (0, 4, 1): -90,
        (0, 2, 3): -75,
        (0, 0, 5): 15,
    }
    for n in range(10):
        for lam in monomials(n):
            poly = solid_harmonic(lam)
            lap: dict = {}
            for (a, b, c), k in poly.items():
                for axis, e in enumerate((a, b, c)):
                    if e >= 2:
                        m = [a, b, c]
                        m[axis] -= 2
                        lap[tuple(m)] = lap.get(tuple(m), 0) + k * e * (e - 1)
            assert all(v == 0 for v in lap.values()), f"Phi{lam} is not harmonic"
    coeffs, mult = coefficient_tables()
    assert mult[4, :15].sum() == 3**4  # sum of multinomials = 3^n


def test_order_9_is_rotation_invariant():
    """GMPFeaturizer's order-9 kernel is wrong; the correct maths is rotation invariant."""
    gmp = fpcore.GMP(orders=[7, 8, 9], sigmas=[0.6])
    atoms = Atoms(
        "OH2C",
        positions=[[0, 0, 0], [0.95, 0.1, 0], [-0.3, 0.9, 0.2], [0.4, -0.5, 1.1]],
        cell=np.eye(3) * 20,
        pbc=False,
    )
    x = gmp(atoms)
    rot = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))[0]
    y = gmp.compute(
        torch.tensor(atoms.positions) @ rot.T,
        torch.tensor(atoms.numbers),
        torch.eye(3, dtype=torch.float64) * 20,
        torch.tensor([False] * 3),
    )
    torch.testing.assert_close(y, x, rtol=1e-8, atol=1e-12 * float(x.abs().max()))
    assert float(x.abs().min()) > 0


# ------------------------------------------------------------------ gradients, opcheck, dtypes
@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_positions_and_cell(device):
    # overlap_threshold 1e-20 makes truncation jumps (of size ~threshold) invisible to finite differences
    gmp = fpcore.GMP(orders=[-1, 0, 1, 2, 3], sigmas=[0.4, 0.9], overlap_threshold=1e-20).to(device)
    pos, numbers, cell, pbc = tensors(small_structure(2), device=device)
    pos.requires_grad_(True)
    cell.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda p, c: gmp.compute(p, numbers, c, pbc), (pos, cell), eps=1e-6, atol=1e-8, rtol=1e-6
    )


def test_double_backward_raises():
    gmp = fpcore.GMP(orders=[0, 1], sigmas=[0.5])
    pos, numbers, cell, pbc = tensors(small_structure())
    pos.requires_grad_(True)
    (g,) = torch.autograd.grad(gmp.compute(pos, numbers, cell, pbc).sum(), pos, create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        g.sum().backward()


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    gmp = fpcore.GMP(orders=[-1, 0, 2], sigmas=[0.5, 1.0])
    pos, numbers, cell, pbc = tensors(small_structure(), device=device)
    nb = fpcore.neighbors.compute(pos, cell, pbc, None, 3.0)
    row_ptr = torch.searchsorted(nb.i, torch.arange(len(numbers) + 1, device=device))
    vec = nb.vectors.detach().clone().requires_grad_(True)
    for square in (False, True):
        args = (vec, row_ptr, nb.j, numbers, *gmp._tables(torch.float64, torch.device(device)), gmp.n_moments, square)
        torch.library.opcheck(torch.ops.fpcore.gmp.default, args)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_matches_float64(device):
    gmp64 = fpcore.GMP(orders=[-1, 0, 1, 2, 3], sigmas=[0.4, 1.0]).to(device)
    gmp32 = fpcore.GMP(orders=[-1, 0, 1, 2, 3], sigmas=[0.4, 1.0], dtype=torch.float32).to(device)
    atoms = small_structure(3)
    x64, x32 = gmp64(atoms), gmp32(atoms)
    assert x32.dtype == torch.float32 and x32.device.type == device
    torch.testing.assert_close(x32.double(), x64, rtol=1e-4, atol=1e-5 * float(x64.abs().max()))


# ------------------------------------------------------------------ invariances, batching
def test_rotation_translation_permutation_supercell_invariance():
    gmp = fpcore.GMP(orders=[-1, 0, 1, 2, 3, 4], sigmas=[0.4, 1.0])
    atoms = small_structure(4)
    x = gmp(atoms)
    scale = float(x.abs().max())
    close = dict(rtol=1e-9, atol=1e-12 * scale)
    rot = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))[0].numpy()
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell.array @ rot.T)
    rotated.positions = atoms.positions @ rot.T
    torch.testing.assert_close(gmp(rotated), x, **close)
    moved = atoms.copy()
    moved.positions += [1.3, -7.1, 2.2]  # also leaves the cell: wrapping must not matter
    torch.testing.assert_close(gmp(moved), x, **close)
    perm = [2, 0, 1]
    torch.testing.assert_close(gmp(atoms[perm]), x[perm], **close)
    torch.testing.assert_close(gmp(atoms.repeat((2, 1, 1))), torch.cat([x, x]), **close)


def test_batch_equals_separate_calls():
    gmp = fpcore.GMP(orders=[-1, 0, 2], sigmas=[0.5])
    mol = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], cell=np.eye(3) * 10, pbc=False)
    structures = [small_structure(5), mol, bulk("Cu", "fcc", a=3.61)]
    together = gmp(structures)
    torch.testing.assert_close(together, torch.cat([gmp(a) for a in structures]), rtol=1e-13, atol=1e-15)


def test_default_density_needs_no_file():
    gmp = fpcore.GMP()
    assert gmp.n_features == 1 + 3 * 3
    assert gmp.feature_labels[:2] == ["GMP(order=-1)", "GMP(order=0,sigma=0.333)"]
    x = gmp(bulk("NaCl", "rocksalt", a=5.64))
    assert x.shape == (2, 10) and torch.isfinite(x).all() and float(x[:, 0].min()) > 0
    for z, entries in default_density().gaussians.items():  # integrates to the valence count
        total = sum(b * (math.pi / beta) ** 1.5 for b, beta in entries)
        assert 1 <= round(total) <= 12 and abs(total - round(total)) < 1e-12, z


# ------------------------------------------------------------------ errors
def test_parser_and_parameter_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fpcore.GMP(density=tmp_path / "missing.gpsp")
    bad = tmp_path / "bad.gpsp"
    bad.write_text("# c\n! 1 elements\n****\nH 1 2\n0.5 1.0\n0.3 abc\n")
    with pytest.raises(ValueError, match=r"line 6.*numbers"):
        fpcore.GMP(density=bad)
    short = tmp_path / "short.gpsp"
    short.write_text("****\nH 1 3\n0.5 1.0\n")
    with pytest.raises(ValueError, match="ends early"):
        fpcore.GMP(density=short)
    good = tmp_path / "h.gpsp"
    good.write_text("# c\n! 2 elements\n****\nX 0 1\n0.0 1.0\n****\nH 1 1\n0.5 1.0\n")
    gmp = fpcore.GMP(orders=[-1, 0], sigmas=[0.5], density=good)
    assert gmp.density.gaussians[0] == []  # B = 0 entries are skipped
    with pytest.raises(ValueError, match=r"O \(Z=8\).*h\.gpsp"):
        gmp(Atoms("OH", positions=[[0, 0, 0], [1, 0, 0]], cell=np.eye(3) * 5, pbc=False))
    for kwargs, message in [
        (dict(orders=[10]), "-1..9"),
        (dict(orders=[-2]), "-1..9"),
        (dict(sigmas=[0.0]), "positive"),
        (dict(overlap_threshold=2.0), r"\(0, 1\)"),
        (dict(scaling_mode="x"), "scaling_mode"),
        (dict(orders=[1.5]), "integers"),
    ]:
        with pytest.raises(ValueError, match=message):
            fpcore.GMP(**kwargs)


@pytest.mark.parametrize("device", DEVICES)
def test_operator_rejects_bad_input(device):
    gmp = fpcore.GMP(orders=[0], sigmas=[0.5])
    tables = gmp._tables(torch.float64, torch.device(device))
    vec = torch.zeros(2, 3, dtype=torch.float64, device=device)

    def index(values):
        return torch.tensor(values, device=device)

    with pytest.raises(RuntimeError, match="neighbors_j"):
        torch.ops.fpcore.gmp(vec, index([0, 2]), index([0, 5]), index([1]), *tables, gmp.n_moments, False)
    with pytest.raises(RuntimeError, match="row_ptr"):
        torch.ops.fpcore.gmp(vec, index([0, 1]), index([0, 0]), index([1]), *tables, gmp.n_moments, False)
    with pytest.raises(RuntimeError, match="dtype"):
        torch.ops.fpcore.gmp(vec.float(), index([0, 2]), index([0, 0]), index([1]), *tables, gmp.n_moments, False)


# ------------------------------------------------------------------ other devices against the CPU
@pytest.mark.parametrize("device", OTHER_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_device_matches_cpu(dtype, device):
    gmp = fpcore.GMP(orders=[-1, 0, 1, 2, 3, 4, 8], sigmas=[0.4, 1.0], dtype=dtype)
    structures = [small_structure(6), bulk("Cu", "fcc", a=3.61, cubic=True)]
    x_cpu = gmp(structures)
    gmp_dev = fpcore.GMP(orders=[-1, 0, 1, 2, 3, 4, 8], sigmas=[0.4, 1.0], dtype=dtype).to(device)
    x_dev = gmp_dev(structures)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x_dev.cpu(), x_cpu, **{**tol, "atol": tol["atol"] * float(x_cpu.abs().max())})
    atoms = structures[0]
    grads = []
    for where, model in (("cpu", gmp), (device, gmp_dev)):
        pos, numbers, cell, pbc = tensors(atoms, dtype, where)
        pos.requires_grad_(True)
        (g,) = torch.autograd.grad(model.compute(pos, numbers, cell, pbc).sum(), pos)
        grads.append(g.cpu())
    torch.testing.assert_close(grads[1], grads[0], **{**tol, "atol": tol["atol"] * float(grads[0].abs().max())})
