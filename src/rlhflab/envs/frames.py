"""Rendered frames of env steps: helpers shared by the rollouts that record them and the clips
that show them to people."""

from __future__ import annotations

import numpy as np


def downsample(frame: np.ndarray, stride: int) -> np.ndarray:
    """Every `stride`-th pixel of an [H, W, 3] frame, in both directions."""
    return frame[::stride, ::stride] if stride > 1 else frame
