"""torch_geometric pieces vs hand-written ones in fpcore.models, CPU forward + backward (issue 9 section 2).

    python benchmarks/bench_pyg_pieces.py [--json benchmarks/results/pyg_pieces_cpu.json] [--repeats 7] [--threads 1]

1. SchNet interaction blocks: torch_geometric's InteractionBlock (what fpcore's SchNet uses) against the
   hand-written CFConv it replaced (same layers, written out below), cpu-scale SchNet (64 features, 3 layers,
   32 Gaussians, 5 A cutoff) on two batches of 32 structures of ../shared/data/pretrain_mp (part 00, first 64).
2. Scatter sums: `index_add_` (fpcore.models.common.scatter_sum) against `torch_geometric.utils.scatter`, on
   SchNet-shaped (P, 64) and ET-shaped (P, 3, 128) messages.
Variants alternate within each repeat (same load); ranges drop the fastest and slowest repeat.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import pathlib
import platform
import subprocess
import time

import ase.io
import torch
from torch import nn
from torch_geometric.nn.models.schnet import GaussianSmearing, ShiftedSoftplus
from torch_geometric.utils import scatter

from fpcore.models import build_backbone, build_graph
from fpcore.models.common import CosineCutoff, scatter_sum

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "pretrain_mp" / "mp_part00.extxyz.gz"
SIZES = {"hidden": 64, "n_layers": 3, "n_rbf": 32, "cutoff": 5.0}


class HandWrittenCFConv(nn.Module):
    """The interaction block of fpcore's SchNet before it used torch_geometric's (kept here for the comparison)."""

    def __init__(self, hidden, n_rbf, cutoff):
        super().__init__()
        self.lin_in = nn.Linear(hidden, hidden, bias=False)
        self.filter = nn.Sequential(nn.Linear(n_rbf, hidden), ShiftedSoftplus(), nn.Linear(hidden, hidden))
        self.lin_out = nn.Sequential(nn.Linear(hidden, hidden), ShiftedSoftplus(), nn.Linear(hidden, hidden))
        self.cutoff = CosineCutoff(cutoff)

    def forward(self, x, graph, rbf):
        w = self.filter(rbf) * self.cutoff(graph.distances).unsqueeze(-1)
        return self.lin_out(scatter_sum(self.lin_in(x)[graph.j] * w, graph.i, x.shape[0]))


class HandWrittenSchNet(nn.Module):
    def __init__(self, hidden, n_layers, n_rbf, cutoff):
        super().__init__()
        self.embedding = nn.Embedding(101, hidden)
        self.rbf = GaussianSmearing(0.0, cutoff, n_rbf)
        self.interactions = nn.ModuleList(HandWrittenCFConv(hidden, n_rbf, cutoff) for _ in range(n_layers))

    def forward(self, z, graph):
        x, rbf = self.embedding(z), self.rbf(graph.distances)
        for block in self.interactions:
            x = x + block(x, graph, rbf)
        return x


def read_frames(path, n):
    with gzip.open(path, "rt") as fh:
        text = fh.read()
    return ase.io.read(io.StringIO(text), index=slice(0, n), format="extxyz")


def batch_of(frames):
    z = torch.tensor([n for a in frames for n in a.numbers])
    pos = torch.cat([torch.tensor(a.positions) for a in frames])
    cell = torch.stack([torch.tensor(a.cell[:]) for a in frames])
    pbc = torch.ones(len(frames), 3, dtype=torch.bool)
    batch = torch.cat([torch.full((len(a),), k) for k, a in enumerate(frames)])
    g = build_graph(pos, cell, pbc, batch, len(frames), cutoff=SIZES["cutoff"])
    return z, g


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summary(times):
    kept = sorted(times)[1:-1] if len(times) > 2 else times
    return {"min_ms": 1e3 * min(kept), "max_ms": 1e3 * max(kept), "all_ms": [1e3 * t for t in times]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = read_frames(DATA, 64)
    batches = [batch_of(frames[k : k + 32]) for k in (0, 32)]
    torch.manual_seed(0)
    models = {"torch_geometric InteractionBlock": build_backbone("SchNet", SIZES), "hand-written CFConv": None}
    models["hand-written CFConv"] = HandWrittenSchNet(**SIZES)

    def step(name):
        def run():
            for z, g in batches:
                out = models[name](z, g)
                (out.scalar if isinstance(out, tuple) else out).square().sum().backward()

        return run

    report = {
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip(),
        "machine": platform.machine(),
        "threads": args.threads,
        "atoms_per_batch": [len(z) for z, _ in batches],
        "edges_per_batch": [g.i.numel() for _, g in batches],
        "schnet_two_batches_fwd_bwd": {name: [] for name in models},
        "scatter_sum_fwd_bwd": {},
    }
    for _ in range(args.repeats):
        for name in models:
            report["schnet_two_batches_fwd_bwd"][name] += timed(step(name), 1)
    report["schnet_two_batches_fwd_bwd"] = {k: summary(v) for k, v in report["schnet_two_batches_fwd_bwd"].items()}

    _, g = batches[1]
    n, index = int(g.i.max()) + 1, g.i
    for shape in ((index.numel(), 64), (index.numel(), 3, 128)):
        src = torch.randn(shape, requires_grad=True)
        variants = {
            "index_add_ (fpcore scatter_sum)": lambda src=src: scatter_sum(src, index, n).sum().backward(),
            "torch_geometric.utils.scatter": lambda src=src: (
                scatter(src, index, 0, dim_size=n, reduce="sum").sum().backward()
            ),
        }
        times = {name: [] for name in variants}
        for _ in range(3 * args.repeats):
            for name, fn in variants.items():
                times[name] += timed(fn, 1)
        report["scatter_sum_fwd_bwd"][str(shape)] = {k: summary(v) for k, v in times.items()}

    for section in ("schnet_two_batches_fwd_bwd", "scatter_sum_fwd_bwd"):
        print(section)
        rows = report[section] if section.startswith("schnet") else None
        if rows:
            for name, s in rows.items():
                print(f"  {name:36s} {s['min_ms']:.1f}..{s['max_ms']:.1f} ms")
        else:
            for shape, variants in report[section].items():
                for name, s in variants.items():
                    print(f"  {shape:16s} {name:36s} {s['min_ms']:.2f}..{s['max_ms']:.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
