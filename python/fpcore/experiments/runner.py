"""The paper's protocol: per arm one pre-training, then per task and seed one fine-tuning with identical budgets.

Layout of the results folder:
  pretrain/<arm>/                      fpcore-train pretrain run (reused when COMPLETED)
  finetune/<task>/<arm>/seed<seed>/    fpcore-train finetune (or train for the baseline) run
  finetune/<task>/<arm>/seed<seed>_train<pct>/   the same on <pct>% of the training split (low_data)
  splits/<task>_seed<seed>.json        the split every arm of that seed uses (indices into the task's data set)
  splits/<task>_seed<seed>_train<pct>.json       its training subset: same val/test, nested training subsets
  results.json, table.md, summary.json, improvement.png, experiment.yaml
  <low_data.out>/{low_data.json, low_data.md, learning_curve.png}   the learning curves (with low_data)
A run folder with COMPLETED is skipped when it was made with the same resolved run config (its sha256 is stored in
experiment_record.json); a COMPLETED run whose config differs (other epochs, descriptor settings, a redone
pre-training) is redone, with a log line saying so. A folder with last.pt resumes when its saved config.yaml matches,
and starts over otherwise; anything else starts over.
Run folders (checkpoints) are not committed, the results files are: a fine-tuning without a run folder whose record
in the results files of `out` (results.json, <low_data.out>/results.json) has the same config sha256 is taken from
that record (status "recorded") instead of being run again, so a fresh clone finishes an unfinished experiment by
running only what is missing. Pre-trainings are always run when a fine-tuning needs them; with --report-only their
records are taken from summary.json the same way.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import os
import pathlib
import sys
import time

import numpy as np

from .._io import atomic_write_json, atomic_write_text
from ..data import StructureDataset, load_dataset, random_split
from ..data._flat import FlatStructures
from ..pretrained import file_sha256
from ..pretrained import resolve as resolve_checkpoint
from ..training import COMPLETED, run_training
from ..training import distributed as D
from .config import deep_merge, dump, pretrain_settings, pretrains, resolve_path, trainer_config
from .report import train_fraction, write_learning_curves, write_reports

RECORD = "experiment_record.json"
# Run-config keys that do not change what a run computes (where it lives, how it reports, how many CPU threads it
# uses: an experiment may be run as several single-threaded commands side by side and resumed with the default).
UNHASHED = {
    ("run", "dir"),
    ("run", "progress"),
    ("run", "plots"),
    ("run", "tensorboard"),
    ("run", "threads"),
    ("data", "cache_dir"),
}
#: keys added after runs were first hashed, whose value here reproduces what those runs did: left out of the hash at
#: this value, so adding them does not re-run finished experiments
UNHASHED_AT = {("model", "preset"): None, ("model", "head_init"): "default"}
#: a run whose best epoch lies in the last LATE_FRACTION of its epoch cap may not have converged
LATE_FRACTION = 0.1
#: status of a run taken from the committed results files (same config sha256) instead of its run folder
RECORDED = "recorded"


def config_hash(cfg: dict, upstream: str | None = None) -> str:
    """sha256 of a resolved run config (split file by content, not path) and of the run it starts from."""
    cfg = copy.deepcopy(cfg)
    for section, key in UNHASHED:
        cfg.get(section, {}).pop(key, None)
    for (section, key), value in UNHASHED_AT.items():
        if section in cfg and key in cfg[section] and cfg[section][key] == value:
            del cfg[section][key]
    split_file = cfg.get("data", {}).get("split_file")
    if split_file:
        cfg["data"]["split_file"] = hashlib.sha256(pathlib.Path(split_file).read_bytes()).hexdigest()
    text = json.dumps({"config": cfg, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def late_best(best_epoch, epochs_max) -> bool:
    return bool(best_epoch and epochs_max) and int(best_epoch) > (1.0 - LATE_FRACTION) * int(epochs_max)


def subset_dataset(dataset: StructureDataset, indices) -> StructureDataset:
    """A new StructureDataset holding only `indices` (in that order), so that data.idx, the target cache and the
    trainer all see a plain 0..n-1 data set."""
    f = dataset._flat
    idx = np.asarray(indices, dtype=np.int64)
    offsets = np.asarray(f.offsets)
    counts = offsets[idx + 1] - offsets[idx]
    new_offsets = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(counts, out=new_offsets[1:])
    atoms = np.repeat(offsets[idx] - new_offsets[:-1], counts) + np.arange(int(new_offsets[-1]))
    flat = FlatStructures(
        numbers=np.asarray(f.numbers)[atoms],
        positions=np.asarray(f.positions[atoms], dtype=np.float64),
        offsets=new_offsets,
        cells=np.asarray(f.cells)[idx],
        pbc=np.asarray(f.pbc)[idx],
        y=None if f.y is None else np.asarray(f.y)[idx],
        ids=[f.ids[i] for i in idx.tolist()],
        target_names=list(f.target_names),
        origins=[(dataset.source, 0, len(idx))],
    )
    return StructureDataset(flat, source=f"{dataset.source} (subset of {len(idx)})")


def subsample(dataset: StructureDataset, max_structures, seed: int) -> StructureDataset:
    if max_structures is None or max_structures >= len(dataset):
        return dataset
    keep = np.sort(np.random.RandomState(int(seed) % 2**32).permutation(len(dataset))[:max_structures])
    return subset_dataset(dataset, keep)


def _write_split(path: pathlib.Path, n: int, fractions, seed: int) -> pathlib.Path:
    split = random_split(n, fractions, seed=seed)
    atomic_write_json(path, {k: v.tolist() for k, v in split.items()} | {"n": n, "seed": seed, "fractions": fractions})
    return path


def fraction_label(fraction: float) -> str:
    """'10' for 0.1, '2.5' for 0.025: the percentage in run-folder and split-file names."""
    return f"{float(fraction) * 100:g}"


def _write_train_subset(full_split: pathlib.Path, fraction: float, seed: int) -> pathlib.Path:
    """The split with only `fraction` of its training structures; validation and test are unchanged, and the subsets
    are nested (10% of the training split lies inside 25%, ...) because each is a prefix of one seeded shuffle."""
    split = json.loads(full_split.read_text())
    train = np.asarray(split["train"], dtype=np.int64)
    keep = max(1, round(fraction * len(train)))
    shuffled = train[np.random.RandomState(int(seed) % 2**32).permutation(len(train))]
    path = full_split.with_name(f"{full_split.stem}_train{fraction_label(fraction)}.json")
    subset = split | {"train": np.sort(shuffled[:keep]).tolist(), "train_fraction": fraction}
    atomic_write_json(path, subset)
    return path


def _wall_from_metrics(run_dir: pathlib.Path) -> float:
    try:
        with open(run_dir / "metrics.csv", newline="") as fh:
            return float(sum(float(r["time_s"]) for r in csv.DictReader(fh)))
    except (OSError, ValueError, KeyError):
        return float("nan")


class NotFinished(Exception):
    """A run that report-only mode found unfinished (or finished with another config)."""


class Experiment:
    """Runs (or resumes) an experiment described by a config from load_experiment_config.

    `train_fn` is run_training by default; tests pass a counting wrapper. With `report_only` nothing trains: the
    reports are written from the runs already finished with the current config (the others are listed as missing),
    e.g. to look at a long experiment while it runs.
    """

    def __init__(self, config: dict, train_fn=run_training, progress: bool = True, log=None, report_only: bool = False):
        self.config = config
        self.report_only = report_only
        self.missing: list[str] = []
        self.out = pathlib.Path(config["out"])
        self.train_fn = train_fn
        self.progress = progress
        self.log = log or (lambda msg: print(f"[fpcore-experiment] {msg}", file=sys.stderr, flush=True))
        self.arms = config["run_arms"]
        self.tasks = config["run_tasks"]
        self.baseline = config["baseline_arm"] if config["baseline_arm"] in self.arms else None
        self.records: list[dict] = []
        self.pretrain_records: dict[str, dict] = {}
        self._datasets: dict = {}
        self._committed_finetunes, self._committed_pretrains = _committed_records(self.out, config.get("low_data"))
        # Resolve every data path first: a missing file fails now, not hours into the run.
        self.task_sources = {t: resolve_path(config, config["tasks"][t]["source"]) for t in self.tasks}
        self.pretrain_source = (
            resolve_path(config, config["pretrain"]["source"])
            if any(pretrains(config["arms"][a]) for a in self.arms)
            else None
        )

    # ------------------------------------------------------------------------------------------- plan
    def plan(self) -> list[tuple]:
        runs = [("pretrain", arm) for arm in self.arms if pretrains(self.config["arms"][arm])]
        runs += [
            ("finetune", task, arm, seed) for task in self.tasks for seed in self.config["seeds"] for arm in self.arms
        ]
        low = self.config.get("low_data")
        if low:
            runs += [
                ("finetune", task, arm, seed, fraction)
                for task in low["tasks"]
                if task in self.tasks
                for fraction in low["fractions"]
                for seed in self.config["seeds"]
                for arm in low["arms"]
                if arm in self.arms
            ]
        return runs

    def pretrain_dir(self, arm: str) -> pathlib.Path:
        return self.out / "pretrain" / arm

    def finetune_dir(self, task: str, arm: str, seed: int, fraction: float = 1.0) -> pathlib.Path:
        name = f"seed{seed}" if fraction == 1.0 else f"seed{seed}_train{fraction_label(fraction)}"
        return self.out / "finetune" / task / arm / name

    # ------------------------------------------------------------------------------------------- data
    def _pretrain_data(self) -> StructureDataset:
        if "pretrain" not in self._datasets:
            pre = self.config["pretrain"]
            full = load_dataset(self.pretrain_source, targets=None, progress=self.progress)
            self._datasets["pretrain"] = subsample(full, pre["max_structures"], self.config["subsample_seed"])
        return self._datasets["pretrain"]

    def _task_data(self, task: str) -> StructureDataset:
        if task not in self._datasets:
            spec = self.config["tasks"][task]
            full = load_dataset(self.task_sources[task], targets=[spec["target"]], progress=self.progress)
            self._datasets[task] = subsample(full, spec.get("max_structures"), self.config["subsample_seed"])
        return self._datasets[task]

    # ------------------------------------------------------------------------------------------- runs
    def _train(self, kind, cfg, run_dir: pathlib.Path, dataset, digest: str, init_from=None):
        """(summary, wall seconds of this call, status) for one run folder, skipping or resuming as needed."""
        info = D.DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))
        D.barrier(info)
        if (run_dir / COMPLETED).is_file() and (run_dir / "summary.json").is_file():
            stored = _stored_hash(run_dir)
            if stored == digest:
                return json.loads((run_dir / "summary.json").read_text()), 0.0, "skipped"
            if self.report_only:
                raise NotFinished(f"{run_dir} (finished with another config)")
            if self._is_main():
                self.log(
                    f"{run_dir}: COMPLETED with another config (sha256 {str(stored)[:12]} vs {digest[:12]}); redoing it"
                )
        if self.report_only:
            raise NotFinished(str(run_dir))
        resume = (run_dir / "last.pt").is_file() and not (run_dir / COMPLETED).is_file()
        if resume and not _same_saved_config(run_dir, cfg):
            if self._is_main():
                self.log(f"{run_dir}: interrupted run made with another config; starting it over")
            resume = False
        t0 = time.perf_counter()
        summary = self.train_fn(
            kind,
            cfg,
            run_dir=run_dir,
            init_from=None if resume else init_from,
            resume=resume,
            overwrite=not resume,
            dataset=dataset,
        )
        return summary, time.perf_counter() - t0, "resumed" if resume else "ran"

    def run_pretrain(self, arm: str) -> dict:
        pre = self.config["pretrain"]
        run_dir = self.pretrain_dir(arm)
        dataset = self._pretrain_data()
        split_file = _write_split(
            self.out / "splits" / "pretrain.json", len(dataset), pre["split"], self.config["subsample_seed"]
        )
        cfg = trainer_config(
            self.config,
            "pretrain",
            deep_merge(
                pretrain_settings(self.config["arms"][arm]),
                {
                    "data": {"source": self.pretrain_source, "targets": None, "split_file": str(split_file)},
                    "run": {"dir": str(run_dir)},
                },
            ),
        )
        digest = config_hash(cfg)
        if self.report_only and not run_dir.exists():
            recorded = _recorded(self._committed_pretrains.get(arm), digest)
            if recorded is not None:
                self.pretrain_records[arm] = recorded
                return recorded
        summary, wall, status = self._train("pretrain", cfg, run_dir, dataset, digest)
        record = {
            "arm": arm,
            "config_sha256": digest,
            "best_val_mae": summary.get("best_val_mae"),
            "epochs": summary.get("epochs_run"),
            "best_epoch": summary.get("best_epoch"),
            "n_structures": summary.get("n_structures"),
            "wall_s": self._wall(run_dir, wall, status),
            "checkpoint": str(run_dir / "best.pt"),
            "status": status,
        }
        self._save_record(run_dir, record, status)
        self.pretrain_records[arm] = self._load_record(run_dir, record)
        return self.pretrain_records[arm]

    def run_finetune(self, task: str, arm: str, seed: int, fraction: float = 1.0) -> dict:
        spec = self.config["tasks"][task]
        dataset = self._task_data(task)
        split_file = self.out / "splits" / f"{task}_seed{seed}.json"
        _write_split(split_file, len(dataset), self.config["split"], seed)
        if fraction != 1.0:
            split_file = _write_train_subset(split_file, fraction, seed)
        run_dir = self.finetune_dir(task, arm, seed, fraction)
        cfg = trainer_config(
            self.config,
            "finetune",
            {
                "data": {"source": self.task_sources[task], "targets": [spec["target"]], "split_file": str(split_file)},
                "run": {"dir": str(run_dir), "seed": int(seed)},
            },
        )
        init_from, upstream, spec_arm, own_pretraining = None, None, self.config["arms"][arm], False
        if isinstance(spec_arm, dict) and "from" in spec_arm:
            # A pre-training made elsewhere (a bundled model): the run depends on the checkpoint's content.
            init_from = resolve_checkpoint(spec_arm["from"])
            upstream = file_sha256(init_from)
        elif spec_arm is not None:
            init_from, own_pretraining = self.pretrain_dir(arm) / "best.pt", True
            if arm not in self.pretrain_records and self.report_only:
                raise NotFinished(f"{run_dir} (its pre-training has not finished)")
            upstream = self.pretrain_records[arm].get("config_sha256")
        digest = config_hash(cfg, upstream)
        if not run_dir.exists():
            recorded = _recorded(self._committed_finetunes.get((task, arm, int(seed), float(fraction))), digest)
            if recorded is not None:
                return recorded
        # (with --report-only, _train reports the run as missing)
        if own_pretraining and not self.report_only and not (self.pretrain_dir(arm) / COMPLETED).is_file():
            raise RuntimeError(f"arm {arm!r}: the pre-training in {self.pretrain_dir(arm)} has not completed")
        summary, wall, status = self._train("finetune", cfg, run_dir, dataset, digest, init_from=init_from)
        if "test_mae" not in summary:
            raise RuntimeError(f"{run_dir}: the run has no test MAE (empty test split?)")
        n = summary.get("n_structures", {})
        record = {
            "task": task,
            "target": spec["target"],
            "arm": arm,
            "seed": int(seed),
            "train_fraction": float(fraction),
            "test_mae": float(summary["test_mae"]),
            "val_mae": float(summary["best_val_mae"]),
            "epochs": summary.get("epochs_run"),
            "best_epoch": summary.get("best_epoch"),
            "epochs_max": int(cfg["optim"]["epochs"]),
            "late_best": late_best(summary.get("best_epoch"), cfg["optim"]["epochs"]),
            "stopped_early": summary.get("stopped_early"),
            "config_sha256": digest,
            "n_train": n.get("train"),
            "n_val": n.get("val"),
            "n_test": n.get("test"),
            "wall_s": self._wall(run_dir, wall, status),
            "run_dir": str(run_dir),
            "init_from": str(init_from) if init_from else None,
            "status": status,
        }
        self._save_record(run_dir, record, status)
        return self._load_record(run_dir, record)

    def _wall(self, run_dir, wall, status) -> float:
        return wall if status == "ran" else _wall_from_metrics(run_dir)

    def _save_record(self, run_dir: pathlib.Path, record: dict, status: str) -> None:
        if status != "skipped" and self._is_main():
            atomic_write_json(run_dir / RECORD, record)

    @staticmethod
    def _load_record(run_dir: pathlib.Path, fallback: dict) -> dict:
        path = run_dir / RECORD
        if fallback["status"] == "skipped" and path.is_file():
            saved = json.loads(path.read_text())
            saved["status"] = "skipped"
            return saved
        return fallback

    @staticmethod
    def _is_main() -> bool:
        return int(os.environ.get("RANK", "0")) == 0

    # ------------------------------------------------------------------------------------------- all
    def reports(self) -> dict:
        main = [r for r in self.records if train_fraction(r) == 1.0]
        low_runs = [r for r in self.records if train_fraction(r) != 1.0]
        finite = lambda records: sum(r["wall_s"] for r in records if math.isfinite(r["wall_s"]))  # noqa: E731
        phases = {
            "pretrain": finite(self.pretrain_records.values()),
            "finetune": finite(main),
            "low_data": finite(low_runs),
        }
        extra = {
            "title": "Fingerprint pre-training vs. training from scratch"
            + (f" (scale {self.config['scale']})" if self.config.get("scale") else ""),
            "scale": self.config["scale"],
            "seeds": self.config["seeds"],
            "pretrain": self.pretrain_records,
            "wall_s_by_phase": phases,
            "total_wall_s": sum(phases.values()),
            "runs": {"planned": len(self.plan()), "missing": self.missing},
        }
        if not self._is_main():
            return extra
        summary = write_reports(
            self.out, main, self.arms, self.tasks, self.baseline, extra, plot=bool(self.config["plot"])
        )
        low = self.config.get("low_data")
        if low and low_runs:
            tasks = [t for t in low["tasks"] if t in self.tasks]
            arms = [a for a in low["arms"] if a in self.arms]
            folder = low_data_folder(self.out, low)
            baseline = self.baseline if self.baseline in arms else None
            curves = write_learning_curves(
                folder, [*main, *low_runs], arms, tasks, baseline, plot=bool(self.config["plot"])
            )
            if curves:
                atomic_write_json(folder / "results.json", low_runs)
                summary["low_data"] = curves["files"]
        return summary

    def run(self) -> dict:
        plan = self.plan()
        if self._is_main():
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "experiment.yaml", dump(self.config))
        iterator = plan
        bar = None
        if self.progress and self._is_main():
            from tqdm.auto import tqdm

            bar = iterator = tqdm(plan, desc="experiment", unit="run", dynamic_ncols=True)
        for item in iterator:
            name = "/".join(str(x) for x in item)
            if bar is not None:
                bar.set_description(name)
            try:
                rec = self.run_pretrain(item[1]) if item[0] == "pretrain" else self.run_finetune(*item[1:])
            except NotFinished as missing:
                self.missing.append(str(missing))
                continue
            if item[0] == "pretrain":
                msg = f"{name}: {rec['status']}, val MAE {rec['best_val_mae']:.4g}, {rec['wall_s']:.0f} s"
            else:
                self.records.append(rec)
                if self._is_main():
                    atomic_write_json(self.out / "results.json", self.records)
                msg = (
                    f"{name}: {rec['status']}, test MAE {rec['test_mae']:.4g} (val {rec['val_mae']:.4g}, "
                    f"{rec['epochs']} epochs, {rec['wall_s']:.0f} s)"
                )
            if self._is_main():
                (bar.write if bar is not None else self.log)(f"[fpcore-experiment] {msg}")
        if bar is not None:
            bar.close()
        return self.reports()


def low_data_folder(out: pathlib.Path, low_data: dict) -> pathlib.Path:
    """Where the learning curves of an experiment writing to `out` go (low_data.out is relative to it)."""
    return pathlib.Path(os.path.normpath(out / low_data["out"]))


def _committed_records(out: pathlib.Path, low_data) -> tuple[dict, dict]:
    """The records in the results files of `out`: fine-tunings by (task, arm, seed, train fraction), pre-trainings by
    arm. Unreadable or absent files give none (the runs are then done again)."""
    paths = [out / "results.json"]
    if low_data:
        paths.append(low_data_folder(out, low_data) / "results.json")
    finetunes = {}
    for path in paths:
        try:
            records = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for r in records if isinstance(records, list) else []:
            try:
                finetunes[(r["task"], r["arm"], int(r["seed"]), float(r["train_fraction"]))] = r
            except (KeyError, TypeError, ValueError):
                continue
    try:
        pretrains = json.loads((out / "summary.json").read_text()).get("pretrain") or {}
    except (OSError, ValueError, AttributeError):
        pretrains = {}
    return finetunes, pretrains if isinstance(pretrains, dict) else {}


def _recorded(record, digest: str):
    """A copy of a committed record made with config sha256 `digest`, marked as recorded; None otherwise."""
    if not isinstance(record, dict) or record.get("config_sha256") != digest:
        return None
    return {**record, "status": RECORDED}


def _stored_hash(run_dir: pathlib.Path):
    try:
        return json.loads((run_dir / RECORD).read_text()).get("config_sha256")
    except (OSError, ValueError):
        return None


def _same_saved_config(run_dir: pathlib.Path, cfg: dict) -> bool:
    import yaml

    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return False
    return config_hash(saved) == config_hash(cfg)


def run_experiment(config: dict, train_fn=run_training, progress: bool = True, report_only: bool = False) -> dict:
    """Runs the experiment; under torchrun every rank calls this (each run is DDP), rank 0 writes the reports."""
    if report_only:
        return Experiment(config, train_fn=train_fn, progress=progress, report_only=True).run()
    info, _ = D.setup(_device(config))
    try:
        return Experiment(config, train_fn=train_fn, progress=progress).run()
    finally:
        D.teardown(info)


def _device(config: dict) -> str:
    # Validated by load_experiment_config: trainer.run, when present, is a mapping.
    return str((config["trainer"].get("run") or {}).get("device") or "auto")
