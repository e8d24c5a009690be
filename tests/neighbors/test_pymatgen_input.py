"""pymatgen Structure / Molecule input, alone or mixed with ase.Atoms (skipped without pymatgen)."""

import ase
import ase.build
import numpy as np
import pytest
import torch

import fpcore
from fpcore._structures import batch_from_atoms

pymatgen_core = pytest.importorskip("pymatgen.core")
from pymatgen.io.ase import AseAtomsAdaptor  # noqa: E402


def ase_structures():
    rattled = ase.build.bulk("NaCl", "rocksalt", a=5.6) * (2, 1, 1)
    rattled.rattle(0.05, seed=1)
    slab = ase.build.fcc111("Pt", size=(2, 2, 2), vacuum=4.0)
    return [rattled, slab]


def as_pymatgen(atoms):
    return AseAtomsAdaptor.get_structure(atoms)


def test_batch_matches_the_ase_conversion():
    atoms = ase_structures()
    mixed = [as_pymatgen(atoms[0]), atoms[1]]
    want, got = batch_from_atoms(atoms), batch_from_atoms(mixed)
    for name in ("positions", "numbers", "cells", "pbc", "batch", "ptr"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=1e-12)


@pytest.mark.parametrize("as_list", [False, True])
def test_neighbor_list_of_a_structure_equals_ase(as_list):
    atoms = ase_structures()[0]
    structure = as_pymatgen(atoms)
    got = fpcore.neighbor_list([structure] if as_list else structure, 4.0)
    want = fpcore.neighbor_list(atoms, 4.0)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_molecule_is_non_periodic():
    molecule = pymatgen_core.Molecule(["O", "H", "H"], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    got = fpcore.neighbor_list(molecule, 1.2)
    want = fpcore.neighbor_list(ase.Atoms("OH2", positions=molecule.cart_coords), 1.2)
    assert torch.equal(got.i, want.i) and torch.equal(got.j, want.j)


@pytest.mark.parametrize("descriptor", [fpcore.EAD, fpcore.WACSF, fpcore.GMP])
def test_descriptors_accept_mixed_lists(descriptor):
    atoms = ase_structures()
    module = descriptor() if descriptor is not fpcore.GMP else descriptor(sigmas=[0.5, 1.0], orders=[0, 1])
    mixed = module([as_pymatgen(atoms[0]), atoms[1]])
    torch.testing.assert_close(mixed, module(atoms))


def test_disordered_structure_is_refused_by_index():
    lattice = pymatgen_core.Lattice.cubic(4.0)
    disordered = pymatgen_core.Structure(lattice, [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    with pytest.raises(ValueError, match="structure 1 is a disordered pymatgen Structure"):
        fpcore.neighbor_list([ase_structures()[0], disordered], 3.0)


def test_other_objects_are_refused_by_index():
    with pytest.raises(TypeError, match="structure 1 is a ndarray"):
        fpcore.neighbor_list([ase_structures()[0], np.zeros((2, 3))], 3.0)
