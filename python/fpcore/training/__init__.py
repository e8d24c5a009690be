"""Descriptor pre-training and property fine-tuning of crystal GNNs (the engine behind `fpcore-train`)."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, resolve_config
from .inference import evaluate, load_model, predict
from .scaling import FeatureScaler
from .targets import TargetFingerprints, register_descriptor
from .trainer import COMPLETED, Trainer, TrainingError, run_training

__all__ = [
    "COMPLETED",
    "CheckpointError",
    "ConfigError",
    "FeatureScaler",
    "TargetFingerprints",
    "Trainer",
    "TrainingError",
    "evaluate",
    "load_checkpoint",
    "load_model",
    "predict",
    "register_descriptor",
    "resolve_config",
    "run_training",
    "save_checkpoint",
]
