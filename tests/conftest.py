import pathlib

import pytest
import torch

from fpcore._library import cuda_available

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


def pytest_report_header(config):
    import fpcore

    return f"fpcore {fpcore.__version__}, torch {torch.__version__}, shared data: {SHARED if SHARED.exists() else 'absent'}"


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.exists():
        pytest.skip(f"the shared reference folder {SHARED} is absent")
    return SHARED


# The device axis of the operator, gradient and reference tests: CUDA where fpcore was built with its CUDA kernels
# and a GPU is visible (torch seeing a GPU is not enough: a CPU-only fpcore build has no CUDA kernels to test).
DEVICES = ["cpu"] + (["cuda"] if cuda_available() else [])
# Devices whose answers are compared against the CPU's (the same pairs in the same order, the same features);
# on a machine without them those tests are skipped, saying why.
OTHER_DEVICES = [
    pytest.param(
        "cuda", marks=pytest.mark.skipif("cuda" not in DEVICES, reason="needs a GPU and fpcore built with CUDA")
    )
]


def pytest_collection_modifyitems(items):
    # The "cuda" marker (pyproject.toml) selects the device matrix: benchmarks/gpu_check.sh runs `-m cuda` first.
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("device") == "cuda":
            item.add_marker(pytest.mark.cuda)
