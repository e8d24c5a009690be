import csv
import gzip
import json

import ase.db
import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from fpcore.data import load_dataset

from .helpers import assert_same_structure, make_structures, write_extxyz, write_matbench


@pytest.mark.parametrize("name", ["s.extxyz", "s.xyz", "s.extxyz.gz", "s.xyz.gz"])
def test_extxyz_structures_and_labels(tmp_path, name):
    structures = make_structures(6)
    path = write_extxyz(tmp_path / name, structures)
    ds = load_dataset(path, targets=["gap", "e_form"], cache_dir=tmp_path / "cache", progress=False)
    assert len(ds) == 6
    assert ds.ids == [a.info["id"] for a in structures]
    assert ds.target_names == ["gap", "e_form"]
    for k, atoms in enumerate(structures):
        d = ds[k]
        assert_same_structure(d, atoms, atol=1e-8)
        assert d.pos.dtype == torch.float64 and d.z.dtype == torch.int64 and d.cell.dtype == torch.float64
        assert d.pbc.dtype == torch.bool and d.y.dtype == torch.float32 and d.idx == k
        np.testing.assert_allclose(d.y.numpy(), [[atoms.info["gap"], atoms.info["e_form"]]], rtol=1e-6)
    np.testing.assert_allclose(ds.labels[:, 1].numpy(), [a.info["e_form"] for a in structures], rtol=1e-12)


def test_extxyz_unlabelled_default_ids_and_calculator_labels(tmp_path):
    structures = make_structures(3, labels=False)
    for k, a in enumerate(structures):
        del a.info["id"]
        a.calc = SinglePointCalculator(a, energy=-1.5 * (k + 1))
    path = write_extxyz(tmp_path / "e.extxyz", structures)
    unlabelled = load_dataset(path, cache_dir=False, progress=False)
    assert unlabelled.ids == ["e.extxyz:0", "e.extxyz:1", "e.extxyz:2"]
    assert unlabelled.target_names == [] and unlabelled.labels is None and "y" not in unlabelled[0]
    ds = load_dataset(path, targets="energy", cache_dir=False, progress=False)
    np.testing.assert_allclose(ds.labels[:, 0].numpy(), [-1.5, -3.0, -4.5])


def test_multi_part_list_and_glob(tmp_path):
    structures = make_structures(7)
    write_extxyz(tmp_path / "part01.extxyz.gz", structures[3:])
    write_extxyz(tmp_path / "part00.extxyz.gz", structures[:3])
    by_glob = load_dataset(str(tmp_path / "part*.extxyz.gz"), targets=["gap"], cache_dir=tmp_path / "c", progress=False)
    assert by_glob.ids == [a.info["id"] for a in structures]
    for k, atoms in enumerate(structures):
        assert_same_structure(by_glob[k], atoms, atol=1e-8)
    reversed_list = load_dataset(
        [tmp_path / "part01.extxyz.gz", tmp_path / "part00.extxyz.gz"], cache_dir=False, progress=False
    )
    assert reversed_list.ids == [a.info["id"] for a in structures[3:] + structures[:3]]


def test_ase_db_labels_from_key_value_pairs_and_data(tmp_path):
    structures = make_structures(4)
    path = tmp_path / "s.db"
    with ase.db.connect(path) as db:
        for a in structures:
            db.write(a, key_value_pairs={"gap": a.info["gap"]}, data={"e_form": a.info["e_form"], "vec": [1.0, 2.0]})
    ds = load_dataset(path, targets=["gap", "e_form"], cache_dir=tmp_path / "cache", progress=False)
    assert len(ds) == 4 and ds.ids == ["1", "2", "3", "4"]
    for k, atoms in enumerate(structures):
        assert_same_structure(ds[k], atoms)
    np.testing.assert_allclose(ds.labels.numpy(), [[a.info["gap"], a.info["e_form"]] for a in structures], rtol=1e-12)
    with pytest.raises(KeyError, match=r"target 'band_gap' is missing from row 1 .*available keys: .*e_form.*gap"):
        load_dataset(path, targets=["band_gap"], cache_dir=False, progress=False)
    with pytest.raises(ValueError, match=r"label 'vec' .* must be one number"):
        load_dataset(path, targets=["vec"], cache_dir=False, progress=False)


def _write_cif_folder(folder, structures, header=None, columns=("gap",)):
    folder.mkdir()
    for a in structures:
        ase.io.write(folder / f"{a.info['id']}.cif", a, format="cif")
    with open(folder / "id_prop.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(header)
        for a in structures:
            w.writerow([a.info["id"]] + [a.info[c] for c in columns])


def test_cif_folder_cgcnn(tmp_path):
    structures = make_structures(4)
    for a in structures:
        a.pbc = True  # CIF is periodic in 3D
    _write_cif_folder(tmp_path / "cifs", structures)
    ds = load_dataset(tmp_path / "cifs", targets=["band_gap"], cache_dir=tmp_path / "cache", progress=False)
    assert ds.ids == [a.info["id"] for a in structures] and ds.target_names == ["band_gap"]
    for k, atoms in enumerate(structures):
        d = ds[k]
        # CIF stores cell lengths/angles and fractional coordinates: compare the geometry invariants.
        np.testing.assert_array_equal(d.z.numpy(), atoms.numbers)
        np.testing.assert_allclose(np.linalg.norm(d.cell[0].numpy(), axis=1), atoms.cell.lengths(), rtol=1e-5)
        cif_atoms = ds.atoms(k)
        np.testing.assert_allclose(cif_atoms.get_scaled_positions(), atoms.get_scaled_positions(), atol=1e-5)
    np.testing.assert_allclose(ds.labels[:, 0].numpy(), [a.info["gap"] for a in structures], rtol=1e-12)
    default_name = load_dataset(tmp_path / "cifs", targets="target", cache_dir=False, progress=False)
    torch.testing.assert_close(default_name.labels, ds.labels)
    with pytest.raises(KeyError, match=r"not found in .*id_prop.csv; its label columns are \['target'\]"):
        load_dataset(tmp_path / "cifs", targets=["a", "b"], cache_dir=False, progress=False)


def test_cif_folder_with_header_and_missing_cif(tmp_path):
    structures = make_structures(3)
    for a in structures:
        a.pbc = True
    _write_cif_folder(tmp_path / "cifs", structures, header=["id", "gap", "e_form"], columns=("gap", "e_form"))
    ds = load_dataset(tmp_path / "cifs", targets=["e_form"], cache_dir=False, progress=False)
    np.testing.assert_allclose(ds.labels[:, 0].numpy(), [a.info["e_form"] for a in structures], rtol=1e-12)
    (tmp_path / "cifs" / "s-1.cif").unlink()
    with pytest.raises(FileNotFoundError, match=r"s-1.cif \(listed in .*id_prop.csv, row 2\) does not exist"):
        load_dataset(tmp_path / "cifs", targets=["e_form"], cache_dir=False, progress=False)


def test_cif_partial_occupancy_is_rejected(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "alloy.cif").write_text(
        "data_x\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n_cell_angle_beta 90\n"
        "_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n_atom_site_label\n_atom_site_type_symbol\n"
        "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n"
        "Cu1 Cu 0 0 0 0.5\nAu1 Au 0 0 0 0.5\n"
    )
    (folder / "id_prop.csv").write_text("alloy,1.0\n")
    with pytest.raises(ValueError, match=r"'alloy' .*alloy.cif\) has partial occupancies"):
        load_dataset(folder, targets=["target"], cache_dir=False, progress=False)


@pytest.mark.parametrize("cartesian", [True, False])
def test_matbench_json(tmp_path, cartesian):
    structures = make_structures(5)
    path = tmp_path / "matbench_test.json.gz"
    doc = write_matbench(path, structures, target="gap", cartesian=cartesian)
    ds = load_dataset(path, targets=["gap"], cache_dir=tmp_path / "cache", progress=False)
    assert ds.ids == doc["index"]
    for k, atoms in enumerate(structures):
        assert_same_structure(ds[k], atoms, atol=1e-12)
    np.testing.assert_allclose(ds.labels[:, 0].numpy(), [a.info["gap"] for a in structures], rtol=1e-12)
    assert load_dataset(path, cache_dir=False, progress=False).labels is None
    with pytest.raises(KeyError, match=r"target 'e_form' is missing from .*matbench_test.json.gz; available keys: gap"):
        load_dataset(path, targets=["e_form"], cache_dir=False, progress=False)


def _edit_matbench(path, edit):
    with gzip.open(path, "rt") as fh:
        doc = json.load(fh)
    edit(doc)
    with gzip.open(path, "wt") as fh:
        json.dump(doc, fh)


def test_matbench_partial_occupancy_and_unknown_element(tmp_path):
    path = tmp_path / "matbench_bad.json.gz"
    write_matbench(path, make_structures(3))
    _edit_matbench(
        path,
        lambda d: d["data"][1][0]["sites"][0].update(
            species=[{"element": "Cu", "occu": 0.5}, {"element": "Au", "occu": 0.5}]
        ),
    )
    with pytest.raises(
        ValueError, match=r"'mb-test-002' \(row 1\) of .*matbench_bad.json.gz has a partially occupied site 0"
    ):
        load_dataset(path, targets=["gap"], cache_dir=False, progress=False)
    write_matbench(path, make_structures(3))
    _edit_matbench(path, lambda d: d["data"][2][0]["sites"][0]["species"][0].update(element="Qq"))
    with pytest.raises(
        ValueError, match=r"unknown element symbol\(s\) \['Qq'\] in structure 'mb-test-003' .*matbench_bad"
    ):
        load_dataset(path, targets=["gap"], cache_dir=False, progress=False)


def test_real_matbench_jdft2d(shared_dir, tmp_path):
    path = shared_dir / "data" / "matbench_jdft2d" / "matbench_jdft2d.extxyz.gz"
    ds = load_dataset(path, targets=["exfoliation_en"], cache_dir=tmp_path, progress=False)
    assert len(ds) == 636 and ds.ids[0] == "mb-jdft2d-001" and ds.ids[-1] == "mb-jdft2d-636"
    with gzip.open(path, "rt") as fh:
        first = next(ase.io.iread(fh, format="extxyz"))
    assert_same_structure(ds[0], first)
    np.testing.assert_allclose(ds[0].y.item(), first.info["exfoliation_en"], rtol=1e-6)
    assert torch.isfinite(ds.labels).all() and int(ds.natoms.max()) == 35
    assert abs(float(ds.natoms.double().mean()) - 7.2) < 0.05


def _assert_flat_equal(a, b):
    assert a.ids == b.ids and a.origins == b.origins and a.target_names == b.target_names
    for name in ("numbers", "positions", "offsets", "cells", "pbc", "y"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or (x.dtype == y.dtype and np.array_equal(x, y)), name


def test_fast_extxyz_reader_matches_ase(tmp_path, monkeypatch):
    from fpcore.data import readers

    structures = make_structures(9)
    for k, a in enumerate(structures):
        a.calc = SinglePointCalculator(a, energy=-0.5 * k)
    del structures[4].info["id"]
    path = write_extxyz(tmp_path / "s.extxyz.gz", structures)
    assert readers._fast_extxyz(readers._read_text(path), path, ["gap"]) is not None  # the fast path is taken
    for targets in (None, ["e_form", "gap", "energy"]):
        _assert_flat_equal(readers.read_extxyz(path, targets), readers.read_extxyz(path, targets, fast=False))
    # A layout the fast path does not handle (per-atom forces) goes through ase, with the same result.
    with_forces = structures[2].copy()
    with_forces.calc = SinglePointCalculator(with_forces, energy=1.0, forces=np.ones((len(with_forces), 3)))
    path = write_extxyz(tmp_path / "f.extxyz", [a.copy() for a in structures[:2]] + [with_forces])
    assert "forces" in path.read_text()
    assert readers._fast_extxyz(readers._read_text(path), path, None) is None
    ds = load_dataset(path, targets=["gap"], cache_dir=False, progress=False)
    for k in range(3):
        assert_same_structure(ds[k], structures[k], atol=1e-8)
