"""fpcore-train compare on a tiny budget: the table, the paired gains, the PNG, identical budgets, resume."""

import json
import math

import pytest

from fpcore.cli import main
from fpcore.data import builtin as B
from fpcore.experiments.compare import BASELINE, PRETRAINED, compare_config, paired_summary, table_text
from fpcore.training.config import packaged_config


@pytest.fixture
def tiny_builtins(monkeypatch, tmp_path):
    # Small draws of the same generators: another cache key (the size is part of it), generated in a second.
    monkeypatch.setitem(B.BUILTINS, "pretrain", (B._generate_pretrain, {"n": 60, "seed": 20261202}, [], []))
    fine = B.BUILTINS["finetune"]
    monkeypatch.setitem(B.BUILTINS, "finetune", (fine[0], {"n": 40, "seed": 20261203}, fine[2], fine[3]))
    monkeypatch.setenv("FPCORE_CACHE", str(tmp_path / "cache"))


TINY = [
    "seeds=[1, 2]",
    "trainer.model={backbone: SchNet, backbone_kwargs: {hidden: 8, n_layers: 1, n_rbf: 8}, head_hidden: 8}",
    "pretrain.trainer.optim.epochs=2",
    "finetune.trainer.optim.epochs=2",
]


def test_compare_config_runs_the_packaged_defaults_with_identical_budgets():
    config = compare_config()
    pre, fine = packaged_config("pretrain"), packaged_config("finetune")
    assert config["seeds"] == [111, 222, 333] and config["out"] == "results/first_run"
    assert config["arms"] == {BASELINE: None, PRETRAINED: pre["descriptor"]["fingerprints"]}
    assert config["split"] == fine["data"]["split"] and config["pretrain"]["split"] == pre["data"]["split"]
    assert config["finetune"]["trainer"]["optim"] == fine["optim"]
    assert config["finetune"]["trainer"]["model"] == fine["model"]
    assert config["pretrain"]["trainer"]["optim"] == pre["optim"]
    assert config["tasks"]["builtin_finetune"] == {"source": "builtin:finetune", "target": "energy_per_atom"}


def test_paired_summary_maths():
    records = [
        {"arm": BASELINE, "seed": 1, "test_mae": 0.10},
        {"arm": PRETRAINED, "seed": 1, "test_mae": 0.08},
        {"arm": BASELINE, "seed": 2, "test_mae": 0.20},
        {"arm": PRETRAINED, "seed": 2, "test_mae": 0.21},
    ]
    s = paired_summary(records)
    assert s["seeds"] == [1, 2] and s["seeds_improved"] == 1
    assert s["gain_pct_per_seed"] == pytest.approx([20.0, -5.0])
    assert s["gain_pct_mean"] == pytest.approx(7.5) and s["gain_pct_std"] == pytest.approx(math.sqrt(312.5))
    assert s["gain_pct_of_means"] == pytest.approx((0.15 - 0.145) / 0.15 * 100)
    assert s["arms"][BASELINE]["mean"] == pytest.approx(0.15)
    text = table_text(s, "energy_per_atom")
    assert "| gain (paired) | +7.5% +- 17.7% | +20.0% | -5.0% |" in text
    assert "better on 1 of 2 seeds" in text


def test_compare_end_to_end_and_resume(tiny_builtins, tmp_path, capsys):
    out = tmp_path / "first_run"
    args = ["compare", "--out", str(out)] + [x for s in TINY for x in ("--set", s)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| from_scratch |" in printed and "| pretrained |" in printed and "gain (paired)" in printed
    summary = json.loads((out / "compare.json").read_text())
    assert summary["seeds"] == [1, 2]
    for arm in (BASELINE, PRETRAINED):
        assert len(summary["arms"][arm]["test_mae"]) == 2
        assert all(math.isfinite(v) and v > 0 for v in summary["arms"][arm]["test_mae"])
    assert (out / "compare.png").stat().st_size > 10_000
    assert (out / "compare.md").read_text() == summary["table"]
    records = json.loads((out / "results.json").read_text())
    # Identical budgets and splits per seed: same epochs and split file, only the initialisation differs.
    for seed in (1, 2):
        pair = {r["arm"]: r for r in records if r["seed"] == seed}
        assert pair[BASELINE]["n_train"] == pair[PRETRAINED]["n_train"] == 16
        assert pair[BASELINE]["init_from"] is None and pair[PRETRAINED]["init_from"].endswith("best.pt")
    # A second call reuses every finished run and reproduces the table.
    assert main(args) == 0
    again = json.loads((out / "compare.json").read_text())
    assert again["arms"] == summary["arms"]
    assert all(r["status"] == "skipped" for r in json.loads((out / "results.json").read_text()))
