"""Environment for tests that run fpcore in a real subprocess (kill -9, concurrency, what a CLI user sees)."""

import os
import pathlib

import fpcore

# The subprocess must import the same fpcore as this process: the installed package in CI, python/ in a dev tree.
PACKAGE_PARENT = str(pathlib.Path(fpcore.__file__).resolve().parents[1])


def fpcore_env(**extra: str) -> dict:
    """os.environ for a subprocess importing this fpcore, on one thread, without FPCORE_DEBUG, plus `extra`."""
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT, OMP_NUM_THREADS="1")
    env.pop("FPCORE_DEBUG", None)
    env.update(extra)
    return env
