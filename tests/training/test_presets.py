"""model.preset: a named setup fills backbone, head and optimizer keys; the user's own keys still win."""

import pytest
import torch

from fpcore.experiments.runner import config_hash
from fpcore.models import HEADS, PRESETS
from fpcore.training.config import ConfigError, resolve_config
from fpcore.training.objectives import PropertyObjective


def test_paper_preset_fills_backbone_head_and_weight_decay():
    cfg = resolve_config("pretrain", overrides=["model.preset=paper"])
    assert cfg["model"]["backbone"] == "EquivariantTransformer"
    assert cfg["model"]["backbone_kwargs"]["preset"] == "paper"
    assert (cfg["model"]["head_layers"], cfg["model"]["pooling"], cfg["model"]["head_init"]) == (3, "sum", "xavier")
    assert cfg["optim"]["weight_decay"] == PRESETS["paper"]["optimizer"]["weight_decay"] == 0.01


def test_users_keys_beat_the_preset_in_any_order():
    cfg = resolve_config(
        "finetune",
        base={"optim": {"weight_decay": 0.001}, "model": {"backbone_kwargs": {"hidden": 32}}},
        overrides=["model.pooling=mean", "model.preset=paper"],
    )
    assert cfg["optim"]["weight_decay"] == 0.001
    assert cfg["model"]["pooling"] == "mean"
    # a user's backbone_kwargs mapping replaces the defaults but keeps the preset's own backbone switch
    assert cfg["model"]["backbone_kwargs"] == {"hidden": 32, "preset": "paper"}


def test_preset_backbone_kwargs_are_not_forced_on_another_backbone():
    cfg = resolve_config("finetune", overrides=["model.preset=paper", "model.backbone=SchNet"])
    assert cfg["model"]["backbone"] == "SchNet"
    assert "preset" not in cfg["model"]["backbone_kwargs"]
    assert cfg["model"]["head_init"] == "xavier"


@pytest.mark.parametrize("bad", ["model.preset=nope", "model.preset=3"])
def test_unknown_preset_names_the_known_ones(bad):
    with pytest.raises(ConfigError, match=r"model.preset.*known: \['paper'\]"):
        resolve_config("pretrain", overrides=[bad])


def test_head_init_is_checked():
    with pytest.raises(ConfigError, match="model.head_init"):
        resolve_config("pretrain", overrides=["model.head_init=glorot"])


def test_paper_preset_builds_a_sum_pooled_xavier_head():
    cfg = resolve_config("finetune", overrides=["model.preset=paper"])
    spec = PropertyObjective(cfg, weight=1.0, target_names=["energy"]).head_spec(cfg)
    head = HEADS[spec["class"]](n_in=16, **spec["kwargs"])
    assert head.pooling == "sum"
    linears = [m for m in head.net if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 and all(torch.count_nonzero(lin.bias) == 0 for lin in linears)


def test_new_keys_at_their_old_behaviour_keep_experiment_hashes():
    cfg = resolve_config("finetune")
    legacy = {s: dict(v) for s, v in cfg.items()}
    del legacy["model"]["preset"], legacy["model"]["head_init"]
    assert config_hash(cfg) == config_hash(legacy)
    assert config_hash(resolve_config("finetune", overrides=["model.head_init=xavier"])) != config_hash(cfg)
