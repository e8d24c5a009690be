import time

import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT
from torch.utils.data import Subset
from torch_geometric.loader import DataLoader

import fpcore
from fpcore.data import StructureDataset, builtin_dataset, load_dataset, random_split

from .helpers import make_structures, write_extxyz


@pytest.fixture(scope="module")
def builtin_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("builtin-cache")


@pytest.fixture(scope="module")
def pretrain(builtin_cache):
    t0 = time.perf_counter()
    ds = builtin_dataset("pretrain", cache_dir=builtin_cache)
    return ds, time.perf_counter() - t0


@pytest.fixture(scope="module")
def finetune(builtin_cache):
    t0 = time.perf_counter()
    ds = builtin_dataset("finetune", cache_dir=builtin_cache)
    return ds, time.perf_counter() - t0


def test_dataloader_batches(tmp_path):
    structures = make_structures(7)
    path = write_extxyz(tmp_path / "s.extxyz", structures)
    ds = load_dataset(path, targets=["gap", "e_form"], cache_dir=tmp_path / "c", progress=False)
    assert isinstance(ds, StructureDataset) and len(ds) == 7
    batches = list(DataLoader(ds, batch_size=3, shuffle=False))
    assert [b.num_graphs for b in batches] == [3, 3, 1]
    b = batches[0]
    n = sum(len(a) for a in structures[:3])
    assert b.pos.shape == (n, 3) and b.pos.dtype == torch.float64 and b.z.shape == (n,)
    assert b.cell.shape == (3, 3, 3) and b.pbc.shape == (3, 3) and b.pbc.dtype == torch.bool
    assert b.y.shape == (3, 2) and b.y.dtype == torch.float32
    assert b.natoms.tolist() == [len(a) for a in structures[:3]] and b.idx.tolist() == [0, 1, 2]
    assert b.ptr.tolist() == [0] + np.cumsum([len(a) for a in structures[:3]]).tolist()
    assert torch.equal(b.batch, torch.repeat_interleave(torch.arange(3), b.natoms))
    np.testing.assert_array_equal(b.pbc.numpy(), [a.pbc for a in structures[:3]])
    # The batch is what fpcore's periodic neighbor list takes.
    nl = fpcore.neighbors.compute(b.pos, b.cell, b.pbc, b.batch, 3.0)
    ref = fpcore.neighbor_list(structures[:3], 3.0)
    assert nl.i.shape == ref.i.shape and torch.allclose(nl.distances.sort().values, ref.distances.sort().values)


def test_indexing(tmp_path):
    structures = make_structures(4)
    ds = load_dataset(write_extxyz(tmp_path / "s.xyz", structures), targets=["gap"], cache_dir=False, progress=False)
    assert ds[-1].idx == 3 and ds[torch.tensor(2)].idx == 2 and ds[np.int64(1)].idx == 1
    with pytest.raises(IndexError, match="index 4 out of range for a dataset of 4"):
        ds[4]
    with pytest.raises(TypeError, match="must be an int"):
        ds[1.0]
    sub = Subset(ds, random_split(len(ds), seed=0)["train"].tolist())
    assert len(sub) == 2 and sub[0].idx in range(4)
    atoms = ds.atoms(2)
    assert atoms.info["id"] == "s-2" and abs(atoms.info["gap"] - structures[2].info["gap"]) < 1e-12
    assert ds.elements == sorted(set(np.concatenate([a.numbers for a in structures]).tolist()))
    assert ds.natoms.tolist() == [len(a) for a in structures]
    assert "4 structures" in repr(ds)


def test_builtin_pretrain(pretrain, builtin_cache):
    ds, seconds = pretrain
    assert seconds < 30
    assert len(ds) == 480 and ds.target_names == [] and ds.labels is None
    assert len(ds.elements) >= 40
    assert int(ds.natoms.max()) <= 64 and int(ds.natoms.min()) >= 1
    assert ds.ids[0] == "builtin-pretrain-0000"
    # Physically sensible: no atoms closer than 0.5 Angstrom, every structure has neighbours within 6 Angstrom (Cs-Cs is 5.2).
    batch = next(iter(DataLoader(ds, batch_size=len(ds))))
    nl = fpcore.neighbors.compute(batch.pos, batch.cell, batch.pbc, batch.batch, 6.0)
    assert float(nl.distances.min()) > 0.5
    assert torch.bincount(batch.batch[nl.i], minlength=len(ds)).min() > 0
    again = builtin_dataset("pretrain", cache_dir=builtin_cache)
    assert again.cache_entry == ds.cache_entry
    assert load_dataset("builtin:pretrain", cache_dir=builtin_cache, progress=False).cache_entry == ds.cache_entry


def test_builtin_finetune_labels_are_emt_energies(finetune):
    ds, seconds = finetune
    assert seconds < 30
    assert len(ds) == 320 and ds.target_names == ["energy_per_atom"]
    assert set(ds.elements) <= {13, 29, 47, 79, 28, 46, 78} and len(ds.elements) == 7
    labels = ds.labels[:, 0]
    assert torch.isfinite(labels).all() and float(labels.std()) > 0.01
    for i in (0, 17, 319):
        atoms = ds.atoms(i)
        atoms.calc = EMT()
        assert abs(atoms.get_potential_energy() / len(atoms) - float(labels[i])) < 1e-9
        assert abs(float(ds[i].y) - float(labels[i])) < 1e-6


def test_builtin_is_deterministic_and_selects_targets(finetune, builtin_cache):
    ds, _ = finetune
    fresh = builtin_dataset("finetune", targets=["energy", "energy_per_atom"], cache_dir=False)
    assert fresh.ids == ds.ids
    torch.testing.assert_close(fresh.labels[:, 1], ds.labels[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(fresh.labels[:, 0] / fresh.natoms, fresh.labels[:, 1], rtol=1e-12, atol=0)
    for i in (0, 100):
        torch.testing.assert_close(fresh[i].pos, ds[i].pos, rtol=0, atol=0)
    with pytest.raises(
        KeyError, match=r"'gap' is not a label of builtin:finetune; available: \['energy_per_atom', 'energy'\]"
    ):
        builtin_dataset("finetune", targets=["gap"], cache_dir=False)
