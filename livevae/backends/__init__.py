"""Inference backends behind one contract: encode(frames) -> z [N, zdim], decode(z) -> frames uint8."""

from __future__ import annotations

import sys
from typing import Protocol

import numpy as np

from livevae.model import ModelConfig


class EngineError(Exception):
    """A backend cannot be created or run (missing library, no GPU, bad engine file)."""


class Backend(Protocol):
    """Every backend: the same preprocessing, the same shapes, chosen once at start."""

    name: str
    cfg: ModelConfig

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] RGB (or float32 [N, 3, H, W] in [-1, 1]) -> float32 z = mean [N, zdim]."""
        ...

    def decode(self, z: np.ndarray) -> np.ndarray:
        """float32 [N, zdim] -> uint8 [N, H, W, 3] RGB."""
        ...


def log(msg: str) -> None:
    print(f"livevae backend: {msg}", file=sys.stderr)


def create(model_path: str, backend: str = "auto", **kw: object) -> Backend:
    """Create the named backend ('auto', 'torch', ...), logging the choice."""
    from livevae.backends.torch_backend import TorchBackend

    if backend in ("auto", "torch", "torch-cpu"):
        b = TorchBackend.from_file(model_path, device="cpu")
        log(f"using {b.name}")
        return b
    raise EngineError(f"backend {backend!r}: unknown; expected one of auto, torch")
