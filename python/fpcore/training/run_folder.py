"""One writer per run folder, and `--overwrite` that never loses the previous run.

RunFolder is the run's hold on its folder, used as a context manager around everything a run does:

1. enter: an exclusive advisory lock (fcntl.flock on `.<name>.lock` next to the folder, so it survives the folder
   being moved aside) is taken by the main process; a second writer is refused with the folder and the holder's pid.
   flock is released by the kernel when its process dies, so a killed run never leaves a stale lock behind.
2. check(): the folder is usable for this mode (--resume needs last.pt; an existing non-empty folder needs
   --overwrite) - nothing is touched yet, and the caller then validates config, data and targets.
3. prepare(): only now is the folder changed. With --overwrite the previous folder is renamed aside
   (`.<name>.replaced-<pid>`), not deleted.
4. started(): called when the first epoch begins; the aside copy is deleted.
5. exit with an error before started(): the new folder is removed and the previous one renamed back (or, for a
   folder this run created, simply removed), so a run that fails at once loses nothing. After started() (or on
   --resume) a FAILED file records the error instead. A killed process leaves its aside copy; the next holder of
   the lock finds it and restores it before doing anything else.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import traceback
import warnings

from .._io import FileLock, atomic_write_text, pid_alive

COMPLETED = "COMPLETED"
FAILED = "FAILED"
STALE_MARKERS = (COMPLETED, "summary.json", FAILED)
ASIDE_TAG = ".replaced-"


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked (busy, impossible path, missing checkpoint, not empty)."""


class RunFolderNotEmpty(RunFolderError, FileExistsError):
    pass


class NothingToResume(RunFolderError, FileNotFoundError):
    pass


class DataMismatch(RunFolderError, ValueError):
    pass


def data_identity(dataset) -> dict | None:
    """What a checkpoint records about its data, for --resume to check; None for datasets without a content hash."""
    content_hash = getattr(dataset, "content_hash", None)
    if content_hash is None:
        return None
    return {"sha256": content_hash(), "n_structures": len(dataset), "source": str(getattr(dataset, "source", ""))}


def check_resume_data(payload: dict, dataset, checkpoint) -> None:
    """Refuses to resume on data other than the checkpoint's (a changed, larger or other file)."""
    recorded, current = payload.get("data"), data_identity(dataset)
    if current is None:
        return
    if recorded is None:
        warnings.warn(
            f"--resume: {checkpoint} does not record which data it was trained on; it cannot be checked", stacklevel=2
        )
        return
    if recorded["sha256"] != current["sha256"]:
        raise DataMismatch(
            f"--resume: the data is not what {checkpoint} was trained on: it had {recorded['n_structures']} "
            f"structures from {recorded['source']} (sha256 {recorded['sha256'][:12]}), now {current['n_structures']} "
            f"from {current['source']} (sha256 {current['sha256'][:12]}); resume with the original data, or start "
            "a new run (--overwrite or another --run-dir)"
        )


def _describe_os_error(err: OSError) -> str:
    return err.strerror or str(err)


class RunFolderLock(FileLock):
    """Exclusive advisory lock of a run folder (`.<name>.lock` beside it); `holder()` reads who holds it."""

    def __init__(self, run_dir):
        self.run_dir = pathlib.Path(run_dir)
        super().__init__(self.run_dir.parent / f".{self.run_dir.name}.lock")

    def acquire(self, blocking: bool = False) -> bool:
        if self.held:
            return True
        if not self.supported:  # pragma: no cover
            warnings.warn("fcntl is unavailable: the run folder is not locked against a second writer", stacklevel=2)
            return True
        for ancestor in self.run_dir.parents:
            if ancestor.exists():
                if not ancestor.is_dir():
                    raise RunFolderError(f"cannot create run folder {self.run_dir}: {ancestor} is a file, not a folder")
                break
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunFolderError(
                f"cannot create the parent folder of run folder {self.run_dir}: {_describe_os_error(err)}"
            ) from None
        try:
            got = super().acquire(blocking=blocking)
        except OSError as err:
            raise RunFolderError(
                f"cannot lock run folder {self.run_dir} ({self.path}): {_describe_os_error(err)}"
            ) from None
        if not got:
            raise RunFolderError(
                f"run folder {self.run_dir} is in use by another fpcore-train run ({self.holder()}); wait for "
                "it to finish, or use another --run-dir"
            )
        return True


class RunFolder:
    """The run's hold on `run_dir`: lock, checks, the --overwrite transaction and FAILED bookkeeping (see module doc).

    Only the main process (`is_main`) locks and changes the folder; under DDP the others follow its barriers.
    """

    def __init__(self, run_dir, resume: bool = False, overwrite: bool = False, is_main: bool = True, barrier=None):
        self.run_dir = pathlib.Path(run_dir)
        self.resume, self.overwrite, self.is_main = bool(resume), bool(overwrite), bool(is_main)
        self._barrier = barrier or (lambda: None)
        self.lock = RunFolderLock(self.run_dir)
        self.aside = self.run_dir.parent / f".{self.run_dir.name}{ASIDE_TAG}{os.getpid()}"
        self.prepared = False
        self.is_started = False
        self._created = False

    # ------------------------------------------------------------------------------------------------ enter / exit
    def __enter__(self):
        if self.is_main:
            self.lock.acquire()
            try:
                self._recover_killed_overwrite()
            except BaseException:
                self.lock.release()
                raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None and self.is_main and self.prepared:
                if self.is_started or self.resume:
                    self._write_failed(exc_type, exc, tb)
                else:
                    self._roll_back()
        finally:
            if self.is_main:
                self.lock.release()
        return False

    # -------------------------------------------------------------------------------------------------- the steps
    def check(self) -> None:
        """Refuses a folder this mode cannot use, before anything is read or touched."""
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunFolderError(f"run folder {self.run_dir} exists and is not a folder")
        if self.resume:
            if not (self.run_dir / "last.pt").is_file():
                raise NothingToResume(f"--resume: {self.run_dir / 'last.pt'} does not exist (nothing to resume)")
            return
        if self.run_dir.exists() and any(self.run_dir.iterdir()) and not self.overwrite:
            raise RunFolderNotEmpty(
                f"run folder {self.run_dir} already exists and is not empty; use --resume to continue it, --overwrite "
                "to replace it, or --set run.dir=<another folder>"
            )

    def prepare(self) -> None:
        """Makes the folder ready for writing; call once everything has been validated."""
        self.check()  # the folder may have changed while the data was read
        self._barrier()
        if self.is_main:
            try:
                if not self.resume and self.run_dir.exists() and any(self.run_dir.iterdir()):
                    os.replace(self.run_dir, self.aside)
                self._created = not self.run_dir.exists()
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self.prepared = True
                for stale in STALE_MARKERS:
                    (self.run_dir / stale).unlink(missing_ok=True)
            except OSError as err:
                if self.prepared:
                    self._roll_back()
                elif self.aside.exists():
                    os.replace(self.aside, self.run_dir)
                raise RunFolderError(f"cannot prepare run folder {self.run_dir}: {_describe_os_error(err)}") from None
            # Probe writability now (a read-only folder would otherwise fail at the first checkpoint).
            probe = self.run_dir / f".write-test-{os.getpid()}"
            try:
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as err:
                self._roll_back()
                raise RunFolderError(f"run folder {self.run_dir} is not writable: {_describe_os_error(err)}") from None
        else:
            self.prepared = True
        self._barrier()

    def started(self) -> None:
        """The new run is under way: the replaced folder is no longer needed."""
        if self.is_started:
            return
        self.is_started = True
        if self.is_main and self.aside.exists():
            shutil.rmtree(self.aside, ignore_errors=True)

    # ----------------------------------------------------------------------------------------------- internals
    def _roll_back(self) -> None:
        if self.aside.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)
            os.replace(self.aside, self.run_dir)
        elif self._created:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.prepared = False

    def _write_failed(self, exc_type, exc, tb) -> None:
        if not self.run_dir.is_dir():
            return
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        with contextlib.suppress(OSError):
            atomic_write_text(self.run_dir / FAILED, f"{exc_type.__name__}: {exc}\n\n{text}")

    def _recover_killed_overwrite(self) -> None:
        # An aside copy whose owner is gone means an --overwrite was killed before its first epoch: put it back.
        prefix = f".{self.run_dir.name}{ASIDE_TAG}"
        if not self.run_dir.parent.is_dir():
            return
        for left in sorted(self.run_dir.parent.glob(prefix + "*")):
            pid_text = left.name[len(prefix) :]
            if not pid_text.isdigit() or (int(pid_text) != os.getpid() and pid_alive(int(pid_text))):
                continue
            shutil.rmtree(self.run_dir, ignore_errors=True)
            os.replace(left, self.run_dir)
            warnings.warn(
                f"restored {self.run_dir} from {left.name}: an --overwrite of it was interrupted before its first "
                "epoch",
                stacklevel=3,
            )


__all__ = [
    "COMPLETED",
    "FAILED",
    "DataMismatch",
    "NothingToResume",
    "RunFolder",
    "RunFolderError",
    "RunFolderLock",
    "RunFolderNotEmpty",
    "check_resume_data",
    "data_identity",
]
