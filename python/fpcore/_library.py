"""Loads the compiled operator library, refusing clearly when it was built against another torch."""

from __future__ import annotations

import pathlib

import torch

_HERE = pathlib.Path(__file__).resolve().parent
_LIBRARY = _HERE / "libfpcore_ops.so"
_REBUILD = (
    "Rebuild fpcore against the torch installed now: `pip install --no-build-isolation --no-deps "
    "--force-reinstall .` from the fpcore sources (needs scikit-build-core, cmake and a C++ compiler "
    "in this environment), or plain `pip install .`, which builds against the torch version fpcore pins."
)


def _public_version(version: str) -> str:
    return version.split("+", 1)[0]


def load() -> None:
    try:
        from . import _build_info
    except ImportError:
        raise ImportError(
            f"fpcore's compiled library is missing from {_HERE}. Install fpcore with `pip install .`, "
            "or for development run `tools/dev_build.sh` and put `python/` on PYTHONPATH."
        ) from None
    built, running = _public_version(_build_info.TORCH_VERSION), _public_version(torch.__version__)
    if built != running:
        raise ImportError(
            f"fpcore was compiled against torch {_build_info.TORCH_VERSION} but torch {torch.__version__} "
            f"is installed; its operators cannot be loaded. {_REBUILD}"
        )
    if _build_info.WITH_CUDA and torch.version.cuda is None:
        raise ImportError(
            f"fpcore was compiled with CUDA kernels (torch {_build_info.TORCH_VERSION}) but the installed "
            f"torch {torch.__version__} is a CPU-only build. {_REBUILD}"
        )
    if not _LIBRARY.exists():
        raise ImportError(f"fpcore's compiled library {_LIBRARY} is missing. {_REBUILD}")
    try:
        torch.ops.load_library(str(_LIBRARY))
    except OSError as error:
        raise ImportError(f"fpcore's compiled library {_LIBRARY} failed to load ({error}). {_REBUILD}") from None


def cuda_available() -> bool:
    """True when fpcore was built with CUDA kernels and a CUDA device is visible."""
    from . import _build_info

    return bool(_build_info.WITH_CUDA) and torch.cuda.is_available()
