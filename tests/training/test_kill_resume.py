"""kill -9 in the middle of an epoch, then --resume: the run ends as if it had never been interrupted."""

import json
import pathlib
import signal
import subprocess
import sys

import torch

from fpcore.training import COMPLETED, resolve_config, run_training

from ..process import fpcore_env
from .tiny_data import MODEL_SETS, ListDataset, structures, to_data

TESTS_PARENT = str(pathlib.Path(__file__).resolve().parents[2])
OVERRIDES = [*MODEL_SETS, "data.split=[0.5, 0.25, 0.25]", "data.batch_size=2", "optim.early_stopping_patience=100"]

# Trains for 4 epochs and SIGKILLs itself after the first optimizer step of epoch 3: epoch 2's checkpoint is on disk,
# epoch 3's work is in memory only.
KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests_parent!r})
from fpcore.training import Trainer, resolve_config, run_training
from tests.training.tiny_data import ListDataset, structures, to_data

original = Trainer.run_epoch

def run_epoch(self, loader, train, desc):
    if train and self.epoch == 3:
        return original(self, KillOnSecondBatch(loader), train, desc)
    return original(self, loader, train, desc)

class KillOnSecondBatch:
    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for k, batch in enumerate(self.loader):
            if k == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch

Trainer.run_epoch = run_epoch
cfg = resolve_config("finetune", None, {overrides!r} + ["optim.epochs=4"])
run_training("finetune", cfg, run_dir={run_dir!r}, dataset=ListDataset(to_data(structures(12))))
"""


def test_kill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    dataset = ListDataset(to_data(structures(12)))
    cfg = resolve_config("finetune", None, [*OVERRIDES, "optim.epochs=4"])
    run_training("finetune", cfg, run_dir=tmp_path / "whole", dataset=dataset)

    killed = tmp_path / "killed"
    script = KILLED_RUN.format(tests_parent=TESTS_PARENT, overrides=OVERRIDES, run_dir=str(killed))
    proc = subprocess.run([sys.executable, "-c", script], env=fpcore_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (killed / COMPLETED).exists()
    assert torch.load(killed / "last.pt", weights_only=True)["epoch"] == 2

    run_training("finetune", cfg, run_dir=killed, dataset=dataset, resume=True)
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    resumed = torch.load(killed / "last.pt", weights_only=True)
    assert resumed["epoch"] == whole["epoch"] == 4
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    metrics = [(p / "metrics.csv").read_text().splitlines() for p in (tmp_path / "whole", killed)]
    assert len(metrics[1]) == 5  # header + epochs 1-4: epoch 3 of the killed process left no row
    # the time column differs; every other column is equal
    assert [r.rsplit(",", 1)[0] for r in metrics[0]] == [r.rsplit(",", 1)[0] for r in metrics[1]]
    summaries = [json.loads((p / "summary.json").read_text()) for p in (tmp_path / "whole", killed)]
    assert summaries[0]["best_epoch"] == summaries[1]["best_epoch"]
    assert summaries[0]["test_mae"] == summaries[1]["test_mae"]
    assert (killed / COMPLETED).exists()
