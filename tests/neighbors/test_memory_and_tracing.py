"""Memory guard of the neighbor list (refuse before allocating) and meta / fake / compiled inputs."""

import ase
import ase.build
import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv

import fpcore
from fpcore._structures import batch_from_atoms


def tiny_cell():
    return ase.Atoms("H", positions=[[0.1, 0.2, 0.3]], cell=np.eye(3), pbc=True)


def test_cutoff_230_on_1A_cell_is_refused_with_estimate_and_limit(monkeypatch):
    # ~5.1e7 pairs, 3.7 GB: refused from the estimate, before any search.
    monkeypatch.setenv("FPCORE_MAX_PAIR_MEMORY_GB", "0.5")
    with pytest.raises(RuntimeError) as error:
        fpcore.neighbor_list(tiny_cell(), 230.0)
    message = str(error.value).splitlines()[0]
    assert "about 5.09" in message and "pairs" in message and "limit of 0.5 GB" in message
    assert "FPCORE_MAX_PAIR_MEMORY_GB" in message and "structure 0" in message


def test_gmp_with_huge_sigma_is_refused_by_default():
    # sigma 100 gives a ~712 A search radius: ~1e9 pairs on fcc Cu, far beyond any default limit.
    gmp = fpcore.GMP(sigmas=[100.0], orders=[0])
    with pytest.raises(RuntimeError, match="FPCORE_MAX_PAIR_MEMORY_GB"):
        gmp(ase.build.bulk("Cu", "fcc", a=3.6, cubic=True))


@pytest.mark.parametrize(
    "atoms, cutoff",
    [
        (ase.build.bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3), 6.0),
        (ase.build.fcc111("Pt", size=(3, 3, 4), vacuum=5.0), 7.0),
        (ase.build.molecule("C60"), 4.0),
        (ase.Atoms("C4", positions=np.random.default_rng(0).random((4, 3)), cell=[2.0, 0, 0], pbc=[1, 0, 0]), 9.0),
    ],
)
def test_limit_just_above_the_exact_size_passes_and_below_refuses(monkeypatch, atoms, cutoff):
    n_pairs = len(fpcore.neighbor_list(atoms, cutoff).i)
    exact_gb = n_pairs * (40 + 32) / 1e9
    monkeypatch.setenv("FPCORE_MAX_PAIR_MEMORY_GB", repr(exact_gb * 1.5))
    assert len(fpcore.neighbor_list(atoms, cutoff).i) == n_pairs  # the estimate does not refuse a fitting list
    monkeypatch.setenv("FPCORE_MAX_PAIR_MEMORY_GB", repr(exact_gb * 0.8))
    with pytest.raises(RuntimeError, match=f"pair list would need exactly {n_pairs} pairs"):
        fpcore.neighbor_list(atoms, cutoff)


@pytest.mark.parametrize("value", ["abc", "-1", "0", "nan", "1e400"])
def test_bad_limit_value_is_named(monkeypatch, value):
    monkeypatch.setenv("FPCORE_MAX_PAIR_MEMORY_GB", value)
    with pytest.raises(RuntimeError, match="FPCORE_MAX_PAIR_MEMORY_GB must be a positive number"):
        fpcore.neighbor_list(tiny_cell(), 2.0)


def cu_tensors():
    data = batch_from_atoms(ase.build.bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2))
    return data.positions, data.cells, data.pbc, data.batch


def test_meta_tensors_raise_a_clear_not_implemented_error():
    positions, cells, pbc, batch = (t.to("meta") for t in cu_tensors())
    with pytest.raises(NotImplementedError, match="meta tensors are not supported"):
        fpcore.neighbors.compute(positions, cells, pbc, batch, cutoff=4.0)


def test_fake_tensor_mode_gives_shapes():
    real = cu_tensors()
    # The pair count is data-dependent: a ShapeEnv gives it an unbacked symbolic size.
    with FakeTensorMode(shape_env=ShapeEnv()) as mode:
        fake = [mode.from_tensor(t) for t in real]
        fake[0].requires_grad_(True)
        nl = fpcore.neighbors.compute(*fake, cutoff=4.0)
        assert nl.vectors.shape[1] == 3 and nl.vectors.dtype == torch.float64
        assert nl.i.shape[0] == nl.distances.shape[0] == nl.shifts.shape[0]
        nl.distances.sum().backward()
        assert fake[0].grad.shape == (32, 3)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_torch_compile_fullgraph(requires_grad):
    import torch._dynamo

    positions, cells, pbc, batch = cu_tensors()

    def energy(positions, cells):
        nl = fpcore.neighbors.compute(positions, cells, pbc, batch, cutoff=4.0)
        return (torch.exp(-nl.distances) * nl.vectors[:, 0]).sum()

    torch._dynamo.reset()
    compiled = torch.compile(energy, backend="aot_eager", fullgraph=True)
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        check_compiled(compiled, energy, positions, cells, requires_grad)


def check_compiled(compiled, energy, positions, cells, requires_grad):
    if requires_grad:
        args = [positions.clone().requires_grad_(True), cells.clone().requires_grad_(True)]
        ref_args = [positions.clone().requires_grad_(True), cells.clone().requires_grad_(True)]
        compiled(*args).backward()
        energy(*ref_args).backward()
        for a, b in zip(args, ref_args):
            torch.testing.assert_close(a.grad, b.grad)
    else:
        torch.testing.assert_close(compiled(positions, cells), energy(positions, cells))


def test_descriptor_traces_under_fake_tensor_mode():
    real = cu_tensors()
    numbers = torch.full((32,), 29)
    with FakeTensorMode(shape_env=ShapeEnv()) as mode:
        positions, cells, pbc, batch = (mode.from_tensor(t) for t in real)
        features = fpcore.EAD(cutoff=4.0).compute(positions, mode.from_tensor(numbers), cells, pbc, batch)
        assert features.shape[0] == 32
