import json
import math
import pathlib

import pytest
import yaml

from fpcore.cli import main
from fpcore.experiments import Experiment, aggregate, improvement, load_experiment_config, table_markdown
from fpcore.experiments.runner import subset_dataset
from fpcore.training import COMPLETED, ConfigError, run_training

from ..training.tiny_data import structures, write_extxyz

PAPER_YAML = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "paper.yaml"


def tiny_config(root: pathlib.Path, **extra) -> pathlib.Path:
    """Two arms (baseline, a small wACSF), one task, two seeds, one epoch, on tiny EMT data under `root`."""
    (root / "data").mkdir(exist_ok=True)
    write_extxyz(root / "data" / "corpus.extxyz", structures(16, seed=1))
    write_extxyz(root / "data" / "task.extxyz", structures(15, seed=2))
    cfg = {
        "data_root": str(root / "data"),
        "arms": {
            "baseline": None,
            "wacsf": [
                {
                    "name": "WACSF",
                    "kwargs": {
                        "cutoff": 3.5,
                        "g2_eta": [0.5, 2.0],
                        "g2_rs": [0.0],
                        "g4_eta": [0.05],
                        "g4_lambda": [1.0],
                        "g4_zeta": [1.0],
                    },
                }
            ],
        },
        "tasks": {
            "emt": {"source": "task.extxyz", "target": "energy_per_atom"},
            "other": {"source": "missing/none.extxyz.gz", "target": "x"},
        },
        "run_tasks": ["emt"],
        "seeds": [111, 222],
        "pretrain": {
            "source": "corpus.extxyz",
            "max_structures": 12,
            "split": [0.75, 0.25, 0.0],
            "trainer": {"optim": {"epochs": 1}},
        },
        "trainer": {
            "model": {
                "backbone": "SchNet",
                "backbone_kwargs": {"hidden": 16, "n_layers": 2, "n_rbf": 8},
                "cutoff": 4.0,
                "head_hidden": 16,
            },
            "data": {"batch_size": 4, "cache_dir": str(root / "cache")},
            "run": {"progress": False, "device": "cpu"},
        },
        "finetune": {"trainer": {"optim": {"epochs": 2}, "run": {"plots": False}}},
    }
    cfg.update(extra)
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Counting:
    def __init__(self):
        self.calls = []

    def __call__(self, kind, config, **kwargs):
        self.calls.append((kind, str(kwargs["run_dir"]), kwargs.get("resume"), kwargs.get("init_from")))
        return run_training(kind, config, **kwargs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    path = tiny_config(root)
    out = root / "results"
    assert main(["experiment", "--config", str(path), "--out", str(out)]) == 0
    return root, path, out


def test_end_to_end_outputs(finished):
    root, _, out = finished
    for name in (
        "results.json",
        "table.md",
        "summary.json",
        "improvement.png",
        "experiment.yaml",
        "splits/emt_seed111.json",
    ):
        assert (out / name).is_file(), name
    records = json.loads((out / "results.json").read_text())
    assert sorted((r["arm"], r["seed"]) for r in records) == [
        ("baseline", 111),
        ("baseline", 222),
        ("wacsf", 111),
        ("wacsf", 222),
    ]
    for r in records:
        assert r["task"] == "emt" and r["target"] == "energy_per_atom"
        assert r["test_mae"] > 0 and r["val_mae"] > 0 and r["epochs"] == 2 and r["wall_s"] > 0
        assert (r["n_train"], r["n_val"], r["n_test"]) == (9, 3, 3)  # 60/20/20 of 15
        # The test MAE is the trainer's, of the best-validation checkpoint.
        summary = json.loads((pathlib.Path(r["run_dir"]) / "summary.json").read_text())
        assert r["test_mae"] == pytest.approx(summary["test_mae"])
        assert (r["init_from"] is None) == (r["arm"] == "baseline")
    # The same split for every arm of a seed, another for another seed.
    splits = {
        (r["arm"], r["seed"]): json.loads((pathlib.Path(r["run_dir"]) / "split.json").read_text()) for r in records
    }
    assert splits["baseline", 111] == splits["wacsf", 111]
    assert splits["baseline", 111]["test"] != splits["baseline", 222]["test"]
    # Pre-training used the 12-structure subsample, 9/3 split.
    pre = json.loads((out / "pretrain" / "wacsf" / "summary.json").read_text())
    assert pre["n_structures"] == {"train": 9, "val": 3, "test": 0}

    summary = json.loads((out / "summary.json").read_text())
    base = [r["test_mae"] for r in records if r["arm"] == "baseline"]
    arm = [r["test_mae"] for r in records if r["arm"] == "wacsf"]
    want = (sum(base) / 2 - sum(arm) / 2) / (sum(base) / 2) * 100
    assert summary["tasks"]["emt"]["improvement_pct"]["wacsf"] == pytest.approx(want)
    assert summary["average_improvement"]["wacsf"]["mean_pct"] == pytest.approx(want)
    assert f"{want:+.1f}" in (out / "table.md").read_text()


def test_resume_skips_finished_runs(finished):
    root, path, out = finished
    config = load_experiment_config(path, out=out)
    counter = Counting()
    Experiment(config, train_fn=counter, progress=False).run()
    assert counter.calls == []
    # An interrupted run (no COMPLETED, last.pt present) resumes; the others stay untouched.
    victim = out / "finetune" / "emt" / "wacsf" / "seed222"
    (victim / COMPLETED).unlink()
    untouched = out / "finetune" / "emt" / "baseline" / "seed111" / "best.pt"
    mtime = untouched.stat().st_mtime_ns
    records = Experiment(config, train_fn=counter, progress=False).run()
    assert [(c[0], c[1], c[2]) for c in counter.calls] == [("finetune", str(victim), True)]
    assert untouched.stat().st_mtime_ns == mtime
    assert (victim / COMPLETED).is_file()
    assert len(json.loads((out / "results.json").read_text())) == 4
    assert "wacsf" in records["average_improvement"]


def test_fresh_clone_takes_committed_records(tmp_path, finished):
    """Run folders are not committed, the results files are: without the folders, a finished experiment reports from
    its records without training, and only runs whose config changed (or that have no record) run again."""
    import shutil

    _, path, done = finished
    out = tmp_path / "results"
    shutil.copytree(done, out, ignore=shutil.ignore_patterns("pretrain", "finetune"))  # what a clone has
    before = {(r["arm"], r["seed"]): r["test_mae"] for r in json.loads((done / "results.json").read_text())}
    counter = Counting()
    summary = Experiment(
        load_experiment_config(path, out=out), train_fn=counter, progress=False, report_only=True
    ).run()
    assert counter.calls == [] and summary["runs"]["missing"] == []
    records = json.loads((out / "results.json").read_text())
    assert {(r["arm"], r["seed"]): r["test_mae"] for r in records} == before
    assert {r["status"] for r in records} == {"recorded"} and summary["pretrain"]["wacsf"]["status"] == "recorded"
    # Running (not only reporting) redoes the pre-training a fine-tuning could need, and no recorded fine-tuning.
    Experiment(load_experiment_config(path, out=out), train_fn=counter, progress=False).run()
    assert [c[0] for c in counter.calls] == ["pretrain"]
    # A record made with another config is not taken: that run is done again.
    records[0]["config_sha256"] = "0" * 64
    (out / "results.json").write_text(json.dumps(records))
    counter.calls.clear()
    Experiment(load_experiment_config(path, out=out), train_fn=counter, progress=False).run()
    victim = out / "finetune" / "emt" / records[0]["arm"] / f"seed{records[0]['seed']}"
    assert [(c[0], c[1]) for c in counter.calls] == [("finetune", str(victim))]


def test_improvement_and_table_maths():
    records = []
    for task, base, arm in (("a", [2.0, 4.0], [1.0, 2.0]), ("b", [10.0, 10.0], [11.0, 13.0])):
        for seed, (mb, ma) in enumerate(zip(base, arm)):
            records.append({"task": task, "target": "y", "arm": "baseline", "seed": seed, "test_mae": mb})
            records.append({"task": task, "target": "y", "arm": "ead", "seed": seed, "test_mae": ma})
    s = aggregate(records, ["baseline", "ead"], ["a", "b"], "baseline")
    assert s["tasks"]["a"]["arms"]["baseline"]["mean"] == 3.0
    assert s["tasks"]["a"]["arms"]["baseline"]["std"] == pytest.approx(math.sqrt(2.0))  # sample std over seeds
    assert s["tasks"]["a"]["improvement_pct"]["ead"] == pytest.approx(50.0)  # (3 - 1.5) / 3
    assert s["tasks"]["b"]["improvement_pct"]["ead"] == pytest.approx(-20.0)  # (10 - 12) / 10
    assert s["average_improvement"]["ead"]["mean_pct"] == pytest.approx(15.0)  # mean over tasks
    assert improvement(4.0, 3.0) == pytest.approx(25.0)
    table = table_markdown(s)
    assert "| a | y | 3 ± 1.414 (n=2) | 1.5 ± 0.7071 (n=2) | +50.0 |" in table
    assert "**+15.0**" in table
    # paired by seed: task b gains -10% and -30%; a seed the baseline lacks is not paired
    records.append({"task": "b", "target": "y", "arm": "ead", "seed": 7, "test_mae": 1.0})
    p = aggregate(records, ["baseline", "ead"], ["a", "b"], "baseline")["tasks"]["b"]["paired"]["ead"]
    assert p["seeds"] == [0, 1] and p["gain_pct"] == pytest.approx([-10.0, -30.0]) and p["wins"] == 0
    assert p["mean_pct"] == pytest.approx(-20.0) and p["std_pct"] == pytest.approx(math.sqrt(200.0))
    assert "| b | ead | 0: -10.0, 1: -30.0 | -20.0 ± 14.1 | 0/2 |" in table_markdown(
        aggregate(records[:-1], ["baseline", "ead"], ["a", "b"], "baseline")
    )


def test_subset_dataset_keeps_structures(tmp_path):
    from fpcore.data import load_dataset

    path = write_extxyz(tmp_path / "s.extxyz", structures(7))
    ds = load_dataset(path, ["energy_per_atom"], cache_dir=False, progress=False)
    sub = subset_dataset(ds, [5, 1, 3])
    assert len(sub) == 3 and sub.ids == [ds.ids[5], ds.ids[1], ds.ids[3]]
    for k, i in enumerate([5, 1, 3]):
        a, b = sub[k], ds[i]
        assert (a.pos == b.pos).all() and (a.z == b.z).all() and (a.cell == b.cell).all() and (a.y == b.y).all()
        assert a.idx == k


def test_bad_configs(tmp_path):
    path = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match="unknown task.*nope"):
        load_experiment_config(path, overrides=["run_tasks=[nope]"])
    with pytest.raises(ConfigError, match="unknown arm"):
        load_experiment_config(path, overrides=["run_arms=[baseline, gmpp]"])
    with pytest.raises(ConfigError, match="unknown experiment key .colour"):
        load_experiment_config(path, overrides=["colour=red"])
    with pytest.raises(ConfigError, match="optim.epoch"):
        load_experiment_config(path, overrides=["finetune.trainer.optim.epoch=3"])
    with pytest.raises(ConfigError, match="set by the experiment"):
        load_experiment_config(path, overrides=["trainer.data.split=[0.5, 0.25, 0.25]"])
    with pytest.raises(ConfigError, match="split"):
        load_experiment_config(path, overrides=["split=[0.5, 0.2, 0.2]"])
    with pytest.raises(ConfigError, match="unknown scale"):
        load_experiment_config(path, scale="gpu")
    config = load_experiment_config(path, overrides=["run_tasks=[emt, other]"])
    with pytest.raises(FileNotFoundError, match=r"missing/none\.extxyz\.gz"):
        Experiment(config, progress=False)
    assert (
        main(["experiment", "--config", str(path), "--set", "run_tasks=[emt, other]", "--out", str(tmp_path / "o")])
        == 2
    )
    assert not (tmp_path / "o").exists()  # nothing ran


def test_paper_config_scales(shared_dir):
    data_root = shared_dir / "data"
    if not data_root.is_dir():
        pytest.skip("shared data absent")
    cpu = load_experiment_config(PAPER_YAML, scale="cpu", data_root=data_root)
    paper = load_experiment_config(PAPER_YAML, scale="paper", data_root=data_root)
    assert cpu["seeds"] == [111, 222, 333] and paper["seeds"] == [111, 222, 333, 444, 555]
    assert paper["run_arms"] == ["baseline", "wacsf", "gmp", "ead", "ead+gmp", "denoise", "ead-aug"]
    assert cpu["run_arms"] == paper["run_arms"][:-1]
    assert paper["arms"]["ead-aug"]["fingerprints"] == paper["arms"]["ead"]
    assert len(paper["run_tasks"]) == 9
    assert paper["trainer"]["model"]["backbone"] == "et"
    # Every data file of both scales exists (resolved without running anything).
    for config in (cpu, paper):
        exp = Experiment(config, progress=False)
        n_pre = sum(config["arms"][a] is not None for a in config["run_arms"])
        assert n_pre == len(config["run_arms"]) - 1
        low = config["low_data"]
        n_low = len(low["tasks"]) * len(low["arms"]) * len(low["fractions"]) * len(config["seeds"])
        n_finetune = len(config["run_arms"]) * len(config["run_tasks"]) * len(config["seeds"])
        assert len(exp.plan()) == n_pre + n_finetune + n_low
    assert cpu["low_data"]["fractions"] == [0.1, 0.25, 0.5] and set(cpu["low_data"]["arms"]) <= set(cpu["run_arms"])
    # Arms have similar feature counts (~20), so no arm wins by predicting more targets.
    from fpcore.training import TargetFingerprints

    sizes = {arm: TargetFingerprints(paper["arms"][arm]).n_features for arm in ("wacsf", "gmp", "ead")}
    assert all(18 <= n <= 24 for n in sizes.values()), sizes


def test_changed_config_redoes_completed_runs_and_late_best_is_flagged(finished, tmp_path):
    root, path, out = finished
    # Same config: nothing runs. Another fine-tuning budget: every fine-tuning is redone, the pre-training reused.
    config = load_experiment_config(path, out=out, overrides=["finetune.trainer.optim.epochs=3"])
    counter = Counting()
    Experiment(config, train_fn=counter, progress=False).run()
    assert sorted(c[1] for c in counter.calls) == sorted(
        str(out / "finetune" / "emt" / arm / f"seed{seed}") for arm in ("baseline", "wacsf") for seed in (111, 222)
    )
    assert all(c[0] == "finetune" and not c[2] for c in counter.calls)
    records = json.loads((out / "results.json").read_text())
    assert {r["epochs_max"] for r in records} == {3} and all(len(r["config_sha256"]) == 64 for r in records)
    for r in records:
        assert r["late_best"] == (r["best_epoch"] > 2.7)
    table = (out / "table.md").read_text()
    assert ("†" in table) == any(r["late_best"] for r in records)
    counter.calls.clear()
    Experiment(config, train_fn=counter, progress=False).run()
    assert counter.calls == []
    # How many CPU threads a run used is not part of what it computed: nothing is redone.
    threads = load_experiment_config(
        path, out=out, overrides=["finetune.trainer.optim.epochs=3", "trainer.run.threads=1"]
    )
    Experiment(threads, train_fn=counter, progress=False).run()
    assert counter.calls == []


def test_denoise_and_augmented_arms_run(tmp_path):
    path = tiny_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    fps = cfg["arms"]["wacsf"]
    cfg["arms"] = {
        "baseline": None,
        "denoise": {"objective": {"denoise": {"sigma": 0.1}}},
        "wacsf-aug": {"fingerprints": fps, "augment": {"rattle": 0.05, "strain": 0.02}},
    }
    cfg["seeds"] = [111]
    path.write_text(yaml.safe_dump(cfg))
    config = load_experiment_config(path, out=tmp_path / "out")
    summary = Experiment(config, progress=False).run()
    assert set(summary["tasks"]["emt"]["arms"]) == {"baseline", "denoise", "wacsf-aug"}
    pre = yaml.safe_load((tmp_path / "out" / "pretrain" / "denoise" / "config.yaml").read_text())
    assert pre["objective"] == {"denoise": {"sigma": 0.1}}
    aug = yaml.safe_load((tmp_path / "out" / "pretrain" / "wacsf-aug" / "config.yaml").read_text())
    assert aug["data"]["augment"] == {"rattle": 0.05, "strain": 0.02}
    cfg["arms"]["bad"] = {"objective": {"fingerprints": 1.0}}
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="pre-trains on fingerprints but lists none"):
        load_experiment_config(path)


def test_low_data_runs_nested_subsets_and_learning_curves(tmp_path):
    root, out = tmp_path, tmp_path / "results"
    low = {"tasks": ["emt"], "arms": ["baseline", "wacsf"], "fractions": [0.5, 0.25], "out": "../low"}
    config = load_experiment_config(tiny_config(root, low_data=low), out=out)
    assert config["low_data"]["fractions"] == [0.25, 0.5]
    counter = Counting()
    summary = Experiment(config, train_fn=counter, progress=False).run()
    # One pre-training, the main runs, and each arm on each subset: the subsets reuse the main run's pre-training.
    finetunes = [c[1] for c in counter.calls if c[0] == "finetune"]
    assert sorted(finetunes) == sorted(
        str(out / "finetune" / "emt" / arm / f"seed{seed}{suffix}")
        for arm in ("baseline", "wacsf")
        for seed in (111, 222)
        for suffix in ("", "_train25", "_train50")
    )
    assert [c[1] for c in counter.calls if c[0] == "pretrain"] == [str(out / "pretrain" / "wacsf")]
    for seed in (111, 222):
        full = json.loads((out / "splits" / f"emt_seed{seed}.json").read_text())
        quarter = json.loads((out / "splits" / f"emt_seed{seed}_train25.json").read_text())
        half = json.loads((out / "splits" / f"emt_seed{seed}_train50.json").read_text())
        assert quarter["val"] == half["val"] == full["val"] and quarter["test"] == half["test"] == full["test"]
        assert set(quarter["train"]) < set(half["train"]) < set(full["train"])
        assert (len(quarter["train"]), len(half["train"])) == (2, 4)  # of 9
        used = json.loads((out / "finetune" / "emt" / "wacsf" / f"seed{seed}_train50" / "split.json").read_text())
        assert used["train"] == half["train"]
    # The main table is unchanged by the subsets; the learning curves are beside it.
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 4 and all(r["train_fraction"] == 1.0 for r in records)
    folder = root / "low"
    for name in ("low_data.md", "low_data.json", "learning_curve.png", "results.json"):
        assert (folder / name).is_file(), name
    curves = json.loads((folder / "low_data.json").read_text())["tasks"]["emt"]
    assert curves["fractions"] == [0.25, 0.5, 1.0]
    points = curves["arms"]["wacsf"]
    assert [p["n_train"] for p in points] == [2, 4, 9]
    low_records = json.loads((folder / "results.json").read_text())
    at_half = [r for r in low_records if r["train_fraction"] == 0.5]
    mean = sum(r["test_mae"] for r in at_half if r["arm"] == "wacsf") / 2
    assert points[1]["mean"] == pytest.approx(mean) and points[1]["paired"]["seeds"] == [111, 222]
    assert "| 50% | 4 |" in (folder / "low_data.md").read_text()
    assert summary["low_data"]["plot"].endswith("learning_curve.png")
    # Asked again: nothing runs.
    counter.calls.clear()
    Experiment(config, train_fn=counter, progress=False).run()
    assert counter.calls == []


@pytest.mark.parametrize(
    "low, message",
    [
        ({"tasks": ["emt"], "arms": ["baseline"], "fractions": [1.0]}, "fractions"),
        ({"tasks": ["emt"], "arms": ["baseline"], "fractions": [0.5, 0.5]}, "fractions"),
        ({"tasks": ["emt"], "arms": ["baseline"], "fractions": []}, "fractions"),
        ({"tasks": ["nope"], "arms": ["baseline"], "fractions": [0.5]}, "unknown task"),
        ({"tasks": ["emt"], "arms": ["gmpp"], "fractions": [0.5]}, "unknown arm"),
        ({"tasks": ["emt"], "arms": ["baseline"], "fractions": [0.5], "size": 3}, "unknown key"),
    ],
)
def test_bad_low_data_configs(tmp_path, low, message):
    path = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match=message):
        load_experiment_config(path, overrides=[f"low_data={json.dumps(low)}"])


def test_paired_p_value_and_noise_verdict():
    from fpcore.experiments.report import paired_p_value

    # Student's t with 2 degrees of freedom has the closed-form two-sided p = 1 - |t| / sqrt(t^2 + 2).
    for gains in ([10.0, 12.0, 11.0], [10.0, -10.0, 5.0], [-3.0, -4.0, -8.0]):
        n, mean = len(gains), sum(gains) / len(gains)
        sd = math.sqrt(sum((g - mean) ** 2 for g in gains) / (n - 1))
        t = mean / (sd / math.sqrt(n))
        assert paired_p_value(gains) == pytest.approx(1 - abs(t) / math.sqrt(t * t + 2))
    assert math.isnan(paired_p_value([5.0])) and paired_p_value([2.0, 2.0]) == 0.0
    rows = [
        {"task": "a", "target": "y", "arm": arm, "seed": seed, "test_mae": mae}
        for seed, (b, e, d) in enumerate([(1.0, 0.8, 1.2), (1.0, 0.79, 0.7), (1.0, 0.81, 1.1)])
        for arm, mae in (("baseline", b), ("ead", e), ("denoise", d))
    ]
    s = aggregate(rows, ["baseline", "ead", "denoise"], ["a"], "baseline")
    assert not s["tasks"]["a"]["paired"]["ead"]["within_noise"]
    assert s["tasks"]["a"]["paired"]["denoise"]["within_noise"]
    table = table_markdown(s)
    assert "| a | ead | 0: +20.0, 1: +21.0, 2: +19.0 | +20.0 ± 1.0 | 3/3 |" in table and "| better |" in table
    assert "| within noise |" in table


def test_report_only_trains_nothing_and_lists_missing_runs(tmp_path, capsys):
    path, out = tiny_config(tmp_path), tmp_path / "results"
    counter = Counting()
    config = load_experiment_config(path, out=out)
    summary = Experiment(config, train_fn=counter, progress=False, report_only=True).run()
    assert counter.calls == [] and summary["runs"]["planned"] == 5 and len(summary["runs"]["missing"]) == 5
    assert not (out / "pretrain" / "wacsf").exists()
    Experiment(load_experiment_config(path, out=out, overrides=["seeds=[111]"]), progress=False).run()
    assert main(["experiment", "--config", str(path), "--out", str(out), "--report-only"]) == 0
    assert "2 of 5 runs missing" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["runs"]["missing"]) == sorted(
        str(out / "finetune" / "emt" / arm / "seed222") for arm in ("baseline", "wacsf")
    )
    assert {(r["arm"], r["seed"]) for r in json.loads((out / "results.json").read_text())} == {
        ("baseline", 111),
        ("wacsf", 111),
    }
    assert "**Unfinished experiment**: 2 of 5 planned runs are missing" in (out / "table.md").read_text()
    assert not (out / "finetune" / "emt" / "baseline" / "seed222").exists()
