"""fpcore-train under bad input: one line `fpcore-train: error: ...` naming the problem, exit status 2, no traceback.

Each case runs the real command in a subprocess (what a user sees); --debug / FPCORE_DEBUG=1 bring the traceback back.
"""

import gzip
import os
import subprocess
import sys

import pytest

from fpcore.cli import main

from .process import fpcore_env
from .training.tiny_data import cli_sets, structures, write_extxyz


def sets(*extra):
    return cli_sets(1, *extra)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli_errors")
    good = write_extxyz(tmp / "good.extxyz", structures(8))
    write_extxyz(tmp / "bigger.extxyz", structures(10))
    raw = gzip.compress(good.read_bytes())
    (tmp / "truncated.extxyz.gz").write_bytes(raw[: len(raw) // 2])
    lacking = structures(8)
    lacking[5].info.pop("energy_per_atom")
    lacking[5].info["id"] = "mp-5"
    write_extxyz(tmp / "lacking.extxyz", lacking)
    unlabelled = structures(8)
    for atoms in unlabelled:
        atoms.info.pop("energy_per_atom")
    write_extxyz(tmp / "unlabelled.extxyz", unlabelled)
    flat_cell = structures(8)
    flat_cell[3].cell = [[2.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 3.0]]
    write_extxyz(tmp / "flat_cell.extxyz", flat_cell)
    (tmp / "a_file").write_text("not a folder, not a checkpoint\n")
    os.environ.setdefault("FPCORE_CACHE", str(tmp / "cache"))
    assert (
        main(["train", "--run-dir", str(tmp / "run"), *sets(f"data.source={good}", f"data.cache_dir={tmp / 'c'}")]) == 0
    )
    return tmp


def fpcore_train(tmp, *args, env_extra=None):
    env = fpcore_env(FPCORE_CACHE=str(tmp / "cache"), **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "fpcore.cli", *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=300
    )


def train(source, *extra):
    return ["train", "--run-dir", "new_run", *sets(f"data.source={source}", *extra)]


# (case, arguments, what the one line must contain)
CASES = [
    ("truncated gzip", train("truncated.extxyz.gz"), "truncated.extxyz.gz is truncated"),
    ("structure lacking the target", train("lacking.extxyz"), "'energy_per_atom' is missing from structure 'mp-5'"),
    ("unknown target", train("good.extxyz", "data.targets=[band_gap]"), "target 'band_gap' is missing"),
    ("degenerate cell", train("flat_cell.extxyz"), "has a degenerate cell"),
    ("missing data file", train("nope.extxyz"), "'nope.extxyz' does not exist"),
    ("device tpu", train("good.extxyz", "run.device=tpu"), "'run.device' must be auto, cpu, cuda or cuda:N"),
    ("threads -2", train("good.extxyz", "run.threads=-2"), "'run.threads' must be an integer >= 1"),
    ("lr inf", train("good.extxyz", "optim.lr=inf"), "'optim.lr' must be a finite number > 0, got inf"),
    ("lr nan", train("good.extxyz", "optim.lr=.nan"), "'optim.lr' must be a finite number > 0, got nan"),
    ("zero steps", train("good.extxyz", "optim.max_steps_per_epoch=0"), "'optim.max_steps_per_epoch' must be"),
    ("negative clip", train("good.extxyz", "optim.grad_clip=-1"), "'optim.grad_clip' must be a finite number > 0"),
    ("unknown key", train("good.extxyz", "optim.learning_rate=1"), "unknown config key 'optim.learning_rate'"),
    ("run folder is a file", ["train", "--run-dir", "a_file", *sets("data.source=good.extxyz")], "not a folder"),
    (
        "run folder under a file",
        ["train", "--run-dir", "a_file/run", *sets("data.source=good.extxyz")],
        "a_file is a file, not a folder",
    ),
    ("existing run folder", ["train", "--run-dir", "run", *sets("data.source=good.extxyz")], "already exists"),
    ("resume without run", ["train", "--run-dir", "nothing", "--resume"], "nothing/last.pt"),
    ("predict -o unwritable", ["predict", "run/best.pt", "good.extxyz", "-o", "a_file/p.csv"], "cannot write a_file/p"),
    ("predict -o a folder", ["predict", "run/best.pt", "good.extxyz", "-o", "run"], "cannot write run: it is a folder"),
    ("evaluate unlabelled", ["evaluate", "run/best.pt", "unlabelled.extxyz"], "'energy_per_atom' is missing"),
    ("evaluate device tpu", ["evaluate", "run/best.pt", "good.extxyz", "--device", "tpu"], "unknown device 'tpu'"),
    ("not a checkpoint", ["evaluate", "a_file", "good.extxyz"], "a_file is not a readable fpcore-train checkpoint"),
    ("missing checkpoint", ["predict", "nope.pt", "good.extxyz", "-o", "p.csv"], "checkpoint not found: nope.pt"),
    (
        "resume on other data",
        ["train", "--run-dir", "run", "--resume", "--set", "data.source=bigger.extxyz"],
        "the data is not what run/last.pt was trained on: it had 8 structures",
    ),
]


# A few in a real subprocess (what a user sees, tracebacks included); the rest in-process, which is much faster.
IN_SUBPROCESS = {"truncated gzip", "degenerate cell", "run folder under a file", "predict -o unwritable"}


def in_process(tmp, args, monkeypatch, capsys):
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("FPCORE_CACHE", str(tmp / "cache"))
    monkeypatch.delenv("FPCORE_DEBUG", raising=False)
    capsys.readouterr()
    try:
        rc = main(list(args))
    except SystemExit as exit_:  # argparse errors
        rc = exit_.code
    return subprocess.CompletedProcess(args, rc, "", capsys.readouterr().err)


@pytest.mark.parametrize("case,args,expected", CASES, ids=[c[0] for c in CASES])
def test_expected_failure_is_one_line_and_exit_2(files, case, args, expected, monkeypatch, capsys):
    result = fpcore_train(files, *args) if case in IN_SUBPROCESS else in_process(files, args, monkeypatch, capsys)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and "fpcore-train" in lines[0] and "error:" in lines[0], result.stderr
    assert expected in lines[0]
    assert not (files / "new_run").exists(), "a run that failed before starting leaves no folder"
    assert not (files / "p.csv").exists()


def test_predict_to_an_unwritable_path_fails_before_reading_the_data(files, monkeypatch):
    import fpcore.training.inference as inference

    monkeypatch.setattr(inference, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(OSError, match="cannot write"):
        inference.predict(files / "run" / "best.pt", files / "good.extxyz", files / "a_file" / "p.csv")


@pytest.mark.parametrize("how", ["flag after", "environment"])
def test_debug_shows_the_traceback(files, how):
    args = train("good.extxyz", "run.device=tpu")
    env = None
    if how == "flag after":
        args = [*args, "--debug"]
    else:
        env = {"FPCORE_DEBUG": "1"}
    result = fpcore_train(files, *args, env_extra=env)
    assert result.returncode == 1 and "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_unexpected_error_is_one_line_with_the_hint(monkeypatch, capsys):
    import fpcore.cli as cli

    def broken(args):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(cli, "_evaluate", broken)
    assert cli.main(["evaluate", "x.pt", "y.extxyz"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fpcore-train: internal error: ZeroDivisionError: simulated bug") and "--debug" in err
    assert len(err.splitlines()) == 1
