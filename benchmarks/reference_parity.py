"""Accuracy of fpcore's fingerprints against the published reference codes (../shared/reference).

    python benchmarks/reference_parity.py [--reference ../shared/reference] [--json out.json]

For every parameter set and structure it computes fpcore's features and, where the reference has them, the
derivatives with respect to positions (dxdr) and homogeneous strain (rdxdr), and prints the worst error in units
of the acceptance rule's scale: max |x - ref| / max(|ref|, column_scale[f]) (the rule passes below 1e-8).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def build(set_name: str, params: dict, density: pathlib.Path):
    import fpcore

    if set_name.startswith("wacsf"):
        g2, g4 = params.get("G2", {}), params.get("G4", {})
        return fpcore.WACSF(
            cutoff=params["Rc"],
            cutoff_fn=params["cutoff"],
            g2_eta=g2["eta"],
            g2_rs=g2["Rs"],
            g4_eta=g4["eta"],
            g4_lambda=g4["lambda"],
            g4_zeta=g4["zeta"],
            g4_rs=g4["Rs"],
        )
    if set_name.startswith("ead"):
        return fpcore.EAD(
            cutoff=params["Rc"], cutoff_fn=params["cutoff"], L=params["L"], eta=params["eta"], rs=params["Rs"]
        )
    if set_name.startswith("gmp"):
        return fpcore.GMP(
            orders=params["orders"],
            sigmas=params["sigmas"],
            density=str(density),
            overlap_threshold=params["overlap_threshold"],
            square=params["square"],
            scaling_mode=params["scaling_mode"],
        )
    raise ValueError(set_name)


def worst(got, want, scale) -> float:
    scale = np.asarray(scale).reshape((1, -1) + (1,) * (want.ndim - 2))
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), scale)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=pathlib.Path, default=HERE.parent.parent / "shared" / "reference")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args(argv)
    if not (args.reference / "params.json").exists():
        print(f"reference data not found in {args.reference}", file=sys.stderr)
        return 2
    from ase.io import read

    import fpcore

    params = json.loads((args.reference / "params.json").read_text())
    values = np.load(args.reference / "reference.npz")
    derivs = np.load(args.reference / "derivatives.npz")
    structures = {a.info["name"]: a for a in read(args.reference / "structures.extxyz", index=":")}
    density = args.reference.parent / "data" / "gmp" / "QE-kjpaw.gpsp"
    rows = []
    for set_name, spec in params["sets"].items():
        descriptor = build(set_name, spec["params"], density)
        row = {"set": set_name, "features": descriptor.n_features, "structures": 0, "values": 0.0}
        for name, atoms in structures.items():
            got = descriptor(atoms).numpy()
            row["values"] = max(row["values"], worst(got, values[f"{set_name}/{name}"], spec["column_scale"]))
            row["structures"] += 1
        for kind in ("dxdr", "rdxdr"):
            keys = [k for k in derivs.files if k.startswith(f"{kind}/{set_name}/")]
            if not keys:
                continue
            row[kind] = 0.0
            for key in keys:
                d_pos, d_strain = fpcore.descriptors.dense_derivatives(descriptor, structures[key.split("/", 2)[2]])
                got = (d_pos if kind == "dxdr" else d_strain).numpy()
                row[kind] = max(row[kind], worst(got, derivs[key], spec[f"{kind}_column_scale"]))
            row[f"{kind}_structures"] = len(keys)
        rows.append(row)
    print("| set | features | values (10 structures) | dxdr | rdxdr |")
    print("|---|---|---|---|---|")
    for r in rows:
        d = f"{r['dxdr']:.1e} ({r['dxdr_structures']} structures)" if "dxdr" in r else "-"
        s = f"{r['rdxdr']:.1e} ({r['rdxdr_structures']} structures)" if "rdxdr" in r else "-"
        print(f"| {r['set']} | {r['features']} | {r['values']:.1e} | {d} | {s} |")
    print(f"\nerror = max |x - ref| / max(|ref|, column scale); acceptance: <= {params['tolerance']['rtol']:g}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    ok = all(r[k] <= params["tolerance"]["rtol"] for r in rows for k in ("values", "dxdr", "rdxdr") if k in r)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
