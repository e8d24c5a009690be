"""The bundled default data (fpcore.data.builtin): size, determinism, physical structures, EMT labels, cache key."""

import time

import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT
from torch_geometric.loader import DataLoader

import fpcore
from fpcore.data import builtin as B
from fpcore.data import builtin_dataset, load_dataset, random_split, structure_elements

EMT_Z = {13, 29, 47, 79, 28, 46, 78}


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


def _neighbour_counts(ds, cutoff=5.0):
    batch = next(iter(DataLoader(ds, batch_size=len(ds))))
    nl = fpcore.neighbors.compute(batch.pos, batch.cell, batch.pbc, batch.batch, cutoff)
    return nl, torch.bincount(nl.i, minlength=batch.num_nodes)


def _volumes_per_atom(ds):
    return torch.tensor([abs(np.linalg.det(ds.atoms(k).cell.array)) / len(ds.atoms(k)) for k in range(len(ds))])


def test_pretrain_size_elements_and_physical_densities(pretrain, builtin_cache):
    ds, seconds = pretrain
    assert seconds < 60
    assert len(ds) == 3000 and ds.target_names == [] and ds.labels is None
    assert set(ds.elements) == EMT_Z
    assert int(ds.natoms.max()) <= 8 and int(ds.natoms.min()) >= 1
    assert ds.ids[0] == "builtin-pretrain-0000"
    # No unphysical densities (the old set had H at 0.2 A^3/atom with 2,500 neighbours per atom within 5 A).
    vol = _volumes_per_atom(ds)
    assert float(vol.min()) > 8.0 and float(vol.max()) < 26.0
    nl, counts = _neighbour_counts(ds)
    assert float(nl.distances.min()) > 1.8
    assert int(counts.min()) > 0 and int(counts.max()) < 80
    # Mixed chemistry: unaries and alloys with 2-3 species.
    n_species = torch.tensor([len(e) for e in structure_elements(ds)])
    assert {1, 2, 3} <= set(n_species.tolist())
    again = builtin_dataset("pretrain", cache_dir=builtin_cache)
    assert again.cache_entry == ds.cache_entry
    assert load_dataset("builtin:pretrain", cache_dir=builtin_cache, progress=False).cache_entry == ds.cache_entry


def test_finetune_labels_are_finite_emt_energies(finetune):
    ds, seconds = finetune
    assert seconds < 60
    assert len(ds) == 500 and ds.target_names == ["energy_per_atom"]
    assert set(ds.elements) == EMT_Z
    labels = ds.labels[:, 0]
    assert torch.isfinite(labels).all() and 0.05 < float(labels.std()) < 1.0
    for i in (0, 17, 499):
        atoms = ds.atoms(i)
        atoms.calc = EMT()
        assert abs(atoms.get_potential_energy() / len(atoms) - float(labels[i])) < 1e-9
        assert abs(float(ds[i].y) - float(labels[i])) < 1e-6
    vol = _volumes_per_atom(ds)
    assert float(vol.min()) > 8.0 and float(vol.max()) < 26.0


def test_finetune_is_another_draw_than_pretrain(pretrain, finetune):
    pre, fine = pretrain[0], finetune[0]
    fingerprints = {tuple(np.round(pre.atoms(k).positions.ravel(), 6)) for k in range(len(pre))}
    assert not any(tuple(np.round(fine.atoms(k).positions.ravel(), 6)) in fingerprints for k in range(len(fine)))


def test_generation_is_deterministic_and_size_is_a_prefix(finetune, builtin_cache):
    ds, _ = finetune
    fresh = builtin_dataset("finetune", targets=["energy", "energy_per_atom"], cache_dir=False, size=120)
    assert fresh.ids == ds.ids[:120]
    torch.testing.assert_close(fresh.labels[:, 1], ds.labels[:120, 0], rtol=0, atol=0)
    torch.testing.assert_close(fresh.labels[:, 0] / fresh.natoms, fresh.labels[:, 1], rtol=1e-12, atol=0)
    for i in (0, 100):
        torch.testing.assert_close(fresh[i].pos, ds[i].pos, rtol=0, atol=0)
    with pytest.raises(
        KeyError, match=r"'gap' is not a label of builtin:finetune; available: \['energy_per_atom', 'energy'\]"
    ):
        builtin_dataset("finetune", targets=["gap"], cache_dir=False)
    with pytest.raises(ValueError, match="size must be a positive integer, got 0"):
        builtin_dataset("finetune", size=0, cache_dir=False)


def test_cache_key_holds_size_and_version(builtin_cache, monkeypatch):
    small = builtin_dataset("pretrain", size=50, cache_dir=builtin_cache)
    full = builtin_dataset("pretrain", cache_dir=builtin_cache)
    assert len(small) == 50 and small.cache_entry != full.cache_entry
    monkeypatch.setattr(B, "BUILTIN_VERSION", B.BUILTIN_VERSION + 1)
    bumped = builtin_dataset("pretrain", size=50, cache_dir=builtin_cache)
    assert bumped.cache_entry != small.cache_entry


def test_default_finetune_split_is_disjoint_and_covers_elements(finetune):
    ds, _ = finetune
    from fpcore.training import resolve_config

    fractions = resolve_config("finetune", None, [])["data"]["split"]
    split = random_split(len(ds), fractions, seed=111, elements=structure_elements(ds))
    parts = [set(split[k].tolist()) for k in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == len(ds) and len(set().union(*parts)) == len(ds)
    assert len(parts[2]) >= 100  # a held-out test large enough for a few-percent comparison
    elements = structure_elements(ds)
    train_z = set().union(*(elements[i] for i in parts[0]))
    assert all(elements[i] <= train_z for i in parts[1] | parts[2])
