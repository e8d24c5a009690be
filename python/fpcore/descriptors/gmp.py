"""Placeholder: the GMP descriptor is being implemented (see issue 3)."""

from .base import Descriptor


class GMP(Descriptor):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("fpcore.GMP is not implemented yet")
