import csv
import json
import os
import pathlib
import subprocess
import sys

import torch

import fpcore
from fpcore.training import load_checkpoint

from .tiny_data import MODEL_SETS, TOY_FINGERPRINTS, structures, write_extxyz

ROOT = pathlib.Path(__file__).resolve().parents[2]


def torchrun(tmp_path, args):
    # The workers must import the same fpcore as this process: the installed package in CI, python/ in a dev tree.
    package_parent = pathlib.Path(fpcore.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(package_parent), str(ROOT)]), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        str(pathlib.Path(__file__).with_name("ddp_script.py")),
        str(ROOT),
        str(tmp_path),
        "-",
        *args,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_two_process_gloo_pretrain_and_train(tmp_path):
    data = write_extxyz(tmp_path / "tiny.extxyz", structures(12))
    sets = []
    for s in MODEL_SETS + ["optim.epochs=2", "data.split=[0.5, 0.25, 0.25]"]:
        sets += ["--set", s]
    out = torchrun(
        tmp_path,
        [
            "pretrain",
            "--run-dir",
            str(tmp_path / "pre"),
            "--set",
            f"data.source={data}",
            "--set",
            TOY_FINGERPRINTS,
            *sets,
        ],
    )
    # Only rank 0 reports; one epoch line per epoch, not one per process.
    assert out.count("epoch    1") == 1, out
    pre = load_checkpoint(tmp_path / "pre" / "last.pt", kind="pretrain")
    assert pre["epoch"] == 2 and (tmp_path / "pre" / "COMPLETED").exists()
    # The scaler merged both ranks' shards: it counted every atom of the training split exactly once.
    split = json.loads((tmp_path / "pre" / "split.json").read_text())
    atoms = structures(12)
    assert int(pre["objectives"]["fingerprints"]["state"]["scaler"]["count"]) == sum(
        len(atoms[i]) for i in split["train"]
    )

    torchrun(
        tmp_path,
        [
            "train",
            "--run-dir",
            str(tmp_path / "ft"),
            "--set",
            f"data.source={data}",
            "--set",
            "data.targets=[energy_per_atom]",
            *sets,
            "--set",
            "run.plots=true",
        ],
    )
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert summary["n_structures"] == {"train": 6, "val": 3, "test": 3}
    assert summary["test_mae"] > 0 and torch.isfinite(torch.tensor(summary["test_mae"]))
    assert (tmp_path / "ft" / "parity_test.png").stat().st_size > 1000
    with open(tmp_path / "ft" / "metrics.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2"]
