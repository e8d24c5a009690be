"""fpcore: periodic neighbor lists and atomic fingerprints (wACSF, EAD, GMP) as PyTorch operators.

>>> import fpcore
>>> nl = fpcore.neighbor_list(atoms, cutoff=5.0)      # i, j, shifts, vectors, distances
"""

# The one source of the version: pyproject.toml reads it from here (scikit-build-core regex provider).
__version__ = "0.1.0"

from ._library import load as _load  # noqa: E402

_load()

from . import descriptors, neighbors, ops  # noqa: E402
from .descriptors import EAD, GMP, WACSF, Descriptor  # noqa: E402
from .neighbors import neighbor_list  # noqa: E402

__all__ = ["Descriptor", "EAD", "GMP", "WACSF", "descriptors", "neighbor_list", "neighbors", "ops", "__version__"]
