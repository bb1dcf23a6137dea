"""Frame <-> array conversion shared by the numpy-facing backends, bit-identical to livevae.media.preprocess."""

from __future__ import annotations

import numpy as np

from livevae.backends import EngineError
from livevae.model import ModelConfig

_SCALE = np.float32(127.5)
_ONE = np.float32(1.0)


def _uint8_batch(frames: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """uint8 [N, H, W, 3] (or one [H, W, 3]) at the model's size, as [N, H, W, 3]; EngineError naming the shape."""
    x = frames[None] if frames.ndim == 3 else frames
    if x.ndim != 4 or x.shape[1:] != (cfg.height, cfg.width, 3):
        raise EngineError(
            f"encode: uint8 frames of shape {frames.shape}; expected [N, {cfg.height}, {cfg.width}, 3] RGB "
            f"(preset {cfg.preset!r})"
        )
    return x


def to_input(frames: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """uint8 [N, H, W, 3] (or one [H, W, 3]) or float32 [N, 3, H, W] in [-1, 1] -> float32 [N, 3, H, W].

    Same arithmetic as preprocess.to_tensor (float32 divide by 127.5, subtract 1), so every backend
    sees bit-identical inputs. Raises EngineError when the frame size is not the model's.
    """
    if frames.dtype == np.uint8:
        x = _uint8_batch(frames, cfg).transpose(0, 3, 1, 2).astype(np.float32)  # [N, 3, H, W], a contiguous copy
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


def pixel_phases_to_frames(p: np.ndarray, lut: np.ndarray | None = None, crop: int = 0) -> np.ndarray:
    """An int8 decoder's uint8 phases [N, h, w, r, r, C] -> frames uint8 [N, h*r - 2 crop, w*r - 2 crop, C], each
    level looked up in lut (uint8 [256], the graph's tanh table: quantize.output_lut) when one is given.
    crop: pixels off each side (quantize.output_crop): the last conv's phases overhang the frame by that much.

    Output pixel (r*i + ry, r*j + rx) is phase (ry, rx) of position (i, j), so each output row is one phase row
    ry of the positions in a row: the (rx, C) runs of r*C bytes, interleaved. Moved as r*C-byte items (a void
    dtype), numpy copies them 15x faster than ONNX Runtime's Transpose of 3-byte pixels.
    """
    if p.ndim != 6 or p.dtype != np.uint8 or p.shape[3] != p.shape[4]:
        raise EngineError(f"decode: int8 graph gave {p.dtype} {p.shape}; expected uint8 [N, h, w, r, r, 3]")
    n, h, w, r, _, c = p.shape
    runs = np.ascontiguousarray(p).reshape(n, h, w, r * r * c).view(np.dtype((np.void, r * c)))  # [N, h, w, r]
    out = np.ascontiguousarray(runs.transpose(0, 1, 3, 2)).view(np.uint8).reshape(n, h * r, w * r, c)
    if crop:
        if 2 * crop >= min(h, w) * r:
            raise EngineError(f"decode: crop {crop} of {w * r}x{h * r} phases; expected less than half of each side")
        out = np.ascontiguousarray(out[:, crop:-crop, crop:-crop])
    if lut is None:
        return out
    import cv2  # a 256-entry table over 110k bytes: 0.03 ms (numpy's lut[out] takes 0.2)

    flat = out.reshape(-1, out.shape[2] * c)  # a view: the table is applied in place, no second frame-sized copy
    cv2.LUT(flat, lut, dst=flat)
    return out


def to_pixels(frames: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """What an int8 encoder takes: uint8 [N, H, W, 3] as given, float32 [N, 3, H, W] in [-1, 1] rounded to pixels
    (the graph quantizes its input at exactly that step, so nothing finer is lost)."""
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(_uint8_batch(frames, cfg))
    return to_uint8(to_input(frames, cfg))
