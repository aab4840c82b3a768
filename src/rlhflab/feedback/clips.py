"""Short looping clips of trajectory segments, for people to compare and for run reports."""

from __future__ import annotations

import io

import numpy as np


def encode_gif(frames, fps: float = 20.0) -> bytes:
    """A looping GIF of [k, H, W, 3] uint8 frames, with one palette drawn from a few of them
    (Pillow; a shared palette encodes several times faster than one per frame)."""
    from PIL import Image

    frames = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
    if not frames or frames[0].ndim != 3 or frames[0].shape[-1] != 3:
        raise ValueError(
            f"expected RGB frames shaped [H, W, 3], got {None if not frames else frames[0].shape}"
        )
    palette = Image.fromarray(np.concatenate(frames[:: max(1, len(frames) // 4)], axis=0)).quantize(
        colors=128
    )
    images = [
        Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames
    ]
    buf = io.BytesIO()
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0
    )
    return buf.getvalue()
