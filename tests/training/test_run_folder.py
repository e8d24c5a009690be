"""Run folders: one writer at a time, --overwrite that loses nothing on failure, FAILED bookkeeping."""

import os
import subprocess
import sys
import textwrap

import pytest

from fpcore.training import COMPLETED, Trainer, resolve_config, run_training
from fpcore.training.run_folder import RunFolder, RunFolderError, RunFolderLock

from .tiny_data import MODEL_SETS, ListDataset, structures, to_data


@pytest.fixture(scope="module")
def dataset():
    return ListDataset(to_data(structures(8)))


def config(*extra):
    return resolve_config("finetune", None, MODEL_SETS + ["data.split=[0.5, 0.25, 0.25]", "optim.epochs=1", *extra])


def completed_run(tmp_path, dataset):
    run = tmp_path / "run"
    run_training("finetune", config(), run_dir=run, dataset=dataset)
    assert (run / COMPLETED).is_file()
    return run, sorted(p.name for p in run.iterdir()), (run / "best.pt").read_bytes()


def siblings(run):
    return sorted(p.name for p in run.parent.iterdir() if p.name != run.name)


# ----------------------------------------------------------------------------------------------------- locking


def test_second_writer_is_refused_with_folder_and_pid(tmp_path):
    run = tmp_path / "run"
    with RunFolderLock(run):
        with pytest.raises(RunFolderError, match=rf"run folder {run} is in use .*pid {os.getpid()}"):
            RunFolderLock(run).acquire()
    # released: the next one gets it, and no lock file is left behind
    with RunFolderLock(run) as lock:
        assert lock.held
    assert siblings(run) == []


def test_lock_of_a_killed_process_is_not_stale(tmp_path):
    run = tmp_path / "run"
    holder = textwrap.dedent(
        f"""
        import sys, time
        from fpcore.training.run_folder import RunFolderLock
        RunFolderLock({str(run)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=rf"in use by another fpcore-train run \(pid {proc.pid} "):
            RunFolderLock(run).acquire()
    finally:
        proc.kill()
        proc.wait()
    with RunFolderLock(run) as lock:  # kill -9 left the lock file, but not the lock
        assert lock.held


def test_run_training_refuses_a_busy_folder_and_leaves_it_alone(tmp_path, dataset):
    run, files, best = completed_run(tmp_path, dataset)
    with RunFolderLock(run):
        with pytest.raises(RunFolderError, match="in use"):
            run_training("finetune", config(), run_dir=run, dataset=dataset, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == files and (run / "best.pt").read_bytes() == best


# ------------------------------------------------------------------------------------------- overwrite safety


def fail_in_trainer(monkeypatch):
    def boom(self, *args, **kwargs):
        raise RuntimeError("simulated failure while building the model")

    monkeypatch.setattr(Trainer, "__init__", boom)


def fail_in_first_epoch(monkeypatch):
    def boom(self, *args, **kwargs):
        raise RuntimeError("simulated failure in epoch 1")

    monkeypatch.setattr(Trainer, "run_epoch", boom)


FAILURES = [
    # (what fails, how, error, does the new run count as started)
    ("empty data", lambda mp: None, "the dataset is empty", False),
    ("missing split file", lambda mp: None, "split file not found", False),
    ("model construction", fail_in_trainer, "building the model", False),
]


@pytest.mark.parametrize("name,arrange,message,started", FAILURES, ids=[f[0] for f in FAILURES])
def test_overwrite_that_fails_before_the_first_epoch_keeps_the_old_run(
    tmp_path, dataset, monkeypatch, name, arrange, message, started
):
    run, files, best = completed_run(tmp_path, dataset)
    arrange(monkeypatch)
    extra = [f"data.split_file={tmp_path / 'nope.json'}"] if name == "missing split file" else []
    data = ListDataset([]) if name == "empty data" else dataset
    with pytest.raises((RuntimeError, ValueError, FileNotFoundError), match=message):
        run_training("finetune", config(*extra), run_dir=run, dataset=data, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == files, "the previous run must be intact"
    assert (run / "best.pt").read_bytes() == best and not (run / "FAILED").exists()
    assert siblings(run) == [], "no aside copy or lock file left"


def test_overwrite_that_fails_in_the_first_epoch_replaces_the_old_run_and_says_failed(tmp_path, dataset, monkeypatch):
    run, _, _ = completed_run(tmp_path, dataset)
    fail_in_first_epoch(monkeypatch)
    with pytest.raises(RuntimeError, match="epoch 1"):
        run_training("finetune", config(), run_dir=run, dataset=dataset, overwrite=True)
    assert (run / "FAILED").is_file() and not (run / COMPLETED).exists() and not (run / "best.pt").exists()
    assert "simulated failure in epoch 1" in (run / "FAILED").read_text()
    assert siblings(run) == []


def test_overwrite_that_succeeds_replaces_the_old_run(tmp_path, dataset):
    run, _, _ = completed_run(tmp_path, dataset)
    (run / "marker-of-the-old-run").write_text("x")
    run_training("finetune", config("optim.epochs=2"), run_dir=run, dataset=dataset, overwrite=True)
    assert (run / COMPLETED).is_file() and not (run / "marker-of-the-old-run").exists()
    assert siblings(run) == []


def test_fresh_run_that_fails_before_starting_leaves_no_folder(tmp_path, dataset, monkeypatch):
    fail_in_trainer(monkeypatch)
    run = tmp_path / "new" / "run"
    with pytest.raises(RuntimeError, match="building the model"):
        run_training("finetune", config(), run_dir=run, dataset=dataset)
    assert not run.exists() and siblings(run) == []


def test_killed_overwrite_is_restored_by_the_next_run(tmp_path, dataset):
    run, files, best = completed_run(tmp_path, dataset)
    # What a kill -9 between prepare() and the first epoch leaves: the old run aside, a half-made new folder.
    dead_pid = 2**22 + 4321
    os.replace(run, tmp_path / f".run.replaced-{dead_pid}")
    run.mkdir()
    (run / "config.yaml").write_text("half-made")
    with pytest.warns(UserWarning, match="restored"):
        with RunFolder(run):
            pass
    assert sorted(p.name for p in run.iterdir()) == files and (run / "best.pt").read_bytes() == best


# ------------------------------------------------------------------------------------------ impossible folders


def test_run_folder_that_is_a_file(tmp_path, dataset):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="exists and is not a folder"):
        run_training("finetune", config(), run_dir=tmp_path / "file", dataset=dataset)


def test_run_folder_under_a_file(tmp_path, dataset):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="a file, not a folder"):
        run_training("finetune", config(), run_dir=tmp_path / "file" / "run", dataset=dataset)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_run_folder_in_a_read_only_parent(tmp_path, dataset):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(RunFolderError, match=f"run folder {ro / 'run'}"):
            run_training("finetune", config(), run_dir=ro / "run", dataset=dataset)
    finally:
        ro.chmod(0o755)


def test_resume_without_checkpoint(tmp_path, dataset):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run_training("finetune", config(), run_dir=tmp_path / "none", dataset=dataset, resume=True)
