"""Atomic file writes: the one implementation every fpcore writer uses.

A file is written under a temporary name in its own folder (same file system, so the rename is atomic), flushed and
fsync'ed, then renamed over the target with os.replace and the folder entry fsync'ed. A reader, a crash or a kill -9
therefore sees either the previous file or the complete new one, never a truncated one. Temporary names are
`.<name>.tmp-<pid>-<random>` so that a leftover from a killed process is recognisable (and its owner identifiable).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import secrets
import socket

try:  # pragma: no cover - fcntl exists on every POSIX system fpcore builds on
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

TMP_MARKER = ".tmp-"


def tmp_name(path: pathlib.Path, suffix: str = "") -> pathlib.Path:
    """A fresh temporary sibling of `path`; `suffix` keeps an extension for writers that infer the format from it."""
    return path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def fsync_dir(folder: pathlib.Path) -> None:
    """Makes a rename or a new entry in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", suffix: str = "", make_parents: bool = True, **open_kwargs):
    """`with atomic_open(p, "w") as fh: ...` writes p atomically; on an exception p is left untouched."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    path = pathlib.Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path, suffix)
    # O_EXCL: never write through a file (or link) someone else created under our temporary name; mode 0o666 lets
    # the umask decide the permissions as for an ordinary open().
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path, data: bytes) -> pathlib.Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return pathlib.Path(path)


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> pathlib.Path:
    with atomic_open(path, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return pathlib.Path(path)


def atomic_write_json(path, obj, indent: int | None = 2) -> pathlib.Path:
    # default=float: numpy / torch scalars in summaries serialise as numbers.
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=float) + "\n")


def atomic_torch_save(path, obj) -> pathlib.Path:
    import torch

    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)
    return pathlib.Path(path)


def atomic_np_save(path, array) -> pathlib.Path:
    """np.save without pickles; `path` is used as given (no .npy appended)."""
    import numpy as np

    with atomic_open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    return pathlib.Path(path)


def atomic_savefig(fig, path, **savefig_kwargs) -> pathlib.Path:
    """matplotlib's savefig, atomically; the format comes from the target's suffix."""
    path = pathlib.Path(path)
    fmt = savefig_kwargs.pop("format", None) or path.suffix.lstrip(".") or None
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=fmt, **savefig_kwargs)
    return path


class NotWritableError(OSError):
    """A destination that cannot be written; its text names the path and the reason."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def check_writable(path) -> pathlib.Path:
    """Fails now, with the path and the reason, if `path` could not be written atomically later (so that an expensive
    computation is not wasted on an output that cannot be saved). Creates missing parent folders, as the writers do."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise NotWritableError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = tmp_name(path)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.unlink(probe)
    except OSError as err:
        raise NotWritableError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def tmp_owner_pid(name: str) -> int | None:
    """The pid encoded in a temporary name made by tmp_name (or the cache's tmp folders), else None."""
    if TMP_MARKER not in name:
        return None
    tail = name.rsplit(TMP_MARKER, 1)[1]
    head = tail.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (a pid we may not signal still counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


class FileLock:
    """Exclusive advisory lock (fcntl.flock) on the file `path`, which holds the holder's pid and host.

    flock is released by the kernel when its process dies, so a killed holder never leaves a stale lock, only an
    unlocked file. `acquire(blocking=False)` returns False when another process holds it. Without fcntl (Windows)
    nothing is locked: `supported` is False and acquire() always succeeds.
    """

    supported = fcntl is not None

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            text = self.path.read_text().strip()
        except OSError:
            return "pid unknown"
        return text or "pid unknown"

    def acquire(self, blocking: bool = True) -> bool:
        """Takes the lock (waiting for it when `blocking`); OSError when the lock file cannot be created."""
        if self._fd is not None or fcntl is None:
            return True
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                raise
            # The previous holder unlinks the file while still holding it: if we locked such an orphaned inode,
            # the name now points elsewhere (or nowhere) and we must lock again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


__all__ = [
    "FileLock",
    "NotWritableError",
    "atomic_np_save",
    "atomic_open",
    "atomic_savefig",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_writable",
    "fsync_dir",
    "pid_alive",
    "tmp_owner_pid",
]
