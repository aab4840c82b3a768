"""Clips people judge: one H.264 encoder for the app and the report, and 'episode over'."""

import subprocess

import numpy as np

from rlhflab.feedback.clips import encode_clip, encode_gif, ffmpeg_exe, make_clip, mark_episode_over


def moving(k=40, h=100, w=150):
    f = np.full((k, h, w, 3), 230, np.uint8)
    for t in range(k):
        f[t, 40:60, 3 * t : 3 * t + 20] = (30, 80, 160)
    return f


def test_mp4_at_native_resolution_and_smaller_than_gif(tmp_path):
    frames = moving(h=101, w=151)  # odd sizes are padded by one pixel, never scaled
    data, mime = encode_clip(frames, fps=20)
    assert mime == "video/mp4" and data[4:8] == b"ftyp"
    assert len(data) < len(encode_gif(frames, fps=20))
    path = tmp_path / "c.mp4"
    path.write_bytes(data)
    probe = subprocess.run([ffmpeg_exe(), "-i", str(path)], capture_output=True, text=True).stderr
    assert "h264" in probe and "152x102" in probe
    clip = make_clip(frames, fps=20)
    assert (clip.frames, clip.fps, clip.suffix) == (40, 20, ".mp4")


def test_frames_after_the_end_are_marked_episode_over():
    frames = moving(k=6)
    ended = np.array([False, False, False, True, True, True])
    marked = mark_episode_over(frames, ended)
    assert np.array_equal(marked[:3], frames[:3])  # before the end: untouched
    for t in range(3, 6):
        assert marked[t].mean() < 0.6 * frames[t].mean()  # darkened
        assert (marked[t] > 240).any()  # with white text on it
    assert np.array_equal(frames, moving(k=6))  # the input is not changed
