"""Aggregation of experiment records into the paper's table, a summary and a bar chart (all written atomically)."""

from __future__ import annotations

import json
import math
import pathlib
import statistics

from .._io import atomic_savefig, atomic_write_json, atomic_write_text


def improvement(baseline_mae: float, arm_mae: float) -> float:
    """% MAE reduction relative to the baseline (positive: the arm is better)."""
    if not baseline_mae or not math.isfinite(baseline_mae):
        return float("nan")
    return (baseline_mae - arm_mae) / baseline_mae * 100.0


#: a paired gain whose two-sided t-test p-value is at least this is reported as within seed noise
NOISE_P = 0.05


def train_fraction(record: dict) -> float:
    """The fraction of the training split a run used (records written before low_data existed used all of it)."""
    return float(record.get("train_fraction", 1.0))


def paired_p_value(gains: list[float]) -> float:
    """Two-sided one-sample t-test of the per-seed gains against zero (the paired t-test of the two arms' errors,
    in % of the baseline); nan with fewer than two seeds, 0 or 1 when every seed gains exactly the same."""
    if len(gains) < 2:
        return float("nan")
    spread = statistics.stdev(gains)
    if spread == 0.0:
        return 1.0 if statistics.fmean(gains) == 0.0 else 0.0
    from scipy import stats

    return float(stats.ttest_1samp(gains, 0.0).pvalue)


def paired(rows: list[dict], baseline: str, arm: str) -> dict:
    """The arm against the baseline seed by seed (same split, same seed): per-seed % gains, their mean and std, on
    how many seeds the arm's test MAE is lower, and the paired t-test's p-value (`within_noise`: p >= NOISE_P)."""
    by_seed = {a: {r["seed"]: float(r["test_mae"]) for r in rows if r["arm"] == a} for a in (baseline, arm)}
    seeds = sorted(set(by_seed[baseline]) & set(by_seed[arm]))
    gains = [improvement(by_seed[baseline][s], by_seed[arm][s]) for s in seeds]
    p_value = paired_p_value(gains)
    return {
        "seeds": seeds,
        "gain_pct": gains,
        "mean_pct": statistics.fmean(gains) if gains else float("nan"),
        "std_pct": statistics.stdev(gains) if len(gains) > 1 else float("nan"),
        "wins": sum(by_seed[arm][s] < by_seed[baseline][s] for s in seeds),
        "p_value": p_value,
        "within_noise": not (math.isfinite(p_value) and p_value < NOISE_P),
    }


def aggregate(records: list[dict], arms: list[str], tasks: list[str], baseline: str | None) -> dict:
    """Per task and arm: test-MAE mean/std over seeds; per task: % improvement of the mean MAE over the baseline's;
    per arm: the improvement averaged over the tasks where both it and the baseline have results."""
    per_task: dict = {}
    for task in tasks:
        rows = [r for r in records if r["task"] == task]
        if not rows:
            continue
        entry = {"target": rows[0]["target"], "arms": {}, "improvement_pct": {}}
        for arm in arms:
            maes = [float(r["test_mae"]) for r in sorted(rows, key=lambda r: r["seed"]) if r["arm"] == arm]
            if maes:
                entry["arms"][arm] = {
                    "mean": statistics.fmean(maes),
                    "std": statistics.stdev(maes) if len(maes) > 1 else 0.0,
                    "n": len(maes),
                    "test_mae": maes,
                    "seeds": sorted(r["seed"] for r in rows if r["arm"] == arm),
                }
        # Runs whose best epoch lies in the last 10% of their epoch cap may not have converged.
        entry["late_best"] = sorted(f"{r['arm']}/seed{r['seed']}" for r in rows if r.get("late_best"))
        entry["paired"] = {}
        if baseline in entry["arms"]:
            base = entry["arms"][baseline]["mean"]
            for arm in arms:
                if arm != baseline and arm in entry["arms"]:
                    entry["improvement_pct"][arm] = improvement(base, entry["arms"][arm]["mean"])
                    entry["paired"][arm] = paired(rows, baseline, arm)
        per_task[task] = entry
    average = {}
    for arm in arms:
        if arm == baseline:
            continue
        values = [
            e["improvement_pct"][arm]
            for e in per_task.values()
            if arm in e["improvement_pct"] and math.isfinite(e["improvement_pct"][arm])
        ]
        if values:
            average[arm] = {
                "mean_pct": statistics.fmean(values),
                "n_tasks": len(values),
                "min_pct": min(values),
                "max_pct": max(values),
            }
    return {"baseline": baseline, "arms": arms, "tasks": per_task, "average_improvement": average}


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    a = abs(x)
    return f"{x:.3g}" if a >= 100 or a == 0 else (f"{x:.4f}" if a < 0.01 else f"{x:.4g}")


def _verdict(paired_entry: dict) -> str:
    """'better', 'worse' or 'within noise' for one entry of paired()."""
    if paired_entry.get("within_noise", True):
        return "within noise"
    return "better" if paired_entry["mean_pct"] > 0 else "worse"


def _fmt_p(p: float) -> str:
    return "—" if not math.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def table_markdown(summary: dict, title: str = "") -> str:
    arms, base = summary["arms"], summary["baseline"]
    others = [a for a in arms if a != base]
    head = ["task", "target"] + [f"{a} MAE" for a in arms] + [f"{a} %" for a in others if base is not None]
    lines = [
        f"# {title}" if title else "# Pre-training benefit",
        "",
        "Test MAE of the best-validation checkpoint, mean ± std over seeds; `%` = (baseline − arm) / baseline × 100 "
        "of the mean MAEs (positive: pre-training helps).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for task, entry in summary["tasks"].items():
        cells = [f"{task} †" if entry.get("late_best") else task, entry["target"]]
        for a in arms:
            s = entry["arms"].get(a)
            cells.append(f"{_fmt(s['mean'])} ± {_fmt(s['std'])} (n={s['n']})" if s else "—")
        if base is not None:
            for a in others:
                p = entry["improvement_pct"].get(a)
                cells.append(f"{p:+.1f}" if p is not None and math.isfinite(p) else "—")
        lines.append("| " + " | ".join(cells) + " |")
    if base is not None:
        avg = summary["average_improvement"]
        cells = ["**average**", ""] + [""] * len(arms)
        cells += [f"**{avg[a]['mean_pct']:+.1f}**" if a in avg else "—" for a in others]
        lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "Average improvement over tasks: "
            + (
                ", ".join(
                    f"{a} {avg[a]['mean_pct']:+.1f}% ({avg[a]['n_tasks']} tasks, {avg[a]['min_pct']:+.1f} to "
                    f"{avg[a]['max_pct']:+.1f})"
                    for a in others
                    if a in avg
                )
                or "n/a"
            )
            + ".",
            "The paper's reported averages (ET backbone, 11 tasks): EAD 16.9%, wACSF 16.8%, GMP 15.2%.",
        ]
    pairs = [(t, a, e["paired"][a]) for t, e in summary["tasks"].items() for a in others if a in e.get("paired", {})]
    if pairs:
        lines += [
            "",
            "Paired by seed (same split and seed for both arms): the per-seed gain (baseline − arm) / baseline × 100, "
            "its mean ± std over seeds, the seeds on which the arm beats the baseline, and the two-sided paired "
            f"t-test's p-value; p >= {NOISE_P} is marked *within noise* (with 3 seeds a gain must be about 2.5 "
            "standard deviations from zero to leave it).",
            "",
            "| task | arm | per-seed gain % | mean ± std % | beats baseline | p | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for task, arm, p in pairs:
            per_seed = ", ".join(f"{s}: {g:+.1f}" for s, g in zip(p["seeds"], p["gain_pct"]))
            spread = f"{p['mean_pct']:+.1f} ± {p['std_pct']:.1f}" if math.isfinite(p["std_pct"]) else "—"
            p_value = p.get("p_value", float("nan"))
            verdict = _verdict(p)
            lines.append(
                f"| {task} | {arm} | {per_seed} | {spread} | {p['wins']}/{len(p['seeds'])} | "
                f"{_fmt_p(p_value)} | {verdict} |"
            )
    missing = summary.get("runs", {}).get("missing", [])
    if missing:
        lines += [
            "",
            f"**Unfinished experiment**: {len(missing)} of {summary['runs']['planned']} planned runs are missing "
            "(`summary.json` `runs.missing` lists them); the averages cover the finished ones only.",
        ]
    late = {t: e["late_best"] for t, e in summary["tasks"].items() if e.get("late_best")}
    if late:
        lines += [
            "",
            "† best epoch within the last 10% of the epoch cap (may not have converged): "
            + "; ".join(f"{t}: {', '.join(runs)}" for t, runs in late.items())
            + ".",
        ]
    return "\n".join(lines) + "\n"


def improvement_plot(summary: dict, out_png) -> pathlib.Path | None:
    base = summary["baseline"]
    others = [a for a in summary["arms"] if a != base]
    tasks = [t for t, e in summary["tasks"].items() if e["improvement_pct"]]
    if base is None or not others or not tasks:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    width = 0.8 / len(others)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(tasks) + 2), 4.5))
    for k, arm in enumerate(others):
        xs = [i + (k - (len(others) - 1) / 2) * width for i in range(len(tasks))]
        ys = [summary["tasks"][t]["improvement_pct"].get(arm, float("nan")) for t in tasks]
        avg = summary["average_improvement"].get(arm, {}).get("mean_pct", float("nan"))
        ax.bar(xs, ys, width=width, label=f"{arm} (avg {avg:+.1f}%)")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=30, ha="right")
    ax.set_ylabel("MAE reduction vs. baseline (%)")
    ax.set_title("Fingerprint pre-training vs. training from scratch", fontsize=11)
    ax.legend()
    fig.tight_layout()
    try:
        return atomic_savefig(fig, out_png, dpi=120)
    finally:
        plt.close(fig)


def write_reports(
    out_dir, records: list[dict], arms, tasks, baseline, extra: dict | None = None, plot: bool = True
) -> dict:
    out_dir = pathlib.Path(out_dir)
    summary = aggregate(records, arms, tasks, baseline)
    summary.update(extra or {})
    files = {
        "results": str(atomic_write_json(out_dir / "results.json", records)),
        "table": str(atomic_write_text(out_dir / "table.md", table_markdown(summary, extra and extra.get("title")))),
    }
    if plot:
        png = improvement_plot(summary, out_dir / "improvement.png")
        if png is not None:
            files["plot"] = str(png)
    summary["files"] = files
    files["summary"] = str(atomic_write_json(out_dir / "summary.json", summary))
    return summary


# ----------------------------------------------------------------------------------------------- learning curves
def learning_curves(records: list[dict], arms, tasks, baseline: str | None) -> dict:
    """Per task and arm, one point per training fraction: mean training-set size, test MAE mean/std over seeds and
    (against the baseline at the same fraction, seed by seed) the paired gain."""
    curves: dict = {}
    for task in tasks:
        rows = [r for r in records if r["task"] == task and r["arm"] in arms]
        fractions = sorted({train_fraction(r) for r in rows})
        if len(fractions) < 2:
            continue
        entry = {"target": rows[0]["target"], "fractions": fractions, "arms": {}}
        for arm in arms:
            points = []
            for fraction in fractions:
                at = [r for r in rows if train_fraction(r) == fraction]
                mine = sorted((r for r in at if r["arm"] == arm), key=lambda r: r["seed"])
                if not mine:
                    continue
                maes = [float(r["test_mae"]) for r in mine]
                point = {
                    "fraction": fraction,
                    "n_train": statistics.fmean(float(r["n_train"]) for r in mine if r.get("n_train") is not None),
                    "mean": statistics.fmean(maes),
                    "std": statistics.stdev(maes) if len(maes) > 1 else 0.0,
                    "n": len(maes),
                    "seeds": [r["seed"] for r in mine],
                }
                if baseline is not None and arm != baseline:
                    point["paired"] = paired(at, baseline, arm)
                points.append(point)
            if points:
                entry["arms"][arm] = points
        curves[task] = entry
    return curves


def learning_curve_markdown(curves: dict, baseline: str | None) -> str:
    lines = [
        "# Data efficiency: test MAE vs training-set size",
        "",
        "Each task's training split cut to nested random subsets (validation and test unchanged); test MAE of the "
        "best-validation checkpoint, mean ± std over seeds. Gain: paired by seed against the baseline at the same "
        f"size, mean ± std %, seeds won, and the verdict of the paired t-test (p < {NOISE_P}).",
    ]
    for task, entry in curves.items():
        arms = list(entry["arms"])
        others = [a for a in arms if a != baseline]
        head = ["train fraction", "train structures"] + [f"{a} MAE" for a in arms] + [f"{a} gain" for a in others]
        lines += ["", f"## {task} ({entry['target']})", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for fraction in entry["fractions"]:
            points = {a: next((p for p in entry["arms"][a] if p["fraction"] == fraction), None) for a in arms}
            sizes = [p["n_train"] for p in points.values() if p]
            cells = [f"{fraction * 100:g}%", f"{statistics.fmean(sizes):.0f}" if sizes else "—"]
            cells += [f"{_fmt(p['mean'])} ± {_fmt(p['std'])}" if p else "—" for p in points.values()]
            for a in others:
                q = (points[a] or {}).get("paired")
                if not q or not q["seeds"]:
                    cells.append("—")
                    continue
                verdict = _verdict(q)
                spread = f" ± {q['std_pct']:.1f}" if math.isfinite(q["std_pct"]) else ""
                cells.append(f"{q['mean_pct']:+.1f}{spread} % ({q['wins']}/{len(q['seeds'])}, {verdict})")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def learning_curve_plot(curves: dict, out_png) -> pathlib.Path | None:
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.8 * len(curves), 4.2), squeeze=False)
    for ax, (task, entry) in zip(axes[0], curves.items()):
        for arm, points in entry["arms"].items():
            xs = [p["n_train"] for p in points]
            ys = [p["mean"] for p in points]
            ax.errorbar(xs, ys, yerr=[p["std"] for p in points], marker="o", capsize=3, label=arm)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training structures")
        ax.set_ylabel(f"test MAE ({entry['target']})")
        ax.set_title(task, fontsize=11)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("Data efficiency: mean ± std over seeds", fontsize=11)
    fig.tight_layout()
    try:
        return atomic_savefig(fig, out_png, dpi=120)
    finally:
        plt.close(fig)


def write_learning_curves(out_dir, records: list[dict], arms, tasks, baseline, plot: bool = True) -> dict:
    """low_data.json, low_data.md and learning_curve.png in `out_dir`; {} when no task has two training sizes."""
    curves = learning_curves(records, arms, tasks, baseline)
    if not curves:
        return {}
    out_dir = pathlib.Path(out_dir)
    files = {"table": str(atomic_write_text(out_dir / "low_data.md", learning_curve_markdown(curves, baseline)))}
    if plot:
        png = learning_curve_plot(curves, out_dir / "learning_curve.png")
        if png is not None:
            files["plot"] = str(png)
    result = {"baseline": baseline, "tasks": curves, "files": files}
    files["summary"] = str(atomic_write_json(out_dir / "low_data.json", result))
    return result


# ----------------------------------------------------------------------------------------------- README
README_START = "<!-- experiment-table: {} -->"
README_END = "<!-- /experiment-table -->"


def readme_table(summary: dict) -> str:
    """The compact table the README shows for an experiment: per task the baseline's test MAE and each arm's gain of
    the mean MAE over it, with the seeds won and a `*` where the paired t-test says the gain is not seed noise."""
    arms, base = summary["arms"], summary["baseline"]
    others = [a for a in arms if a != base]
    lines = [
        "| task (target) | baseline MAE | " + " | ".join(others) + " |",
        "|---|---|" + "---|" * len(others),
    ]
    for task, entry in summary["tasks"].items():
        cells = [f"{task} ({entry['target']}){' †' if entry.get('late_best') else ''}"]
        b = entry["arms"].get(base)
        cells.append(f"{_fmt(b['mean'])} ± {_fmt(b['std'])}" if b else "—")
        for arm in others:
            gain, p = entry["improvement_pct"].get(arm), entry.get("paired", {}).get(arm)
            if gain is None or not math.isfinite(gain) or not p:
                cells.append("—")
                continue
            mark = "" if p.get("within_noise", True) else "*"
            cells.append(f"{gain:+.1f}{mark} ({p['wins']}/{len(p['seeds'])})")
        lines.append("| " + " | ".join(cells) + " |")
    avg = summary["average_improvement"]
    lines.append(
        "| **average over tasks** | | "
        + " | ".join(f"**{avg[a]['mean_pct']:+.1f}**" if a in avg else "—" for a in others)
        + " |"
    )
    return "\n".join(lines) + "\n"


def readme_block(summary_path) -> str:
    """readme_table of a summary.json between the markers the README uses (and tests/test_readme.py checks)."""
    path = pathlib.Path(summary_path)
    return f"{README_START.format(path.as_posix())}\n{readme_table(json.loads(path.read_text()))}{README_END}\n"
