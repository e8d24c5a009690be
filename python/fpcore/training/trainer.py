"""The training loop behind `fpcore-train pretrain | finetune | train`.

pretrain: node-level regression of standardised fpcore fingerprints (computed on the fly on the
training device, or from a precomputed cache), L1 over atoms x features.
finetune / train: a GraphHead on a (pre-trained / fresh) backbone, standardised targets, L1 loss.
Both: AdamW, ReduceLROnPlateau on the validation MAE, gradient clipping, AMP on CUDA, early
stopping, DDP under torchrun, atomic self-describing checkpoints, exact resume from last.pt.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import pathlib
import time
import warnings

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, Subset

from .. import __version__
from .._io import atomic_open, atomic_write_json, atomic_write_text
from ..models import build_model, canonical_backbone_name
from . import distributed as D
from .checkpoint import CheckpointError, load_backbone, load_checkpoint, save_checkpoint
from .config import dump_config
from .run_folder import COMPLETED, RunFolder
from .scaling import FeatureScaler
from .targets import TargetCache, TargetFingerprints

METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_mae", "val_loss", "val_mae", "time_s"]


class TrainingError(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------- data


def load_data(config: dict, labelled: bool):
    source = config["data"]["source"]
    if source is None:
        raise ValueError("data.source is not set (a file, a list of files or builtin:<name>)")
    targets = config["data"]["targets"]
    if labelled and not targets:
        raise ValueError("fine-tuning needs data.targets (the label names to learn)")
    try:
        from ..data import load_dataset
    except ImportError as err:  # pragma: no cover - the data layer is part of the package
        raise TrainingError(f"fpcore.data is unavailable: {err}") from None
    return load_dataset(
        source, targets=list(targets) if labelled else None, cache_dir=config["data"]["cache_dir"], progress=False
    )


def make_split(n: int, config: dict, run_dir: pathlib.Path, resume: bool) -> dict[str, list[int]]:
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
    fractions = [f / total for f in fractions]
    generator = torch.Generator().manual_seed(int(config["data"]["split_seed"]))
    perm = torch.randperm(n, generator=generator).tolist()
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"data.split {config['data']['split']} leaves no training structure out of {n}")
    return {
        "train": sorted(perm[:n_train]),
        "val": sorted(perm[n_train : n_train + n_val]),
        "test": sorted(perm[n_train + n_val :]),
    }


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


def model_spec(config: dict, kind: str, n_out: int) -> dict:
    m = config["model"]
    kwargs = dict(m["backbone_kwargs"])
    kwargs.setdefault("cutoff", float(m["cutoff"]))
    kwargs.setdefault("max_neighbors", m["max_neighbors"])
    head = {
        "class": "NodeHead" if kind == "pretrain" else "GraphHead",
        "kwargs": {"n_out": int(n_out), "hidden": int(m["head_hidden"]), "n_layers": int(m["head_layers"])},
    }
    if kind != "pretrain":
        head["kwargs"]["pooling"] = m["pooling"]
    return {"backbone": {"class": canonical_backbone_name(m["backbone"]), "kwargs": kwargs}, "head": head}


def tensor_digest(state: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _unwrap(model) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


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
        if kind not in ("pretrain", "finetune"):
            raise ValueError(f"kind must be 'pretrain' or 'finetune', got {kind!r}")
        self.kind, self.config, self.run_dir, self.info, self.device = kind, config, pathlib.Path(run_dir), info, device
        self.dataset, self.split = dataset, split
        self.optim_cfg = config["optim"]
        self.seed = int(config["run"]["seed"])
        torch.manual_seed(self.seed)

        bs = int(config["data"]["batch_size"])
        ebs = int(config["data"]["eval_batch_size"] or bs)
        nw = int(config["data"]["num_workers"])
        self.train_loader = _loader(dataset, split["train"], bs, True, info, self.seed, nw)
        self.val_loader = _loader(dataset, split["val"], ebs, False, info, self.seed, nw) if split["val"] else None
        self.test_loader = _loader(dataset, split["test"], ebs, False, info, self.seed, nw) if split["test"] else None
        self._train_eval_factory = lambda: _loader(dataset, split["train"], ebs, False, info, self.seed, nw)

        self.fingerprints = None
        self.cache = None
        if kind == "pretrain":
            self.fingerprints = TargetFingerprints(config["descriptor"]["fingerprints"], config["descriptor"]["dtype"])
            self.fingerprints.to(device)
            self.target_names = self.fingerprints.feature_labels
        else:
            self.target_names = list(getattr(dataset, "target_names", None) or config["data"]["targets"])
        n_out = len(self.target_names)

        self.init_info = None
        if resume_payload is not None:
            spec = resume_payload["model"]
        else:
            spec = model_spec(config, kind, n_out)
            if init_from is not None:
                pre = load_checkpoint(init_from, kind="pretrain")
                if pre["model"]["backbone"] != spec["backbone"]:
                    if info.is_main:
                        print(
                            f"[fpcore-train] using the backbone of {init_from}: {pre['model']['backbone']} "
                            f"(the config asked for {spec['backbone']})"
                        )
                    spec["backbone"] = pre["model"]["backbone"]
        model = build_model(spec).to(device)
        if resume_payload is None and init_from is not None:
            load_backbone(model, pre, source=str(init_from))
            self.init_info = {"from": str(init_from), "backbone_sha256": tensor_digest(model.backbone.state_dict())}
        self.model = model
        self.ddp = (
            DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
            if info.enabled
            else model
        )

        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=float(self.optim_cfg["lr"]), weight_decay=float(self.optim_cfg["weight_decay"])
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="min",
            factor=float(self.optim_cfg["lr_factor"]),
            patience=int(self.optim_cfg["lr_patience"]),
            min_lr=float(self.optim_cfg["min_lr"]),
        )
        self.amp = bool(self.optim_cfg["amp"]) and device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)

        self.epoch = 0
        self.best = {"val_mae": math.inf, "epoch": 0}
        self.bad_epochs = 0
        if resume_payload is not None:
            self._restore(resume_payload)
        else:
            self.scaler = self._fit_scaler().to(device)

    # ------------------------------------------------------------------------------ targets
    def _setup_cache(self):
        desc = self.config["descriptor"]
        if self.kind != "pretrain" or not (desc["cache"] or desc["cache_file"]):
            return
        key = self.fingerprints.key() + f"-{len(self.dataset)}"
        path = pathlib.Path(desc["cache_file"]) if desc["cache_file"] else None
        if path is not None and path.is_file():
            self.cache = TargetCache.load(path, key)
        if self.cache is None:
            every = list(range(len(self.dataset)))
            factory = lambda: _loader(  # noqa: E731
                self.dataset,
                every,
                int(self.config["data"]["batch_size"]),
                False,
                D.DistInfo(),
                self.seed,
                0,
            )
            self.cache = TargetCache.build(self.fingerprints, self.dataset, factory, self.device, key)
            if path is not None and self.info.is_main:
                self.cache.save(path)

    def targets(self, data) -> torch.Tensor:
        if self.kind == "pretrain":
            if self.cache is not None:
                return self.cache.lookup(data)
            return self.fingerprints(data).float()
        return data.y.view(data.num_graphs, -1).float()

    def _fit_scaler(self) -> FeatureScaler:
        self._setup_cache()
        scaler = FeatureScaler(len(self.target_names))
        if self.kind == "pretrain":
            limit = self.config["descriptor"]["scaler_batches"]
            loader = _loader(
                self.dataset,
                self.split["train"],
                int(self.config["data"]["batch_size"]),
                False,
                self.info,
                self.seed,
                0,
            )
            for k, data in enumerate(loader):
                if limit is not None and k >= int(limit):
                    break
                scaler.update(self.targets(data.to(self.device)))
            packed = D.all_gather_tensors(scaler.state_for_merge(), self.info, self.device)
            scaler.merge_packed(packed)
        else:
            # Labels are small: every rank reads all of them, so no communication is needed.
            ys = [self.dataset[i].y.view(1, -1) for i in self.split["train"]]
            scaler.update(torch.cat(ys).double())
        return scaler.finalize()

    # ------------------------------------------------------------------------------- epochs
    def _step_batch(self, data, train: bool):
        data = data.to(self.device)
        target = self.targets(data)
        with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            pred = self.ddp(
                data.z, data.pos, data.cell.view(-1, 3, 3), data.pbc.view(-1, 3), data.batch, data.num_graphs
            )
        pred = pred.float()
        scaled_target = self.scaler(target)
        loss = torch.nn.functional.l1_loss(pred, scaled_target)
        if train:
            self.optimizer.zero_grad(set_to_none=True)
            self.grad_scaler.scale(loss).backward()
            if self.optim_cfg["grad_clip"] and float(self.optim_cfg["grad_clip"]) > 0:
                self.grad_scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.optim_cfg["grad_clip"]))
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        with torch.no_grad():
            if self.kind == "pretrain":
                abs_err = (pred - scaled_target).abs().sum(dim=0).double()
            else:
                abs_err = (self.scaler.inverse(pred) - target).abs().sum(dim=0).double()
            sums = torch.cat(
                [
                    loss.detach().double().view(1) * pred.numel(),
                    torch.tensor([float(pred.numel()), float(pred.shape[0])], dtype=torch.float64, device=pred.device),
                    abs_err,
                ]
            )
        return sums, pred.detach(), target.detach()

    def run_epoch(self, loader, train: bool, desc: str):
        self.ddp.train(train)
        sums = None
        max_steps = self.optim_cfg["max_steps_per_epoch"] if train else None
        iterator = loader
        if self.info.is_main and self.config["run"]["progress"]:
            from tqdm.auto import tqdm

            iterator = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
        with torch.set_grad_enabled(train):
            for step, data in enumerate(iterator):
                if max_steps is not None and step >= int(max_steps):
                    break
                s, _, _ = self._step_batch(data, train)
                sums = s if sums is None else sums + s
        n_t = len(self.target_names)
        if sums is None:
            sums = torch.zeros(3 + n_t, dtype=torch.float64, device=self.device)
        sums = D.all_reduce_sum(sums.to(self.device), self.info).cpu()
        n_elem, n_rows = max(float(sums[1]), 1.0), max(float(sums[2]), 1.0)
        per_target = (sums[3:] / n_rows).tolist()
        return {"loss": float(sums[0]) / n_elem, "mae": float(sum(per_target) / n_t), "mae_per_target": per_target}

    @torch.no_grad()
    def predict_loader(self, loader):
        self.ddp.eval()
        preds, targets = [], []
        for data in loader:
            _, pred, target = self._step_batch(data, train=False)
            preds.append(self.scaler.inverse(pred).cpu())
            targets.append(target.cpu())
        return torch.cat(preds) if preds else None, torch.cat(targets) if targets else None

    # ---------------------------------------------------------------------------- checkpoints
    def payload(self) -> dict:
        model = _unwrap(self.ddp)
        return {
            "kind": self.kind,
            "fpcore_version": __version__,
            "model": model.spec,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.grad_scaler.state_dict(),
            "scalers": {"target": self.scaler.state()},
            "target_names": list(self.target_names),
            "epoch": self.epoch,
            "best": dict(self.best),
            "bad_epochs": self.bad_epochs,
            "config": self.config,
            "init": self.init_info,
            "rng": {"torch": torch.get_rng_state()},
        }

    def _restore(self, payload: dict) -> None:
        self.model.load_state_dict(payload["state_dict"], strict=True)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if payload.get("grad_scaler"):
            self.grad_scaler.load_state_dict(payload["grad_scaler"])
        self.scaler = FeatureScaler.from_state(payload["scalers"]["target"]).to(self.device)
        self.epoch = int(payload["epoch"])
        self.best = dict(payload["best"])
        self.bad_epochs = int(payload.get("bad_epochs", 0))
        self.init_info = payload.get("init")
        torch.set_rng_state(payload["rng"]["torch"])
        if self.kind == "pretrain":
            self._setup_cache()

    # ------------------------------------------------------------------------------- fit
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
            self.scheduler.step(monitor)
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
        best = load_checkpoint(best_path, kind=self.kind)
        self.model.load_state_dict(best["state_dict"])
        summary = {
            "kind": self.kind,
            "run_dir": str(self.run_dir),
            "epochs_run": self.epoch,
            "best_epoch": self.best["epoch"],
            "best_val_mae": self.best["val_mae"],
            "stopped_early": stopped_early,
            "target_names": list(self.target_names),
            "n_structures": {k: len(v) for k, v in self.split.items()},
            "fpcore_version": __version__,
            "init": self.init_info,
        }
        if self.test_loader is not None:
            test = self.run_epoch(self.test_loader, False, "test")
            summary["test_mae"] = test["mae"]
            summary["test_loss"] = test["loss"]
            if self.kind == "finetune":
                summary["test_mae_per_target"] = dict(zip(self.target_names, test["mae_per_target"]))
        files = {"checkpoint": str(best_path), "metrics": str(self.run_dir / "metrics.csv")}
        if self.config["run"]["plots"]:
            files.update(self._plots())
        summary["files"] = files
        if self.info.is_main:
            atomic_write_json(self.run_dir / "summary.json", summary)
            atomic_write_text(self.run_dir / COMPLETED, time.strftime("%Y-%m-%d %H:%M:%S\n"))
        return summary

    def _plots(self) -> dict:
        from . import plots

        files = {}
        if self.info.is_main:
            files["learning_curves"] = str(
                plots.learning_curves(self.run_dir / "metrics.csv", self.run_dir / "learning_curves.png", self.kind)
            )
        if self.kind == "finetune" and self.test_loader is not None:
            # Each rank predicts its shard; gather on rank 0 by padding to a common length.
            pred, target = self.predict_loader(self.test_loader)
            if self.info.enabled:
                pred, target = _gather_rows(pred, target, len(self.target_names), self.info, self.device)
            if self.info.is_main and pred is not None:
                files["parity"] = str(
                    plots.parity(target.numpy(), pred.numpy(), self.target_names, self.run_dir / "parity_test.png")
                )
        return files

    def _append_metrics(self, path: pathlib.Path, row: dict) -> None:
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=METRIC_FIELDS)
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
        rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= last_epoch]
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=METRIC_FIELDS)
        w.writeheader()
        w.writerows(rows)


def run_training(
    kind: str, config: dict, run_dir=None, init_from=None, resume: bool = False, overwrite: bool = False, dataset=None
) -> dict:
    """Trains and returns the summary; `dataset` (a Dataset of torch_geometric Data) bypasses data.source.

    Everything is validated (folder, checkpoint, data, targets, split) before the run folder is touched; see
    RunFolder for the lock and the --overwrite transaction.
    """
    info, device = D.setup(config["run"]["device"])
    try:
        if config["run"]["threads"]:
            torch.set_num_threads(int(config["run"]["threads"]))
        run_dir = pathlib.Path(run_dir or config["run"]["dir"] or f"runs/{kind}")
        with RunFolder(run_dir, resume, overwrite, is_main=info.is_main, barrier=lambda: D.barrier(info)) as folder:
            folder.check()
            resume_payload = load_checkpoint(run_dir / "last.pt", kind=kind) if resume else None
            if dataset is None:
                dataset = load_data(config, labelled=(kind == "finetune"))
            if len(dataset) == 0:
                raise ValueError("the dataset is empty")
            if init_from is not None and kind != "finetune":
                raise ValueError("init_from (--from) only applies to fine-tuning")
            split = make_split(len(dataset), config, run_dir, resume)
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
                print(
                    f"[fpcore-train] {kind}: {sum(p.numel() for p in trainer.model.parameters()):,} parameters, "
                    f"{len(split['train'])}/{len(split['val'])}/{len(split['test'])} train/val/test structures, "
                    f"device {device}, {info.world_size} process(es), run folder {run_dir}",
                    flush=True,
                )
            return trainer.fit(on_start=folder.started)
    finally:
        D.teardown(info)


__all__ = ["run_training", "Trainer", "TrainingError", "CheckpointError", "COMPLETED"]
