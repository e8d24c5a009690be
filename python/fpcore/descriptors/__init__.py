"""Atomic fingerprints: wACSF, EAD and GMP as fpcore operators with analytic gradients."""

from .base import Descriptor
from .derivatives import dense_derivatives
from .ead import EAD
from .gmp import GMP
from .wacsf import WACSF

__all__ = ["Descriptor", "EAD", "GMP", "WACSF", "dense_derivatives"]
