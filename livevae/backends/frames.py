"""Frame <-> array conversion shared by the numpy-facing backends, bit-identical to livevae.media.preprocess."""

from __future__ import annotations

import numpy as np

from livevae.backends import EngineError
from livevae.model import ModelConfig

_SCALE = np.float32(127.5)
_ONE = np.float32(1.0)


def to_input(frames: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """uint8 [N, H, W, 3] (or one [H, W, 3]) or float32 [N, 3, H, W] in [-1, 1] -> float32 [N, 3, H, W].

    Same arithmetic as preprocess.to_tensor (float32 divide by 127.5, subtract 1), so every backend
    sees bit-identical inputs. Raises EngineError when the frame size is not the model's.
    """
    if frames.dtype == np.uint8:
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[1:] != (cfg.height, cfg.width, 3):
            raise EngineError(
                f"encode: uint8 frames of shape {frames.shape}; expected [N, {cfg.height}, {cfg.width}, 3] RGB "
                f"(preset {cfg.preset!r})"
            )
        x = frames.transpose(0, 3, 1, 2).astype(np.float32)  # [N, 3, H, W], a contiguous copy
        x /= _SCALE
        x -= _ONE
        return x
    x = np.ascontiguousarray(frames, dtype=np.float32)
    if x.ndim != 4 or x.shape[1:] != (3, cfg.height, cfg.width):
        raise EngineError(
            f"encode: float frames of shape {frames.shape}; expected [N, 3, {cfg.height}, {cfg.width}] in [-1, 1]"
        )
    return x


def check_z(z: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """z as contiguous float32 [N, zdim]; raises EngineError naming the shape found and expected."""
    z = np.ascontiguousarray(z, dtype=np.float32)
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or z.shape[1] != cfg.zdim:
        raise EngineError(f"decode: z of shape {z.shape}; expected [N, {cfg.zdim}]")
    return z


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float32 [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3], rounded half to even like preprocess.to_uint8."""
    y = np.clip(x, -1.0, 1.0)
    y += _ONE
    y *= _SCALE
    np.rint(y, out=y)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1)).astype(np.uint8)
