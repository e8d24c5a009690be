"""Placeholder: the EAD descriptor is being implemented (see issue 3)."""

from .base import Descriptor


class EAD(Descriptor):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("fpcore.EAD is not implemented yet")
