"""How much the backbones' outputs jump when one neighbour crosses the cutoff (issue 9 section 2).

    python benchmarks/model_continuity.py [--json benchmarks/results/model_continuity.json] [--seeds 3]

Paper-size backbones (ET: 128 features, 8 layers, 8 heads, 50 radial functions, 8 A cutoff), float64, in a rattled
periodic rock-salt crystal: the pair (0, k) whose distance is closest below the cutoff is stretched along its bond to
cutoff - eps and cutoff + eps (eps = 1e-6 A) by moving atom k. Reported per variant and seed: the change of atom 0's
features relative to their size, |f(rc+eps) - f(rc-eps)| / |f(rc-eps)| (Frobenius norms over the feature axes), for
the scalar and the vector features, and the relative change of a sum-pooled graph output.
Variants: ET "legacy" (vector messages without the cutoff envelope: the ET before the fix), ET "default" (fixed),
ET "paper" preset, and SchNet for comparison.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import subprocess

import torch
from ase.build import bulk

from fpcore.models import build_model

HERE = pathlib.Path(__file__).resolve().parent
ET = {"hidden": 128, "n_layers": 8, "n_heads": 8, "n_rbf": 50, "cutoff": 8.0}
VARIANTS = {
    "ET legacy (no vector cutoff)": ("EquivariantTransformer", dict(ET, vector_cutoff=False)),
    "ET default (vector cutoff)": ("EquivariantTransformer", ET),
    "ET paper preset": ("EquivariantTransformer", dict(ET, preset="paper")),
    "SchNet": ("SchNet", {"hidden": 64, "n_layers": 3, "n_rbf": 50, "cutoff": 8.0}),
}
EPS = 1e-6


def structure():
    atoms = bulk("NaCl", "rocksalt", a=5.64) * (2, 1, 1)
    atoms.rattle(0.1, seed=11)
    z = torch.tensor(atoms.numbers)
    pos = torch.tensor(atoms.positions, dtype=torch.float64)
    cell = torch.tensor(atoms.cell[:], dtype=torch.float64).view(1, 3, 3)
    return z, pos, cell, torch.ones(1, 3, dtype=torch.bool), torch.zeros(len(atoms), dtype=torch.long)


def crossing_positions(model, z, pos, cell, pbc, batch):
    """Positions with the pair (0, k) at cutoff - EPS and at cutoff + EPS (atom k moved along the bond)."""
    rc = model.backbone.cutoff
    g = model.graph(pos, cell, pbc, batch, 1)
    mine = (g.i == 0) & (g.j != 0)
    pick = torch.nonzero(mine).squeeze(1)[torch.argmax(g.distances[mine])]
    k, d, unit = int(g.j[pick]), float(g.distances[pick]), g.vectors[pick] / g.distances[pick]
    out = []
    for target in (rc - EPS, rc + EPS):
        moved = pos.clone()
        moved[k] += (target - d) * unit
        out.append(moved)
    return out, k


def relative(a, b):
    return float((a - b).norm() / a.norm())


def measure(name, kwargs, seed):
    torch.manual_seed(seed)
    head = {"class": "GraphHead", "kwargs": {"n_out": 1, "pooling": "sum"}}
    model = build_model({"backbone": {"class": name, "kwargs": kwargs}, "head": head}).double()
    z, pos, cell, pbc, batch = structure()
    (inside, outside), k = crossing_positions(model, z, pos, cell, pbc, batch)
    result = {}
    with torch.no_grad():
        feats = [model.backbone(z, model.graph(p, cell, pbc, batch, 1)) for p in (inside, outside)]
        outs = [model(z, p, cell, pbc, batch, 1) for p in (inside, outside)]
    result["scalar_jump"] = relative(feats[0].scalar[0], feats[1].scalar[0])
    if feats[0].vector is not None:
        result["vector_jump"] = relative(feats[0].vector[0], feats[1].vector[0])
    result["graph_output_jump"] = relative(outs[0], outs[1])
    result["moved_atom"] = k
    return result


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    except OSError:
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=pathlib.Path, default=None)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {"commit": git_commit(), "machine": platform.machine(), "eps_angstrom": EPS, "variants": {}}
    for label, (name, kwargs) in VARIANTS.items():
        runs = [measure(name, kwargs, seed) for seed in range(args.seeds)]
        report["variants"][label] = {"backbone": name, "kwargs": kwargs, "runs": runs}
        cells = []
        for key in ("scalar_jump", "vector_jump", "graph_output_jump"):
            values = [r[key] for r in runs if key in r]
            cells.append(f"{key} {min(values):.2e}..{max(values):.2e}" if values else f"{key} -")
        print(f"{label:30s} " + "  ".join(cells))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
