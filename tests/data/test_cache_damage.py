"""A damaged cache entry is detected before use and rebuilt; killed conversions leave nothing behind for long;
two processes converting the same input do it once, safely."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import fpcore.data as fd
from fpcore.data import cache, load_dataset, readers

from ..process import fpcore_env
from .helpers import assert_same_structure, make_structures, write_extxyz

TARGETS = ["gap", "e_form"]


@pytest.fixture
def count_reads(monkeypatch):
    calls = []
    original = readers.READERS["extxyz"]

    def counting(path, targets):
        calls.append(path)
        return original(path, targets)

    monkeypatch.setitem(fd.READERS, "extxyz", counting)
    return calls


def _save(entry, name, array):
    np.save(entry / f"{name}.npy", array, allow_pickle=True)


def _edit_json(entry, name, edit):
    path = entry / name
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _truncate(entry, name):
    path = entry / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(entry):
    for p in entry.iterdir():
        p.unlink()


# (name, damage(entry, arrays), fragment of the warning naming the problem)
DAMAGE = [
    ("y removed", lambda e, a: (e / "y.npy").unlink(), "y.npy is missing"),
    ("numbers removed", lambda e, a: (e / "numbers.npy").unlink(), "numbers.npy is missing"),
    ("positions removed", lambda e, a: (e / "positions.npy").unlink(), "positions.npy is missing"),
    ("offsets removed", lambda e, a: (e / "offsets.npy").unlink(), "offsets.npy is missing"),
    ("cells removed", lambda e, a: (e / "cells.npy").unlink(), "cells.npy is missing"),
    ("pbc removed", lambda e, a: (e / "pbc.npy").unlink(), "pbc.npy is missing"),
    ("ids removed", lambda e, a: (e / "ids.json").unlink(), "ids.json is missing"),
    ("meta removed", lambda e, a: (e / "meta.json").unlink(), "meta.json is missing"),
    ("entry emptied", lambda e, a: _empty(e), "meta.json is missing"),
    (
        "positions shorter but valid",
        lambda e, a: _save(e, "positions", a["positions"][:-1]),
        "positions.npy holds float64 [",
    ),
    ("positions truncated", lambda e, a: _truncate(e, "positions.npy"), "positions.npy is unreadable"),
    ("positions as objects", lambda e, a: _save(e, "positions", a["positions"].astype(object)), "positions.npy"),
    ("numbers as int64", lambda e, a: _save(e, "numbers", a["numbers"].astype(np.int64)), "numbers.npy holds int64"),
    ("cells flattened", lambda e, a: _save(e, "cells", a["cells"].reshape(-1, 9)), "cells.npy holds float64"),
    ("y with one target", lambda e, a: _save(e, "y", a["y"][:, :1]), "y.npy holds float64"),
    ("pbc as float", lambda e, a: _save(e, "pbc", a["pbc"].astype(np.float64)), "pbc.npy holds float64"),
    (
        "offsets not partitioning",
        lambda e, a: _save(e, "offsets", a["offsets"] - np.arange(len(a["offsets"]))),
        "offsets.npy does not partition",
    ),
    ("ids too short", lambda e, a: _edit_json(e, "ids.json", lambda ids: ids[:-1]), "ids.json does not hold"),
    ("ids not json", lambda e, a: (e / "ids.json").write_text("[1, 2"), "ids.json is unreadable"),
    ("meta not json", lambda e, a: (e / "meta.json").write_text("{"), "meta.json is unreadable"),
    (
        "meta with more atoms",
        lambda e, a: _edit_json(e, "meta.json", lambda m: {**m, "n_atoms": m["n_atoms"] + 1}),
        "numbers.npy holds uint8",
    ),
    (
        "meta without targets",
        lambda e, a: _edit_json(e, "meta.json", lambda m: {**m, "target_names": None}),
        "target_names=None",
    ),
    (
        "meta of another format",
        lambda e, a: _edit_json(e, "meta.json", lambda m: {**m, "cache_format": 0}),
        "cache_format 0",
    ),
]


@pytest.mark.parametrize("damage, fragment", [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_damaged_entry_is_detected_and_rebuilt(tmp_path, count_reads, damage, fragment):
    structures = make_structures(6)
    path = write_extxyz(tmp_path / "s.extxyz", structures)
    c = tmp_path / "cache"
    first = load_dataset(path, targets=TARGETS, cache_dir=c, progress=False)
    entry = first.cache_entry
    arrays = {name: np.load(entry / f"{name}.npy") for name in cache.ARRAYS}
    del first  # its memory maps would keep the damaged files' old contents alive
    damage(entry, arrays)
    with pytest.warns(UserWarning, match=r"cache entry .* is damaged \(.*" + re.escape(fragment)) as record:
        rebuilt = load_dataset(path, targets=TARGETS, cache_dir=c, progress=False)
    assert len([w for w in record if "damaged" in str(w.message)]) == 1
    assert "\n" not in str(record[0].message)
    assert len(count_reads) == 2 and rebuilt.cache_entry == entry
    assert rebuilt.ids == [a.info["id"] for a in structures]
    for k, atoms in enumerate(structures):
        assert_same_structure(rebuilt[k], atoms, atol=1e-8)
    expected = [[a.info[t] for t in TARGETS] for a in structures]
    np.testing.assert_allclose(rebuilt.labels.numpy(), expected, rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_dataset(path, targets=TARGETS, cache_dir=c, progress=False)
    assert len(count_reads) == 2 and again.ids == rebuilt.ids
    assert sorted(p.name for p in (c / "datasets").iterdir()) == [entry.name]


def test_load_names_nothing_for_an_absent_entry(tmp_path):
    assert cache.load(tmp_path / "nothing-here") is None


def _tmp_folders(c):
    return sorted(p.name for p in (c / "datasets").iterdir() if cache.TMP_MARKER in p.name)


KILLED_CONVERSION = """
import os, signal, sys
import numpy as np
from fpcore.data import cache, load_dataset

real_save, calls = np.save, []

def save_then_die(file, arr, **kw):
    calls.append(file)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(file, arr, **kw)

cache.np.save = save_then_die
load_dataset(sys.argv[1], targets=["gap"], cache_dir=sys.argv[2], progress=False)
"""


def test_killed_conversion_leftover_is_removed(tmp_path, count_reads):
    path = write_extxyz(tmp_path / "s.extxyz", make_structures(4))
    c = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_CONVERSION, str(path), str(c)], env=fpcore_env(), capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    [left] = _tmp_folders(c)
    assert len(list((c / "datasets" / left).glob("*.npy"))) == 2
    ds = load_dataset(path, targets=["gap"], cache_dir=c, progress=False)
    assert _tmp_folders(c) == [] and len(ds) == 4 and len(count_reads) == 1
    assert sorted(p.name for p in (c / "datasets").iterdir()) == [ds.cache_entry.name]
    assert list((c / "locks").iterdir()) == []  # a released lock leaves no file


def test_live_conversion_tmp_is_kept_until_its_lock_is_released(tmp_path):
    c = tmp_path / "cache"
    other_key = "ab" * 32
    live = c / "datasets" / f".{other_key}{cache.TMP_MARKER}{os.getpid()}-0000"
    live.mkdir(parents=True)
    lock = cache.conversion_lock(c, other_key)
    assert lock.acquire(blocking=False)
    try:
        path = write_extxyz(tmp_path / "s.extxyz", make_structures(3))
        load_dataset(path, cache_dir=c, progress=False)  # converts: cleans up others' leftovers
        load_dataset(path, cache_dir=c, progress=False)  # cache hit: cleans up too
        assert live.is_dir()
    finally:
        lock.release()
    load_dataset(path, cache_dir=c, progress=False)
    assert not live.exists()


def test_old_style_tmp_folders_go_by_age(tmp_path):
    c = tmp_path / "cache"
    # Made by mkdtemp in fpcore before conversions took a lock: no key to lock, no pid; only the age tells.
    old, young = (c / "datasets" / f".{'cd' * 8}{cache.TMP_MARKER}{tag}" for tag in ("k3j_x9qa", "p0u7zzq1"))
    for folder in (old, young):
        folder.mkdir(parents=True)
        (folder / "numbers.npy").write_bytes(b"")
    stamp = time.time() - 2 * cache.STALE_TMP_AGE_S
    os.utime(old, (stamp, stamp))
    assert cache.remove_stale_tmp(c) == [old]
    assert young.is_dir() and not old.exists()


CONCURRENT_CONVERSION = """
import pathlib, sys, time
import fpcore.data as fd
from fpcore.data import load_dataset, readers

source, cache_dir, work, me = sys.argv[1:]
work = pathlib.Path(work)
original = readers.READERS["extxyz"]

def slow_read(path, targets):
    with open(work / "reads", "a") as fh:
        fh.write(me + "\\n")
    time.sleep(1.5)  # long enough that the other process asks for the same entry meanwhile
    return original(path, targets)

fd.READERS["extxyz"] = slow_read
(work / f"ready-{me}").touch()
while not all((work / f"ready-{k}").exists() for k in "ab"):
    time.sleep(0.01)
ds = load_dataset(source, targets=["gap"], cache_dir=cache_dir, progress=True)
print(ds.content_hash(), ds.cache_entry)
"""


def test_concurrent_conversion_of_the_same_file(tmp_path):
    path = write_extxyz(tmp_path / "s.extxyz", make_structures(8))
    c = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_CONVERSION, str(path), str(c), str(tmp_path), me],
            env=fpcore_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in "ab"
    ]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    # Read once: the second process waited for the first one's entry instead of converting again.
    assert len((tmp_path / "reads").read_text().split()) == 1
    stderr = "".join(err for _, err in results)
    assert "waiting for another process converting it" in stderr and "from cache" in stderr
    assert results[0][0] == results[1][0]
    content_hash, entry = results[0][0].split()
    assert sorted(p.name for p in (c / "datasets").iterdir()) == [os.path.basename(entry)]
    assert list((c / "locks").iterdir()) == []
    assert load_dataset(path, targets=["gap"], cache_dir=c, progress=False).content_hash() == content_hash
