"""Placeholder: the WACSF descriptor is being implemented (see issue 3)."""

from .base import Descriptor


class WACSF(Descriptor):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("fpcore.WACSF is not implemented yet")
