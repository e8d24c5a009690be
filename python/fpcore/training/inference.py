"""evaluate / predict with a fine-tuned checkpoint on structures read by fpcore.data.load_dataset."""

from __future__ import annotations

import csv
import math
import pathlib

import torch

from .._io import atomic_open, check_writable
from .checkpoint import CheckpointError, load_checkpoint
from .distributed import resolve_device
from .pipeline import Pipeline
from .scaling import FeatureScaler


def load_model(path, device="cpu"):
    """(pipeline in eval mode, label scaler, checkpoint payload) from a checkpoint with a `property` objective."""
    payload = load_checkpoint(path)
    objectives = payload.get("objectives", {})
    if "property" not in objectives:
        raise CheckpointError(
            f"{path} has no property head (objectives: {sorted(objectives)}); evaluate and predict need a "
            "fine-tuned checkpoint (fpcore-train finetune or train)"
        )
    model = Pipeline(payload["model"])
    model.load_state_dict(payload["state_dict"], strict=True)
    model.to(device).eval()
    scaler = FeatureScaler.from_state(objectives["property"]["state"]["scaler"]).to(device)
    return model, scaler, payload


@torch.no_grad()
def predict_dataset(model, scaler, dataset, device, batch_size: int = 32) -> torch.Tensor:
    """Label-unit predictions of the property head, in float32 without autocast (as the trainer's evaluation)."""
    from torch_geometric.loader import DataLoader

    out = []
    for data in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        data = data.to(device)
        pred = model(data.z, model.graph(data))["property"]
        out.append(scaler.inverse(pred.float()).cpu())
    return torch.cat(out) if out else torch.zeros(0, scaler.n_features)


def regression_metrics(y_true: torch.Tensor, y_pred: torch.Tensor, names) -> dict:
    y_true, y_pred = y_true.double(), y_pred.double()
    err = y_pred - y_true
    metrics = {}
    for k, name in enumerate(names):
        ss_res = float((err[:, k] ** 2).sum())
        ss_tot = float(((y_true[:, k] - y_true[:, k].mean()) ** 2).sum())
        metrics[name] = {
            "mae": float(err[:, k].abs().mean()),
            "rmse": math.sqrt(float((err[:, k] ** 2).mean())),
            "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
            "n": int(y_true.shape[0]),
        }
    return metrics


def _load(source, targets):
    from ..data import load_dataset

    return load_dataset(source, targets=targets, progress=False)


def evaluate(checkpoint, source, device="auto", batch_size: int = 32, dataset=None) -> dict:
    device = resolve_device(device)
    model, scaler, payload = load_model(checkpoint, device)
    names = list(payload["objectives"]["property"]["state"]["target_names"])
    if dataset is None:
        if (
            not isinstance(source, list)
            and not str(source).startswith("builtin:")
            and not pathlib.Path(source).exists()
        ):
            raise FileNotFoundError(f"data file not found: {source}")
        dataset = _load(source, names)
    pred = predict_dataset(model, scaler, dataset, device, batch_size)
    y = torch.cat([dataset[i].y.view(1, -1) for i in range(len(dataset))]).double()
    return regression_metrics(y, pred, names)


def predict(checkpoint, source, out_csv, device="auto", batch_size: int = 32, dataset=None) -> pathlib.Path:
    out_csv = check_writable(out_csv)  # before the work, not after it
    device = resolve_device(device)
    model, scaler, payload = load_model(checkpoint, device)
    names = list(payload["objectives"]["property"]["state"]["target_names"])
    if dataset is None:
        if (
            not isinstance(source, list)
            and not str(source).startswith("builtin:")
            and not pathlib.Path(source).exists()
        ):
            raise FileNotFoundError(f"structure file not found: {source}")
        dataset = _load(source, None)
    pred = predict_dataset(model, scaler, dataset, device, batch_size)
    ids = list(getattr(dataset, "ids", None) or [str(i) for i in range(len(dataset))])
    with atomic_open(out_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id"] + names)
        for sid, row in zip(ids, pred.tolist()):
            w.writerow([sid] + [f"{v:.8g}" for v in row])
    return out_csv
