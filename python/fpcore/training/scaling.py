"""Per-feature standardisation fitted in one streaming pass, its state kept as module buffers."""

from __future__ import annotations

import torch
from torch import nn


class FeatureScaler(nn.Module):
    """y = (x - mean) / std per feature (last dimension).

    Fitted by `update` over batches (Chan et al.'s parallel merge of count/mean/M2 in float64, so
    one pass is enough and large means do not cancel), then `finalize`. The spread has a floor,
    std >= rel_floor * (median std of the features), so a near-constant feature (one rare outlier) is not blown
    up by a tiny std;
    features with no spread at all (e.g. fingerprint columns of elements absent from the data) get
    std = 1, i.e. they are centred but not scaled, and are listed by `constant_features()` so callers can
    refuse them (a constant label) or report them. The state is plain tensors, saved with the checkpoint.
    """

    def __init__(self, n_features: int, min_std: float = 1e-9, rel_floor: float = 1e-3):
        super().__init__()
        if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"FeatureScaler: n_features must be a positive integer, got {n_features!r}")
        self.n_features = n_features
        self.min_std = float(min_std)
        self.rel_floor = float(rel_floor)
        self.constant = torch.zeros(n_features, dtype=torch.bool)
        self.register_buffer("mean", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("std", torch.ones(n_features, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self._m2 = torch.zeros(n_features, dtype=torch.float64)
        self._fitting_mean = torch.zeros(n_features, dtype=torch.float64)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.n_features:
            raise ValueError(f"FeatureScaler: expected (..., {self.n_features}) values, got {tuple(x.shape)}")
        return x.detach().reshape(-1, self.n_features).to(torch.float64)

    @staticmethod
    def _merge(count_a, mean_a, m2_a, count_b, mean_b, m2_b):
        count = count_a + count_b
        if float(count) == 0:
            return count, mean_a, m2_a
        delta = mean_b - mean_a
        mean = mean_a + delta * (count_b / count)
        m2 = m2_a + m2_b + delta * delta * (count_a * count_b / count)
        return count, mean, m2

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = self._check(x)
        if x.shape[0] == 0:
            return
        if not bool(torch.isfinite(x).all()):
            raise ValueError("FeatureScaler: values to fit contain NaN or infinity")
        x = x.cpu()
        count_b = torch.tensor(float(x.shape[0]), dtype=torch.float64)
        mean_b = x.mean(dim=0)
        m2_b = ((x - mean_b) ** 2).sum(dim=0)
        count, mean, m2 = self._merge(self.count.cpu(), self._fitting_mean, self._m2, count_b, mean_b, m2_b)
        self.count.fill_(float(count))
        self._fitting_mean, self._m2 = mean, m2

    def state_for_merge(self) -> torch.Tensor:
        """(2F + 1,) packed partial statistics, to be gathered across processes."""
        return torch.cat([self.count.cpu().view(1), self._fitting_mean, self._m2])

    @torch.no_grad()
    def merge_packed(self, packed: list[torch.Tensor]) -> None:
        """Replaces the partial statistics by the merge of several packed ones (all ranks, this one included)."""
        f = self.n_features
        count = torch.zeros((), dtype=torch.float64)
        mean = torch.zeros(f, dtype=torch.float64)
        m2 = torch.zeros(f, dtype=torch.float64)
        for p in packed:
            p = p.cpu().to(torch.float64)
            count, mean, m2 = self._merge(count, mean, m2, p[0], p[1 : f + 1], p[f + 1 :])
        self.count.fill_(float(count))
        self._fitting_mean, self._m2 = mean, m2

    @torch.no_grad()
    def finalize(self) -> FeatureScaler:
        if float(self.count) < 1:
            raise ValueError("FeatureScaler: no values were seen; cannot fit mean and std")
        var = self._m2 / self.count.cpu().clamp_min(1.0)
        std = var.sqrt()
        scale = self._fitting_mean.abs()
        self.constant = std <= self.min_std * torch.clamp(scale, min=1.0)
        floor = torch.zeros_like(std)
        if bool((~self.constant).any()):
            # Relative to the typical spread of the features (not to their means: a label with a large offset,
            # e.g. a total energy, is not near-constant).
            floor = floor + self.rel_floor * std[~self.constant].median()
        std = torch.where(self.constant, torch.ones_like(std), torch.maximum(std, floor))
        self.mean.copy_(self._fitting_mean.to(self.mean.device))
        self.std.copy_(std.to(self.std.device))
        return self

    def constant_features(self) -> list[int]:
        """Indices of the features that had no spread on the fitting data (centred only)."""
        return torch.nonzero(self.constant).flatten().tolist()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std.to(y.dtype) + self.mean.to(y.dtype)

    def state(self) -> dict:
        return {
            "n_features": self.n_features,
            "min_std": self.min_std,
            "rel_floor": self.rel_floor,
            "constant": self.constant.clone(),
            "mean": self.mean.cpu().clone(),
            "std": self.std.cpu().clone(),
            "count": self.count.cpu().clone(),
        }

    @classmethod
    def from_state(cls, state: dict) -> FeatureScaler:
        scaler = cls(int(state["n_features"]), float(state.get("min_std", 1e-6)), float(state.get("rel_floor", 0.0)))
        if "constant" in state:
            scaler.constant = state["constant"].clone().bool()
        scaler.mean.copy_(state["mean"])
        scaler.std.copy_(state["std"])
        scaler.count.copy_(state["count"])
        return scaler

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, fitted on {int(self.count)} rows"
