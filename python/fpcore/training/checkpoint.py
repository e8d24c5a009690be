"""Self-describing checkpoints of plain data and tensors only, so `torch.load(path, weights_only=True)` reads them."""

from __future__ import annotations

import pathlib

import torch

from .._io import atomic_torch_save

FORMAT = "fpcore-train-checkpoint"
FORMAT_VERSION = 1
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
        raise CheckpointError(f"{path} is not a readable fpcore-train checkpoint: {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an fpcore-train checkpoint (no '{FORMAT}' header)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer fpcore (format {payload['format_version']} > {FORMAT_VERSION})"
        )
    if kind is not None:
        wanted = (kind,) if isinstance(kind, str) else tuple(kind)
        if payload.get("kind") not in wanted:
            raise CheckpointError(
                f"{path} is a '{payload.get('kind')}' checkpoint, but a {' or '.join(repr(k) for k in wanted)} "
                "checkpoint is needed here"
            )
    return payload


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
