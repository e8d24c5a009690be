"""Training throughput of fpcore-train: structures/s of a training epoch and where the time goes.

Configurations (cpu-scale SchNet of experiments/paper.yaml and a small equivariant transformer):
  pretrain-fly     EAD targets (the paper.yaml `ead` arm) computed on the fly every step
  pretrain-cached  the same targets computed once (descriptor.cache)
  finetune         graph-level regression of a label (volume per atom, computed from each structure: the corpus has
                   no labels, and a structural label keeps the data identical to pre-training's)
on a 2,000-structure slice of ../shared/data/pretrain_mp (its first part's first structures), with 1 and 2 threads.
Each measurement is a fresh process (threads are fixed at start-up) that builds the Trainer and times training epochs
1 (cold: the graph cache fills) and 2 (warm), with the same split file for every code version.

`--old-tree DIR` also measures another checkout (e.g. the commit before the redesign) in the same run, interleaved
with the current tree (same machine state): create it with
  git worktree add --detach ../trainer-old 8f6430f   # then build it (tools/dev_build.sh) or copy a matching build
The time split (current tree only, from wrapped calls; CPU so no device syncs are needed): data loading, graph,
targets, forward, backward, optimizer step; `other` is the rest of the step (losses, metric sums, augmentation).

  python benchmarks/bench_training.py --old-tree ../trainer-old --repeats 2
Writes benchmarks/results/training.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "pretrain_mp" / "mp_part00.extxyz.gz"
EAD = [{"name": "EAD", "kwargs": {"cutoff": 6.0, "L": 2, "eta": [1.0], "rs": [0.5, 1.3, 2.1, 2.9, 3.7, 4.5, 5.3]}}]
BACKBONES = {
    "schnet": {"backbone": "SchNet", "backbone_kwargs": {"hidden": 64, "n_layers": 3, "n_rbf": 32}},
    "et": {"backbone": "et", "backbone_kwargs": {"hidden": 64, "n_layers": 2, "n_heads": 4, "n_rbf": 32}},
}
CASES = ["schnet/pretrain-fly", "schnet/pretrain-cached", "schnet/finetune", "et/pretrain-fly", "et/finetune"]


# ------------------------------------------------------------------------------------------------ worker side


def _settings(case: str, split_file: str, data: str) -> tuple[str, list[str]]:
    backbone, task = case.split("/")
    bb = BACKBONES[backbone]
    sets = [
        f"model.backbone={bb['backbone']}",
        f"model.backbone_kwargs={json.dumps(bb['backbone_kwargs'])}",
        "model.cutoff=5.0",
        "model.head_hidden=64",
        "data.batch_size=32",
        f"data.source={data}",
        f"data.split_file={split_file}",
        "run.progress=false",
        "run.plots=false",
        "run.device=cpu",
        "optim.lr=1e-3",
    ]
    if task.startswith("pretrain"):
        sets += [f"descriptor.fingerprints={json.dumps(EAD)}", f"descriptor.cache={task == 'pretrain-cached'}"]
        return "pretrain", sets
    return "finetune", sets + ["data.targets=[volume_per_atom]"]


class Timers:
    def __init__(self):
        self.total: dict[str, float] = {}

    def wrap(self, owner, name: str, key: str):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.total[key] = self.total.get(key, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed)
        return original


def _timed_loader(loader, timers: Timers):
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        timers.total["data"] = timers.total.get("data", 0.0) + time.perf_counter() - t0
        yield batch


class _Loader:
    """The train loader with next() timed; len() and the sampler pass through."""

    def __init__(self, loader, timers):
        self.loader, self.timers, self.sampler = loader, timers, loader.sampler

    def __iter__(self):
        return _timed_loader(self.loader, self.timers)

    def __len__(self):
        return len(self.loader)


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from fpcore.data import load_dataset
    from fpcore.training import Trainer, resolve_config
    from fpcore.training import distributed as D

    kind, sets = _settings(args.case, args.split_file, args.data)
    config = resolve_config(kind, None, sets)
    dataset = load_dataset(args.data, targets=config["data"]["targets"] if kind == "finetune" else None, progress=False)
    split = json.loads(pathlib.Path(args.split_file).read_text())
    info, device = D.setup("cpu")
    t0 = time.perf_counter()
    trainer = Trainer(kind, config, tempfile.mkdtemp(), info, device, dataset, split)
    setup_s = time.perf_counter() - t0
    timers = Timers()
    new_code = hasattr(trainer, "objectives")
    if args.split_times:
        timers.wrap(torch.Tensor, "backward", "backward")
        timers.wrap(trainer.optimizer, "step", "optimizer")
        if new_code:
            for obj in trainer.objectives.values():
                timers.wrap(obj, "targets", "targets")
            timers.wrap(trainer.model, "graph", "graph")
            if trainer.graph_cache is not None:
                timers.wrap(trainer, "graph_cache", "graph")
            timers.wrap(trainer.model, "forward", "forward")
        trainer.train_loader = _Loader(trainer.train_loader, timers)
    epochs = []
    for epoch in (1, 2):
        trainer.epoch = epoch
        trainer.train_loader.sampler.set_epoch(epoch)
        timers.total.clear()
        t0 = time.perf_counter()
        metrics = trainer.run_epoch(trainer.train_loader, True, "bench")
        wall = time.perf_counter() - t0
        split_s = dict(timers.total)
        if split_s:
            split_s["other"] = wall - sum(split_s.values())
        epochs.append(
            {
                "epoch": epoch,
                "wall_s": wall,
                "structures": len(split["train"]),
                "structures_per_s": len(split["train"]) / wall,
                "train_loss": metrics["loss"],
                "split_s": split_s,
            }
        )
    return {"case": args.case, "threads": args.threads, "setup_s": setup_s, "epochs": epochs}


# ------------------------------------------------------------------------------------------------ driver side


def _prepare(workdir: pathlib.Path, n: int) -> tuple[str, str]:
    """The corpus slice with a structural label (volume per atom) and one 90/10 split for every run."""
    import gzip
    import io

    import ase.io
    import numpy as np

    # Copy the first n frames' text (ase.io.read with an index parses the whole 15k-frame file first).
    lines = []
    with gzip.open(CORPUS, "rt") as fh:
        for _ in range(n):
            count = fh.readline()
            lines.append(count)
            lines += [fh.readline() for _ in range(int(count) + 1)]
    atoms = ase.io.read(io.StringIO("".join(lines)), index=":", format="extxyz")
    for a in atoms:
        a.info["volume_per_atom"] = float(a.get_volume()) / len(a)
    data = workdir / "slice.extxyz"
    ase.io.write(str(data), atoms, format="extxyz")
    perm = np.random.RandomState(0).permutation(n)
    n_val = n // 10
    split = {"train": sorted(perm[n_val:].tolist()), "val": sorted(perm[:n_val].tolist()), "test": []}
    split_file = workdir / "split.json"
    split_file.write_text(json.dumps(split))
    return str(data), str(split_file)


def _run(tree: pathlib.Path, case, threads, data, split_file, split_times: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree / "python"), OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", "--case", case]
    cmd += ["--threads", str(threads), "--data", data, "--split-file", split_file]
    cmd += ["--split-times"] if split_times else []
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=str(tree))
    if out.returncode != 0:
        raise RuntimeError(f"{tree} {case} {threads} threads failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(results: list[dict], has_old: bool) -> str:
    head = "| case | threads | new structures/s (warm epoch) |"
    sep = "|---|---|---|"
    if has_old:
        head += " old structures/s | speed-up | loss new / old |"
        sep += "---|---|---|"
    head += " split of a warm step (new): data / graph / targets / forward / backward / optimizer / other |"
    sep += "---|"
    lines = [head, sep]
    for r in results:
        new = [x["epochs"][1]["structures_per_s"] for x in r["new"]]
        row = f"| {r['case']} | {r['threads']} | {min(new):.0f}-{max(new):.0f} |"
        if has_old:
            old = [x["epochs"][1]["structures_per_s"] for x in r["old"]]
            ratios = [n / o for n, o in zip(new, old)]
            loss = r["new"][0]["epochs"][1]["train_loss"], r["old"][0]["epochs"][1]["train_loss"]
            row += f" {min(old):.0f}-{max(old):.0f} | {min(ratios):.2f}-{max(ratios):.2f}x | {loss[0]:.4f} / {loss[1]:.4f} |"
        split = r["new"][0]["epochs"][1]["split_s"]
        wall = r["new"][0]["epochs"][1]["wall_s"]
        keys = ["data", "graph", "targets", "forward", "backward", "optimizer", "other"]
        row += " " + " / ".join(f"{100 * split.get(k, 0.0) / wall:.0f}%" for k in keys) + " |"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--split-file", help=argparse.SUPPRESS)
    p.add_argument("--split-times", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    p.add_argument("--structures", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--old-tree", help="another checkout to measure in the same run (e.g. a worktree at 8f6430f)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training.json"))
    args = p.parse_args()
    if args.worker:
        args.threads = args.threads[0]
        print(json.dumps(worker(args)))
        return
    old = pathlib.Path(args.old_tree).resolve() if args.old_tree else None
    with tempfile.TemporaryDirectory() as tmp:
        data, split_file = _prepare(pathlib.Path(tmp), args.structures)
        results = []
        for case in args.cases:
            for threads in args.threads:
                entry = {"case": case, "threads": threads, "new": [], "old": []}
                for rep in range(args.repeats):
                    # Interleaved, so both trees see the same machine state; the split timers only on the first.
                    entry["new"].append(_run(ROOT, case, threads, data, split_file, split_times=rep == 0))
                    if old is not None:
                        entry["old"].append(_run(old, case, threads, data, split_file, split_times=False))
                    print(f"[bench_training] {case} {threads} thread(s) repeat {rep + 1} done", file=sys.stderr)
                results.append(entry)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    old_commit = (
        subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=old, capture_output=True, text=True).stdout
        if old
        else None
    )
    table = _table(results, old is not None)
    report = {
        "benchmark": "bench_training",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": commit.strip(),
        "old_commit": old_commit.strip() if old_commit else None,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
        "structures": args.structures,
        "repeats": args.repeats,
        "note": "structures/s of training epoch 2 (warm: graph cache filled in epoch 1); ranges over repeats; "
        "split timers wrap calls on the first repeat (they add a little overhead)",
        "results": results,
        "table": table,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table)
    print(f"written {out}")


if __name__ == "__main__":
    main()
