"""Makes a bundled pre-trained model from a finished pre-training run: a weights-only checkpoint and its model card.

    python -m fpcore.pretrained.bundle runs/schnet-ead-mp62k experiments/pretrained/schnet-ead-mp62k.card.yaml

The run folder gives the weights (best.pt), the config and the validation curve (metrics.csv); the card file gives
what the run cannot know (name, corpus license and credit, intended use, what it is not for, how to reproduce it).
Writes python/fpcore/pretrained/<name>.pt and <name>.md (or under --out).
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys

import torch
import yaml

from .._io import atomic_torch_save, atomic_write_text
from ..training.checkpoint import FORMAT_VERSION, load_checkpoint
from . import CARD_KEYS, HERE, file_sha256

#: what a bundled checkpoint keeps of a training checkpoint: enough for --from, load() and the card; no optimizer,
#: scheduler, RNG or pre-EMA weights (so it is small and cannot be mistaken for a resumable run)
KEPT = ("format", "format_version", "kind", "fpcore_version", "model", "state_dict", "objectives", "target_names")
#: card-file keys the author writes (the rest is read from the run)
AUTHORED = ("name", "summary", "corpus", "reproduce", "not_for")


def _curve(run_dir: pathlib.Path) -> list[dict]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: bundle a run folder with its metrics.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {"epoch": int(r["epoch"]), "train_mae": float(r["train_mae"]), "val_mae": float(r["val_mae"])}
        for r in rows
        if r.get("val_mae") not in (None, "")
    ]


def bundle(run_dir, card_file, out=HERE) -> dict:
    """Writes <out>/<name>.pt and <out>/<name>.md; returns the card's front matter."""
    run_dir, out = pathlib.Path(run_dir), pathlib.Path(out)
    authored = yaml.safe_load(pathlib.Path(card_file).read_text())
    missing = [k for k in AUTHORED if k not in (authored or {})]
    if missing:
        raise ValueError(f"{card_file}: the card file needs {missing}")
    name = str(authored["name"])
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"{card_file}: name must be a plain file name, got {name!r}")
    payload = load_checkpoint(run_dir / "best.pt", kind="pretrain")
    slim = {k: payload[k] for k in KEPT}
    slim["resumable"] = False
    slim["bundled"] = {"name": name, "epoch": payload["epoch"], "best": dict(payload["best"])}
    slim["config"] = payload["config"]
    slim["data"] = payload.get("data")
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / f"{name}.pt"
    atomic_torch_save(ckpt, slim)

    config = payload["config"]
    curve = _curve(run_dir)
    backbone = payload["model"]["backbone"]
    n_params = sum(v.numel() for k, v in payload["state_dict"].items() if k.startswith("backbone."))
    data = payload.get("data") or {}
    meta = {
        "name": name,
        "summary": authored["summary"],
        "backbone": backbone,
        "parameters": int(n_params),
        "corpus": {
            **authored["corpus"],
            "n_structures": data.get("n_structures"),
            "sha256": data.get("sha256"),
        },
        "targets": {"objective": config["objective"], "fingerprints": config["descriptor"]["fingerprints"]},
        "epochs": len(curve),
        "best_epoch": int(payload["best"]["epoch"]),
        "val_mae": float(payload["best"]["val_mae"]),
        "val_curve": curve,
        "optim": {k: config["optim"][k] for k in ("lr", "schedule", "warmup_epochs") if k in config["optim"]},
        "batch_size": config["data"]["batch_size"],
        "fpcore_version": payload["fpcore_version"],
        "checkpoint_format_version": FORMAT_VERSION,
        "checkpoint_sha256": file_sha256(ckpt),
        "checkpoint_bytes": ckpt.stat().st_size,
        "reproduce": authored["reproduce"],
        "not_for": authored["not_for"],
    }
    assert all(k in meta for k in CARD_KEYS)
    atomic_write_text(out / f"{name}.md", render_card(meta))
    return meta


def render_card(meta: dict) -> str:
    fps = meta["targets"]["fingerprints"]
    n_features_note = ", ".join(f"{fp['name']}({_kwargs(fp.get('kwargs', {}))})" for fp in fps)
    curve = "\n".join(f"| {c['epoch']} | {c['train_mae']:.4g} | {c['val_mae']:.4g} |" for c in meta["val_curve"])
    bb = meta["backbone"]
    corpus = meta["corpus"]
    front = yaml.dump(meta, Dumper=_CardDumper, sort_keys=False, width=120)
    return f"""---
{front}---
# {meta["name"]}

{meta["summary"].strip()}

Use it: `fpcore-train finetune --from pretrained:{meta["name"]}` (with `--config` / `--set data.source=...` for your
data), or in Python `fpcore.pretrained.load("{meta["name"]}")`.

| | |
|---|---|
| backbone | {bb["class"]} ({_kwargs(bb["kwargs"])}), {meta["parameters"]:,} parameters |
| pre-training targets | per-atom {n_features_note}, standardised per feature |
| corpus | {corpus["description"]}; data sha256 `{str(corpus.get("sha256"))[:16]}...` |
| training | {meta["epochs"]} epochs (best {meta["best_epoch"]}), batch {meta["batch_size"]}, {_kwargs(meta["optim"])} |
| validation MAE | {meta["val_mae"]:.4g} (standardised fingerprint units, best epoch {meta["best_epoch"]}) |
| fpcore | {meta["fpcore_version"]}, checkpoint format {meta["checkpoint_format_version"]} |
| file | {meta["name"]}.pt, {meta["checkpoint_bytes"]:,} bytes, sha256 `{meta["checkpoint_sha256"][:16]}...` |

## Corpus and license

{corpus["license"].strip()}

## Validation curve

| epoch | train MAE | val MAE |
|---|---|---|
{curve}

## Reproduce

```
{meta["reproduce"].strip()}
```

## What it is not for

{meta["not_for"].strip()}
"""


class _CardDumper(yaml.SafeDumper):
    """Multi-line strings as YAML literal blocks, so the front matter reads like the text it holds."""


def _str_representer(dumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_CardDumper.add_representer(str, _str_representer)


def _kwargs(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items() if v is not None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fpcore.pretrained.bundle", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a finished pre-training run folder (best.pt, metrics.csv)")
    p.add_argument("card", help="YAML with name, summary, corpus {description, license}, reproduce, not_for")
    p.add_argument("--out", default=str(HERE), help="folder to write <name>.pt and <name>.md (default: the package)")
    args = p.parse_args(argv)
    try:
        meta = bundle(args.run_dir, args.card, args.out)
    except (OSError, ValueError, KeyError) as err:
        print(f"bundle: error: {err}", file=sys.stderr)
        return 2
    print(f"bundled {meta['name']}: {args.out}/{meta['name']}.pt ({meta['checkpoint_bytes']:,} bytes) and .md")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
