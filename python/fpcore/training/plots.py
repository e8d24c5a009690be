"""PNG learning curves and parity plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import csv
import pathlib

from .._io import atomic_savefig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def learning_curves(metrics_csv, out_png, title: str = "") -> pathlib.Path:
    with open(metrics_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    plt = _pyplot()
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [int(r["epoch"]) for r in rows]
    for key, style in (("train_loss", "-"), ("val_loss", "--"), ("train_mae", ":"), ("val_mae", "-.")):
        values = [float(r[key]) if r.get(key) not in (None, "", "nan") else float("nan") for r in rows]
        ax_loss.plot(epochs, values, style, label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_loss.set_title(title or "learning curves")
    ax_lr.plot(epochs, [float(r["lr"]) for r in rows])
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_yscale("log")
    fig.tight_layout()
    try:
        return atomic_savefig(fig, out_png, dpi=110)
    finally:
        plt.close(fig)


def parity(y_true, y_pred, names, out_png, title: str = "test set") -> pathlib.Path:
    import numpy as np

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    plt = _pyplot()
    n = len(names)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4), squeeze=False)
    for k, (ax, name) in enumerate(zip(axes[0], names)):
        t, p = y_true[:, k], y_pred[:, k]
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.scatter(t, p, s=10, alpha=0.7)
        mae = float(np.abs(t - p).mean())
        ax.set_title(f"{name}: MAE {mae:.4g} ({title})")
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
    fig.tight_layout()
    try:
        return atomic_savefig(fig, out_png, dpi=110)
    finally:
        plt.close(fig)
