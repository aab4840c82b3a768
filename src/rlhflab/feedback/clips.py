"""Short looping clips of trajectory segments, for people to compare."""

from __future__ import annotations

import io

import numpy as np


def encode_gif(frames: np.ndarray, fps: float = 20.0) -> bytes:
    """A looping GIF from [k, H, W, 3] uint8 frames (imageio's Pillow plugin, no external encoder)."""
    import imageio.v3 as iio

    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise ValueError(f"expected frames shaped [k, H, W, 3], got {frames.shape}")
    buf = io.BytesIO()
    iio.imwrite(buf, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    return buf.getvalue()


def downsample(frame: np.ndarray, stride: int) -> np.ndarray:
    return frame[::stride, ::stride] if stride > 1 else frame
