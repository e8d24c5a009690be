"""fpcore.WACSF: parity with PyXtal_FF's reference values and derivatives, with an independent
plain-PyTorch implementation, gradients (gradcheck, opcheck), invariances and edge cases."""

import ase
import ase.build
import numpy as np
import pytest
import torch
from ase.geometry import cellpar_to_cell

import fpcore

from ..conftest import DEVICES, OTHER_DEVICES
from . import shared_reference as ref
from .torch_reference_wacsf import reference_wacsf

# Small parameter set exercising every code path: several Rs, G4 Rs != 0, lambda not +-1,
# a non-integer zeta and a G5 block.
RICH = dict(
    cutoff=3.6,
    g2_eta=[0.7, 0.2],
    g2_rs=[0.0, 1.7],
    g4_zeta=[1.0, 2.0, 2.5],
    g4_lambda=[1.0, -0.6],
    g4_eta=[0.05, 0.3],
    g4_rs=[0.0, 0.4],
    g5_zeta=[1.0, 4.0],
    g5_lambda=[-1.0],
    g5_eta=[0.1],
    g5_rs=[0.3, 0.0],
)


def reference_module(dtype=torch.float64, **overrides):
    p = ref.params()["sets"]["wacsf"]["params"]
    kwargs = dict(
        cutoff=p["Rc"], cutoff_fn=p["cutoff"], g2_eta=p["G2"]["eta"], g2_rs=p["G2"]["Rs"], g4_eta=p["G4"]["eta"],
        g4_lambda=p["G4"]["lambda"], g4_zeta=p["G4"]["zeta"], g4_rs=p["G4"]["Rs"], dtype=dtype,
    )  # fmt: skip
    kwargs.update(overrides)
    return fpcore.WACSF(**kwargs)


def tensors(atoms, dtype=torch.float64, requires_grad=False, device="cpu"):
    pos = torch.tensor(atoms.positions, dtype=dtype, device=device, requires_grad=requires_grad)
    cell = torch.tensor(atoms.cell[:], dtype=dtype, device=device, requires_grad=requires_grad)
    return pos, torch.tensor(atoms.numbers, device=device), cell, torch.tensor(atoms.pbc, device=device)


def random_structures():
    rng = np.random.default_rng(7)
    out = {}
    # Cell shorter than the cutoff in every direction: many images of each atom, and of i itself.
    out["tiny_cubic"] = ase.Atoms("CuO", positions=[[0, 0, 0], [1.1, 0.9, 1.3]], cell=np.eye(3) * 2.6, pbc=True)
    skew = cellpar_to_cell([3.4, 3.9, 4.3, 63, 104, 71])
    out["skewed"] = ase.Atoms("AlNiOO", scaled_positions=rng.random((4, 3)), cell=skew, pbc=True)
    out["slab"] = ase.Atoms(
        "SiCH", positions=rng.random((3, 3)) * [3.1, 2.9, 3.0], cell=[[3.1, 0, 0], [0.7, 2.9, 0], [0, 0, 0]],
        pbc=[True, True, False],
    )  # fmt: skip
    mol = ase.build.molecule("CH3CH2OH")
    mol.cell = np.zeros((3, 3))
    out["molecule"] = mol
    return out


def op_params(module):
    return tuple(module._op_params.values())


# ----------------------------------------------------------------------------------------------
# Reference values and derivatives (PyXtal_FF 0.2.3)


@pytest.mark.parametrize("name", [
    "w_bcc_conventional_2x2x2", "si_diamond_primitive", "cscl_primitive", "tio2_rutile", "hbn_hexagonal",
    "monoclinic_70deg_CaGeO", "mos2_monolayer_slab", "benzene_molecule", "gaas_atom_at_frac_1p5", "random12_AlNiO",
])  # fmt: skip
@pytest.mark.parametrize("device", DEVICES)
def test_reference_values(name, device):
    spec = ref.params()["sets"]["wacsf"]
    module = reference_module().to(device)
    assert module.feature_labels == spec["feature_order"]
    assert module.n_features == spec["n_features"]
    got = module(ref.structures()[name])
    assert got.device.type == device
    ref.assert_matches(got.cpu().numpy(), ref.values()[f"wacsf/{name}"], spec["column_scale"], f"wacsf/{name}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["random12_AlNiO", "mos2_monolayer_slab", "benzene_molecule"])
def test_reference_derivatives(name, device):
    spec = ref.params()["sets"]["wacsf"]
    assert name in spec["derivative_structures"]
    atoms = ref.structures()[name]
    d_pos, rdxdr = (t.cpu() for t in fpcore.descriptors.dense_derivatives(reference_module().to(device), atoms))
    ref.assert_matches(d_pos.numpy(), ref.derivatives()[f"dxdr/wacsf/{name}"], spec["dxdr_column_scale"], "dxdr")
    ref.assert_matches(rdxdr.numpy(), ref.derivatives()[f"rdxdr/wacsf/{name}"], spec["rdxdr_column_scale"], "rdxdr")


# ----------------------------------------------------------------------------------------------
# Independent torch implementation, gradients


@pytest.mark.parametrize("cutoff_fn", ["cosine", "poly2", "tanh", "exponent"])
@pytest.mark.parametrize("name", ["tiny_cubic", "skewed", "slab", "molecule"])
@pytest.mark.parametrize("device", DEVICES)
def test_matches_torch_reference(device, name, cutoff_fn):
    atoms = random_structures()[name]
    module = fpcore.WACSF(cutoff_fn=cutoff_fn, **RICH).to(device)
    # fpcore on the device under test, the reference on the CPU
    pos_d, numbers_d, cell_d, pbc_d = tensors(atoms, requires_grad=True, device=device)
    pos, numbers, cell, pbc = tensors(atoms, requires_grad=True)
    got = module.compute(pos_d, numbers_d, cell_d, pbc_d)
    want = reference_wacsf(pos, numbers, cell, pbc, cutoff_fn=cutoff_fn, **RICH)
    assert got.shape == (len(atoms), module.n_features) and got.device.type == device
    assert float(want.detach().abs().max()) > 0
    torch.testing.assert_close(got.cpu(), want, rtol=1e-12, atol=1e-12 * float(want.detach().abs().max()))
    weights = torch.randn(got.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g_got = torch.autograd.grad((got * weights.to(device)).sum(), (pos_d, cell_d))
    g_want = torch.autograd.grad((want * weights).sum(), (pos, cell))
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-10 * float(b.abs().max()))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_positions_and_cell(device):
    small = dict(RICH, g4_zeta=[2.0, 1.5], g4_rs=[0.2], g2_rs=[0.5])
    module = fpcore.WACSF(**small).to(device)
    for name in ("tiny_cubic", "skewed"):
        atoms = random_structures()[name]
        pos, numbers, cell, pbc = tensors(atoms, requires_grad=True, device=device)
        assert torch.autograd.gradcheck(
            lambda p, c, numbers=numbers, pbc=pbc: module.compute(p, numbers, c, pbc), (pos, cell)
        )


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    atoms = random_structures()["skewed"]
    module = fpcore.WACSF(**RICH).to(device)
    nl = fpcore.neighbor_list(atoms, RICH["cutoff"], device=device)
    row_ptr = torch.zeros(len(atoms) + 1, dtype=torch.long, device=device)
    row_ptr[1:] = torch.cumsum(torch.bincount(nl.i, minlength=len(atoms)), 0)
    numbers = torch.tensor(atoms.numbers, device=device)
    vectors = nl.vectors.clone().requires_grad_(True)
    args = (vectors, row_ptr, nl.j, numbers, *op_params(module))
    torch.library.opcheck(torch.ops.fpcore.wacsf.default, args)
    grad = torch.randn(len(atoms), module.n_features, dtype=torch.float64, device=device)
    torch.library.opcheck(
        torch.ops.fpcore.wacsf_backward.default,
        (grad, nl.vectors, *args[1:]),
        test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"),
    )


def test_double_backward_raises_clearly():
    atoms = random_structures()["tiny_cubic"]
    pos, numbers, cell, pbc = tensors(atoms, requires_grad=True)
    x = fpcore.WACSF(**RICH).compute(pos, numbers, cell, pbc)
    (g,) = torch.autograd.grad(x.sum(), pos, create_graph=True)
    with pytest.raises(NotImplementedError, match="second derivatives"):
        g.sum().backward()


@pytest.mark.parametrize("device", DEVICES)
def test_float32_matches_float64(device):
    atoms = random_structures()["skewed"]
    x64 = fpcore.WACSF(**RICH).to(device)(atoms)
    x32 = fpcore.WACSF(dtype=torch.float32, **RICH).to(device)(atoms)
    assert x32.dtype == torch.float32 and x32.device.type == device
    scale = x64.abs().amax(0, keepdim=True)
    assert float(((x32.double() - x64).abs() / scale).max()) < 1e-5
    pos, numbers, cell, pbc = tensors(atoms, dtype=torch.float32, requires_grad=True, device=device)
    g32 = torch.autograd.grad(fpcore.WACSF(**RICH).compute(pos, numbers, cell, pbc).sum(), pos)[0]
    pos, numbers, cell, pbc = tensors(atoms, requires_grad=True, device=device)
    g64 = torch.autograd.grad(fpcore.WACSF(**RICH).compute(pos, numbers, cell, pbc).sum(), pos)[0]
    torch.testing.assert_close(g32.double(), g64, rtol=1e-4, atol=1e-4 * float(g64.abs().max()))


# ----------------------------------------------------------------------------------------------
# Invariances and structure handling


def test_rotation_translation_permutation_invariance():
    atoms = random_structures()["skewed"]
    module = fpcore.WACSF(**RICH)
    x = module(atoms)
    moved = atoms.copy()
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64))[0]
    moved.positions = atoms.positions @ rotation.numpy().T + [0.3, -1.2, 4.0]
    moved.cell = atoms.cell[:] @ rotation.numpy().T
    torch.testing.assert_close(module(moved), x, rtol=1e-11, atol=1e-11 * float(x.abs().max()))
    order = np.array([2, 0, 3, 1])
    torch.testing.assert_close(module(atoms[order]), x[order], rtol=1e-12, atol=1e-12 * float(x.abs().max()))


def test_supercell_equals_primitive():
    atoms = random_structures()["skewed"]
    module = fpcore.WACSF(**RICH)
    x = module(atoms)
    big = module(atoms.repeat((2, 1, 3)))
    torch.testing.assert_close(big, x.repeat(6, 1), rtol=1e-11, atol=1e-11 * float(x.abs().max()))


def test_batch_equals_separate_calls():
    structures = list(random_structures().values())
    module = fpcore.WACSF(**RICH)
    batched = module(structures)
    separate = torch.cat([module(a) for a in structures])
    torch.testing.assert_close(batched, separate, rtol=1e-13, atol=1e-13 * float(separate.abs().max()))


@pytest.mark.parametrize("cutoff_fn", ["cosine", "poly1", "tanh"])
def test_continuous_across_cutoff(cutoff_fn):
    module = fpcore.WACSF(cutoff_fn=cutoff_fn, **RICH)
    rc = RICH["cutoff"]

    def features(distance):
        # Atom 2 crosses the cutoff of atom 0 while staying within the cutoff of atom 1 (G4 r_jk too).
        atoms = ase.Atoms("CNO", positions=[[0, 0, 0], [1.2, 0.8, 0], [distance, 0, 0]])
        return module(atoms)

    # Moving by 2h changes the other distances at first order, so the bound is O(h), not a jump:
    # a missing f_c (for example f_c(r_jk) around atom 1) would jump by O(1) of the values.
    inside, outside = features(rc - 1e-9), features(rc + 1e-9)
    assert float((inside - outside).abs().max()) < 1e-7 * float(inside.abs().max())
    assert float((features(rc - 0.2) - outside).abs().max()) > 1e-6  # the neighbour does contribute


def test_isolated_atom_and_molecule_edge_cases():
    module = fpcore.WACSF(**RICH)
    # Isolated atom: PyXtal_FF asserts; every feature is 0.
    x = module(ase.Atoms("Cu", positions=[[0, 0, 0]]))
    assert x.shape == (1, module.n_features) and torch.all(x == 0)
    # A dimer has one neighbour per atom: G2 only. A far atom has zeros.
    x = module(ase.Atoms("HOC", positions=[[0, 0, 0], [0.97, 0, 0], [20, 0, 0]]))
    n_g2 = len(RICH["g2_eta"]) * len(RICH["g2_rs"])
    assert torch.all(x[:2, :n_g2] > 0) and torch.all(x[:2, n_g2:] == 0) and torch.all(x[2] == 0)
    # Water: O has no (O, O) neighbour pair, where PyXtal_FF raises IndexError; the term is 0.
    water = ase.build.molecule("H2O")
    pos, numbers, cell, pbc = tensors(water)
    want = reference_wacsf(pos, numbers, cell, pbc, **RICH)
    got = module(water)
    assert torch.all(got[:, n_g2:] != 0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    # Gradients of zero rows are zero, not NaN.
    pos = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    out = module.compute(
        pos, torch.tensor([29]), torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.bool)
    )
    (g,) = torch.autograd.grad(out.sum(), pos)
    assert torch.all(g == 0)


def test_parameter_order_is_kept():
    module = fpcore.WACSF(
        g2_eta=[1.0, 0.5], g2_rs=[1.5, 0.0], g4_zeta=[2.0, 1.0], g4_lambda=[1.0, -1.0], g4_eta=[0.08, 0.02], g4_rs=[0.0]
    )
    flipped = fpcore.WACSF(
        g2_eta=[0.5, 1.0], g2_rs=[0.0, 1.5], g4_zeta=[1.0, 2.0], g4_lambda=[-1.0, 1.0], g4_eta=[0.02, 0.08], g4_rs=[0.0]
    )
    atoms = random_structures()["skewed"]
    labels = module.feature_labels
    assert labels[0] == "G2(eta=1.0,Rs=1.5)" and labels[4] == "G4(zeta=2.0,lambda=1.0,eta=0.08,Rs=0.0)"
    index = [flipped.feature_labels.index(label) for label in labels]
    torch.testing.assert_close(module(atoms), flipped(atoms)[:, index], rtol=0, atol=0)


def test_g5_defaults_and_labels():
    module = fpcore.WACSF(g5_eta=[0.1, 0.2])
    assert module.g5_zeta == [1.0] and module.g5_lambda == [1.0] and module.g5_rs == [0.0]
    assert module.n_features == len(module.feature_labels) == 4 + 4 + 2
    assert module.feature_labels[-1] == "G5(zeta=1.0,lambda=1.0,eta=0.2,Rs=0.0)"
    assert fpcore.WACSF().n_features == 8


@pytest.mark.parametrize("kwargs, message", [
    (dict(g2_eta=[]), "g2_eta must not be empty"),
    (dict(g4_rs=[]), "g4_rs must not be empty"),
    (dict(g2_eta=[0.5, 0.0]), "g2_eta values must be > 0"),
    (dict(g4_eta=[-0.1]), "g4_eta values must be > 0"),
    (dict(g4_zeta=[0.5]), "g4_zeta values must be >= 1"),
    (dict(g4_zeta=[1.5], g4_lambda=[2.0]), "non-integer g4_zeta needs"),
    (dict(g2_rs=[float("nan")]), "finite"),
    (dict(g4_lambda="x"), "g4_lambda must be a list of numbers"),
    (dict(cutoff_fn="gaussian"), "cosine, tanh, poly1, poly2, poly3, poly4, exponent"),
    (dict(cutoff=-1.0), "cutoff must be a positive"),
    (dict(g4_eta=[10.0], g4_rs=[5.0]), "overflows"),
])  # fmt: skip
def test_bad_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fpcore.WACSF(**kwargs)


@pytest.mark.parametrize("device", DEVICES)
def test_operator_rejects_bad_inputs(device):
    module = fpcore.WACSF()
    params = op_params(module)
    vectors = torch.randn(3, 3, dtype=torch.float64).to(device)

    def torch_tensor(values):
        return torch.tensor(values, device=device)

    j = torch_tensor([1, 0, 0])
    numbers = torch_tensor([1, 8])
    with pytest.raises(RuntimeError, match="row_ptr"):
        torch.ops.fpcore.wacsf(vectors, torch_tensor([0, 1, 2]), j, numbers, *params)
    with pytest.raises(RuntimeError, match="neighbors_j"):
        torch.ops.fpcore.wacsf(vectors, torch_tensor([0, 1, 3]), torch_tensor([1, 0, 5]), numbers, *params)
    with pytest.raises(RuntimeError, match="shape"):
        torch.ops.fpcore.wacsf(
            torch.randn(3, 2, dtype=torch.float64, device=device), torch_tensor([0, 1, 3]), j, numbers, *params
        )
    with pytest.raises(RuntimeError, match="g4_zeta"):
        torch.ops.fpcore.wacsf(vectors, torch_tensor([0, 1, 3]), j, numbers, *params[:2], [0.5], *params[3:])
    with pytest.raises(RuntimeError, match="overflows float32"):
        torch.ops.fpcore.wacsf(
            vectors.float(), torch_tensor([0, 1, 3]), j, numbers, *params[:4], [10.0], [3.0], *params[6:]
        )
    with pytest.raises(RuntimeError, match="unknown cutoff function 'poly9'"):
        torch.ops.fpcore.wacsf(vectors, torch_tensor([0, 1, 3]), j, numbers, *params[:10], "poly9", params[11])
    with pytest.raises(RuntimeError, match="grad_features"):
        torch.ops.fpcore.wacsf_backward(
            torch.zeros(2, 3, dtype=torch.float64, device=device), vectors, torch_tensor([0, 1, 3]), j, numbers, *params
        )


# ----------------------------------------------------------------------------------------------
# Other devices against the CPU


def op_inputs(structures, cutoff, dtype):
    """Arguments of fpcore::wacsf for a batch, from the CPU neighbor list (the device test then
    exercises the descriptor kernels alone)."""
    data = fpcore._structures.batch_from_atoms(structures, dtype=dtype, device="cpu")
    nl = fpcore.neighbors.compute(data.positions, data.cells, data.pbc, data.batch, cutoff)
    n = data.positions.shape[0]
    row_ptr = torch.zeros(n + 1, dtype=torch.long)
    row_ptr[1:] = torch.cumsum(torch.bincount(nl.i, minlength=n), 0)
    return nl.vectors, row_ptr, nl.j, data.numbers


@pytest.mark.parametrize("device", OTHER_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_device_matches_cpu(dtype, device):
    structures = list(random_structures().values()) + [ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)]
    structures.append(ase.Atoms("Cu", positions=[[0, 0, 0]]))  # a centre without neighbours
    module = fpcore.WACSF(**RICH)
    vectors, row_ptr, j, numbers = op_inputs(structures, RICH["cutoff"], dtype)
    params = op_params(module)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    results = []
    for where in ("cpu", device):
        v = vectors.to(where).requires_grad_(True)
        x = torch.ops.fpcore.wacsf(v, row_ptr.to(where), j.to(where), numbers.to(where), *params)
        weights = torch.linspace(-1, 1, x.numel(), dtype=dtype, device=where).reshape(x.shape)
        (g,) = torch.autograd.grad((x * weights).sum(), v)
        results.append((x.detach().cpu(), g.cpu()))
    (x_cpu, g_cpu), (x_gpu, g_gpu) = results
    assert float(x_cpu.abs().max()) > 0
    torch.testing.assert_close(x_gpu, x_cpu, rtol=tol, atol=tol * float(x_cpu.abs().max()))
    torch.testing.assert_close(g_gpu, g_cpu, rtol=tol * 10, atol=tol * 10 * float(g_cpu.abs().max()))


# ----------------------------------------------------------------------------------------------
# Large zeta (issue 13 §1): 2^(1-zeta) (1 + lambda cos)^zeta must not overflow to inf * 0 = NaN


def mpmath_g4(atoms, cutoff, zetas, lambdas, eta):
    """G4 (Rs = 0, cosine cutoff) of every atom, at 30 digits from ASE's neighbour vectors: the unfolded formula."""
    import mpmath
    from ase.neighborlist import neighbor_list

    mp = mpmath.mp.clone() if hasattr(mpmath.mp, "clone") else mpmath.mp
    mp.dps = 30
    i, j, vectors = neighbor_list("ijD", atoms, cutoff)
    out = np.zeros((len(atoms), len(zetas) * len(lambdas)))

    def fc(r):
        return (mp.cos(mp.pi * r / cutoff) + 1) / 2 if r < cutoff else mp.mpf(0)

    for centre in range(len(atoms)):
        rows = np.flatnonzero(i == centre)
        vec = [[mp.mpf(float(c)) for c in vectors[p]] for p in rows]
        weight = [int(atoms.numbers[j[p]]) for p in rows]
        dist = [mp.sqrt(sum(c * c for c in v)) for v in vec]
        sums = [mp.mpf(0)] * out.shape[1]
        for a in range(len(rows)):
            for b in range(a + 1, len(rows)):
                rjk = mp.sqrt(sum((vec[b][k] - vec[a][k]) ** 2 for k in range(3)))
                radial = mp.exp(-eta * (dist[a] ** 2 + dist[b] ** 2 + rjk**2)) * fc(dist[a]) * fc(dist[b]) * fc(rjk)
                if radial == 0:
                    continue
                cos = sum(vec[a][k] * vec[b][k] for k in range(3)) / (dist[a] * dist[b])
                for zi, zeta in enumerate(zetas):
                    for li, lam in enumerate(lambdas):
                        term = mp.power(2, 1 - zeta) * mp.power(1 + lam * cos, zeta) * radial * weight[a] * weight[b]
                        sums[zi * len(lambdas) + li] += term
        out[centre] = [float(s) for s in sums]
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_large_zeta_is_finite_and_exact(dtype):
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.02, seed=3)
    zetas, lambdas, eta, cutoff = [1.0, 130.0, 1100.0], [1.0, -1.0], 0.02, 6.0
    module = fpcore.WACSF(
        cutoff=cutoff,
        g2_eta=[0.5],
        g2_rs=[0.0],
        g4_zeta=zetas,
        g4_lambda=lambdas,
        g4_eta=[eta],
        g4_rs=[0.0],
        dtype=dtype,
    )
    got = module(atoms)[:, 1:].double().numpy()
    want = mpmath_g4(atoms, cutoff, zetas, lambdas, eta)
    assert np.isfinite(got).all()
    assert (want[:, 2:] > 1e-6).all()  # large zeta: near-(anti)collinear triplets (r_jk = 5.1 A) still contribute
    # float32: cos carries ~1e-7 error, raised to the power 1100
    tol = 1e-11 if dtype == torch.float64 else 3e-4
    scale = np.abs(want).max(axis=0)
    assert float((np.abs(got - want) / (tol * (np.abs(want) + scale))).max()) <= 1.0


def test_large_zeta_gradcheck():
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.02, seed=4)
    module = fpcore.WACSF(cutoff=5.5, g2_eta=[0.5], g2_rs=[0.0], g4_zeta=[1100.0], g4_lambda=[-1.0, 1.0])
    pos, numbers, cell, pbc = tensors(atoms, requires_grad=True)
    x = module.compute(pos, numbers, cell, pbc)
    # lambda = -1: anti-collinear (j, -j) pairs at 2.55 A, r_jk = 5.1 A
    assert torch.isfinite(x).all() and float(x.detach()[:, 1].min()) > 0
    assert torch.autograd.gradcheck(lambda p, c: module.compute(p, numbers, c, pbc), (pos, cell))


def test_lambda_beyond_one_is_refused_where_it_overflows():
    with pytest.raises(ValueError, match=r"g4_lambda=1.5 with g4_zeta=4000.0 overflows float64"):
        fpcore.WACSF(g4_zeta=[4000.0], g4_lambda=[1.5])
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True)
    # 2 (1.25)^400 ~ 1e39 fits float64 but not float32: the operator checks per dtype
    kwargs = dict(cutoff=4.0, g4_zeta=[400.0], g4_lambda=[1.5])
    assert torch.isfinite(fpcore.WACSF(**kwargs)(atoms)).all()
    with pytest.raises(RuntimeError, match=r"g4_lambda = 1.5 with g4_zeta = 400 .*overflow float32"):
        fpcore.WACSF(dtype=torch.float32, **kwargs)(atoms)
