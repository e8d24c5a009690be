import csv
import json

import pytest
import torch

from fpcore.cli import main
from fpcore.training import load_checkpoint
from fpcore.training.checkpoint import backbone_state
from fpcore.training.trainer import tensor_digest

from .training.tiny_data import cli_sets, structures, write_extxyz

# A real fpcore descriptor as the pre-training target (EAD joins once it is merged into main).
FINGERPRINTS = (
    "descriptor.fingerprints=[{name: WACSF, kwargs: {cutoff: 3.5, g2_eta: [0.5, 2.0], g2_rs: [0.0], "
    "g4_eta: [0.05], g4_lambda: [1.0], g4_zeta: [1.0]}}]"
)


def sets(*extra):
    return cli_sets(2, *extra)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    data = write_extxyz(tmp / "tiny.extxyz", structures(12))
    assert main(["pretrain", "--run-dir", str(tmp / "pre"), *sets(f"data.source={data}", FINGERPRINTS)]) == 0
    assert (
        main(
            [
                "finetune",
                "--from",
                str(tmp / "pre" / "best.pt"),
                "--run-dir",
                str(tmp / "ft"),
                *sets(f"data.source={data}", "run.plots=true"),
            ]
        )
        == 0
    )
    return tmp, data


def test_pretrain_finetune_evaluate_predict(runs, capsys):
    tmp, data = runs
    for name in (
        "config.yaml",
        "split.json",
        "metrics.csv",
        "best.pt",
        "last.pt",
        "summary.json",
        "COMPLETED",
        "learning_curves.png",
        "parity_test.png",
    ):
        assert (tmp / "ft" / name).exists(), name
    pre = load_checkpoint(tmp / "pre" / "best.pt", kind="pretrain")
    ft = load_checkpoint(tmp / "ft" / "best.pt", kind="finetune")
    # The fine-tuning run recorded the digest of the backbone it started from: the pre-trained one.
    assert ft["init"]["backbone_sha256"] == tensor_digest(backbone_state(pre["state_dict"]))
    assert ft["init"]["from"].endswith("best.pt")
    assert ft["model"]["backbone"] == pre["model"]["backbone"]
    assert pre["target_names"][0].startswith("G2") or len(pre["target_names"]) > 2

    capsys.readouterr()
    assert main(["evaluate", str(tmp / "ft" / "best.pt"), str(data), "-o", str(tmp / "m.json")]) == 0
    assert "energy_per_atom: MAE" in capsys.readouterr().out
    metrics = json.loads((tmp / "m.json").read_text())["energy_per_atom"]
    assert metrics["n"] == 12 and metrics["rmse"] >= metrics["mae"] > 0

    assert main(["predict", str(tmp / "ft" / "best.pt"), str(data), "-o", str(tmp / "pred.csv")]) == 0
    with open(tmp / "pred.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and set(rows[0]) == {"id", "energy_per_atom"}
    # The CSV agrees with the metrics: recompute the MAE from it.
    truth = torch.tensor([a.info["energy_per_atom"] for a in structures(12)], dtype=torch.float64)
    pred = torch.tensor([float(r["energy_per_atom"]) for r in rows], dtype=torch.float64)
    assert abs(float((pred - truth).abs().mean()) - metrics["mae"]) < 1e-6


def test_resume_via_cli_extends_a_finished_run(runs):
    tmp, data = runs
    assert main(["train", "--run-dir", str(tmp / "scratch"), *sets(f"data.source={data}", "optim.epochs=1")]) == 0
    assert main(["train", "--resume", "--run-dir", str(tmp / "scratch"), "--set", "optim.epochs=2"]) == 0
    assert load_checkpoint(tmp / "scratch" / "last.pt")["epoch"] == 2
    assert json.loads((tmp / "scratch" / "summary.json").read_text())["epochs_run"] == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["pretrain", "--config", "/nonexistent/cfg.yaml"], "config file not found"),
        (["pretrain", "--set", "optim.lrr=3"], "unknown config key 'optim.lrr'"),
        (["evaluate", "/nonexistent/best.pt", "x.extxyz"], "checkpoint not found"),
        (["finetune", "--from", "/nonexistent/best.pt"], "pre-training checkpoint not found"),
    ],
)
def test_bad_input_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_wrong_checkpoint_kind_and_missing_data(runs, capsys):
    tmp, data = runs
    # fine-tuning from a fine-tuned checkpoint, evaluating a pre-training one
    assert (
        main(
            [
                "finetune",
                "--from",
                str(tmp / "ft" / "best.pt"),
                "--run-dir",
                str(tmp / "x"),
                *sets(f"data.source={data}"),
            ]
        )
        == 2
    )
    assert "is a 'finetune' checkpoint, but a 'pretrain' checkpoint is needed" in capsys.readouterr().err
    assert main(["evaluate", str(tmp / "pre" / "best.pt"), str(data)]) == 2
    assert "has no property head (objectives: ['fingerprints'])" in capsys.readouterr().err
    assert main(["predict", str(tmp / "ft" / "best.pt"), str(tmp / "missing.extxyz"), "-o", str(tmp / "p.csv")]) == 2
    assert "missing.extxyz" in capsys.readouterr().err
