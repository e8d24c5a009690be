"""The per-centre maths of the CUDA kernels (descriptors/*_math.h), run on the CPU through the test-only
operators of csrc/testing/device_maths.cpp, against the fast CPU kernels (issue 11, finding 2).

Without a GPU nothing else executes these functions; here a bug in them fails CI instead of the first GPU run."""

import ase
import ase.build
import numpy as np
import pytest
import torch

import fpcore

from .test_wacsf import RICH, op_inputs

DTYPES = [torch.float64, torch.float32]


def structures():
    """A bulk supercell, a slab (periodic in two directions), a cell smaller than the cutoff (many images of
    every atom, including of the centre itself), and a centre without neighbours."""
    rng = np.random.default_rng(11)
    bulk = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    bulk.positions += rng.normal(scale=0.05, size=bulk.positions.shape)
    slab = ase.build.fcc111("Al", size=(2, 2, 3), vacuum=None, periodic=False)
    slab.pbc = [True, True, False]
    slab.numbers[::3] = 8
    slab.positions += rng.normal(scale=0.05, size=slab.positions.shape)
    small = ase.Atoms("CuO", positions=[[0, 0, 0], [1.1, 0.9, 1.3]], cell=np.eye(3) * 2.6, pbc=True)
    lone = ase.Atoms("Cu", positions=[[0, 0, 0]])
    return {"bulk": bulk, "slab": slab, "small_cell": small, "lone": lone}


def wacsf_params(cutoff_fn="cosine", blocks=("g2", "g4", "g5")):
    """fpcore::wacsf parameter lists of RICH; a block left out of `blocks` is switched off (empty lists)."""
    module = fpcore.WACSF(**RICH, cutoff_fn=cutoff_fn)
    p = list(module._op_params.values())
    for name, start, stop in (("g2", 0, 2), ("g4", 2, 6), ("g5", 6, 10)):
        if name not in blocks:
            p[start:stop] = [[]] * (stop - start)
    return tuple(p)


def compare_wacsf(inputs, params, dtype):
    vectors, row_ptr, j, numbers = inputs
    v = vectors.detach().requires_grad_(True)
    expected = torch.ops.fpcore.wacsf(v, row_ptr, j, numbers, *params)
    expected_values = expected.detach()
    assert float(expected_values.abs().max()) > 0
    weights = torch.linspace(-1, 1, expected.numel(), dtype=dtype).reshape(expected.shape)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), v)

    got = torch.ops.fpcore._device_maths_wacsf(vectors, row_ptr, j, numbers, *params)
    got_grad = torch.ops.fpcore._device_maths_wacsf_backward(weights, vectors, row_ptr, j, numbers, *params)
    # Same formulas, different summation order: rounding-level differences only.
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(got, expected_values, rtol=tol, atol=tol * float(expected_values.abs().max()))
    torch.testing.assert_close(got_grad, expected_grad, rtol=tol * 10, atol=tol * 10 * float(expected_grad.abs().max()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["bulk", "slab", "small_cell"])
def test_wacsf_device_maths_matches_cpu(name, dtype):
    inputs = op_inputs([structures()[name]], RICH["cutoff"], dtype)
    compare_wacsf(inputs, wacsf_params(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cutoff_fn", ["tanh", "poly1", "poly2", "poly3", "poly4", "exponent"])
def test_wacsf_device_maths_every_cutoff_function(cutoff_fn, dtype):
    inputs = op_inputs(list(structures().values()), RICH["cutoff"], dtype)
    compare_wacsf(inputs, wacsf_params(cutoff_fn), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("blocks", [("g2",), ("g4",), ("g5",), ("g2", "g5"), ("g4", "g5")])
def test_wacsf_device_maths_blocks_switched_off(blocks, dtype):
    inputs = op_inputs(list(structures().values()), RICH["cutoff"], dtype)
    compare_wacsf(inputs, wacsf_params(blocks=blocks), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_wacsf_device_maths_g4_off_by_empty_zeta(dtype):
    """G4 inactive while its eta list is not empty: the cache holds no G4 rows, so G5's must start at once."""
    params = list(wacsf_params())
    params[2] = []  # g4_zeta
    inputs = op_inputs(list(structures().values()), RICH["cutoff"], dtype)
    compare_wacsf(inputs, tuple(params), dtype)


def test_wacsf_device_maths_batch_and_empty():
    dtype = torch.float64
    inputs = op_inputs(list(structures().values()), RICH["cutoff"], dtype)
    compare_wacsf(inputs, wacsf_params(), dtype)
    vectors, row_ptr, j, numbers = inputs
    params = wacsf_params()
    empty = torch.ops.fpcore._device_maths_wacsf(
        vectors[:0], torch.zeros(1, dtype=torch.long), j[:0], numbers[:0], *params
    )
    assert empty.shape == (0, fpcore.WACSF(**RICH).n_features)


# ----------------------------------------------------------------------------------------------
# GMP: accumulate_entry / feature_value (forward), feature_backward / entry_gradient (backward)


def gmp_inputs(atoms_list, gmp, dtype):
    data = fpcore._structures.batch_from_atoms(atoms_list, dtype=dtype, device="cpu")
    vectors, row_ptr, j, numbers = op_inputs(atoms_list, gmp.neighbor_cutoff(data.numbers), dtype)
    return (vectors, row_ptr, j, numbers, *gmp._tables(dtype, torch.device("cpu"))), (gmp.n_moments, gmp.square)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("square", [False, True])
@pytest.mark.parametrize("name", ["bulk", "slab", "small_cell", "batch"])
def test_gmp_device_maths_matches_cpu(name, square, dtype):
    atoms_list = list(structures().values()) if name == "batch" else [structures()[name]]
    gmp = fpcore.GMP(orders=[-1, 0, 1, 2, 3, 4, 9], sigmas=[0.4, 1.0], square=square)
    args, consts = gmp_inputs(atoms_list, gmp, dtype)
    expected, expected_moments = torch.ops.fpcore.gmp(*args, *consts)
    got, got_moments = torch.ops.fpcore._device_maths_gmp(*args, *consts)
    assert float(expected.abs().max()) > 0
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol * float(expected.abs().max()))
    scale = float(expected_moments.abs().max())
    torch.testing.assert_close(got_moments, expected_moments, rtol=tol, atol=tol * scale)

    weights = torch.linspace(-1, 1, expected.numel(), dtype=dtype).reshape(expected.shape)
    moment_weights = torch.linspace(1, -1, expected_moments.numel(), dtype=dtype).reshape(expected_moments.shape)
    for grad_moments in (None, moment_weights):
        want = torch.ops.fpcore.gmp_backward(weights, grad_moments, expected_moments, *args, *consts)
        have = torch.ops.fpcore._device_maths_gmp_backward(weights, grad_moments, expected_moments, *args, *consts)
        assert float(want.abs().max()) > 0
        torch.testing.assert_close(have, want, rtol=tol * 10, atol=tol * 10 * float(want.abs().max()))


def _corrupt(tables, name, change):
    tables = tables._replace(**{name: getattr(tables, name).clone()})
    change(getattr(tables, name))
    return tables


def _set(index, value):
    def change(t):
        t[index] = value

    return change


# Each inconsistency check_feature_tables names; the CUDA operators find it with feature_table_errors (tensor ops on
# the device, read back with the index checks' one copy) and only then run the host loop for the message.
BAD_TABLES = {
    "order_above_9": ("orders", _set(1, 10), "outside -1"),
    "order_below_minus_1": ("orders", _set(1, -2), "outside -1"),
    "negative_offset": ("offsets", _set(0, -1), "moment offset of feature 0"),
    "offset_past_the_moments": ("offsets", _set(-1, 10_000), "moment offset of feature"),
    "group_ptr_end": ("group_ptr", _set(-1, 2), "'group_ptr' must run from 0 to F"),
    "group_ptr_decreasing": ("group_ptr", _set(2, 0), "'group_ptr' must be non-decreasing"),
    "group_max_order_range": ("group_max_order", _set(0, 10), "'group_max_order' out of range"),
    "group_feature_range": ("group_features", _set(0, 7), "'group_features' entry out of range"),
    "order_above_its_group": ("group_max_order", lambda t: t.fill_(-1), "exceeds its group's max order"),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_gmp_device_table_check_finds_what_the_host_check_names(case):
    gmp = fpcore.GMP(orders=[-1, 0, 1, 2], sigmas=[0.5, 1.0])
    (vectors, row_ptr, j, numbers, *tables), consts = gmp_inputs([structures()["small_cell"]], gmp, torch.float64)
    tables = fpcore.ops.GMPTables(*tables)
    assert tables.orders.shape == (7,) and tables.group_ptr.tolist() == [0, 1, 4, 7]
    torch.ops.fpcore._device_maths_gmp(vectors, row_ptr, j, numbers, *tables, *consts)  # the good tables pass
    name, change, message = BAD_TABLES[case]
    bad = _corrupt(tables, name, change)
    for op in (torch.ops.fpcore.gmp, torch.ops.fpcore._device_maths_gmp):
        with pytest.raises(RuntimeError, match=message):
            op(vectors, row_ptr, j, numbers, *bad, *consts)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gmp_non_finite_vectors_are_outside_every_radius(dtype):
    # The operator called directly with NaN or infinite pair vectors: like the per-entry maths (no radius includes
    # them), the CPU kernel's distance buckets leave those entries out and the other entries' features unchanged.
    gmp = fpcore.GMP(orders=[-1, 0, 1, 2], sigmas=[0.4, 1.0])
    args, consts = gmp_inputs([structures()["bulk"]], gmp, dtype)
    vectors, row_ptr = args[0].clone(), args[1]
    bad = torch.tensor([0, 5, int(row_ptr[1]) + 3])  # two in the first centre, one in the second
    vectors[bad[0]] = float("nan")
    vectors[bad[1], 0] = float("inf")
    vectors[bad[2], 2] = float("-inf")
    args = (vectors, *args[1:])
    expected, expected_moments = torch.ops.fpcore._device_maths_gmp(*args, *consts)
    got, got_moments = torch.ops.fpcore.gmp(*args, *consts)
    assert torch.isfinite(expected).all()
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol * float(expected.abs().max()))
    weights = torch.linspace(-1, 1, expected.numel(), dtype=dtype).reshape(expected.shape)
    want = torch.ops.fpcore._device_maths_gmp_backward(weights, None, expected_moments, *args, *consts)
    have = torch.ops.fpcore.gmp_backward(weights, None, got_moments, *args, *consts)
    finite = torch.ones(len(vectors), dtype=torch.bool)
    finite[bad] = False
    torch.testing.assert_close(have[finite], want[finite], rtol=tol * 10, atol=tol * 10 * float(want.abs().max()))
