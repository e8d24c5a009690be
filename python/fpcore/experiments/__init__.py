"""Reproduce the paper's protocol: fingerprint pre-training arms vs. training from scratch over tasks and seeds.

>>> from fpcore.experiments import load_experiment_config, run_experiment
>>> config = load_experiment_config("experiments/paper.yaml", scale="cpu")
>>> summary = run_experiment(config)     # results/paper/{results.json, table.md, summary.json, improvement.png}

Command line: fpcore-train experiment --config experiments/paper.yaml --scale cpu [--set key=value] [--out dir].
"""

from .config import load_experiment_config
from .report import aggregate, improvement, table_markdown, write_reports
from .runner import Experiment, run_experiment, subsample, subset_dataset

__all__ = [
    "Experiment",
    "aggregate",
    "improvement",
    "load_experiment_config",
    "run_experiment",
    "subsample",
    "subset_dataset",
    "table_markdown",
    "write_reports",
]
