"""fpcore-train configuration: sections objective, data, model, descriptor, optim, run, validated against DEFAULTS.

Layers, later wins: DEFAULTS <- packaged configs/<kind>.yaml <- the user's --config file <- --set a.b=value.
Every key must exist in DEFAULTS (a typo is an error naming it), except inside the free-form mappings
listed in FREE_FORM (keyword arguments handed to a model or descriptor class).
"""

from __future__ import annotations

import copy
import importlib.resources
import math
import pathlib
import re
from dataclasses import dataclass

import yaml

DEFAULTS: dict = {
    # What to learn: {name: weight} or {name: {weight: w, <objective kwargs>}}, summed, e.g.
    # {fingerprints: 1.0, denoise: {weight: 0.5, sigma: 0.05}}; empty: the command's default
    # (pretrain: fingerprints, finetune/train: property). See fpcore.training.objectives.
    "objective": {},
    "data": {
        "source": None,  # path(s) or "builtin:<name>", see fpcore.data.load_dataset
        "targets": None,  # label names for fine-tuning; None for pre-training
        "cache_dir": None,
        "split": [0.8, 0.1, 0.1],  # train/val/test fractions
        "split_seed": 111,
        "split_file": None,  # a split.json (train/val/test index lists) to reuse instead
        "batch_size": 16,
        "eval_batch_size": None,
        "num_workers": 0,
        "augment": {"rattle": 0.0, "strain": 0.0},  # per-epoch perturbation (Angstrom, strain); bypasses the cache
    },
    "model": {
        # A named model setup (fpcore.models.PRESETS), e.g. "paper": the authors' TorchMD-Net ET, its 3-layer
        # sum-pooled xavier-initialised head and weight decay 0.01. It fills the keys below (and optim.weight_decay)
        # above the packaged defaults; whatever the user's file or --set gives still wins.
        "preset": None,
        "backbone": "SchNet",  # SchNet | EquivariantTransformer (alias et)
        "backbone_kwargs": {},  # free form: hidden, n_layers, n_heads, n_rbf, ...
        "cutoff": 8.0,
        "max_neighbors": None,
        "head_hidden": 128,
        "head_layers": 2,
        "pooling": "mean",
        "head_init": "default",  # default (torch's) | xavier (xavier-uniform weights, zero biases)
    },
    "descriptor": {
        "fingerprints": [],  # list of {name: EAD|WACSF|GMP|..., kwargs: {...}}, concatenated
        "dtype": "float64",
        "cache": False,  # precompute the targets once (memory) instead of on the fly
        "cache_file": None,  # ... and keep them in this file between runs
        "scaler_batches": None,  # fit the standardisation on this many batches (None: whole train set)
    },
    "optim": {
        "epochs": 50,
        "lr": 5.0e-4,
        "weight_decay": 0.0,
        "grad_clip": 10.0,
        "lr_factor": 0.5,
        "lr_patience": 5,
        "min_lr": 1.0e-6,
        "early_stopping_patience": 20,
        "schedule": "plateau",  # plateau (ReduceLROnPlateau on the validation metric) | cosine (after warmup)
        "warmup_epochs": 0,  # linear warmup from lr/100 (cosine schedule)
        "grad_accum": 1,  # optimizer step every this many batches
        "ema_decay": None,  # e.g. 0.999: evaluate and checkpoint an exponential moving average of the weights
        "freeze_backbone": False,  # train the heads only
        "backbone_lr": None,  # the backbone's own learning rate (default: lr)
        "max_steps_per_epoch": None,
    },
    "run": {
        "dir": None,  # default runs/<command>
        "seed": 0,
        "device": "auto",  # auto | cpu | cuda | cuda:N
        "progress": True,
        "tensorboard": False,
        "plots": True,
        "threads": None,
        "amp": "auto",  # auto (bf16/fp16 on CUDA, off on CPU) | bf16 | fp16 | off; evaluation is always float32
        "cache_graphs": True,  # reuse each structure's graph when the geometry never changes (no augment/denoise)
    },
}

FREE_FORM = {("model", "backbone_kwargs"), ("objective",)}
#: keys of older versions, with what replaced them
RENAMED = {"optim.amp": "run.amp (auto | bf16 | fp16 | off)"}
SECTIONS = tuple(DEFAULTS)


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric key: low <= v (low < v when low_open), v <= high (v < high when high_open).

    `nullable`: null is allowed (and means what the key's comment in DEFAULTS says); `integer`: whole numbers only.
    Every numeric value must also be finite.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    integer: bool = False
    hint: str = ""

    def contains(self, v) -> bool:
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        if self.high is not None and (v >= self.high if self.high_open else v > self.high):
            return False
        return True

    def text(self) -> str:
        def show(v):
            return str(int(v)) if self.integer else f"{v:g}"

        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {show(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {show(self.high)}")
        what = ("an integer " if self.integer else "a finite number ") + " and ".join(parts)
        return what.strip() + (" or null" if self.nullable else "")


POSITIVE_INT = Range(1, integer=True)
# Numeric keys and their allowed values; checked after every layer is merged, so a bad --set value is reported
# before any data is read or any run folder touched.
RANGES: dict[tuple[str, str], Range] = {
    ("data", "batch_size"): POSITIVE_INT,
    ("data", "eval_batch_size"): Range(1, integer=True, nullable=True),
    ("data", "num_workers"): Range(0, integer=True),
    ("data", "split_seed"): Range(0, 2**63 - 1, integer=True),
    ("model", "cutoff"): Range(0, low_open=True),
    ("model", "max_neighbors"): Range(1, integer=True, nullable=True),
    ("model", "head_hidden"): POSITIVE_INT,
    ("model", "head_layers"): POSITIVE_INT,
    ("descriptor", "scaler_batches"): Range(1, integer=True, nullable=True),
    ("optim", "epochs"): POSITIVE_INT,
    ("optim", "lr"): Range(0, low_open=True),
    ("optim", "weight_decay"): Range(0),
    ("optim", "grad_clip"): Range(0, low_open=True, nullable=True, hint="null disables clipping"),
    ("optim", "lr_factor"): Range(0, 1, low_open=True, high_open=True),
    ("optim", "lr_patience"): Range(0, integer=True),
    ("optim", "min_lr"): Range(0),
    ("optim", "early_stopping_patience"): POSITIVE_INT,
    ("optim", "max_steps_per_epoch"): Range(1, integer=True, nullable=True, hint="null runs whole epochs"),
    ("run", "seed"): Range(0, 2**63 - 1, integer=True),
    ("run", "threads"): Range(1, integer=True, nullable=True, hint="null keeps torch's default"),
}
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _check_ranges(config: dict) -> None:
    for (section, key), allowed in RANGES.items():
        if key not in config.get(section, {}):
            continue
        value = config[section][key]
        dotted = f"{section}.{key}"
        if value is None and allowed.nullable:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = (
            number
            and math.isfinite(value)
            and (not allowed.integer or isinstance(value, int))
            and allowed.contains(value)
        )
        if not ok:
            hint = f"; {allowed.hint}" if allowed.hint else ""
            raise ConfigError(f"config key '{dotted}' must be {allowed.text()}, got {value!r}{hint}")
    device = config["run"]["device"]
    if not DEVICE_PATTERN.match(str(device)):
        raise ConfigError(f"config key 'run.device' must be auto, cpu, cuda or cuda:N, got {device!r}")


def _normalize_targets(config: dict) -> None:
    # A single name is a list of one (not a sequence of characters).
    targets = config["data"]["targets"]
    if isinstance(targets, str):
        targets = [targets]
    if targets is None:
        return
    if not isinstance(targets, list) or not all(isinstance(t, str) and t.strip() for t in targets):
        raise ConfigError(f"config key 'data.targets' must be a label name or a list of label names, got {targets!r}")
    if len(set(targets)) != len(targets):
        raise ConfigError(f"config key 'data.targets' names a label twice: {targets!r}")
    config["data"]["targets"] = targets


def _merge(base: dict, update: dict, path: tuple = (), replace_free_form: bool = True) -> dict:
    # A file layer replaces a free-form mapping wholesale (other backbone, other kwargs); a dotted
    # --set a.b.c=v edits one entry of it.
    if not isinstance(update, dict):
        raise ConfigError(
            f"config section '{'.'.join(path) or '<top>'}' must be a mapping, got {type(update).__name__}"
        )
    for key, value in update.items():
        key_path = path + (str(key),)
        dotted = ".".join(key_path)
        if path in FREE_FORM:
            base[key] = copy.deepcopy(value)
            continue
        if key not in base:
            if dotted in RENAMED:
                raise ConfigError(f"config key '{dotted}' was replaced by {RENAMED[dotted]}")
            known = ", ".join(sorted(base))
            raise ConfigError(f"unknown config key '{dotted}' (known keys here: {known})")
        if key_path in FREE_FORM:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{dotted}' must be a mapping, got {value!r}")
            if replace_free_form or not isinstance(base[key], dict):
                base[key] = {}
            _merge(base[key], value, key_path, replace_free_form)
        elif isinstance(base[key], dict):
            _merge(base[key], value, key_path, replace_free_form)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _check_types(config: dict) -> None:
    for section, entries in DEFAULTS.items():
        for key, default in entries.items():
            value = config[section][key]
            dotted = f"{section}.{key}"
            if default is None:
                continue
            if value is None:
                if (section, key) in RANGES and RANGES[(section, key)].nullable:
                    continue
                raise ConfigError(f"config key '{dotted}' must not be null (default {default!r})")
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            elif isinstance(default, str):
                ok = isinstance(value, str)
            elif isinstance(default, list):
                ok = isinstance(value, list)
            elif isinstance(default, dict):
                ok = isinstance(value, dict)
            else:  # pragma: no cover
                ok = True
            if not ok:
                name = type(default).__name__
                article = "an" if name[0] in "aeiou" else "a"
                raise ConfigError(f"config key '{dotted}' must be {article} {name}, got {value!r}")
    _check_ranges(config)
    _normalize_targets(config)
    split = config["data"]["split"]
    if (
        len(split) != 3
        or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f < 0 for f in split)
        or split[0] <= 0
    ):
        raise ConfigError(f"config key 'data.split' must be three fractions (train > 0, val, test >= 0), got {split!r}")
    for entry in config["descriptor"]["fingerprints"]:
        if not isinstance(entry, dict) or "name" not in entry or set(entry) - {"name", "kwargs"}:
            raise ConfigError(
                "each entry of 'descriptor.fingerprints' must be {name: <descriptor class>, kwargs: {...}}, "
                f"got {entry!r}"
            )
    if config["objective"]:
        from .objectives import normalise_objectives

        try:
            normalise_objectives(config["objective"])
        except ValueError as err:
            raise ConfigError(str(err)) from None
    from .augment import check_augment

    try:
        check_augment(config["data"]["augment"])
    except ValueError as err:
        raise ConfigError(str(err)) from None
    checks = {
        "optim.schedule": (config["optim"]["schedule"], ("plateau", "cosine")),
        "run.amp": (config["run"]["amp"], ("auto", "bf16", "fp16", "off")),
        "model.head_init": (config["model"]["head_init"], ("default", "xavier")),
    }
    for dotted, (value, allowed) in checks.items():
        if value not in allowed:
            raise ConfigError(f"config key '{dotted}' must be one of {' | '.join(allowed)}, got {value!r}")
    if config["optim"]["grad_accum"] < 1 or config["optim"]["warmup_epochs"] < 0:
        raise ConfigError("config keys 'optim.grad_accum' must be >= 1 and 'optim.warmup_epochs' >= 0")
    decay = config["optim"]["ema_decay"]
    if decay is not None and not (isinstance(decay, (int, float)) and 0 < decay < 1):
        raise ConfigError(f"config key 'optim.ema_decay' must be null or a number in (0, 1), got {decay!r}")
    if config["descriptor"]["dtype"] not in ("float32", "float64"):
        raise ConfigError(
            f"config key 'descriptor.dtype' must be float32 or float64, got {config['descriptor']['dtype']!r}"
        )


def parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text:
        raise ConfigError(f"--set expects key=value (e.g. optim.lr=1e-3), got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {err}") from None
    # YAML 1.1 reads "1e-3" as a string; a number is what anyone writing it means.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return key.split("."), value


def packaged_config(kind: str) -> dict:
    resource = importlib.resources.files("fpcore") / "configs" / f"{kind}.yaml"
    if not resource.is_file():
        raise ConfigError(f"no packaged config for {kind!r}")
    return yaml.safe_load(resource.read_text()) or {}


def read_yaml(path) -> dict:
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections {list(SECTIONS)}")
    return data


def _fix_yaml_numbers(node):
    if isinstance(node, dict):
        return {k: _fix_yaml_numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_yaml_numbers(v) for v in node]
    if isinstance(node, str):
        try:
            if any(c in node for c in "eE") and not node.lower().startswith(("inf", "nan")):
                return float(node)
        except ValueError:
            pass
    return node


def preset_layer(name) -> dict:
    """The config layer of a model preset (fpcore.models.PRESETS): backbone, head and optimizer keys."""
    from ..models import PRESETS, canonical_backbone_name

    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(f"config key 'model.preset': unknown preset {name!r}; known: {sorted(PRESETS)}")
    preset = PRESETS[name]
    head = preset["head"]
    model = {"backbone": canonical_backbone_name(preset["backbone"]["class"])}
    for model_key, head_key in (("head_layers", "n_layers"), ("pooling", "pooling"), ("head_init", "init")):
        if head_key in head:
            model[model_key] = head[head_key]
    return {"model": model, "optim": dict(preset.get("optimizer", {}))}


def _apply_preset(config: dict, user_layers: list) -> dict:
    """Rebuilds `config` with the preset's layer between the packaged defaults and the user's layers."""
    from ..models import PRESETS, canonical_backbone_name

    name = config["model"]["preset"]
    layer = preset_layer(name)
    rebuilt = copy.deepcopy(DEFAULTS)
    for update, replace in [user_layers[0], (layer, True), *user_layers[1:]]:
        _merge(rebuilt, update, replace_free_form=replace)
    backbone = PRESETS[name]["backbone"]
    if canonical_backbone_name(rebuilt["model"]["backbone"]) == layer["model"]["backbone"]:
        for key, value in backbone.get("kwargs", {}).items():
            rebuilt["model"]["backbone_kwargs"].setdefault(key, copy.deepcopy(value))
    return rebuilt


def resolve_config(kind: str | None = None, path=None, overrides=(), base: dict | None = None) -> dict:
    """The validated config: DEFAULTS <- packaged <kind>.yaml <- [model.preset] <- file at `path` <- `base` <-
    overrides."""
    config = copy.deepcopy(DEFAULTS)
    # (layer, replace_free_form) in order; the first is the packaged layer, below a preset.
    layers: list[tuple[dict, bool]] = [(_fix_yaml_numbers(packaged_config(kind)) if kind is not None else {}, True)]
    if path is not None:
        layers.append((_fix_yaml_numbers(read_yaml(path)), True))
    if base is not None:
        layers.append((_fix_yaml_numbers(base), True))
    for text in overrides:
        keys, value = parse_override(text) if isinstance(text, str) else (list(text[0]), text[1])
        nested: object = value
        for key in reversed(keys):
            nested = {key: nested}
        # --set model.backbone_kwargs={...} replaces the mapping, --set model.backbone_kwargs.hidden=32 edits it.
        layers.append((nested, any(ff[: len(keys)] == tuple(keys) for ff in FREE_FORM)))
    for update, replace in layers:
        _merge(config, update, replace_free_form=replace)
    if config["model"]["preset"] is not None:
        config = _apply_preset(config, layers)
    _check_types(config)
    return config


def dump_config(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)
