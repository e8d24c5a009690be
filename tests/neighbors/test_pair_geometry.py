"""fpcore::pair_geometry (vectors and distances of given pairs) against plain torch, its gradients
to second order, opcheck, and the geometry the neighbor list emits on its no-grad path."""

import ase
import ase.build
import numpy as np
import pytest
import torch

import fpcore
from fpcore._structures import batch_from_atoms
from fpcore.neighbors import pair_geometry


def torch_reference(positions, cells, batch, i, j, shifts):
    vectors = positions[j] - positions[i] + torch.einsum("pk,pkc->pc", shifts.to(positions.dtype), cells[batch[i]])
    return vectors, torch.linalg.vector_norm(vectors, dim=1)


def structures():
    skewed = ase.Atoms(
        "SiO2",
        scaled_positions=[[0.1, 0.2, 0.3], [0.6, 0.1, 0.9], [0.4, 0.7, 0.2]],
        cell=[[3.0, 0.0, 0.0], [2.7, 1.3, 0.0], [-2.2, 1.1, 1.6]],
        pbc=True,
    )
    slab = ase.build.fcc111("Pt", size=(2, 2, 2), vacuum=4.0)
    return [skewed, slab, ase.build.molecule("H2O")]


def pairs_of(atoms_list, cutoff, dtype=torch.float64):
    data = batch_from_atoms(atoms_list, dtype=dtype)
    nl = fpcore.neighbors.compute(data.positions, data.cells, data.pbc, data.batch, cutoff)
    return data, nl


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torch_reference(dtype):
    data, nl = pairs_of(structures(), 5.0, dtype)
    args = (data.positions, data.cells, data.batch, nl.i, nl.j, nl.shifts)
    vectors, distances = pair_geometry(*args)
    ref_vectors, ref_distances = torch_reference(*args)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(vectors, ref_vectors, **tol)
    torch.testing.assert_close(distances, ref_distances, **tol)
    assert vectors.dtype == dtype and distances.dtype == dtype


def test_arbitrary_pairs_unsorted_and_non_contiguous():
    rng = np.random.default_rng(3)
    positions = torch.tensor(rng.normal(size=(7, 6)))[:, ::2]  # non-contiguous (7, 3)
    cells = torch.tensor(rng.normal(size=(2, 3, 3))).transpose(1, 2)  # non-contiguous
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    i = torch.tensor([3, 0, 6, 1, 5, 2, 2])
    j = torch.tensor([4, 2, 3, 1, 6, 2, 0])
    shifts = torch.tensor(rng.integers(-2, 3, size=(3, 7))).T  # non-contiguous (7, 3)
    assert not positions.is_contiguous() and not shifts.is_contiguous()
    got = pair_geometry(positions, cells, batch, i, j, shifts)
    want = torch_reference(positions, cells, batch, i, j, shifts)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-13, atol=1e-13)


def gradient_inputs():
    data, nl = pairs_of(structures(), 4.0)
    positions = data.positions.clone().requires_grad_(True)
    cells = data.cells.clone().requires_grad_(True)
    return positions, cells, data.batch, nl.i, nl.j, nl.shifts


@pytest.mark.parametrize("through", ["vectors", "distances", "both"])
def test_gradcheck_and_gradgradcheck(through):
    positions, cells, batch, i, j, shifts = gradient_inputs()
    weights = torch.linspace(-1.0, 2.0, i.shape[0], dtype=torch.float64)

    def energy(positions, cells):
        vectors, distances = pair_geometry(positions, cells, batch, i, j, shifts)
        terms = []
        if through in ("vectors", "both"):
            terms.append((weights * (vectors[:, 0] + 2 * vectors[:, 2]) ** 2).sum())
        if through in ("distances", "both"):
            terms.append((weights * torch.exp(-distances)).sum())
        return sum(terms)

    assert torch.autograd.gradcheck(energy, (positions, cells))
    assert torch.autograd.gradgradcheck(energy, (positions, cells))


def test_gradients_match_torch_autograd_including_second_order():
    positions, cells, batch, i, j, shifts = gradient_inputs()

    def forces_loss(geometry):
        vectors, distances = geometry(positions, cells, batch, i, j, shifts)
        energy = (torch.exp(-distances) * vectors[:, 1]).sum()
        grad_positions, grad_cells = torch.autograd.grad(energy, (positions, cells), create_graph=True)
        loss = (grad_positions**2).sum() + (grad_cells**2).sum()
        return (energy, grad_positions, grad_cells, *torch.autograd.grad(loss, (positions, cells)))

    for got, want in zip(forces_loss(pair_geometry), forces_loss(torch_reference)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_zero_distance_pair_has_finite_gradient():
    positions = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    cells = torch.eye(3).unsqueeze(0).double().requires_grad_(True)
    positions = positions.double().detach().requires_grad_(True)
    i, j = torch.tensor([0, 0]), torch.tensor([0, 1])
    shifts = torch.zeros(2, 3, dtype=torch.long)
    _, distances = pair_geometry(positions, cells, torch.zeros(2, dtype=torch.long), i, j, shifts)
    distances.sum().backward()
    assert torch.isfinite(positions.grad).all()
    torch.testing.assert_close(positions.grad, torch.tensor([[-1.0, 0, 0], [1.0, 0, 0]], dtype=torch.float64))


def opcheck_samples():
    data, nl = pairs_of(structures(), 4.0)
    base = (data.positions, data.cells, data.batch, nl.i, nl.j, nl.shifts)
    samples = [base]
    samples.append(tuple(t.float() if t.is_floating_point() else t for t in base))
    samples.append((base[0].clone().requires_grad_(True), base[1].clone().requires_grad_(True), *base[2:]))
    samples.append((base[0].clone().requires_grad_(True), *base[1:]))  # positions only
    empty = torch.zeros(0, dtype=torch.long)
    samples.append((*base[:3], empty, empty, torch.zeros(0, 3, dtype=torch.long)))
    samples.append((base[0][:, [2, 1, 0]].T.contiguous().T, base[1].transpose(1, 2), *base[2:]))  # non-contiguous
    return samples


@pytest.mark.parametrize("sample", range(6))
def test_opcheck(sample):
    torch.library.opcheck(torch.ops.fpcore.pair_geometry.default, opcheck_samples()[sample])


def test_opcheck_backward():
    positions, cells, batch, i, j, shifts = (t.detach() for t in gradient_inputs())
    vectors, distances = pair_geometry(positions, cells, batch, i, j, shifts)
    grad_v = torch.randn_like(vectors, requires_grad=True)
    grad_d = torch.randn_like(distances, requires_grad=True)
    n = (positions.shape[0], cells.shape[0])
    for gv, gd in [(grad_v, grad_d), (None, grad_d), (grad_v, None)]:
        args = (gv, gd, vectors, distances, batch, i, j, shifts, *n)
        torch.library.opcheck(torch.ops.fpcore.pair_geometry_backward.default, args)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: {**a, "i": a["i"] + 100}, "outside the"),
        (lambda a: {**a, "j": -a["j"] - 1}, "outside the"),
        (lambda a: {**a, "batch": a["batch"] + 5}, "outside the"),
        (lambda a: {**a, "shifts": a["shifts"][:, :2]}, "same pairs"),
        (lambda a: {**a, "cells": a["cells"].float()}, "same dtype"),
        (lambda a: {**a, "batch": a["batch"][:-1]}, "one entry per atom"),
        (lambda a: {**a, "i": a["i"].int()}, "int64"),
    ],
)
def test_bad_inputs_name_the_problem(mutate, message):
    data, nl = pairs_of(structures()[:1], 4.0)
    args = dict(positions=data.positions, cells=data.cells, batch=data.batch, i=nl.i, j=nl.j, shifts=nl.shifts)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.fpcore.pair_geometry(**mutate(args))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_neighbor_list_geometry_equals_pair_geometry_exactly(dtype):
    data = batch_from_atoms(structures(), dtype=dtype)
    i, j, shifts, vectors, distances = torch.ops.fpcore.neighbor_list(
        data.positions, data.cells, data.pbc, data.ptr, 5.0, True
    )
    want = pair_geometry(data.positions, data.cells, data.batch, i, j, shifts)
    assert torch.equal(vectors, want[0]) and torch.equal(distances, want[1])
    without = torch.ops.fpcore.neighbor_list(data.positions, data.cells, data.pbc, data.ptr, 5.0)
    assert without[3].shape == (0, 3) and without[4].shape == (0,)
    assert all(torch.equal(a, b) for a, b in zip(without[:3], (i, j, shifts)))


def test_compute_same_geometry_with_and_without_grad():
    data = batch_from_atoms(structures())
    with torch.no_grad():
        plain = fpcore.neighbors.compute(data.positions, data.cells, data.pbc, data.batch, 5.0)
    positions = data.positions.clone().requires_grad_(True)
    tracked = fpcore.neighbors.compute(positions, data.cells, data.pbc, data.batch, 5.0)
    assert tracked.vectors.requires_grad and not plain.vectors.requires_grad
    for a, b in zip(plain, tracked):
        assert torch.equal(a, b.detach())
