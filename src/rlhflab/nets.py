"""Network pieces shared by the reward models and the policies (below both, so neither imports
the other): orthogonally initialised linear layers and the MLP built from them."""

from __future__ import annotations

import numpy as np
from torch import nn


def linear(inp: int, out: int, gain: float = np.sqrt(2)) -> nn.Linear:
    """A linear layer with orthogonal weights (scaled by `gain`) and zero bias, as in CleanRL."""
    layer = nn.Linear(inp, out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(
    inp: int, hidden: int, out: int, layers: int = 2, out_gain: float = 1.0, act=nn.Tanh
) -> nn.Sequential:
    """`layers` hidden layers of `hidden` units with activation `act`, then a linear output."""
    mods: list[nn.Module] = []
    width = inp
    for _ in range(layers):
        mods += [linear(width, hidden), act()]
        width = hidden
    return nn.Sequential(*mods, linear(width, out, out_gain))
