"""The pre-trained models shipped in the package: cards, loading, fine-tuning from them, bundling, errors."""

import json

import pytest
import torch
import yaml

from fpcore import pretrained
from fpcore.cli import main
from fpcore.pretrained.bundle import bundle
from fpcore.training import load_checkpoint
from fpcore.training.checkpoint import FORMAT_VERSION, CheckpointError, backbone_state
from fpcore.training.trainer import tensor_digest

from ..training.tiny_data import cli_sets, structures, to_data, write_extxyz

BUNDLED = pretrained.available()
WACSF = (
    "descriptor.fingerprints=[{name: WACSF, kwargs: {cutoff: 3.5, g2_eta: [0.5, 2.0], g2_rs: [0.0], "
    "g4_eta: [0.05], g4_lambda: [1.0], g4_zeta: [1.0]}}]"
)


def test_the_package_ships_a_pretrained_model():
    # Fails when the checkpoint or its card is left out of the installed package.
    assert "schnet-ead-mp62k" in BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_card_describes_its_checkpoint(name):
    card = pretrained.card(name)
    path = pretrained.checkpoint_path(name)
    assert card["name"] == name
    assert card["checkpoint_sha256"] == pretrained.file_sha256(path)
    assert path.stat().st_size == card["checkpoint_bytes"] < 5_000_000
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION == card["checkpoint_format_version"]
    assert payload["kind"] == "pretrain" and payload["resumable"] is False
    assert "optimizer" not in payload and "rng" not in payload
    assert payload["model"]["backbone"] == card["backbone"]
    n_params = sum(v.numel() for v in backbone_state(payload["state_dict"]).values())
    assert n_params == card["parameters"]
    assert card["targets"]["fingerprints"] == payload["config"]["descriptor"]["fingerprints"]
    assert card["val_mae"] == payload["bundled"]["best"]["val_mae"]
    assert card["best_epoch"] == payload["bundled"]["best"]["epoch"]
    assert len(card["val_curve"]) == card["epochs"] >= card["best_epoch"]
    assert min(c["val_mae"] for c in card["val_curve"]) == pytest.approx(card["val_mae"])
    for section in ("Corpus and license", "Reproduce", "What it is not for"):
        assert f"## {section}" in card["text"]
    assert "CC BY 4.0" in card["corpus"]["license"]


@pytest.mark.parametrize("name", BUNDLED)
def test_load_gives_a_model_that_predicts_its_fingerprints(name):
    from torch_geometric.data import Batch

    model = pretrained.load(name)
    batch = Batch.from_data_list(to_data(structures(3)))
    with torch.no_grad():
        out = model(batch.z, model.graph(batch))["fingerprints"]
    card = pretrained.card(name)
    n_features = model.checkpoint["model"]["heads"]["fingerprints"]["kwargs"]["n_out"]
    assert out.shape == (batch.num_nodes, n_features) and torch.isfinite(out).all()
    assert not model.training and card["backbone"]["class"] == type(model.backbone).__name__


@pytest.mark.parametrize("name", BUNDLED)
def test_finetune_from_a_bundled_model(name, tmp_path, capsys):
    data = write_extxyz(tmp_path / "tiny.extxyz", structures(12))
    run = tmp_path / "ft"
    # The config asks for another backbone size: the bundled backbone wins, with a message.
    assert (
        main(["finetune", "--from", f"pretrained:{name}", "--run-dir", str(run), *cli_sets(1, f"data.source={data}")])
        == 0
    )
    assert f"using the backbone of pretrained:{name}" in capsys.readouterr().out
    ft = load_checkpoint(run / "best.pt", kind="finetune")
    bundled = torch.load(pretrained.checkpoint_path(name), weights_only=True)
    assert ft["model"]["backbone"] == bundled["model"]["backbone"]
    assert ft["init"]["from"] == f"pretrained:{name}"
    assert ft["init"]["backbone_sha256"] == tensor_digest(backbone_state(bundled["state_dict"]))
    # One epoch of fine-tuning moved the weights away from the bundled ones.
    assert tensor_digest(backbone_state(ft["state_dict"])) != ft["init"]["backbone_sha256"]


def test_unknown_name_lists_the_known_ones(tmp_path, capsys):
    with pytest.raises(pretrained.UnknownModel, match="bundled: .*schnet-ead-mp62k"):
        pretrained.checkpoint_path("no-such-model")
    data = write_extxyz(tmp_path / "tiny.extxyz", structures(4))
    code = main(
        [
            "finetune",
            "--from",
            "pretrained:no-such-model",
            "--run-dir",
            str(tmp_path / "r"),
            *cli_sets(1, f"data.source={data}"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no bundled pre-trained model 'no-such-model'" in err[0]
    assert not (tmp_path / "r").exists()


def test_cli_lists_the_bundled_models(capsys):
    assert main(["pretrained"]) == 0
    out = capsys.readouterr().out
    for name in BUNDLED:
        assert f"{name}: " in out and f"--from pretrained:{name}" in out


@pytest.fixture(scope="module")
def tiny_pretraining(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundle")
    data = write_extxyz(tmp / "tiny.extxyz", structures(12))
    assert main(["pretrain", "--run-dir", str(tmp / "pre"), *cli_sets(2, f"data.source={data}", WACSF)]) == 0
    card = {
        "name": "tiny-test",
        "summary": "A test model.",
        "corpus": {"description": "12 EMT cells", "license": "made up for the test, CC BY 4.0"},
        "reproduce": "pytest tests/pretrained",
        "not_for": "anything",
    }
    (tmp / "card.yaml").write_text(yaml.safe_dump(card))
    return tmp


def test_bundle_writes_a_small_weights_only_checkpoint_and_its_card(tiny_pretraining, tmp_path):
    tmp = tiny_pretraining
    meta = bundle(tmp / "pre", tmp / "card.yaml", out=tmp_path)
    slim = torch.load(tmp_path / "tiny-test.pt", weights_only=True)
    full = load_checkpoint(tmp / "pre" / "best.pt")
    assert set(slim) < set(full) | {"bundled"} and "optimizer" not in slim and slim["resumable"] is False
    assert tensor_digest(slim["state_dict"]) == tensor_digest(full["state_dict"])
    card = pretrained.read_card(tmp_path / "tiny-test.md")
    assert {k: card[k] for k in pretrained.CARD_KEYS} == {k: meta[k] for k in pretrained.CARD_KEYS}
    assert card["epochs"] == 2 and card["corpus"]["n_structures"] == 12
    assert card["checkpoint_sha256"] == pretrained.file_sha256(tmp_path / "tiny-test.pt")


def test_bundle_refuses_an_incomplete_card(tiny_pretraining, tmp_path):
    (tmp_path / "card.yaml").write_text(yaml.safe_dump({"name": "x", "summary": "s"}))
    with pytest.raises(ValueError, match="needs .*corpus"):
        bundle(tiny_pretraining / "pre", tmp_path / "card.yaml", out=tmp_path)


def test_a_checkpoint_from_a_newer_format_says_what_to_do(tmp_path):
    name = BUNDLED[0]
    payload = torch.load(pretrained.checkpoint_path(name), weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer fpcore .*upgrade fpcore"):
        load_checkpoint(tmp_path / "future.pt")


def test_experiment_arm_from_a_bundled_model_needs_no_pretraining():
    from fpcore.experiments import load_experiment_config
    from fpcore.experiments.runner import Experiment

    raw = {
        "arms": {"scratch": None, "bundled": {"from": f"pretrained:{BUNDLED[0]}"}},
        "tasks": {"t": {"source": str(pretrained.checkpoint_path(BUNDLED[0])), "target": "y"}},
        "seeds": [1],
        "out": "unused",
    }
    config = load_experiment_config(None, raw=raw)
    plan = Experiment(config).plan()
    assert plan == [("finetune", "t", "scratch", 1), ("finetune", "t", "bundled", 1)]
    bad = json.loads(json.dumps(raw))
    bad["arms"]["bundled"] = {"from": "pretrained:nope"}
    with pytest.raises(Exception, match="arms.bundled.from: no bundled pre-trained model 'nope'"):
        load_experiment_config(None, raw=bad)
