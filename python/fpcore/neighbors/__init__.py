"""Periodic neighbor lists (fpcore::neighbor_list) and pair geometry (fpcore::pair_geometry)."""

from . import _ops  # noqa: F401  (registers the fake kernels and autograd formulas)
from .api import Neighbors, compute, neighbor_list, neighbors_of_batch, pair_geometry

__all__ = ["Neighbors", "compute", "neighbor_list", "neighbors_of_batch", "pair_geometry"]
