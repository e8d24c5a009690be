"""Self-describing checkpoints of plain data and tensors only, so `torch.load(path, weights_only=True)` reads them."""

from __future__ import annotations

import pathlib
import zipfile

import torch

from .._io import atomic_torch_save

FORMAT = "fpcore-train-checkpoint"
# 2: one head per objective (model spec "heads", state-dict keys heads.<objective>.*), objective states, EMA weights.
FORMAT_VERSION = 2
KINDS = ("pretrain", "finetune")


class CheckpointError(ValueError):
    pass


def save_checkpoint(path, payload: dict) -> None:
    """Writes atomically: a crash mid-write leaves the previous file intact, never a truncated one."""
    path = pathlib.Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    if payload.get("kind") not in KINDS:
        raise CheckpointError(f"checkpoint kind must be one of {KINDS}, got {payload.get('kind')!r}")
    atomic_torch_save(path, payload)


def load_checkpoint(path, kind: str | tuple[str, ...] | None = None, map_location="cpu") -> dict:
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        # torch's own message is pages long and about weights_only; say what is wrong with the file instead.
        if not zipfile.is_zipfile(path):
            reason = "not a file written by torch.save, or truncated"
        else:
            lines = [line for line in str(err).splitlines() if line.strip()]
            reason = (lines[-1] if lines else type(err).__name__)[:200]
        raise CheckpointError(f"{path} is not a readable fpcore-train checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an fpcore-train checkpoint (no '{FORMAT}' header)")
    version = payload.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer fpcore ({payload.get('fpcore_version', '?')}, format {version}); "
            f"this fpcore reads format {FORMAT_VERSION}: upgrade fpcore"
        )
    if version < FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was made by fpcore {payload.get('fpcore_version', '?')}, checkpoint format {version}; this fpcore "
            f"reads format {FORMAT_VERSION}: re-run the training, or convert it with "
            f"`fpcore-train convert {path} <new.pt>` (weights, scalers and config; not resumable)"
        )
    if kind is not None:
        wanted = (kind,) if isinstance(kind, str) else tuple(kind)
        if payload.get("kind") not in wanted:
            raise CheckpointError(
                f"{path} is a '{payload.get('kind')}' checkpoint, but a {' or '.join(repr(k) for k in wanted)} "
                "checkpoint is needed here"
            )
    return payload


def convert_checkpoint(src, dst) -> dict:
    """Rewrites a format-1 checkpoint (one head, kind pretrain|finetune) as format 2: the head becomes the head of
    the objective its kind implied (fingerprints | property); an equivariant transformer keeps the vector messages
    without the cutoff envelope it was trained with, SchNet keys get their current names. Optimizer and scheduler states are dropped, so the
    result serves --from, evaluate and predict but cannot be resumed."""
    src, dst = pathlib.Path(src), pathlib.Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint not found: {src}")
    try:
        old = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CheckpointError(f"{src} is not a readable fpcore-train checkpoint: {err}") from None
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        raise CheckpointError(f"{src} is not an fpcore-train checkpoint (no '{FORMAT}' header)")
    if old.get("format_version") != 1:
        raise CheckpointError(f"{src} has format {old.get('format_version')}; only format 1 needs converting")
    kind = old.get("kind")
    objective = {"pretrain": "fingerprints", "finetune": "property"}.get(kind)
    if objective is None:
        raise CheckpointError(f"{src}: unknown checkpoint kind {kind!r}")
    config = dict(old["config"])
    config.setdefault("objective", {})
    config["objective"] = {objective: {"weight": 1.0}}
    from ..models import legacy_spec, upgrade_state_dict

    # Format 1 predates the ET continuity fix and the SchNet key renames: rebuild the backbone as it was trained.
    backbone = legacy_spec({"backbone": old["model"]["backbone"]})["backbone"]
    state = {}
    for key, value in upgrade_state_dict({"backbone": backbone}, old["state_dict"]).items():
        state[f"heads.{objective}." + key[len("head.") :] if key.startswith("head.") else key] = value
    obj_state = {"scaler": old["scalers"]["target"]}
    if objective == "property":
        obj_state["target_names"] = list(old["target_names"])
    new = {
        "kind": kind,
        "fpcore_version": old.get("fpcore_version"),
        "converted_from": {"path": str(src), "format_version": 1},
        "model": {"backbone": backbone, "heads": {objective: old["model"]["head"]}},
        "state_dict": state,
        "objectives": {objective: {"spec": {"weight": 1.0}, "state": obj_state}},
        "target_names": list(old["target_names"]),
        "epoch": old.get("epoch"),
        "best": old.get("best"),
        "config": config,
        "init": old.get("init"),
        "resumable": False,
    }
    save_checkpoint(dst, new)
    return new


def backbone_state(state_dict: dict) -> dict:
    prefix = "backbone."
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_backbone(model, payload: dict, source: str = "checkpoint") -> None:
    """Loads the backbone weights strictly: both key sets must match, or the error names the difference."""
    wanted = payload["model"]["backbone"]
    have = model.spec["backbone"]
    if wanted["class"] != have["class"]:
        raise CheckpointError(f"{source}: backbone is {wanted['class']}, the model being built is {have['class']}")
    state = backbone_state(payload["state_dict"])
    own = model.backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: backbone weights do not fit the model: missing keys {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
        )
    shapes = [k for k in own if own[k].shape != state[k].shape]
    if shapes:
        raise CheckpointError(
            f"{source}: backbone shapes differ for {shapes[:5]}: "
            + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes[:5])
        )
    model.backbone.load_state_dict(state, strict=True)
