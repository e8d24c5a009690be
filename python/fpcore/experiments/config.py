"""Experiment configuration: one YAML file with common settings and named scales merged over them.

Layers, later wins: the file's top level <- scales.<scale> <- --set key=value overrides <- --data-root / --out.
Trainer settings (sections data, model, descriptor, optim, run of fpcore-train) live under `trainer` (both kinds),
`pretrain.trainer` and `finetune.trainer`; every resolved run config is validated by fpcore.training.resolve_config
before anything runs, so a typo fails in seconds, not after the pre-training.
"""

from __future__ import annotations

import copy
import pathlib

import yaml

from ..training.config import ConfigError, parse_override, read_yaml, resolve_config

TOP_KEYS = {
    "data_root": "../shared/data",  # folder the task/corpus paths are relative to (relative to the current directory)
    "out": None,  # results folder (default results/<config file stem>)
    "default_scale": None,
    "scales": {},
    # name -> null (from scratch), a list of fingerprints ({name, kwargs}), or {fingerprints, objective, augment}
    "arms": {},
    "run_arms": None,  # subset/order of arms to run (default: all, in file order)
    "tasks": {},  # name -> {source, target, max_structures}
    "run_tasks": None,  # subset/order of tasks to run (default: all)
    "seeds": [111, 222, 333, 444, 555],
    "split": [0.6, 0.2, 0.2],
    "subsample_seed": 0,
    "trainer": {},
    "pretrain": {},
    "finetune": {},
    "plot": True,
    # data efficiency: {tasks, arms, fractions (of the training split, each < 1), out (report folder, relative to
    # `out`)}; the 100% points are the main table's runs
    "low_data": None,
}
PRETRAIN_KEYS = {"source": None, "max_structures": None, "split": [0.95, 0.05, 0.0], "trainer": {}}
FINETUNE_KEYS = {"trainer": {}}
TASK_KEYS = {"source", "target", "max_structures"}
LOW_DATA_KEYS = {"tasks": None, "arms": None, "fractions": None, "out": "low_data"}
# Keys the experiment sets itself in every run config; setting them by hand would silently break the protocol.
MANAGED = {
    ("data", "source"),
    ("data", "targets"),
    ("data", "split"),
    ("data", "split_seed"),
    ("data", "split_file"),
    ("run", "dir"),
}


def deep_merge(base: dict, update: dict) -> dict:
    """Recursive dict merge (lists and scalars replace); returns a new dict."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(config: dict, keys: list[str], value) -> None:
    node = config
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value


def _check_keys(mapping, allowed, where: str) -> None:
    if not isinstance(mapping, dict):
        raise ConfigError(f"experiment config: '{where}' must be a mapping, got {mapping!r}")
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ConfigError(f"experiment config: unknown key(s) {unknown} in '{where}' (known: {sorted(allowed)})")


def _fraction_triple(value, where: str) -> list[float]:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or any(isinstance(f, bool) or not isinstance(f, (int, float)) or f < 0 for f in value)
        or value[0] <= 0
        or abs(sum(value) - 1.0) > 1e-6
    ):
        raise ConfigError(
            f"experiment config: '{where}' must be three fractions >= 0 summing to 1 (train > 0), got {value!r}"
        )
    return [float(f) for f in value]


def _max_structures(value, where: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 3:
        raise ConfigError(f"experiment config: '{where}' must be an integer >= 3 or null, got {value!r}")
    return value


def load_experiment_config(
    path, scale: str | None = None, overrides=(), data_root=None, out=None, raw: dict | None = None
) -> dict:
    """The merged, validated experiment config (paths still relative to data_root, which is made absolute).

    `raw`, when given, is the file's content already read (and completed, as `fpcore-train compare` does); `path` then
    only names the experiment (the default results folder is results/<path stem>)."""
    raw = read_yaml(path) if raw is None else raw
    _check_keys(raw, TOP_KEYS, "<top>")
    scales = raw.get("scales") or {}
    if not isinstance(scales, dict):
        raise ConfigError("experiment config: 'scales' must be a mapping of scale name -> settings")
    scale = scale or raw.get("default_scale")
    if scale is None and scales:
        raise ConfigError(f"experiment config: choose a scale with --scale (one of {sorted(scales)})")
    config = deep_merge(TOP_KEYS, {k: v for k, v in raw.items() if k != "scales"})
    if scale is not None:
        if scale not in scales:
            raise ConfigError(f"experiment config: unknown scale {scale!r}; the file defines {sorted(scales)}")
        _check_keys(scales[scale] or {}, set(TOP_KEYS) - {"scales", "default_scale"}, f"scales.{scale}")
        config = deep_merge(config, scales[scale] or {})
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] not in TOP_KEYS:
            raise ConfigError(f"--set: unknown experiment key {keys[0]!r} (known: {sorted(TOP_KEYS)})")
        _set_dotted(config, keys, value)
    if data_root is not None:
        config["data_root"] = str(data_root)
    if out is not None:
        config["out"] = str(out)
    config["scale"] = scale
    config.pop("scales", None)
    config["out"] = config["out"] or f"results/{pathlib.Path(path).stem}"
    return validate(config)


def validate(config: dict) -> dict:
    config["data_root"] = str(pathlib.Path(config["data_root"]).expanduser().resolve())
    config["split"] = _fraction_triple(config["split"], "split")
    seeds = config["seeds"]
    if (
        not isinstance(seeds, list)
        or not seeds
        or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ConfigError(f"experiment config: 'seeds' must be a non-empty list of distinct integers, got {seeds!r}")

    arms = config["arms"]
    if not isinstance(arms, dict) or not arms:
        raise ConfigError("experiment config: 'arms' must map arm names to fingerprint lists (null: from scratch)")
    baselines = [name for name, fps in arms.items() if fps is None]
    if len(baselines) > 1:
        raise ConfigError(f"experiment config: only one arm may train from scratch (null), got {baselines}")
    for name, arm in arms.items():
        _check_arm(name, arm)
    config["baseline_arm"] = baselines[0] if baselines else None
    config["run_arms"] = _selection(config["run_arms"], arms, "run_arms", "arm")

    tasks = config["tasks"]
    if not isinstance(tasks, dict) or not tasks:
        raise ConfigError("experiment config: 'tasks' must map task names to {source, target}")
    for name, task in tasks.items():
        _check_keys(task, TASK_KEYS, f"tasks.{name}")
        if not task.get("source") or not isinstance(task.get("target"), str):
            raise ConfigError(f"experiment config: task {name!r} needs 'source' (path) and 'target' (label name)")
        _max_structures(task.get("max_structures"), f"tasks.{name}.max_structures")
    config["run_tasks"] = _selection(config["run_tasks"], tasks, "run_tasks", "task")

    if config["low_data"] is not None:
        config["low_data"] = _low_data(config["low_data"], arms, tasks)

    _check_keys(config["pretrain"], PRETRAIN_KEYS, "pretrain")
    _check_keys(config["finetune"], FINETUNE_KEYS, "finetune")
    config["pretrain"] = deep_merge(PRETRAIN_KEYS, config["pretrain"])
    config["finetune"] = deep_merge(FINETUNE_KEYS, config["finetune"])
    pre = config["pretrain"]
    pre["split"] = _fraction_triple(pre["split"], "pretrain.split")
    _max_structures(pre["max_structures"], "pretrain.max_structures")
    if any(pretrains(arms[a]) for a in config["run_arms"]) and not pre["source"]:
        raise ConfigError("experiment config: 'pretrain.source' (the pre-training corpus) is not set")
    for where, layer in (
        ("trainer", config["trainer"]),
        ("pretrain.trainer", pre["trainer"]),
        ("finetune.trainer", config["finetune"]["trainer"]),
    ):
        if not isinstance(layer, dict):
            raise ConfigError(f"experiment config: '{where}' must be a mapping of trainer sections")
        for section, entries in layer.items():
            for key in entries or {}:
                if (section, key) in MANAGED:
                    raise ConfigError(
                        f"experiment config: '{where}.{section}.{key}' is set by the experiment "
                        "(use the experiment keys tasks/pretrain/split/seeds instead)"
                    )
    for name in config["run_arms"]:
        arm = arms[name]
        for entry in arm.get("fingerprints") or [] if isinstance(arm, dict) else arm or []:
            kwargs = entry.get("kwargs") if isinstance(entry, dict) else None
            # Density files (GMP) are data: a relative path lives under data_root like the data sets.
            if (
                isinstance(kwargs, dict)
                and isinstance(kwargs.get("density"), str)
                and not pathlib.Path(kwargs["density"]).is_absolute()
            ):
                kwargs["density"] = resolve_path(config, kwargs["density"])
    # Validate both trainer layers now (unknown keys, types).
    trainer_config(config, "pretrain", {"descriptor": {"fingerprints": [{"name": "X"}]}})
    for name in config["run_arms"]:
        if pretrains(arms[name]) and isinstance(arms[name], dict):
            try:
                trainer_config(config, "pretrain", pretrain_settings(arms[name]))
            except ConfigError as err:
                raise ConfigError(f"arm {name!r}: {err}") from None
    trainer_config(config, "finetune", {})
    return config


ARM_KEYS = {"fingerprints", "objective", "augment", "from"}


def pretrains(arm) -> bool:
    """Whether an arm runs a pre-training in the experiment (not the baseline, not a `from:` arm)."""
    return arm is not None and not (isinstance(arm, dict) and "from" in arm)


def _check_arm(name: str, arm) -> None:
    """null (from scratch), a non-empty list of fingerprints, {fingerprints?, objective?, augment?}, or
    {from: <checkpoint>} (fine-tune from an existing pre-training, e.g. pretrained:<name>, without pre-training)."""
    if arm is None or (isinstance(arm, list) and arm):
        return
    if isinstance(arm, dict) and "from" in arm:
        from ..pretrained import resolve

        if set(arm) != {"from"} or not isinstance(arm["from"], str) or not arm["from"]:
            raise ConfigError(
                f"experiment config: arms.{name}: 'from' (a checkpoint path or pretrained:<name>) takes no other key, "
                f"got {arm!r}"
            )
        try:
            path = resolve(arm["from"])
        except KeyError as err:
            raise ConfigError(f"experiment config: arms.{name}.from: {err}") from None
        if not path.is_file():
            raise ConfigError(f"experiment config: arms.{name}.from: checkpoint not found: {path}")
        return
    if isinstance(arm, dict) and arm:
        _check_keys(arm, ARM_KEYS, f"arms.{name}")
        fps = arm.get("fingerprints")
        if fps is not None and (not isinstance(fps, list) or not fps):
            raise ConfigError(f"experiment config: arms.{name}.fingerprints must be a non-empty list")
        objective = arm.get("objective") or {"fingerprints": 1.0}
        if "fingerprints" in objective and not fps:
            raise ConfigError(f"experiment config: arm {name!r} pre-trains on fingerprints but lists none")
        return
    raise ConfigError(
        f"experiment config: arm {name!r} must be null (from scratch), a non-empty list of fingerprints, or a mapping "
        f"with {sorted(ARM_KEYS)}; got {arm!r}"
    )


def pretrain_settings(arm) -> dict:
    """Trainer settings of an arm's pre-training: a list of fingerprints (the paper's arms) or a mapping with any of
    `fingerprints`, `objective` (e.g. {denoise: {sigma: 0.05}}) and `augment` ({rattle, strain})."""
    if isinstance(arm, list):
        arm = {"fingerprints": arm}
    settings = {"objective": arm.get("objective") or {"fingerprints": 1.0}}
    if arm.get("fingerprints"):
        settings["descriptor"] = {"fingerprints": arm["fingerprints"]}
    if arm.get("augment"):
        settings["data"] = {"augment": arm["augment"]}
    return settings


def _low_data(low, arms: dict, tasks: dict) -> dict:
    _check_keys(low, LOW_DATA_KEYS, "low_data")
    low = deep_merge(LOW_DATA_KEYS, low)
    low["tasks"] = _selection(low["tasks"], tasks, "low_data.tasks", "task")
    low["arms"] = _selection(low["arms"], arms, "low_data.arms", "arm")
    fractions = low["fractions"]
    if (
        not isinstance(fractions, list)
        or not fractions
        or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1 for f in fractions)
        or len(set(fractions)) != len(fractions)
    ):
        raise ConfigError(
            "experiment config: 'low_data.fractions' must be distinct fractions of the training split in (0, 1) "
            f"(the 100% point is the main run), got {fractions!r}"
        )
    low["fractions"] = sorted(float(f) for f in fractions)
    if not isinstance(low["out"], str) or not low["out"]:
        raise ConfigError(f"experiment config: 'low_data.out' must be a folder name or path, got {low['out']!r}")
    return low


def _selection(selected, available: dict, key: str, what: str) -> list[str]:
    if selected is None:
        return list(available)
    if isinstance(selected, str):
        selected = [selected]
    if not isinstance(selected, list) or not selected:
        raise ConfigError(f"experiment config: '{key}' must be a non-empty list of {what} names")
    unknown = [s for s in selected if s not in available]
    if unknown:
        raise ConfigError(f"experiment config: unknown {what}(s) {unknown} in '{key}'; defined: {sorted(available)}")
    return list(dict.fromkeys(selected))


def trainer_config(config: dict, kind: str, extra: dict) -> dict:
    """A validated fpcore-train config: DEFAULTS <- trainer <- <kind>.trainer <- extra (set by the experiment)."""
    layer = deep_merge(config["trainer"], config[kind]["trainer"])
    layer = deep_merge(layer, extra)
    try:
        return resolve_config(None, None, (), base=layer)
    except ConfigError as err:
        raise ConfigError(f"experiment config, {kind} trainer settings: {err}") from None


def resolve_path(config: dict, relative) -> list[str] | str:
    """Data paths relative to data_root; a missing file is an error naming it."""
    items = [relative] if isinstance(relative, str) else list(relative)
    out = []
    for item in items:
        if str(item).startswith("builtin:"):
            out.append(str(item))
            continue
        p = pathlib.Path(config["data_root"]) / item
        if not p.exists():
            raise FileNotFoundError(
                f"experiment data file not found: {p} (data_root {config['data_root']}, "
                f"entry {item!r}; set --data-root or data_root)"
            )
        out.append(str(p))
    return out[0] if isinstance(relative, str) else out


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)
