"""Conversion rejects what the operators would reject later, naming the structure by id and file."""

import numpy as np
import pytest
from ase import Atoms

from fpcore.data import load_dataset
from fpcore.data._flat import degenerate_cells

from ..training.tiny_data import structures, write_extxyz


def with_change(tmp_path, change):
    frames = structures(6)
    for k, atoms in enumerate(frames):
        atoms.info["id"] = f"s{k}"
    change(frames)
    return write_extxyz(tmp_path / "data.extxyz", frames)


def set_cell(cell, pbc=True):
    def change(frames):
        frames[4].cell = cell
        frames[4].pbc = pbc

    return change


def set_position(value):
    def change(frames):
        frames[4].positions[0, 1] = value

    return change


def set_number(z):
    def change(frames):
        numbers = frames[4].numbers.copy()
        numbers[0] = z
        frames[4].numbers = numbers

    return change


CASES = [
    ("dependent cell vectors", set_cell([[2, 0, 0], [4, 0, 0], [0, 0, 3]]), "has a degenerate cell"),
    ("coplanar cell vectors", set_cell([[2, 0, 0], [0, 2, 0], [1, 1, 0]]), "has a degenerate cell"),
    ("2d periodic, dependent", set_cell([[2, 0, 0], [3, 0, 0], [0, 0, 5]], [True, True, False]), "degenerate cell"),
    ("zero periodic vector", set_cell([[2, 0, 0], [0, 0, 0], [0, 0, 3]]), "cell vector is zero"),
    ("NaN position", set_position(np.nan), "non-finite position"),
    ("inf position", set_position(np.inf), "non-finite position"),
    ("atomic number 0", set_number(0), "atomic number 0"),
]


@pytest.mark.parametrize("case,change,message", CASES, ids=[c[0] for c in CASES])
def test_bad_structure_is_named_by_id_and_file(tmp_path, case, change, message):
    path = with_change(tmp_path, change)
    with pytest.raises(ValueError, match=message) as err:
        load_dataset(path, targets=["energy_per_atom"], cache_dir=tmp_path / "cache", progress=False)
    assert "'s4'" in str(err.value) and "data.extxyz" in str(err.value)
    assert not list((tmp_path / "cache").glob("datasets/*")), "invalid data never reaches the cache"


ACCEPTED = [
    ("open direction may be zero", [[2, 0, 0], [0, 2, 0], [0, 0, 0]], [True, True, False]),
    ("non-periodic zero cell", np.zeros((3, 3)), [False, False, False]),
    ("skewed but valid", [[2, 0, 0], [1.9, 0.1, 0], [0, 0, 3]], [True, True, True]),
]


@pytest.mark.parametrize("case,cell,pbc", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_valid_cells_pass(case, cell, pbc):
    atoms = Atoms("Cu", positions=[[0.1, 0.2, 0.3]], cell=cell, pbc=pbc)
    assert not degenerate_cells(np.asarray(atoms.cell[:])[None], np.asarray(atoms.pbc)[None]).any()
