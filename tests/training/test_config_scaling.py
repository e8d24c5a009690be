import pytest
import torch

from fpcore.training import ConfigError, FeatureScaler, resolve_config
from fpcore.training.config import DEFAULTS


def test_layers_and_overrides(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("optim:\n  lr: 3.0e-4\nmodel:\n  backbone: et\n  backbone_kwargs: {hidden: 32}\n")
    cfg = resolve_config(
        "finetune",
        cfg_file,
        ["optim.lr=1e-3", "data.split=[0.5, 0.25, 0.25]", "model.backbone_kwargs.n_layers=2", "run.tensorboard=true"],
    )
    assert cfg["optim"]["lr"] == 1e-3 and isinstance(cfg["optim"]["lr"], float)
    assert cfg["data"]["split"] == [0.5, 0.25, 0.25]
    assert cfg["model"]["backbone"] == "et"
    assert cfg["model"]["backbone_kwargs"] == {"hidden": 32, "n_layers": 2}
    assert cfg["run"]["tensorboard"] is True
    assert cfg["data"]["source"] == "builtin:finetune"  # from the packaged finetune.yaml
    assert cfg["optim"]["weight_decay"] == DEFAULTS["optim"]["weight_decay"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'"),
        ("modle.cutoff=3", "unknown config key 'modle'"),
        ("optim.epochs=2.5", "'optim.epochs' must be an int"),
        ("optim.epochs=0", "'optim.epochs' must be an integer >= 1"),
        ("run.progress=maybe", "'run.progress' must be a bool"),
        ("data.split=[0.5, 0.5]", "data.split"),
        ("optim.lr", "key=value"),
        ("optim.lr_patience=null", "must not be null"),
        ("descriptor.fingerprints=[EAD]", "descriptor.fingerprints"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        resolve_config("pretrain", None, [override])


def test_unknown_key_in_file_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  batchsize: 3\n")
    with pytest.raises(ConfigError, match="data.batchsize"):
        resolve_config("pretrain", bad)
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        resolve_config("pretrain", tmp_path / "nothere.yaml")


def test_scaler_streaming_fit_matches_full_statistics():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 10.0, 1e-3, 0.0]) + 1e4
    s = FeatureScaler(4)
    for chunk in torch.split(x, 37):
        s.update(chunk)
    s.finalize()
    torch.testing.assert_close(s.mean, x.mean(0), rtol=0, atol=1e-9)
    torch.testing.assert_close(s.std[:2], x.std(0, unbiased=False)[:2], rtol=1e-10, atol=0)
    # A (near) constant column is centred, not amplified.
    assert float(s.std[3]) == 1.0
    y = s(x.float())
    assert float(y[:, :2].mean(0).abs().max()) < 1e-2
    torch.testing.assert_close(s.inverse(s(x)), x)


def test_scaler_merge_of_shards_equals_one_pass_and_round_trips():
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3 + 2
    whole = FeatureScaler(3)
    whole.update(x)
    whole.finalize()
    shards = []
    for part in (x[:50], x[50:220], x[220:]):
        s = FeatureScaler(3)
        s.update(part)
        shards.append(s.state_for_merge())
    merged = FeatureScaler(3)
    merged.merge_packed(shards)
    merged.finalize()
    torch.testing.assert_close(merged.mean, whole.mean)
    torch.testing.assert_close(merged.std, whole.std)
    again = FeatureScaler.from_state(merged.state())
    torch.testing.assert_close(again.std, merged.std)
    with pytest.raises(ValueError, match="expected"):
        merged.update(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="no values"):
        FeatureScaler(2).finalize()
