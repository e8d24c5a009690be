"""Config values are checked up front: finite, in range, the right kind; a single target name means a list of one."""

import math

import pytest

from fpcore.training.config import RANGES, ConfigError, resolve_config

BAD = [
    ("optim.lr=inf", "'optim.lr' must be a finite number > 0, got inf"),
    ("optim.lr=.nan", "'optim.lr' must be a finite number > 0, got nan"),
    ("optim.lr=-1e-3", "'optim.lr' must be a finite number > 0"),
    ("optim.lr=0", "'optim.lr' must be a finite number > 0"),
    ("optim.epochs=0", "'optim.epochs' must be an integer >= 1"),
    ("optim.epochs=2.5", "'optim.epochs' must be an int"),
    ("optim.max_steps_per_epoch=0", "'optim.max_steps_per_epoch' must be an integer >= 1 or null"),
    ("optim.grad_clip=-1", "'optim.grad_clip' must be a finite number > 0 or null, got -1; null disables clipping"),
    ("optim.grad_clip=0", "'optim.grad_clip' must be a finite number > 0 or null"),
    ("optim.lr_factor=1", "'optim.lr_factor' must be a finite number > 0 and < 1"),
    ("optim.weight_decay=-0.1", "'optim.weight_decay' must be a finite number >= 0"),
    ("optim.min_lr=inf", "'optim.min_lr' must be a finite number >= 0"),
    ("optim.early_stopping_patience=0", "'optim.early_stopping_patience' must be an integer >= 1"),
    ("data.batch_size=0", "'data.batch_size' must be an integer >= 1"),
    ("data.eval_batch_size=-4", "'data.eval_batch_size' must be an integer >= 1 or null"),
    ("data.num_workers=-1", "'data.num_workers' must be an integer >= 0"),
    ("model.cutoff=0", "'model.cutoff' must be a finite number > 0"),
    ("model.cutoff=.inf", "'model.cutoff' must be a finite number > 0"),
    ("model.max_neighbors=0", "'model.max_neighbors' must be an integer >= 1 or null"),
    ("descriptor.scaler_batches=0", "'descriptor.scaler_batches' must be an integer >= 1 or null"),
    ("run.threads=-2", "'run.threads' must be an integer >= 1 or null"),
    ("run.threads=true", "'run.threads' must be an integer >= 1 or null"),
    ("run.seed=-1", "'run.seed' must be an integer >= 0"),
    ("run.device=tpu", "'run.device' must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("run.device=cuda:x", "'run.device' must be auto, cpu, cuda or cuda:N"),
    ("data.split=[.nan, 0, 0]", "'data.split' must be three fractions"),
    ("data.targets=[a, a]", "'data.targets' names a label twice"),
    ("data.targets=[1]", "'data.targets' must be a label name or a list of label names"),
    ("data.targets={a: 1}", "'data.targets' must be a label name or a list of label names"),
]


@pytest.mark.parametrize("override,message", BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_refused_naming_key_and_value(override, message):
    with pytest.raises(ConfigError, match="^config key ") as err:
        resolve_config("finetune", None, [override])
    assert message in str(err.value)


GOOD = [
    ("data.targets=energy_per_atom", ("data", "targets"), ["energy_per_atom"]),
    ("data.targets=[a, b]", ("data", "targets"), ["a", "b"]),
    ("optim.grad_clip=null", ("optim", "grad_clip"), None),
    ("optim.max_steps_per_epoch=3", ("optim", "max_steps_per_epoch"), 3),
    ("run.threads=2", ("run", "threads"), 2),
    ("run.device=cuda:1", ("run", "device"), "cuda:1"),
    ("optim.lr=1e-3", ("optim", "lr"), 1e-3),
    ("optim.lr=1", ("optim", "lr"), 1),
]


@pytest.mark.parametrize("override,key,value", GOOD, ids=[g[0] for g in GOOD])
def test_good_value_is_kept(override, key, value):
    config = resolve_config("finetune", None, [override])
    assert config[key[0]][key[1]] == value


@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_packaged_configs_are_in_range(kind):
    resolve_config(kind)


def test_every_range_names_an_existing_key():
    from fpcore.training.config import DEFAULTS

    for section, key in RANGES:
        assert key in DEFAULTS[section], f"{section}.{key}"
    assert all(math.isfinite(r.low) for r in RANGES.values() if r.low is not None)
