"""fpcore: periodic neighbor lists and atomic fingerprints (wACSF, EAD, GMP) as PyTorch operators.

>>> import fpcore
>>> nl = fpcore.neighbor_list(atoms, cutoff=5.0)      # i, j, shifts, vectors, distances
"""

from ._library import load as _load

_load()

from . import descriptors, neighbors  # noqa: E402
from .descriptors import EAD, GMP, WACSF, Descriptor  # noqa: E402
from .neighbors import neighbor_list  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Descriptor", "EAD", "GMP", "WACSF", "descriptors", "neighbor_list", "neighbors", "__version__"]
