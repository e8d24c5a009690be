import csv
import json

import pytest
import torch

from fpcore.training import COMPLETED, CheckpointError, Trainer, load_checkpoint, resolve_config, run_training
from fpcore.training import distributed as D
from fpcore.training.checkpoint import backbone_state, load_backbone
from fpcore.training.trainer import tensor_digest

from .tiny_data import MODEL_SETS, TOY_FINGERPRINTS, ListDataset, structures, to_data
from .toy_descriptor import register

register()


@pytest.fixture(scope="module")
def dataset():
    return ListDataset(to_data(structures(12)))


def config(kind, *extra):
    return resolve_config(
        "pretrain" if kind == "pretrain" else "finetune",
        None,
        MODEL_SETS + ["data.split=[0.5, 0.25, 0.25]", "optim.early_stopping_patience=100", *extra],
    )


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_loss_decreases_on_a_small_fixed_problem(tmp_path, dataset):
    cfg = config("finetune", "optim.epochs=15", "optim.lr=5e-3", "data.split=[1.0, 0.0, 0.0]")
    summary = run_training("finetune", cfg, run_dir=tmp_path / "run", dataset=dataset)
    losses = [float(r["train_loss"]) for r in rows(tmp_path / "run" / "metrics.csv")]
    assert len(losses) == 15
    assert losses[-1] < 0.6 * losses[0], losses
    assert (tmp_path / "run" / COMPLETED).exists() and summary["best_epoch"] >= 6


def test_checkpoint_is_plain_data_and_resume_is_exact(tmp_path, dataset):
    full = config("finetune", "optim.epochs=4")
    run_training("finetune", full, run_dir=tmp_path / "a", dataset=dataset)
    half = config("finetune", "optim.epochs=2")
    run_training("finetune", half, run_dir=tmp_path / "b", dataset=dataset)
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["epochs_run"] == 2
    run_training("finetune", full, run_dir=tmp_path / "b", dataset=dataset, resume=True)

    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["kind"] == "finetune" and a["epoch"] == b["epoch"] == 4
    assert a["model"]["backbone"]["class"] == "SchNet" and isinstance(a["config"], dict)
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    ra, rb = rows(tmp_path / "a" / "metrics.csv"), rows(tmp_path / "b" / "metrics.csv")
    assert [r["epoch"] for r in rb] == ["1", "2", "3", "4"]
    assert [r["val_mae"] for r in ra] == [r["val_mae"] for r in rb]
    assert json.loads((tmp_path / "a" / "split.json").read_text()) == json.loads(
        (tmp_path / "b" / "split.json").read_text()
    )
    # scalers and the optimizer state are tensors/plain data too
    assert set(a["objectives"]["property"]["state"]["scaler"]) >= {"mean", "std"} and "state" in a["optimizer"]


def test_existing_run_folder_is_not_clobbered(tmp_path, dataset):
    cfg = config("finetune", "optim.epochs=1")
    run_training("finetune", cfg, run_dir=tmp_path / "r", dataset=dataset)
    with pytest.raises(FileExistsError, match="--resume"):
        run_training("finetune", cfg, run_dir=tmp_path / "r", dataset=dataset)
    with pytest.raises(FileNotFoundError, match="last.pt"):
        run_training("finetune", cfg, run_dir=tmp_path / "empty", dataset=dataset, resume=True)


def test_failed_run_does_not_look_complete(tmp_path, dataset, monkeypatch):
    calls = {"n": 0}
    original = Trainer.run_epoch

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "run_epoch", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training("finetune", config("finetune", "optim.epochs=3"), run_dir=tmp_path / "f", dataset=dataset)
    run = tmp_path / "f"
    assert (run / "last.pt").exists() and (run / "FAILED").exists()
    assert not (run / COMPLETED).exists() and not (run / "summary.json").exists()


def test_pretrain_targets_cache_and_finetune_starts_from_pretrained_backbone(tmp_path, dataset):
    unlabelled = ListDataset(to_data(structures(12), target=None), target_names=())
    cache_file = tmp_path / "targets.pt"
    pre_cfg = config("pretrain", TOY_FINGERPRINTS, "optim.epochs=2", f"descriptor.cache_file={cache_file}")
    run_training("pretrain", pre_cfg, run_dir=tmp_path / "pre", dataset=unlabelled)
    assert cache_file.exists()
    pre = load_checkpoint(tmp_path / "pre" / "best.pt", kind="pretrain")
    assert pre["target_names"] == ["radial(eta=0.5)", "radial(eta=2.0)"]

    # The cached targets are the on-the-fly ones.
    info, device = D.setup("cpu")
    split = json.loads((tmp_path / "pre" / "split.json").read_text())
    # The packaged pretrain.yaml caches (descriptor.cache: true); the on-the-fly reference turns it off.
    fly_cfg = config("pretrain", TOY_FINGERPRINTS, "descriptor.cache=false")
    fly = Trainer("pretrain", fly_cfg, tmp_path / "pre", info, device, unlabelled, split)
    cached = Trainer("pretrain", pre_cfg, tmp_path / "pre", info, device, unlabelled, split)
    batch = next(iter(fly.train_loader))
    cached_fp, fly_fp = cached.objectives["fingerprints"], fly.objectives["fingerprints"]
    assert cached_fp.cache is not None and fly_fp.cache is None
    torch.testing.assert_close(cached_fp.targets(batch, None, True), fly_fp.targets(batch, None, True))
    torch.testing.assert_close(cached_fp.scaler.std, fly_fp.scaler.std)

    # Fine-tuning starts from exactly the pre-trained backbone, with a fresh GraphHead.
    ft_cfg = config("finetune")
    ft = Trainer(
        "finetune", ft_cfg, tmp_path / "ft", info, device, dataset, split, init_from=tmp_path / "pre" / "best.pt"
    )
    want = backbone_state(pre["state_dict"])
    for key, value in ft.model.backbone.state_dict().items():
        assert torch.equal(value, want[key]), key
    assert ft.init_info["backbone_sha256"] == tensor_digest(want)
    assert type(ft.model.heads["property"]).__name__ == "GraphHead"
    scratch = Trainer("finetune", ft_cfg, tmp_path / "ft", info, device, dataset, split)
    assert tensor_digest(scratch.model.backbone.state_dict()) != tensor_digest(want)

    # Wrong kinds and mismatching backbones are refused with the reason.
    with pytest.raises(CheckpointError, match="'pretrain' checkpoint, but a 'finetune'"):
        load_checkpoint(tmp_path / "pre" / "best.pt", kind="finetune")
    bad = dict(pre, state_dict={k: v for k, v in pre["state_dict"].items() if "interactions.1" not in k})
    with pytest.raises(CheckpointError, match="missing keys.*interactions.1"):
        load_backbone(scratch.model, bad)


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(2)}, junk)
    with pytest.raises(CheckpointError, match="not an fpcore-train checkpoint"):
        load_checkpoint(junk)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "text.pt")
