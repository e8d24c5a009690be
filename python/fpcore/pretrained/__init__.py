"""Pre-trained backbones shipped inside the package, ready to fine-tune.

Each model is two files in this folder: ``<name>.pt``, a weights-only fpcore-train pre-training checkpoint (loadable
with ``torch.load(..., weights_only=True)``, no optimizer state), and ``<name>.md``, its model card: YAML front matter
that tests and tools read, then the text for people (corpus and license, targets, training, validation error, how to
reproduce it, what it is not for).

    >>> import fpcore.pretrained
    >>> fpcore.pretrained.available()
    ['schnet-ead-mp62k']
    >>> model = fpcore.pretrained.load("schnet-ead-mp62k")      # backbone + fingerprint head, eval mode

From the command line: ``fpcore-train pretrained`` lists them, ``fpcore-train finetune --from pretrained:<name>``
fine-tunes one. ``python -m fpcore.pretrained.bundle`` makes a bundle from a finished pre-training run.
"""

from __future__ import annotations

import hashlib
import pathlib

import yaml

#: where the bundled checkpoints and cards live (inside the installed package)
HERE = pathlib.Path(__file__).resolve().parent
#: `--from pretrained:<name>` and the experiment runner's `from:` accept this prefix
PREFIX = "pretrained:"
#: the front-matter keys every model card must have
CARD_KEYS = (
    "name",
    "backbone",
    "parameters",
    "corpus",
    "targets",
    "epochs",
    "best_epoch",
    "val_mae",
    "fpcore_version",
    "checkpoint_format_version",
    "checkpoint_sha256",
    "reproduce",
    "not_for",
)


class UnknownModel(KeyError):
    """A name that is not bundled; the message lists the bundled ones."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def available() -> list[str]:
    """Names of the bundled pre-trained models (those with both a checkpoint and a model card), sorted."""
    return sorted(p.stem for p in HERE.glob("*.pt") if p.with_suffix(".md").is_file())


def checkpoint_path(name: str) -> pathlib.Path:
    """The bundled checkpoint of `name`; an unknown name raises UnknownModel listing the known ones."""
    if name not in available():
        known = ", ".join(available()) or "none"
        raise UnknownModel(
            f"no bundled pre-trained model {name!r}; bundled: {known} (list them: fpcore-train pretrained)"
        )
    return HERE / f"{name}.pt"


def card(name: str) -> dict:
    """The model card's front matter (see CARD_KEYS) plus `text`, the card body."""
    path = checkpoint_path(name).with_suffix(".md")
    return read_card(path)


def read_card(path) -> dict:
    path = pathlib.Path(path)
    text = path.read_text()
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise ValueError(f"{path}: a model card starts with YAML front matter between '---' lines")
    head, body = text[4:].split("\n---\n", 1)
    meta = yaml.safe_load(head)
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the front matter is not a mapping")
    missing = [k for k in CARD_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{path}: model card lacks {missing}")
    meta["text"] = body
    return meta


def resolve(source) -> pathlib.Path:
    """A checkpoint reference as a path: ``pretrained:<name>`` -> the bundled file, anything else -> Path(source)."""
    text = str(source)
    if text.startswith(PREFIX):
        return checkpoint_path(text[len(PREFIX) :])
    return pathlib.Path(source)


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(name: str, map_location="cpu"):
    """The bundled model `name` as a torch module in eval mode: ``model.backbone(z, graph)`` gives per-atom
    embeddings, ``model.graph(batch)`` builds the graph of a torch_geometric batch. The checkpoint payload
    (config, fingerprint scaler, card) is ``model.checkpoint``."""
    from ..training import load_checkpoint
    from ..training.pipeline import Pipeline

    payload = load_checkpoint(checkpoint_path(name), kind="pretrain", map_location=map_location)
    model = Pipeline(payload["model"])
    model.load_state_dict(payload["state_dict"], strict=True)
    model.eval()
    model.checkpoint = payload
    return model


__all__ = ["available", "card", "checkpoint_path", "load", "resolve", "UnknownModel", "PREFIX", "CARD_KEYS"]
