"""`fpcore-train compare`: training from scratch vs. fine-tuning the pre-trained backbone on the bundled default.

One pre-training (the packaged pretrain.yaml), then for each seed a `train` and a `finetune` run with the packaged
finetune.yaml on the same split, through the experiment runner (resumable: finished runs are reused). Writes, next to
the runner's results.json/table.md/summary.json, compare.json (per-seed test MAEs, the paired per-seed gains),
compare.md (the table printed) and compare.png (validation curves of both arms and of the pre-training, and the
test-set parity plot of both arms).
"""

from __future__ import annotations

import csv
import importlib.resources
import json
import math
import pathlib
import statistics

from .._io import atomic_savefig, atomic_write_json, atomic_write_text
from ..training.config import packaged_config, read_yaml
from .config import MANAGED, load_experiment_config
from .report import improvement
from .runner import run_experiment

BASELINE, PRETRAINED, TASK = "from_scratch", "pretrained", "builtin_finetune"


def _trainer_layer(packaged: dict) -> dict:
    """A packaged fpcore-train config without the keys the experiment sets itself (data source, split, run folder)."""
    layer = {}
    for section, entries in packaged.items():
        kept = {k: v for k, v in (entries or {}).items() if (section, k) not in MANAGED}
        if section == "descriptor":
            kept.pop("fingerprints", None)  # the arm's fingerprints
        if kept:
            layer[section] = kept
    return layer


def compare_config(overrides=(), out=None) -> dict:
    """The validated experiment config of `fpcore-train compare` (experiments/compare.yaml in the package, completed
    from the packaged trainer defaults configs/pretrain.yaml and configs/finetune.yaml)."""
    raw = read_yaml(importlib.resources.files("fpcore.experiments") / "compare.yaml")
    pre, fine = packaged_config("pretrain"), packaged_config("finetune")
    raw["arms"] = {BASELINE: None, PRETRAINED: pre["descriptor"]["fingerprints"]}
    raw["tasks"] = {TASK: {"source": fine["data"]["source"], "target": fine["data"]["targets"][0]}}
    raw["split"] = fine["data"]["split"]
    raw["pretrain"] = {
        "source": pre["data"]["source"],
        "split": pre["data"]["split"],
        "trainer": _trainer_layer(pre),
    }
    raw["finetune"] = {"trainer": _trainer_layer(fine)}
    return load_experiment_config("compare.yaml", overrides=overrides, out=out, raw=raw)


def paired_summary(records: list[dict]) -> dict:
    """Per arm the test MAEs by seed (mean, std) and the per-seed gains of the pre-trained arm (paired: same split,
    same seed), their mean and std, and the gain of the mean MAE."""
    by_arm = {
        arm: {r["seed"]: float(r["test_mae"]) for r in records if r["arm"] == arm} for arm in (BASELINE, PRETRAINED)
    }
    seeds = sorted(set(by_arm[BASELINE]) & set(by_arm[PRETRAINED]))
    out = {"seeds": seeds, "arms": {}}
    for arm, maes in by_arm.items():
        values = [maes[s] for s in seeds]
        out["arms"][arm] = {
            "test_mae": values,
            "mean": statistics.fmean(values) if values else math.nan,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
    gains = [improvement(by_arm[BASELINE][s], by_arm[PRETRAINED][s]) for s in seeds]
    out["gain_pct_per_seed"] = gains
    out["gain_pct_mean"] = statistics.fmean(gains) if gains else math.nan
    out["gain_pct_std"] = statistics.stdev(gains) if len(gains) > 1 else 0.0
    out["gain_pct_of_means"] = improvement(out["arms"][BASELINE]["mean"], out["arms"][PRETRAINED]["mean"])
    out["seeds_improved"] = sum(g > 0 for g in gains)
    return out


def table_text(summary: dict, target: str, timing: dict | None = None) -> str:
    seeds = summary["seeds"]
    head = f"| arm | test MAE {target} (mean +- std) | " + " | ".join(f"seed {s}" for s in seeds) + " |"
    lines = [head, "|" + "---|" * (2 + len(seeds))]
    for arm in (BASELINE, PRETRAINED):
        a = summary["arms"][arm]
        lines.append(
            f"| {arm} | {a['mean']:.4f} +- {a['std']:.4f} | " + " | ".join(f"{v:.4f}" for v in a["test_mae"]) + " |"
        )
    lines.append(
        f"| gain (paired) | {summary['gain_pct_mean']:+.1f}% +- {summary['gain_pct_std']:.1f}% | "
        + " | ".join(f"{g:+.1f}%" for g in summary["gain_pct_per_seed"])
        + " |"
    )
    lines += [
        "",
        f"Gain of the mean MAE: {summary['gain_pct_of_means']:+.1f}%; the pre-trained model is better on "
        f"{summary['seeds_improved']} of {len(seeds)} seeds (same split, seed and budget per pair).",
    ]
    if timing:
        lines.append("Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timing.items() if math.isfinite(v)) + ".")
    return "\n".join(lines) + "\n"


def _metric_rows(run_dir: pathlib.Path) -> list[dict]:
    path = pathlib.Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _test_predictions(config: dict, record: dict):
    """(targets, predictions) of a fine-tuning run's best checkpoint on its test split."""
    from torch.utils.data import Subset

    from ..data import load_dataset
    from ..training.inference import load_model, predict_dataset

    task = config["tasks"][TASK]
    dataset = load_dataset(task["source"], targets=[task["target"]], progress=False)
    split = json.loads((pathlib.Path(config["out"]) / "splits" / f"{TASK}_seed{record['seed']}.json").read_text())
    test = Subset(dataset, split["test"])
    model, scaler, _ = load_model(pathlib.Path(record["run_dir"]) / "best.pt", device="cpu")
    pred = predict_dataset(model, scaler, test, "cpu")[:, 0].numpy()
    truth = dataset.labels[split["test"], 0].numpy()
    return truth, pred


def compare_plot(config: dict, records: list[dict], summary: dict, out_png) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    target = config["tasks"][TASK]["target"]
    colors = {BASELINE: "tab:gray", PRETRAINED: "tab:blue"}
    fig, (ax_pre, ax_val, ax_par) = plt.subplots(1, 3, figsize=(15, 4.5))
    pre_rows = _metric_rows(pathlib.Path(config["out"]) / "pretrain" / PRETRAINED)
    if pre_rows:
        ax_pre.plot([int(r["epoch"]) for r in pre_rows], [float(r["val_mae"]) for r in pre_rows], "o-", label="val")
        ax_pre.plot(
            [int(r["epoch"]) for r in pre_rows], [float(r["train_mae"]) for r in pre_rows], "s--", label="train"
        )
        ax_pre.legend()
    ax_pre.set(xlabel="epoch", ylabel="MAE (standardised fingerprints)", title="pre-training")
    for rec in sorted(records, key=lambda r: (r["arm"], r["seed"])):
        rows = _metric_rows(rec["run_dir"])
        first = rec["seed"] == summary["seeds"][0]
        ax_val.plot(
            [int(r["epoch"]) for r in rows],
            [float(r["val_mae"]) for r in rows],
            color=colors[rec["arm"]],
            alpha=0.8,
            label=rec["arm"] if first else None,
        )
    ax_val.set(xlabel="epoch", ylabel=f"validation MAE {target}", yscale="log", title="fine-tuning, all seeds")
    ax_val.legend()
    lo, hi = math.inf, -math.inf
    seed = summary["seeds"][0]
    for rec in records:
        if rec["seed"] != seed:
            continue
        truth, pred = _test_predictions(config, rec)
        mae = summary["arms"][rec["arm"]]["test_mae"][0]
        ax_par.scatter(truth, pred, s=9, alpha=0.6, color=colors[rec["arm"]], label=f"{rec['arm']} (MAE {mae:.4f})")
        lo, hi = min(lo, truth.min(), pred.min()), max(hi, truth.max(), pred.max())
    ax_par.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax_par.set(xlabel=f"EMT {target}", ylabel=f"predicted {target}", title=f"test set, seed {seed}")
    ax_par.legend()
    fig.suptitle(
        f"fpcore-train compare: pre-trained vs. from scratch, gain {summary['gain_pct_mean']:+.1f}% "
        f"+- {summary['gain_pct_std']:.1f}% over {len(summary['seeds'])} seeds"
    )
    fig.tight_layout()
    atomic_savefig(fig, out_png, dpi=110)
    plt.close(fig)
    return pathlib.Path(out_png)


def run_compare(config: dict, progress: bool = True, train_fn=None) -> dict:
    """Runs (or resumes) the comparison and writes compare.json, compare.md and compare.png into config['out']."""
    kwargs = {"progress": progress} if train_fn is None else {"progress": progress, "train_fn": train_fn}
    experiment = run_experiment(config, **kwargs)
    out = pathlib.Path(config["out"])
    records = json.loads((out / "results.json").read_text())
    summary = paired_summary(records)
    timing = {
        "pre-training": float(experiment.get("pretrain", {}).get(PRETRAINED, {}).get("wall_s", math.nan)),
        **{
            f"{arm} (all seeds)": sum(float(r["wall_s"]) for r in records if r["arm"] == arm)
            for arm in (BASELINE, PRETRAINED)
        },
    }
    summary["wall_s"] = timing
    target = config["tasks"][TASK]["target"]
    text = table_text(summary, target, timing)
    atomic_write_text(out / "compare.md", text)
    files = {"table": str(out / "compare.md"), "summary": str(out / "compare.json")}
    if config["plot"]:
        files["plot"] = str(compare_plot(config, records, summary, out / "compare.png"))
    summary["files"] = files
    summary["table"] = text
    atomic_write_json(out / "compare.json", summary)
    return summary
