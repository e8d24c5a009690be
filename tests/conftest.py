import pathlib

import pytest
import torch

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


def pytest_report_header(config):
    import fpcore

    return f"fpcore {fpcore.__version__}, torch {torch.__version__}, shared data: {SHARED if SHARED.exists() else 'absent'}"


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.exists():
        pytest.skip(f"the shared reference folder {SHARED} is absent")
    return SHARED


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
