"""Training objectives: everything that differs between pre-training and fine-tuning lives here, not in the loop.

An Objective says which head it needs, how to get the targets of a batch (and how to standardise them, fitted on
the training split), the loss, and the metric it reports (name and units). The loop sums the weighted losses of the
configured objectives, e.g. `objective: {fingerprints: 1.0, denoise: {weight: 0.5, sigma: 0.05}}`.

A new objective is a subclass registered with `register_objective(name, cls)`.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

import torch
from torch import nn

from .scaling import FeatureScaler
from .targets import TargetCache, TargetFingerprints


@dataclass
class SetupContext:
    """What an objective may need to fit its standardisation: the data, the training split, a loader factory."""

    config: dict
    dataset: object
    train_indices: list
    device: torch.device
    loader: object  # loader(indices, batch_size) -> every batch of `indices` (CPU, in order), on every process
    train_loader: object  # train_loader(indices, batch_size) -> this process's shard of `indices`
    gather: object  # gather(tensor) -> list of the tensors of every process ([tensor] on one process)
    is_main: bool = True
    notes: list = field(default_factory=list)


class Objective(nn.Module):
    """Base class. Subclasses set `metric_name`, `units`, `head` and implement `targets`, `loss`, `errors`."""

    name: str = ""
    metric_name = "MAE"
    units = ""
    #: an objective that moves atoms (denoise) must see the geometry before the graph is built, and makes caching
    #: the graph of a structure impossible.
    perturbs_geometry = False

    def __init__(self, config: dict, weight: float = 1.0):
        super().__init__()
        self.weight = float(weight)

    # --- what the model needs
    def head_spec(self, config: dict) -> dict:
        raise NotImplementedError

    @property
    def column_names(self) -> list[str]:
        raise NotImplementedError

    # --- fitted state
    def setup(self, ctx: SetupContext) -> None:
        """Fits the standardisation on the training split (fresh run only; a resumed run loads `state`)."""

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def attach(self, ctx: SetupContext) -> None:
        """Per-run resources that are not checkpointed (e.g. the fingerprint cache); called after setup/load_state."""

    # --- per batch
    def targets(self, batch, generator: torch.Generator | None, train: bool) -> torch.Tensor:
        """Targets of a batch (float32, standardised) from its clean geometry; `generator` drives any randomness."""
        raise NotImplementedError

    def perturb(self, batch, target: torch.Tensor) -> None:
        """Changes the batch's input in place (denoise: noisy positions); called after every objective's targets."""

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.l1_loss(pred, target)

    def errors(self, pred: torch.Tensor, target: torch.Tensor, batch) -> torch.Tensor:
        """(rows, columns) absolute errors in the metric's units; their column means are the reported metric."""
        raise NotImplementedError

    def predictions(self, pred: torch.Tensor) -> torch.Tensor:
        """Head output in the metric's units (e.g. labels in their own units)."""
        return pred

    def describe(self) -> dict:
        return {"metric": self.metric_name, "units": self.units, "weight": self.weight}


# ------------------------------------------------------------------------------------------------ fingerprints


class FingerprintsObjective(Objective):
    """Per-atom fpcore descriptors (descriptor.fingerprints, concatenated), standardised per feature; L1 loss."""

    name = "fingerprints"
    units = "standardised feature units"

    def __init__(self, config: dict, weight: float = 1.0):
        super().__init__(config, weight)
        desc = config["descriptor"]
        self.fingerprints = TargetFingerprints(desc["fingerprints"], desc["dtype"])
        self.scaler = FeatureScaler(self.fingerprints.n_features)
        self.cache: TargetCache | None = None
        self.use_cache = bool(desc["cache"] or desc["cache_file"])

    def head_spec(self, config):
        m = config["model"]
        return {
            "class": "NodeHead",
            "kwargs": {
                "n_out": self.fingerprints.n_features,
                "hidden": m["head_hidden"],
                "n_layers": m["head_layers"],
                "init": m["head_init"],
            },
        }

    @property
    def column_names(self):
        return self.fingerprints.feature_labels

    def attach(self, ctx: SetupContext) -> None:
        # Augmented structures change every epoch: their fingerprints cannot be cached.
        augment = ctx.config["data"]["augment"]
        if augment and any(float(v) for v in augment.values()):
            if self.use_cache and ctx.is_main:
                ctx.notes.append("data.augment is on: the fingerprint target cache is bypassed (computed on the fly)")
            self.cache = None
            return
        if not self.use_cache or self.cache is not None:
            return
        desc = ctx.config["descriptor"]
        key = self.fingerprints.key() + f"-{len(ctx.dataset)}"
        path = pathlib.Path(desc["cache_file"]) if desc["cache_file"] else None
        if path is not None and path.is_file():
            self.cache = TargetCache.load(path, key)
        if self.cache is None:
            every = list(range(len(ctx.dataset)))
            self.cache = TargetCache.build(
                self.fingerprints,
                ctx.dataset,
                lambda: ctx.loader(every, int(ctx.config["data"]["batch_size"])),
                ctx.device,
                key,
            )
            if path is not None and ctx.is_main:
                self.cache.save(path)

    def setup(self, ctx: SetupContext) -> None:
        self.attach(ctx)
        limit = ctx.config["descriptor"]["scaler_batches"]
        # Each process fits on its shard; the partial statistics are merged across processes.
        for k, batch in enumerate(ctx.train_loader(ctx.train_indices, int(ctx.config["data"]["batch_size"]))):
            if limit is not None and k >= int(limit):
                break
            self.scaler.update(self._raw(batch.to(ctx.device)))
        self.scaler.merge_packed(ctx.gather(self.scaler.state_for_merge()))
        self.scaler.finalize()
        constant = self.scaler.constant_features()
        if constant and ctx.is_main:
            labels = self.column_names
            ctx.notes.append(
                f"fingerprints: {len(constant)} of {len(labels)} features are constant on the training split "
                f"(centred, not scaled), e.g. {labels[constant[0]]}"
            )

    def _raw(self, batch) -> torch.Tensor:
        if self.cache is not None:
            return self.cache.lookup(batch)
        return self.fingerprints(batch).float()

    def targets(self, batch, generator, train):
        return self.scaler(self._raw(batch)).float()

    def errors(self, pred, target, batch):
        return (pred - target).abs()

    def state(self):
        return {"scaler": self.scaler.state()}

    def load_state(self, state):
        self.scaler = FeatureScaler.from_state(state["scaler"]).to(self.scaler.mean.device)


# ---------------------------------------------------------------------------------------------------- property


class PropertyObjective(Objective):
    """Graph-level labels (data.targets), standardised; a GraphHead; L1 loss; MAE in the labels' units."""

    name = "property"
    units = "label units"

    def __init__(self, config: dict, weight: float = 1.0, target_names=None):
        super().__init__(config, weight)
        names = list(target_names or config["data"]["targets"] or [])
        if not names:
            raise ValueError("objective 'property' needs data.targets (the label names to learn)")
        self.names = names
        self.scaler = FeatureScaler(len(names))

    def head_spec(self, config):
        m = config["model"]
        return {
            "class": "GraphHead",
            "kwargs": {
                "n_out": len(self.names),
                "hidden": m["head_hidden"],
                "n_layers": m["head_layers"],
                "pooling": m["pooling"],
                "init": m["head_init"],
            },
        }

    @property
    def column_names(self):
        return self.names

    def setup(self, ctx):
        # Labels are small: every rank reads all of them, so no communication is needed.
        ys = torch.cat([ctx.dataset[int(i)].y.view(1, -1) for i in ctx.train_indices]).double()
        if ys.shape[1] != len(self.names):
            raise ValueError(f"objective 'property': {len(self.names)} target names but labels have {ys.shape[1]}")
        self.scaler.update(ys)
        self.scaler.finalize()
        constant = self.scaler.constant_features()
        if constant:
            k = constant[0]
            raise ValueError(
                f"objective 'property': target {self.names[k]!r} has (near) zero spread on the "
                f"{ys.shape[0]} training structures (all ~{float(ys[0, k]):.6g}); there is nothing to learn"
            )

    def targets(self, batch, generator, train):
        return self.scaler(batch.y.view(batch.num_graphs, -1).float()).float()

    def predictions(self, pred):
        return self.scaler.inverse(pred)

    def errors(self, pred, target, batch):
        return (self.scaler.inverse(pred) - self.scaler.inverse(target)).abs()

    def state(self):
        return {"scaler": self.scaler.state(), "target_names": list(self.names)}

    def load_state(self, state):
        self.scaler = FeatureScaler.from_state(state["scaler"]).to(self.scaler.mean.device)


# ----------------------------------------------------------------------------------------------------- denoise


class DenoiseObjective(Objective):
    """Coordinate denoising (Zaidi et al., ICLR 2023): positions + sigma * eps, eps ~ N(0, 1) per atom and axis;
    the VectorHead predicts eps (already standardised: unit variance), MSE loss; reported as the MAE of the
    predicted displacement sigma * eps in Angstrom. Fresh noise every training step, a fixed seed for evaluation.
    """

    name = "denoise"
    units = "Angstrom"
    perturbs_geometry = True

    def __init__(self, config: dict, weight: float = 1.0, sigma: float = 0.05):
        super().__init__(config, weight)
        if not float(sigma) > 0:
            raise ValueError(f"objective 'denoise': sigma must be > 0 (Angstrom), got {sigma!r}")
        self.sigma = float(sigma)

    def head_spec(self, config):
        m = config["model"]
        return {"class": "VectorHead", "kwargs": {"hidden": m["head_hidden"], "n_layers": m["head_layers"]}}

    @property
    def column_names(self):
        return ["noise_x", "noise_y", "noise_z"]

    def targets(self, batch, generator, train):
        eps = torch.randn(batch.pos.shape, generator=generator, dtype=torch.float32)
        return eps.to(batch.pos.device)

    def perturb(self, batch, target):
        batch.pos = batch.pos + (self.sigma * target).to(batch.pos.dtype)

    def loss(self, pred, target):
        return nn.functional.mse_loss(pred, target)

    def errors(self, pred, target, batch):
        return (pred - target).abs() * self.sigma

    def predictions(self, pred):
        return pred * self.sigma

    def describe(self):
        return super().describe() | {"sigma": self.sigma}


# ---------------------------------------------------------------------------------------------------- registry

OBJECTIVES: dict[str, type[Objective]] = {
    "fingerprints": FingerprintsObjective,
    "property": PropertyObjective,
    "denoise": DenoiseObjective,
}
#: the objective of each command when the config names none (old configs)
DEFAULT_OBJECTIVE = {"pretrain": {"fingerprints": 1.0}, "finetune": {"property": 1.0}}


def register_objective(name: str, cls: type[Objective]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise TypeError(f"register_objective: {cls!r} is not a fpcore.training.objectives.Objective subclass")
    OBJECTIVES[name] = cls


def normalise_objectives(spec, kind: str | None = None) -> dict[str, dict]:
    """{name: weight | {weight, **kwargs}} (or a bare name) -> {name: {"weight": w, **kwargs}}, validated."""
    if spec in (None, {}, ""):
        if kind is None:
            raise ValueError("config key 'objective' is empty (e.g. objective: {fingerprints: 1.0})")
        spec = DEFAULT_OBJECTIVE[kind]
    if isinstance(spec, str):
        spec = {spec: 1.0}
    if not isinstance(spec, dict):
        raise ValueError(f"config key 'objective' must map objective names to weights, got {spec!r}")
    out = {}
    for name, value in spec.items():
        if name not in OBJECTIVES:
            raise ValueError(f"unknown objective {name!r} in 'objective'; known: {sorted(OBJECTIVES)}")
        entry = dict(value) if isinstance(value, dict) else {"weight": value}
        weight = entry.setdefault("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ValueError(f"objective {name!r}: weight must be a number > 0, got {weight!r}")
        entry["weight"] = float(weight)
        out[name] = entry
    return out


def build_objectives(config: dict, spec: dict[str, dict], target_names=None) -> nn.ModuleDict:
    objectives = nn.ModuleDict()
    for name, entry in spec.items():
        kwargs = {k: v for k, v in entry.items() if k != "weight"}
        if name == "property" and target_names is not None:
            kwargs["target_names"] = target_names
        try:
            objectives[name] = OBJECTIVES[name](config, weight=entry["weight"], **kwargs)
        except TypeError as err:
            raise ValueError(f"objective {name!r}: bad arguments {sorted(kwargs)}: {err}") from None
    return objectives


__all__ = [
    "DEFAULT_OBJECTIVE",
    "DenoiseObjective",
    "FingerprintsObjective",
    "OBJECTIVES",
    "Objective",
    "PropertyObjective",
    "SetupContext",
    "build_objectives",
    "normalise_objectives",
    "register_objective",
]
