"""The training loop behind `fpcore-train pretrain | finetune | train`, one pipeline for every task:

    data -> [augment] -> targets (each objective) -> [perturb] -> graph (once per batch) -> backbone
         -> one head per objective -> weighted sum of the objectives' losses -> optimizer step

What differs between pre-training and fine-tuning lives in the objectives (fpcore.training.objectives): the loop
below has no notion of either. The command only picks the default objective (pretrain: fingerprints, finetune/train:
property) when the config names none. Around it: AdamW (param groups for the backbone's own learning rate or a
frozen backbone), plateau or warmup + cosine schedules, gradient accumulation and clipping, optional EMA weights
(torch.optim.swa_utils.AveragedModel, evaluated and checkpointed), mixed precision for training only (evaluation
is always float32), early stopping, DDP under torchrun, atomic self-describing checkpoints, exact resume.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import json
import math
import pathlib
import time
import warnings

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DistributedSampler, Subset

from .. import __version__
from .._io import atomic_open, atomic_write_json, atomic_write_text
from ..data.splits import element_coverage_warning, random_split, structure_elements
from ..models import canonical_backbone_name
from ..pretrained import resolve as resolve_checkpoint
from . import distributed as D
from .augment import augment_batch, augmentation_active
from .checkpoint import CheckpointError, load_backbone, load_checkpoint, save_checkpoint
from .config import dump_config
from .objectives import SetupContext, build_objectives, normalise_objectives
from .pipeline import GraphCache, Pipeline
from .run_folder import COMPLETED, RunFolder, check_resume_data, data_identity

METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_mae", "val_loss", "val_mae", "time_s"]
# Evaluation noise (denoise) is drawn from this fixed seed offset, the same every epoch, so validation is comparable.
EVAL_SEED_OFFSET = 7_919


class TrainingError(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------- data


def load_data(config: dict, objectives: dict):
    source = config["data"]["source"]
    if source is None:
        raise ValueError("data.source is not set (a file, a list of files or builtin:<name>)")
    labelled = "property" in objectives
    targets = config["data"]["targets"]
    if labelled and not targets:
        raise ValueError("objective 'property' needs data.targets (the label names to learn)")
    from ..data import load_dataset

    return load_dataset(
        source, targets=list(targets) if labelled else None, cache_dir=config["data"]["cache_dir"], progress=False
    )


def make_split(n: int, config: dict, run_dir: pathlib.Path, resume: bool, elements=None) -> dict[str, list[int]]:
    """The run's split: its own split.json on resume, data.split_file when given, else
    fpcore.data.random_split(n, data.split (normalised), data.split_seed) -- the experiment runner's function;
    element-aware (val/test structures with an element missing from train move to train) when `elements` is given."""
    split_path = run_dir / "split.json"
    source = (
        split_path if resume else (pathlib.Path(config["data"]["split_file"]) if config["data"]["split_file"] else None)
    )
    if source is not None:
        if not source.is_file():
            raise FileNotFoundError(f"split file not found: {source}")
        split = json.loads(source.read_text())
        for name in ("train", "val", "test"):
            if name not in split:
                raise ValueError(f"{source}: split needs a '{name}' list")
            bad = [i for i in split[name] if not 0 <= int(i) < n]
            if bad:
                raise ValueError(f"{source}: '{name}' has indices outside the dataset of {n} structures: {bad[:5]}")
        return {k: [int(i) for i in split[k]] for k in ("train", "val", "test")}
    fractions = [float(f) for f in config["data"]["split"]]
    total = sum(fractions)
    split = random_split(n, [f / total for f in fractions], seed=int(config["data"]["split_seed"]), elements=elements)
    if len(split["train"]) < 1:
        raise ValueError(f"data.split {config['data']['split']} leaves no training structure out of {n}")
    return {k: v.tolist() for k, v in split.items()}


def _loader(dataset, indices, batch_size, shuffle: bool, info: D.DistInfo, seed: int, num_workers: int):
    from torch_geometric.loader import DataLoader

    subset = Subset(dataset, indices)
    if shuffle:
        # A DistributedSampler even on one process: the order is a function of (seed, epoch)
        # only, which is what makes --resume reproduce an uninterrupted run.
        sampler = DistributedSampler(subset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed)
        return DataLoader(subset, batch_size=batch_size, sampler=sampler, num_workers=num_workers)
    # Evaluation shards without padding so that the all-reduced sums count every structure once.
    shard = Subset(dataset, list(indices)[info.rank :: info.world_size])
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers)


# ---------------------------------------------------------------------------------------- model


def model_spec(config: dict, objectives) -> dict:
    m = config["model"]
    kwargs = dict(m["backbone_kwargs"])
    kwargs.setdefault("cutoff", float(m["cutoff"]))
    kwargs.setdefault("max_neighbors", m["max_neighbors"])
    return {
        "backbone": {"class": canonical_backbone_name(m["backbone"]), "kwargs": kwargs},
        "heads": {name: obj.head_spec(config) for name, obj in objectives.items()},
    }


def tensor_digest(state: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _unwrap(model) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def autocast_dtype(request: str, device: torch.device) -> torch.dtype | None:
    """run.amp -> the autocast dtype of training steps (None: no autocast)."""
    if request == "off" or (request == "auto" and device.type != "cuda"):
        return None
    if request == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[request]


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1))


# ------------------------------------------------------------------------------------- the loop


class Trainer:
    def __init__(
        self,
        kind: str,
        config: dict,
        run_dir,
        info: D.DistInfo,
        device,
        dataset,
        split,
        init_from=None,
        resume_payload=None,
    ):
        self.kind, self.config, self.run_dir, self.info, self.device = kind, config, pathlib.Path(run_dir), info, device
        self.dataset, self.split = dataset, split
        self.data_info = data_identity(dataset)  # recorded in checkpoints; --resume checks it
        self.optim_cfg = config["optim"]
        self.seed = int(config["run"]["seed"])
        torch.manual_seed(self.seed)

        bs = int(config["data"]["batch_size"])
        ebs = int(config["data"]["eval_batch_size"] or bs)
        nw = int(config["data"]["num_workers"])
        self.train_loader = _loader(dataset, split["train"], bs, True, info, self.seed, nw)
        self.val_loader = _loader(dataset, split["val"], ebs, False, info, self.seed, nw) if split["val"] else None
        self.test_loader = _loader(dataset, split["test"], ebs, False, info, self.seed, nw) if split["test"] else None

        # --- objectives (what to learn) and the model (backbone + one head each)
        self.objective_spec = normalise_objectives(config["objective"], kind)
        labels = getattr(dataset, "target_names", None) or config["data"]["targets"]
        self.objectives = build_objectives(config, self.objective_spec, list(labels) if labels else None).to(device)
        self.augment = dict(config["data"]["augment"]) if augmentation_active(config["data"]["augment"]) else None
        static_geometry = self.augment is None and not any(o.perturbs_geometry for o in self.objectives.values())
        self.graph_cache = GraphCache() if static_geometry and config["run"]["cache_graphs"] else None
        ctx = self._setup_context()

        self.init_info = None
        if resume_payload is not None:
            spec = resume_payload["model"]
        else:
            spec = model_spec(config, self.objectives)
            if init_from is not None:
                pre = load_checkpoint(resolve_checkpoint(init_from), kind="pretrain")
                if pre["model"]["backbone"] != spec["backbone"]:
                    if info.is_main:
                        print(
                            f"[fpcore-train] using the backbone of {init_from}: {pre['model']['backbone']} "
                            f"(the config asked for {spec['backbone']})"
                        )
                    spec["backbone"] = pre["model"]["backbone"]
        model = Pipeline(spec).to(device)
        if resume_payload is None and init_from is not None:
            load_backbone(model, pre, source=str(init_from))
            self.init_info = {"from": str(init_from), "backbone_sha256": tensor_digest(model.backbone.state_dict())}
        self.model = model
        if self.optim_cfg["freeze_backbone"]:
            model.backbone.requires_grad_(False)
        self.ddp = (
            DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
            if info.enabled
            else model
        )
        decay = self.optim_cfg["ema_decay"]
        self.ema = (
            AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=True)
            if decay is not None
            else None
        )

        self.optimizer = torch.optim.AdamW(
            self._param_groups(), lr=float(self.optim_cfg["lr"]), weight_decay=float(self.optim_cfg["weight_decay"])
        )
        self.scheduler = self._scheduler()
        self.amp_dtype = autocast_dtype(config["run"]["amp"], device)
        self.grad_scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)

        self.epoch = 0
        self.best = {"val_mae": math.inf, "epoch": 0}
        self.bad_epochs = 0
        if resume_payload is not None:
            self._restore(resume_payload)
            for obj in self.objectives.values():
                obj.attach(ctx)
        else:
            for obj in self.objectives.values():
                obj.setup(ctx)
        for note in ctx.notes:
            warnings.warn(note, stacklevel=2)
        self.target_names = [
            f"{n}:{c}" if len(self.objectives) > 1 else c for n, o in self.objectives.items() for c in o.column_names
        ]

    # ----------------------------------------------------------------------------- set-up
    def _setup_context(self) -> SetupContext:
        def loader(indices, batch_size):
            return _loader(self.dataset, indices, batch_size, False, D.DistInfo(), self.seed, 0)

        def train_shard(indices, batch_size):
            return _loader(self.dataset, indices, batch_size, False, self.info, self.seed, 0)

        return SetupContext(
            config=self.config,
            dataset=self.dataset,
            train_indices=list(self.split["train"]),
            device=self.device,
            loader=loader,
            train_loader=train_shard,
            gather=lambda t: D.all_gather_tensors(t, self.info, self.device),
            is_main=self.info.is_main,
        )

    def _param_groups(self) -> list[dict]:
        heads = [p for p in self.model.heads.parameters() if p.requires_grad]
        groups = [{"params": heads, "name": "heads"}]
        if not self.optim_cfg["freeze_backbone"]:
            group = {"params": list(self.model.backbone.parameters()), "name": "backbone"}
            if self.optim_cfg["backbone_lr"] is not None:
                group["lr"] = float(self.optim_cfg["backbone_lr"])
            groups.append(group)
        return groups

    def _scheduler(self):
        cfg = self.optim_cfg
        if cfg["schedule"] == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer,
                mode="min",
                factor=float(cfg["lr_factor"]),
                patience=int(cfg["lr_patience"]),
                min_lr=float(cfg["min_lr"]),
            )
        warmup, epochs = int(cfg["warmup_epochs"]), int(cfg["epochs"])
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=max(epochs - warmup, 1), eta_min=float(cfg["min_lr"])
        )
        if warmup == 0:
            return cosine
        ramp = torch.optim.lr_scheduler.LinearLR(self.optimizer, start_factor=0.01, total_iters=warmup)
        return torch.optim.lr_scheduler.SequentialLR(self.optimizer, [ramp, cosine], milestones=[warmup])

    # ------------------------------------------------------------------------------- steps
    def _forward(self, batch, train: bool, generator: torch.Generator):
        """(outputs, targets) of one batch; the graph is built (or taken from the cache) exactly once."""
        if train and self.augment is not None:
            augment_batch(batch, self.augment, self.seed, self.epoch)
        batch = batch.to(self.device)
        targets = {name: obj.targets(batch, generator, train) for name, obj in self.objectives.items()}
        for name, obj in self.objectives.items():
            obj.perturb(batch, targets[name])
        graph = self.graph_cache(self.model, batch) if self.graph_cache is not None else self.model.graph(batch)
        # Evaluation is always float32: reported metrics never carry the training precision.
        outputs = (self.ddp if train else self._eval_model())(batch.z, graph, self.amp_dtype if train else None)
        return batch, outputs, targets

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.ddp

    def _losses(self, batch, outputs, targets):
        total = None
        sums = []
        for name, obj in self.objectives.items():
            pred, target = outputs[name], targets[name]
            loss = obj.loss(pred, target)
            total = obj.weight * loss if total is None else total + obj.weight * loss
            with torch.no_grad():
                err = obj.errors(pred.detach(), target, batch)
                rows = torch.full((1,), float(err.shape[0]), dtype=torch.float64, device=err.device)
                sums.append(torch.cat([loss.detach().double().view(1) * rows, rows, err.double().sum(dim=0)]))
        return total, torch.cat(sums)

    def run_epoch(self, loader, train: bool, desc: str):
        self.ddp.train(train)
        if not train and self.ema is not None:
            self.ema.module.eval()
        sums = None
        max_steps = self.optim_cfg["max_steps_per_epoch"] if train else None
        accum = int(self.optim_cfg["grad_accum"])
        generator = _epoch_generator(self.seed, self.epoch) if train else _epoch_generator(self.seed, -EVAL_SEED_OFFSET)
        iterator = loader
        if self.info.is_main and self.config["run"]["progress"]:
            from tqdm.auto import tqdm

            iterator = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
        n_steps = len(loader) if max_steps is None else min(len(loader), int(max_steps))
        with torch.set_grad_enabled(train):
            for step, batch in enumerate(iterator):
                if step >= n_steps:
                    break
                batch, outputs, targets = self._forward(batch, train, generator)
                loss, s = self._losses(batch, outputs, targets)
                sums = s if sums is None else sums + s
                if train:
                    if step % accum == 0:
                        self.optimizer.zero_grad(set_to_none=True)
                    self.grad_scaler.scale(loss / accum).backward()
                    if (step + 1) % accum == 0 or step + 1 == n_steps:
                        self._optimizer_step()
        return self._epoch_metrics(sums)

    def _optimizer_step(self) -> None:
        clip = self.optim_cfg["grad_clip"]
        if clip and float(clip) > 0:
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def _epoch_metrics(self, sums) -> dict:
        layout = [(name, len(obj.column_names)) for name, obj in self.objectives.items()]
        width = sum(2 + n for _, n in layout)
        if sums is None:
            sums = torch.zeros(width, dtype=torch.float64, device=self.device)
        sums = D.all_reduce_sum(sums.to(self.device), self.info).cpu()
        out = {"loss": 0.0, "mae": 0.0, "objectives": {}}
        at = 0
        for name, n in layout:
            obj = self.objectives[name]
            loss_sum, rows = float(sums[at]), max(float(sums[at + 1]), 1.0)
            per_column = (sums[at + 2 : at + 2 + n] / rows).tolist()
            at += 2 + n
            entry = {"loss": loss_sum / rows, "mae": float(sum(per_column) / n), "mae_per_column": per_column}
            out["objectives"][name] = entry
            # The monitored value (best checkpoint, schedule, early stopping) is the weighted sum of the metrics.
            out["loss"] += obj.weight * entry["loss"]
            out["mae"] += obj.weight * entry["mae"]
        return out

    @torch.no_grad()
    def predict_loader(self, loader, objective: str):
        """Predictions and targets of one objective, in its metric's units (e.g. labels in their units)."""
        self._eval_model().eval()
        obj = self.objectives[objective]
        preds, targets = [], []
        generator = _epoch_generator(self.seed, -EVAL_SEED_OFFSET)
        for batch in loader:
            _, outputs, target = self._forward(batch, False, generator)
            preds.append(obj.predictions(outputs[objective]).cpu())
            targets.append(obj.predictions(target[objective]).cpu())
        return torch.cat(preds) if preds else None, torch.cat(targets) if targets else None

    # ---------------------------------------------------------------------------- checkpoints
    def payload(self) -> dict:
        model = _unwrap(self.ddp)
        weights = self.ema.module if self.ema is not None else model
        payload = {
            "kind": self.kind,
            "fpcore_version": __version__,
            "model": model.spec,
            # The weights to use (EMA when enabled): what evaluate, predict and --from read.
            "state_dict": {k: v.detach().cpu() for k, v in weights.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.grad_scaler.state_dict(),
            "objectives": {
                name: {"spec": dict(self.objective_spec[name]), "state": obj.state(), "about": obj.describe()}
                for name, obj in self.objectives.items()
            },
            "target_names": list(self.target_names),
            "epoch": self.epoch,
            "best": dict(self.best),
            "bad_epochs": self.bad_epochs,
            "config": self.config,
            "init": self.init_info,
            "data": self.data_info,
            "rng": {"torch": torch.get_rng_state()},
            "resumable": True,
        }
        if self.ema is not None:
            payload["train_state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            payload["ema_n_averaged"] = self.ema.n_averaged.detach().cpu()
        return payload

    def _restore(self, payload: dict) -> None:
        if not payload.get("resumable", True):
            raise CheckpointError("this checkpoint was converted from an older format and cannot be resumed")
        if self.ema is not None:
            self.model.load_state_dict(payload["train_state_dict"], strict=True)
            self.ema.module.load_state_dict(payload["state_dict"], strict=True)
            self.ema.n_averaged.copy_(payload["ema_n_averaged"])
        else:
            self.model.load_state_dict(payload["state_dict"], strict=True)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if payload.get("grad_scaler"):
            self.grad_scaler.load_state_dict(payload["grad_scaler"])
        for name, obj in self.objectives.items():
            obj.load_state(payload["objectives"][name]["state"])
        self.epoch = int(payload["epoch"])
        self.best = dict(payload["best"])
        self.bad_epochs = int(payload.get("bad_epochs", 0))
        self.init_info = payload.get("init")
        torch.set_rng_state(payload["rng"]["torch"])

    # ------------------------------------------------------------------------------- fit
    def _columns(self) -> list[str]:
        extra = []
        if len(self.objectives) > 1:
            extra = [f"{split}_{name}_mae" for name in self.objectives for split in ("train", "val")]
        return METRIC_FIELDS + extra

    def close(self) -> None:
        """Drops the DDP wrapper while the process group is still alive.

        Otherwise its Reducer is freed after `destroy_process_group`, holding the last reference to the gloo group:
        the group's destructor then joins its worker threads while holding the GIL, and a worker waiting for the GIL
        to free a tensor deadlocks the process (seen with torch 2.13, two CPU ranks).
        """
        if self.ddp is not self.model:
            self.ddp = self.model
            gc.collect()

    def fit(self, on_start=None) -> dict:
        """Runs the remaining epochs; `on_start()` is called as the first of them begins."""
        cfg, info = self.optim_cfg, self.info
        metrics_path = self.run_dir / "metrics.csv"
        writer = self._tensorboard()
        epochs = int(cfg["epochs"])
        stopped_early = False
        while self.epoch < epochs:
            if on_start is not None:
                on_start()
                on_start = None
            self.epoch += 1
            t0 = time.perf_counter()
            self.train_loader.sampler.set_epoch(self.epoch)
            train = self.run_epoch(self.train_loader, True, f"epoch {self.epoch}/{epochs} train")
            val = self.run_epoch(self.val_loader, False, "val") if self.val_loader is not None else None
            monitor = (val or train)["mae"]
            lr = self.optimizer.param_groups[0]["lr"]
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(monitor)
            else:
                self.scheduler.step()
            improved = monitor < self.best["val_mae"]
            if improved:
                self.best = {"val_mae": monitor, "epoch": self.epoch}
                self.bad_epochs = 0
            else:
                self.bad_epochs += 1
            row = {
                "epoch": self.epoch,
                "lr": lr,
                "train_loss": train["loss"],
                "train_mae": train["mae"],
                "val_loss": val["loss"] if val else float("nan"),
                "val_mae": val["mae"] if val else float("nan"),
                "time_s": time.perf_counter() - t0,
            }
            if len(self.objectives) > 1:
                for name in self.objectives:
                    row[f"train_{name}_mae"] = train["objectives"][name]["mae"]
                    row[f"val_{name}_mae"] = val["objectives"][name]["mae"] if val else float("nan")
            if info.is_main:
                self._append_metrics(metrics_path, row)
                if writer is not None:
                    for key in ("lr", "train_loss", "train_mae", "val_loss", "val_mae"):
                        writer.add_scalar(key, row[key], self.epoch)
                payload = self.payload()
                if improved:
                    save_checkpoint(self.run_dir / "best.pt", payload)
                save_checkpoint(self.run_dir / "last.pt", payload)
                print(
                    f"[fpcore-train] epoch {self.epoch:4d}  lr {lr:.2e}  train MAE {train['mae']:.4g}  "
                    f"val MAE {row['val_mae']:.4g}{'  *' if improved else ''}  ({row['time_s']:.1f} s)",
                    flush=True,
                )
            patience = cfg["early_stopping_patience"]
            stop = patience is not None and self.bad_epochs >= int(patience)
            if D.broadcast_flag(stop, info, self.device) and self.epoch < epochs:
                stopped_early = True
                if info.is_main:
                    print(f"[fpcore-train] early stop: no improvement for {self.bad_epochs} epochs", flush=True)
                break
        if writer is not None:
            writer.close()
        D.barrier(info)
        return self._finish(stopped_early)

    def _finish(self, stopped_early: bool) -> dict:
        best_path = self.run_dir / "best.pt"
        if not best_path.is_file():
            raise TrainingError(f"{best_path} was not written (no epoch ran?)")
        best = load_checkpoint(best_path)
        self._eval_model_module().load_state_dict(best["state_dict"])
        summary = {
            "kind": self.kind,
            "run_dir": str(self.run_dir),
            "epochs_run": self.epoch,
            "epochs_max": int(self.optim_cfg["epochs"]),
            "best_epoch": self.best["epoch"],
            "best_val_mae": self.best["val_mae"],
            "stopped_early": stopped_early,
            "objectives": {name: obj.describe() for name, obj in self.objectives.items()},
            "target_names": list(self.target_names),
            "n_structures": {k: len(v) for k, v in self.split.items()},
            "fpcore_version": __version__,
            "init": self.init_info,
        }
        if self.test_loader is not None:
            test = self.run_epoch(self.test_loader, False, "test")
            summary["test_mae"] = test["mae"]
            summary["test_loss"] = test["loss"]
            if "property" in self.objectives:
                prop = self.objectives["property"]
                per_column = test["objectives"]["property"]["mae_per_column"]
                summary["test_mae_per_target"] = dict(zip(prop.column_names, per_column))
            if len(self.objectives) > 1:
                summary["test_mae_per_objective"] = {n: e["mae"] for n, e in test["objectives"].items()}
        files = {"checkpoint": str(best_path), "metrics": str(self.run_dir / "metrics.csv")}
        if self.config["run"]["plots"]:
            files.update(self._plots())
        summary["files"] = files
        if self.info.is_main:
            atomic_write_json(self.run_dir / "summary.json", summary)
            atomic_write_text(self.run_dir / COMPLETED, time.strftime("%Y-%m-%d %H:%M:%S\n"))
        return summary

    def _eval_model_module(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _plots(self) -> dict:
        from . import plots

        files = {}
        if self.info.is_main:
            files["learning_curves"] = str(
                plots.learning_curves(self.run_dir / "metrics.csv", self.run_dir / "learning_curves.png", self.kind)
            )
        if "property" in self.objectives and self.test_loader is not None:
            # Each rank predicts its shard; gather on rank 0 by padding to a common length.
            names = self.objectives["property"].column_names
            pred, target = self.predict_loader(self.test_loader, "property")
            if self.info.enabled:
                pred, target = _gather_rows(pred, target, len(names), self.info, self.device)
            if self.info.is_main and pred is not None:
                files["parity"] = str(
                    plots.parity(target.numpy(), pred.numpy(), names, self.run_dir / "parity_test.png")
                )
        return files

    def _append_metrics(self, path: pathlib.Path, row: dict) -> None:
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self._columns())
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()})

    def _tensorboard(self):
        if not (self.config["run"]["tensorboard"] and self.info.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("run.tensorboard is on but tensorboard is not installed; skipping it", stacklevel=2)
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))


def _gather_rows(pred, target, n_t, info, device):
    import torch.distributed as dist

    local = torch.cat([target, pred], dim=1) if pred is not None else torch.zeros(0, 2 * n_t)
    n = torch.tensor([local.shape[0]], device=device)
    sizes = [torch.zeros_like(n) for _ in range(info.world_size)]
    dist.all_gather(sizes, n)
    longest = int(max(int(s) for s in sizes))
    padded = torch.zeros(longest, 2 * n_t, device=device)
    padded[: local.shape[0]] = local.to(device)
    out = [torch.zeros_like(padded) for _ in range(info.world_size)]
    dist.all_gather(out, padded)
    rows = torch.cat([o[: int(s)] for o, s in zip(out, sizes)]).cpu()
    return rows[:, n_t:], rows[:, :n_t]


def _truncate_metrics(path: pathlib.Path, last_epoch: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or METRIC_FIELDS
        rows = [r for r in reader if int(r["epoch"]) <= last_epoch]
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def run_training(
    kind: str, config: dict, run_dir=None, init_from=None, resume: bool = False, overwrite: bool = False, dataset=None
) -> dict:
    """Trains and returns the summary; `dataset` (a Dataset of torch_geometric Data) bypasses data.source.

    Everything is validated (folder, checkpoint, data, targets, split) before the run folder is touched; see
    RunFolder for the lock and the --overwrite transaction. `kind` (pretrain | finetune) names the command: it
    labels the run and picks the default objective when the config's `objective` is empty; nothing else depends
    on it.
    """
    if kind not in ("pretrain", "finetune"):
        raise ValueError(f"kind must be 'pretrain' or 'finetune', got {kind!r}")
    info, device = D.setup(config["run"]["device"])
    try:
        if config["run"]["threads"]:
            torch.set_num_threads(int(config["run"]["threads"]))
        run_dir = pathlib.Path(run_dir or config["run"]["dir"] or f"runs/{kind}")
        with RunFolder(run_dir, resume, overwrite, is_main=info.is_main, barrier=lambda: D.barrier(info)) as folder:
            folder.check()
            resume_payload = load_checkpoint(run_dir / "last.pt", kind=kind) if resume else None
            if dataset is None:
                dataset = load_data(config, normalise_objectives(config["objective"], kind))
            if len(dataset) == 0:
                raise ValueError("the dataset is empty")
            if resume:
                check_resume_data(resume_payload, dataset, run_dir / "last.pt")
            elements = structure_elements(dataset)
            # The bundled data gets an element-aware split; any data gets a warning when val/test hold an element
            # that training lacks (the cause of pre-training validation spikes on the old bundled set).
            builtin = str(config["data"]["source"]).startswith("builtin:")
            split = make_split(len(dataset), config, run_dir, resume, elements=elements if builtin else None)
            coverage = element_coverage_warning(split, elements)
            if coverage and info.is_main:
                warnings.warn(f"fpcore-train {kind}: {coverage}", stacklevel=2)
            folder.prepare()
            if info.is_main and not resume:
                atomic_write_text(run_dir / "config.yaml", dump_config(config))
                atomic_write_json(run_dir / "split.json", split)
            if resume:
                _truncate_metrics(run_dir / "metrics.csv", int(resume_payload["epoch"])) if info.is_main else None
            trainer = Trainer(
                kind, config, run_dir, info, device, dataset, split, init_from=init_from, resume_payload=resume_payload
            )
            if info.is_main:
                # `train` is `finetune` without a pre-trained start: say which one the user is looking at
                command = "train" if kind == "finetune" and init_from is None else kind
                print(
                    f"[fpcore-train] {command} ({' + '.join(trainer.objectives)}): "
                    f"{sum(p.numel() for p in trainer.model.parameters()):,} parameters, "
                    f"{len(split['train'])}/{len(split['val'])}/{len(split['test'])} train/val/test structures, "
                    f"device {device}, {info.world_size} process(es), run folder {run_dir}",
                    flush=True,
                )
            try:
                return trainer.fit(on_start=folder.started)
            finally:
                trainer.close()
    finally:
        D.teardown(info)


__all__ = ["run_training", "Trainer", "TrainingError", "CheckpointError", "COMPLETED"]
