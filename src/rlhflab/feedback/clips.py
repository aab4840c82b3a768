"""Short clips of trajectory segments, for people to compare and for run reports.

`encode_clip` is the one encoder: H.264 in MP4 through the ffmpeg binary that the
imageio-ffmpeg wheel ships (no system ffmpeg needed), at the frames' native resolution.
It falls back to a looping GIF (Pillow) only when that package is missing. The labeling
app and the run report both use it; `mark_episode_over` darkens the frames recorded after
an episode ended and writes "episode over" on them, so nobody reads a frozen, absorbing
state as behaviour.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

MP4 = "video/mp4"
GIF = "image/gif"
SUFFIX = {MP4: ".mp4", GIF: ".gif"}


@dataclass(frozen=True)
class Clip:
    """An encoded clip: its bytes, media type, frame count and frame rate."""

    data: bytes
    mime: str
    frames: int
    fps: float

    @property
    def suffix(self) -> str:
        return SUFFIX[self.mime]


def _rgb_frames(frames) -> list[np.ndarray]:
    frames = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
    if not frames or frames[0].ndim != 3 or frames[0].shape[-1] != 3:
        raise ValueError(
            f"expected RGB frames shaped [H, W, 3], got {None if not frames else frames[0].shape}"
        )
    return frames


def ffmpeg_exe() -> str | None:
    """The ffmpeg binary inside the imageio-ffmpeg wheel, or None when it is not installed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


def encode_clip(frames, fps: float = 20.0) -> tuple[bytes, str]:
    """[k, H, W, 3] uint8 frames → (bytes, mime): H.264 MP4 when ffmpeg is there, else GIF."""
    clip = make_clip(frames, fps)
    return clip.data, clip.mime


def make_clip(frames, fps: float = 20.0) -> Clip:
    """Like `encode_clip`, with the frame count and rate the player shows."""
    frames = _rgb_frames(frames)
    exe = ffmpeg_exe()
    if exe is None:
        return Clip(encode_gif(frames, fps), GIF, len(frames), fps)
    return Clip(encode_mp4(frames, fps, exe), MP4, len(frames), fps)


def encode_mp4(frames, fps: float = 20.0, exe: str | None = None, crf: int = 23) -> bytes:
    """H.264 (yuv420p, faststart, so a browser can start playing at once) at native resolution;
    an odd width or height is padded by one black pixel, as 4:2:0 needs even sizes."""
    frames = _rgb_frames(frames)
    exe = exe or ffmpeg_exe()
    if exe is None:
        raise RuntimeError("encoding MP4 needs imageio-ffmpeg (pip install 'rlhflab[web]')")
    h, w = frames[0].shape[:2]
    fd, path = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    cmd = [
        exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-",
        "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "veryfast",
        "-crf", str(crf), "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-an", path,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            cmd, input=b"".join(f.tobytes() for f in frames), capture_output=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"ffmpeg failed: {done.stderr.decode(errors='replace')[-500:]}")
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def encode_gif(frames, fps: float = 20.0) -> bytes:
    """A looping GIF of [k, H, W, 3] uint8 frames, with one palette drawn from a few of them
    (Pillow; a shared palette encodes several times faster than one per frame)."""
    from PIL import Image

    frames = _rgb_frames(frames)
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


def mark_episode_over(frames, ended_mask, text: str = "episode over") -> np.ndarray:
    """Frames with those after the episode's end (`ended_mask[t]` true) darkened to 35% and
    labelled `text` in the middle; the others are returned unchanged. [k, H, W, 3] uint8."""
    from PIL import Image, ImageDraw, ImageFont

    out = np.array(frames, dtype=np.uint8, copy=True)
    mask = np.asarray(ended_mask, dtype=bool).reshape(-1)
    if out.ndim != 4 or out.shape[-1] != 3 or len(mask) != len(out):
        raise ValueError(
            f"expected [k, H, W, 3] frames and k flags, got {out.shape} and {mask.shape}"
        )
    if not mask.any():
        return out
    h, w = out.shape[1:3]
    font = ImageFont.load_default(size=max(8, min(h // 8, w // len(text) * 2)))
    for t in np.flatnonzero(mask):
        image = Image.fromarray((out[t].astype(np.float32) * 0.35).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        xy = ((w - (x1 - x0)) / 2 - x0, (h - (y1 - y0)) / 2 - y0)
        draw.text(xy, text, fill=(255, 255, 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0))
        out[t] = np.asarray(image)
    return out
