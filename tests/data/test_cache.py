import os
import pickle

import numpy as np
import pytest

import fpcore.data as fd
from fpcore.data import cache, load_dataset, readers

from .helpers import assert_same_structure, make_structures, write_extxyz


@pytest.fixture
def count_reads(monkeypatch):
    calls = []
    original = readers.READERS["extxyz"]

    def counting(path, targets):
        calls.append(path)
        return original(path, targets)

    monkeypatch.setitem(fd.READERS, "extxyz", counting)
    return calls


def _entries(cache_dir):
    return sorted(p.name for p in (cache_dir / "datasets").iterdir())


def test_hit_miss_and_parameters_in_key(tmp_path, count_reads):
    path = write_extxyz(tmp_path / "s.extxyz.gz", make_structures(5))
    c = tmp_path / "cache"
    first = load_dataset(path, targets=["gap"], cache_dir=c, progress=False)
    second = load_dataset(path, targets=["gap"], cache_dir=c, progress=False)
    assert len(count_reads) == 1 and len(_entries(c)) == 1
    assert second.ids == first.ids and second.cache_entry == first.cache_entry
    np.testing.assert_array_equal(second.labels.numpy(), first.labels.numpy())
    # Different targets produce different output: a different entry, read again.
    load_dataset(path, targets=["e_form"], cache_dir=c, progress=False)
    load_dataset(path, cache_dir=c, progress=False)
    assert len(count_reads) == 3 and len(_entries(c)) == 3


def test_changed_file_is_re_read(tmp_path, count_reads):
    path = tmp_path / "s.extxyz"
    write_extxyz(path, make_structures(5, seed=1))
    c = tmp_path / "cache"
    old = load_dataset(path, targets=["gap"], cache_dir=c, progress=False)
    stat = path.stat()
    new_structures = make_structures(5, seed=2)
    write_extxyz(path, new_structures)
    # Same size and mtime as before would fool a size+mtime key; the content hash still changes.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    new = load_dataset(path, targets=["gap"], cache_dir=c, progress=False)
    assert len(count_reads) == 2 and new.cache_entry != old.cache_entry
    for k, atoms in enumerate(new_structures):
        assert_same_structure(new[k], atoms, atol=1e-8)
    np.testing.assert_allclose(new.labels[:, 0].numpy(), [a.info["gap"] for a in new_structures], rtol=1e-12)


def test_cached_arrays_are_memory_mapped_and_dataset_pickles_by_path(tmp_path):
    structures = make_structures(6)
    path = write_extxyz(tmp_path / "s.extxyz", structures)
    ds = load_dataset(path, targets=["gap"], cache_dir=tmp_path / "cache", progress=False)
    assert isinstance(ds._flat.positions, np.memmap) and isinstance(ds._flat.numbers, np.memmap)
    blob = pickle.dumps(ds)
    assert len(blob) < 2000 + 200 * len(ds)  # no arrays inside
    clone = pickle.loads(blob)
    for k, atoms in enumerate(structures):
        assert_same_structure(clone[k], atoms, atol=1e-8)
    assert clone.ids == ds.ids and clone.target_names == ["gap"]


def test_default_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FPCORE_CACHE", str(tmp_path / "envcache"))
    assert cache.default_cache_dir() == tmp_path / "envcache"
    path = write_extxyz(tmp_path / "s.extxyz", make_structures(2))
    ds = load_dataset(path, progress=False)
    assert ds.cache_entry.parent == tmp_path / "envcache" / "datasets"
    monkeypatch.delenv("FPCORE_CACHE")
    assert cache.default_cache_dir() == cache.pathlib.Path.home() / ".cache" / "fpcore"


def test_cache_disabled_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("FPCORE_CACHE", str(tmp_path / "envcache"))
    path = write_extxyz(tmp_path / "s.extxyz", make_structures(2))
    ds = load_dataset(path, cache_dir=False, progress=False)
    assert len(ds) == 2 and ds.cache_entry is None and not (tmp_path / "envcache").exists()


def test_atomic_write_failure_leaves_no_entry(tmp_path, monkeypatch, count_reads):
    path = write_extxyz(tmp_path / "s.extxyz", make_structures(3))
    c = tmp_path / "cache"
    real_save = np.save
    written = []

    def failing_save(file, arr, **kw):
        written.append(file)
        if len(written) == 3:
            raise OSError("disk full")
        return real_save(file, arr, **kw)

    monkeypatch.setattr(cache.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        load_dataset(path, cache_dir=c, progress=False)
    assert list((c / "datasets").iterdir()) == []  # neither a partial entry nor the temp folder is left
    monkeypatch.setattr(cache.np, "save", real_save)
    ds = load_dataset(path, cache_dir=c, progress=False)
    assert len(ds) == 3 and len(count_reads) == 2 and len(_entries(c)) == 1


def test_concurrent_writer_of_same_key_keeps_the_existing_entry(tmp_path):
    path = write_extxyz(tmp_path / "s.extxyz", make_structures(3))
    c = tmp_path / "cache"
    ds = load_dataset(path, cache_dir=c, progress=False)
    flat = cache.load(ds.cache_entry)
    # A second process finishing the same conversion later: its rename fails, the entry stays valid.
    entry = cache.save(flat, c, ds.cache_entry.name, {"x": 1})
    assert entry == ds.cache_entry and _entries(c) == [entry.name]
    assert cache.load(entry).ids == ds.ids
