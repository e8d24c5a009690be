"""Periodic neighbor lists (fpcore::neighbor_list)."""

from . import ops  # noqa: F401  (registers the fake kernel)
from .api import Neighbors, compute, neighbor_list, pair_vectors

__all__ = ["Neighbors", "compute", "neighbor_list", "pair_vectors"]
