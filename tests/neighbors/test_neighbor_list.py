"""fpcore.neighbor_list against ASE's neighbor_list over edge cases and random cells."""

import ase
import ase.build
import numpy as np
import pytest
import torch
from ase.neighborlist import neighbor_list as ase_neighbor_list
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fpcore

from ..conftest import DEVICES, OTHER_DEVICES


def pair_keys(i, j, shifts):
    i, j, shifts = (np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x) for x in (i, j, shifts))
    return list(zip(i.tolist(), j.tolist(), map(tuple, shifts.reshape(-1, 3).tolist())))


def pair_set(i, j, shifts):
    return set(pair_keys(i, j, shifts))


def assert_same_as_ase(atoms, cutoff, device="cpu"):
    ours = fpcore.neighbor_list(atoms, cutoff, device=device)
    assert ours.i.device.type == device
    ours = type(ours)(*(t.cpu() for t in ours))
    i, j, shifts = ase_neighbor_list("ijS", atoms, cutoff)
    got, want = pair_set(ours.i, ours.j, ours.shifts), pair_set(i, j, shifts)
    assert len(ours.i) == len(got), "duplicate pairs"
    assert got == want, f"missing {len(want - got)}, extra {len(got - want)}"
    if len(ours.i):
        expected = atoms.positions[ours.j] - atoms.positions[ours.i] + ours.shifts.numpy() @ atoms.cell[:]
        np.testing.assert_allclose(ours.vectors.numpy(), expected, atol=1e-10)
        assert float(ours.distances.max()) < cutoff
    return ours


def triclinic(a, b, c, alpha, beta, gamma):
    from ase.geometry import cellpar_to_cell

    return cellpar_to_cell([a, b, c, alpha, beta, gamma])


EDGE_CASES = {
    "fcc_cu_cubic": (ase.build.bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2)), 6.0),
    "cell_smaller_than_cutoff": (ase.build.bulk("Cu", "fcc", a=3.6), 9.0),
    "single_atom_periodic": (ase.Atoms("Ar", positions=[[0.1, 0.2, 0.3]], cell=np.eye(3) * 2.0, pbc=True), 5.0),
    "skewed_triclinic": (
        ase.Atoms(
            "SiO2",
            scaled_positions=[[0.1, 0.2, 0.3], [0.6, 0.1, 0.9], [0.4, 0.7, 0.2]],
            cell=[[3.0, 0.0, 0.0], [2.7, 1.3, 0.0], [-2.2, 1.1, 1.6]],
            pbc=True,
        ),
        7.0,
    ),
    "slab": (ase.build.fcc111("Pt", size=(2, 2, 3), vacuum=6.0), 5.5),
    "wire": (
        ase.Atoms(
            "C3", positions=[[0, 0, 0], [1.2, 0.3, 0.1], [2.5, -0.4, 0.2]], cell=[3.1, 0, 0], pbc=[True, False, False]
        ),
        4.0,
    ),
    "molecule_zero_cell": (ase.build.molecule("C6H6"), 3.0),
    "molecule_in_box_outside": (
        ase.Atoms("H2O", positions=[[-5, 0, 0], [-5.9, 0.3, 0], [20, 1, 1]], cell=np.eye(3) * 4, pbc=False),
        30.0,
    ),
    "atoms_far_outside_cell": (
        ase.Atoms(
            "NaCl",
            positions=[[-7.3, 12.1, 3.3], [31.0, -4.4, -9.9]],
            cell=triclinic(4.0, 4.5, 5.0, 80, 95, 105),
            pbc=True,
        ),
        6.0,
    ),
    "mixed_pbc_skewed": (
        ase.Atoms(
            "Ga2As2",
            scaled_positions=np.random.default_rng(1).random((4, 3)),
            cell=triclinic(4.0, 5.0, 9.0, 70, 80, 110),
            pbc=[True, False, True],
        ),
        6.5,
    ),
    "single_atom_molecule": (ase.Atoms("He", positions=[[1.0, 2.0, 3.0]]), 4.0),
    "zero_cutoff": (ase.build.bulk("Si", "diamond", a=5.43), 0.0),
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
@pytest.mark.parametrize("device", DEVICES)
def test_edge_cases_match_ase(device, name):
    atoms, cutoff = EDGE_CASES[name]
    assert_same_as_ase(atoms, cutoff, device)


def test_no_self_pair_but_own_images():
    atoms = ase.Atoms("Cu", positions=[[0, 0, 0]], cell=np.eye(3) * 2.5, pbc=True)
    nl = assert_same_as_ase(atoms, 3.0)
    assert len(nl.i) == 6  # the six face neighbours are images of the atom itself
    assert not bool(((nl.i == nl.j) & (nl.shifts == 0).all(1)).any())


def test_batch_equals_separate_calls_and_keeps_empty_structures():
    structures = [EDGE_CASES[name][0] for name in ("fcc_cu_cubic", "slab", "molecule_zero_cell", "wire")]
    structures.insert(2, ase.Atoms())  # an empty structure inside the batch
    batched = fpcore.neighbor_list(structures, 4.0)
    offset, expected = 0, set()
    for atoms in structures:
        i, j, shifts = ase_neighbor_list("ijS", atoms, 4.0) if len(atoms) else ([], [], np.zeros((0, 3)))
        expected |= pair_set(np.asarray(i, dtype=int) + offset, np.asarray(j, dtype=int) + offset, shifts)
        offset += len(atoms)
    assert pair_set(batched.i, batched.j, batched.shifts) == expected
    assert bool((batched.i[1:] >= batched.i[:-1]).all()), "pairs must be grouped by ascending i"


def test_rotation_and_translation_invariant_pair_set():
    atoms = EDGE_CASES["skewed_triclinic"][0].copy()
    reference = fpcore.neighbor_list(atoms, 6.1)
    atoms.rotate(37, (1, 2, 3), rotate_cell=True)
    atoms.translate([10.3, -4.2, 7.7])
    moved = fpcore.neighbor_list(atoms, 6.1)
    assert pair_set(reference.i, reference.j, reference.shifts) == pair_set(moved.i, moved.j, moved.shifts)
    np.testing.assert_allclose(np.sort(reference.distances.numpy()), np.sort(moved.distances.numpy()), atol=1e-9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n_atoms=st.integers(1, 12),
    pbc=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    # Whole multiples put a lattice translation exactly on the cutoff, where d < cutoff is decided by rounding.
    cutoff_over_length=st.floats(0.05, 3.0).filter(lambda x: abs(x - round(x)) > 1e-6),
)
def test_random_cells_match_ase(seed, n_atoms, pbc, cutoff_over_length):
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(2.0, 6.0, 3)
    angles = rng.uniform(50.0, 130.0, 3)
    try:
        cell = triclinic(*lengths, *angles)
    except (ValueError, AssertionError):  # impossible angle triple
        return
    if abs(np.linalg.det(cell)) < 0.2 * np.prod(lengths):
        return  # nearly flat cells are covered by the skewed case; ASE itself gets slow there
    fractional = rng.uniform(-1.5, 2.5, (n_atoms, 3))  # inside and outside the cell
    atoms = ase.Atoms(numbers=rng.integers(1, 90, n_atoms), scaled_positions=fractional, cell=cell, pbc=pbc)
    atoms.positions = fractional @ cell  # keep atoms outside the cell (ase wraps scaled_positions)
    assert_same_as_ase(atoms, float(cutoff_over_length * lengths.min()))


@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True), (False, False, False)])
def test_many_bins_skewed_cell_matches_ase(pbc):
    # Several bins per direction in a strongly skewed cell, atoms spilling out of it: exercises the
    # pruning of bins and images that cannot hold a neighbour.
    rng = np.random.default_rng(11)
    cell = triclinic(17.0, 15.0, 19.0, 58.0, 74.0, 121.0)
    fractional = rng.uniform(-0.2, 1.2, (180, 3))
    atoms = ase.Atoms(numbers=np.ones(180, dtype=int), cell=cell, pbc=pbc)
    atoms.positions = fractional @ cell
    assert_same_as_ase(atoms, 4.7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_dtypes(device, dtype):
    atoms = EDGE_CASES["fcc_cu_cubic"][0]
    nl = fpcore.neighbor_list(atoms, 5.0, dtype=dtype, device=device)
    assert nl.vectors.dtype == dtype and nl.i.dtype == torch.long and nl.shifts.dtype == torch.long
    assert pair_set(nl.i, nl.j, nl.shifts) == pair_set(*ase_neighbor_list("ijS", atoms, 5.0))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_positions_and_cell(device):
    atoms = EDGE_CASES["skewed_triclinic"][0]
    positions = torch.tensor(atoms.positions, device=device, requires_grad=True)
    cell = torch.tensor(atoms.cell[:], device=device, requires_grad=True)
    pbc = torch.tensor(atoms.pbc, device=device)

    def energy(positions, cell):
        nl = fpcore.neighbors.compute(positions, cell, pbc, cutoff=4.0)
        return (torch.exp(-nl.distances) * (nl.vectors[:, 0] + 2 * nl.vectors[:, 2])).sum()

    assert torch.autograd.gradcheck(energy, (positions, cell))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    atoms = EDGE_CASES["mixed_pbc_skewed"][0]
    data = fpcore._structures.batch_from_atoms([atoms, EDGE_CASES["wire"][0]], device=device)
    args = (data.positions, data.cells, data.pbc, data.ptr, 5.0)
    torch.library.opcheck(torch.ops.fpcore.neighbor_list.default, args)


def test_torch_compile_smoke():
    atoms = EDGE_CASES["fcc_cu_cubic"][0]
    positions = torch.tensor(atoms.positions)
    cell = torch.tensor(atoms.cell[:])
    pbc = torch.tensor(atoms.pbc)

    def total_distance(positions, cell):
        return fpcore.neighbors.compute(positions, cell, pbc, cutoff=4.0).distances.sum()

    compiled = torch.compile(total_distance, backend="eager", fullgraph=False)
    torch.testing.assert_close(compiled(positions, cell), total_distance(positions, cell))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p, c, b: (p[:, :2], c, b), "shape"),
        (lambda p, c, b: (p.long(), c, b), "float32 or float64"),
        (
            lambda p, c, b: (torch.where(torch.arange(len(p), device=p.device)[:, None] == 1, float("nan"), p), c, b),
            "NaN",
        ),
        (lambda p, c, b: (p, torch.zeros_like(c), b), "singular"),
        (lambda p, c, b: (p, c, b.flip(0)), "non-decreasing"),
    ],
)
@pytest.mark.parametrize("device", DEVICES)
def test_bad_input_errors(device, mutate, message):
    atoms = EDGE_CASES["fcc_cu_cubic"][0]
    positions = torch.tensor(atoms.positions, device=device)
    cell = torch.tensor(atoms.cell[:], device=device).unsqueeze(0).repeat(2, 1, 1)
    batch = torch.tensor([0] * 16 + [1] * 16, device=device)
    positions, cell, batch = mutate(positions, cell, batch)
    pbc = torch.ones(2, 3, dtype=torch.bool, device=device)
    with pytest.raises((ValueError, RuntimeError, TypeError), match=message):
        fpcore.neighbors.compute(positions, cell, pbc, batch, cutoff=3.0)


def test_negative_cutoff_error():
    with pytest.raises(RuntimeError, match="cutoff"):
        fpcore.neighbor_list(EDGE_CASES["fcc_cu_cubic"][0], -1.0)


def test_singular_cell_is_fine_when_not_periodic():
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]], cell=np.zeros((3, 3)), pbc=False)
    assert len(fpcore.neighbor_list(atoms, 1.0).i) == 2


# Cutoffs equal to a lattice's shell distances: pair membership is decided there by the last bit of a rounding.
SHELL_CUTOFFS = {
    "fcc_a": (ase.build.bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2), 3.6),
    "fcc_nearest": (ase.build.bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2), 3.6 / 2**0.5),
    "fcc_second_diagonal": (ase.build.bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3), 3.6 * 2**0.5),
    "fcc_primitive_a": (ase.build.bulk("Cu", "fcc", a=3.6).repeat(2), 3.6),
    "bcc_a": (ase.build.bulk("Fe", "bcc", a=2.87, cubic=True).repeat(2), 2.87),
}


@pytest.mark.parametrize("name", list(SHELL_CUTOFFS))
def test_shell_distance_cutoffs_differ_from_ase_only_by_rounding_ties(name):
    # fpcore decides d^2 < cutoff^2 in double precision without fused multiply-adds (on every device); ASE decides
    # d < cutoff with its own arithmetic. Both are right up to the last bit: a pair one of them keeps and the other
    # drops lies within a few ulp of the cutoff, and every other pair is in both.
    atoms, cutoff = SHELL_CUTOFFS[name]
    ours = fpcore.neighbor_list(atoms, cutoff)
    i, j, shifts, d = ase_neighbor_list("ijSd", atoms, cutoff)
    tie = 8 * np.spacing(cutoff)
    ours_d = dict(zip(pair_keys(ours.i, ours.j, ours.shifts), ours.distances.tolist()))
    ase_d = dict(zip(pair_keys(i, j, shifts), d.tolist()))
    assert len(ours_d) == len(ours.i), "duplicate pairs"
    for only_in, distances in ((set(ours_d) - set(ase_d), ours_d), (set(ase_d) - set(ours_d), ase_d)):
        assert all(abs(distances[p] - cutoff) <= tie for p in only_in), sorted(distances[p] for p in only_in)[:3]
    assert float(ours.distances.max()) <= cutoff


@pytest.mark.parametrize("name", [*EDGE_CASES, *SHELL_CUTOFFS])
@pytest.mark.parametrize("device", OTHER_DEVICES)
def test_device_finds_the_cpu_pairs_in_the_cpu_order(device, name):
    # The floating-point contract (docs/descriptors/neighbors.md): the same pairs in the same order on both devices,
    # also at cutoffs on exact shell distances.
    atoms, cutoff = {**EDGE_CASES, **SHELL_CUTOFFS}[name]
    cpu = fpcore.neighbor_list(atoms, cutoff)
    other = fpcore.neighbor_list(atoms, cutoff, device=device)
    for field in ("i", "j", "shifts"):
        assert torch.equal(getattr(cpu, field), getattr(other, field).cpu()), field
    torch.testing.assert_close(cpu.distances, other.distances.cpu(), rtol=0, atol=1e-12)


def random_structures(rng, count):
    """Random small cells (any pbc, atoms inside and outside the cell) with empty ones mixed in."""
    structures = []
    while len(structures) < count:
        n_atoms = int(rng.integers(0, 15))
        try:
            cell = triclinic(*rng.uniform(2.0, 6.0, 3), *rng.uniform(60.0, 120.0, 3))
        except (ValueError, AssertionError):  # impossible angle triple
            continue
        if not np.all(np.isfinite(cell)) or abs(np.linalg.det(cell)) < 0.3 * np.prod(np.linalg.norm(cell, axis=1)):
            continue
        atoms = ase.Atoms(numbers=np.ones(n_atoms, dtype=int), cell=cell, pbc=rng.random(3) < 0.6)
        atoms.positions = rng.uniform(-0.5, 1.5, (n_atoms, 3)) @ cell
        structures.append(atoms)
    return structures


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", OTHER_DEVICES)
def test_device_random_batches_match_cpu(device, dtype):
    rng = np.random.default_rng(7)
    for cutoff in (1.5, 4.0, 9.0):
        structures = random_structures(rng, 40)
        cpu = fpcore.neighbor_list(structures, cutoff, dtype=dtype)
        other = fpcore.neighbor_list(structures, cutoff, dtype=dtype, device=device)
        assert other.i.device.type == device and other.vectors.dtype == dtype
        assert len(other.i) == len(cpu.i)
        assert pair_set(cpu.i, cpu.j, cpu.shifts) == pair_set(other.i, other.j, other.shifts)
        assert bool((other.i[1:] >= other.i[:-1]).all()), "pairs must be grouped by ascending i"


@pytest.mark.parametrize("device", OTHER_DEVICES)
def test_device_large_supercell_matches_cpu(device):
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((8, 8, 8))
    atoms.rattle(0.05, seed=3)
    cpu = fpcore.neighbor_list(atoms, 5.0)
    other = fpcore.neighbor_list(atoms, 5.0, device=device)
    assert torch.equal(cpu.i, other.i.cpu())  # same grouping, same counts per atom
    assert pair_set(cpu.i, cpu.j, cpu.shifts) == pair_set(other.i, other.j, other.shifts)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda p, c, ptr: (p.clone().index_fill_(0, torch.tensor([20], device=p.device), float("nan")), c, ptr),
            "NaN",
        ),
        (lambda p, c, ptr: (p, torch.zeros_like(c), ptr), "singular"),
        (lambda p, c, ptr: (p, c, torch.tensor([0, 20, 10, 32], device=p.device)), "ptr"),
        (lambda p, c, ptr: (p, c, torch.tensor([0, 16, 16, 31], device=p.device)), "ptr"),
    ],
)
@pytest.mark.parametrize("device", DEVICES)
def test_operator_bad_input_errors(device, mutate, message):
    atoms = EDGE_CASES["fcc_cu_cubic"][0]
    positions = torch.tensor(atoms.positions, device=device)
    cells = torch.tensor(atoms.cell[:], device=device).unsqueeze(0).repeat(3, 1, 1)
    ptr = torch.tensor([0, 16, 16, 32], device=device)
    positions, cells, ptr = mutate(positions, cells, ptr)
    pbc = torch.ones(3, 3, dtype=torch.bool, device=device)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.fpcore.neighbor_list(positions, cells, pbc, ptr, 3.0)
    # the device must still be usable after a reported input error (a kernel fault would poison the CUDA context)
    assert len(fpcore.neighbor_list(atoms, 3.0, device=device).i) > 0
