import numpy as np
import pytest
import torch
from torch.utils.data import Subset
from torch_geometric.loader import DataLoader

import fpcore
from fpcore.data import StructureDataset, load_dataset, random_split

from .helpers import make_structures, write_extxyz


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
