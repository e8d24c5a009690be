"""fpcore._io: atomic writes leave the previous file or the complete new one, never a partial one or a tmp file."""

import json
import os

import numpy as np
import pytest
import torch

from fpcore import _io

WRITERS = [
    ("text", lambda p: _io.atomic_write_text(p, "héllo\n"), lambda p: p.read_text(encoding="utf-8") == "héllo\n"),
    ("bytes", lambda p: _io.atomic_write_bytes(p, b"\x00\x01"), lambda p: p.read_bytes() == b"\x00\x01"),
    (
        "json",
        lambda p: _io.atomic_write_json(p, {"a": np.float64(1.5)}),
        lambda p: json.loads(p.read_text()) == {"a": 1.5},
    ),
    (
        "torch",
        lambda p: _io.atomic_torch_save(p, {"t": torch.arange(3)}),
        lambda p: torch.equal(torch.load(p, weights_only=True)["t"], torch.arange(3)),
    ),
    ("numpy", lambda p: _io.atomic_np_save(p, np.arange(4.0)), lambda p: np.array_equal(np.load(p), np.arange(4.0))),
]


def leftovers(folder):
    return [p.name for p in folder.iterdir() if _io.TMP_MARKER in p.name]


@pytest.mark.parametrize("name,write,check", WRITERS, ids=[w[0] for w in WRITERS])
def test_writes_replace_and_leave_no_tmp(tmp_path, name, write, check):
    target = tmp_path / "sub" / f"out.{name}"
    write(target)  # creates the parent folder
    assert check(target)
    target.write_bytes(b"old")
    write(target)
    assert check(target) and leftovers(target.parent) == []


def test_failure_mid_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("previous")
    with pytest.raises(RuntimeError, match="boom"):
        with _io.atomic_open(target, "w") as fh:
            fh.write("partial")
            raise RuntimeError("boom")
    assert target.read_text() == "previous" and leftovers(tmp_path) == []


def test_unserialisable_json_keeps_the_previous_file(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("{}")
    with pytest.raises(TypeError):
        _io.atomic_write_json(target, {"x": object()})
    assert target.read_text() == "{}" and leftovers(tmp_path) == []


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = _io.atomic_write_text(tmp_path / "p.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_savefig_keeps_the_format_of_the_suffix(tmp_path):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig = plt.figure()
    try:
        path = _io.atomic_savefig(fig, tmp_path / "plot.png", dpi=20)
    finally:
        plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and leftovers(tmp_path) == []


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with _io.atomic_open(tmp_path / "x", "a"):
            pass


@pytest.mark.parametrize(
    "name,pid",
    [(".a.json.tmp-123-abcd", 123), (".0123456789abcdef.tmp-77-x1y2", 77), ("a.json", None), (".a.tmp-zz", None)],
)
def test_tmp_owner_pid(name, pid):
    assert _io.tmp_owner_pid(name) == pid


def test_pid_alive():
    assert _io.pid_alive(os.getpid())
    assert not _io.pid_alive(0) and not _io.pid_alive(-5)
    assert not _io.pid_alive(2**22 + 12345)  # above the default pid_max
