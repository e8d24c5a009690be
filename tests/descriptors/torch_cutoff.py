"""Cutoff functions of spec section 2.1 in plain PyTorch, for the reference implementations in the tests."""

import math

import torch


def cutoff_function(name: str, d: torch.Tensor, rc: float) -> torch.Tensor:
    x = d / rc
    if name == "cosine":
        value = 0.5 * (torch.cos(math.pi * x) + 1)
    elif name == "tanh":
        value = torch.tanh(1 - x) ** 3
    elif name == "poly1":
        value = x**2 * (2 * x - 3) + 1
    elif name == "poly2":
        value = x**3 * (x * (15 - 6 * x) - 10) + 1
    elif name == "poly3":
        value = x**4 * (x * (x * (20 * x - 70) + 84) - 35) + 1
    elif name == "poly4":
        value = x**5 * (x * (x * (x * (315 - 70 * x) - 540) + 420) - 126) + 1
    elif name == "exponent":
        inside = torch.clamp(1 - x**2, min=1e-300)
        value = torch.exp(1 - 1 / inside)
    else:
        raise ValueError(name)
    return torch.where(d < rc, value, torch.zeros_like(value))
