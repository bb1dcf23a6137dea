"""Output scaling: the model's pixels upscaled to each output's size once per frame, with a chosen filter."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from livevae.errors import LivevaeError

# name -> OpenCV interpolation. "sharp" is Lanczos (a sharper edge than bicubic on the model's soft pixels).
SCALE_FILTERS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "sharp": cv2.INTER_LANCZOS4,
}


class ScaleError(LivevaeError):
    """An unknown scaling filter or a bad output size."""


def interpolation(name: str) -> int:
    """The OpenCV interpolation flag of a filter name; raises ScaleError naming the choices."""
    try:
        return SCALE_FILTERS[name]
    except KeyError:
        raise ScaleError(f"scale filter {name!r}: unknown; expected one of {', '.join(SCALE_FILTERS)}") from None


def scale(rgb: np.ndarray, size: tuple[int, int], filter: str = "bilinear") -> np.ndarray:
    """uint8 [h, w, 3] -> uint8 [size[1], size[0], 3]; the input itself when it already has that size."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    return cv2.resize(rgb, tuple(size), interpolation=interpolation(filter))


class ScaledFrame:
    """One decoded frame and its scaled copies: each (size) is computed once, however many outputs ask for it,
    and each copy is read-only (outputs on other threads share it)."""

    def __init__(self, rgb: np.ndarray, filter: str = "bilinear") -> None:
        interpolation(filter)  # a bad name fails here, once, not in every output
        self.rgb = rgb  # uint8 [H, W, 3] at the model's size
        self.filter = filter
        self._lock = threading.Lock()
        self._copies: dict[tuple[int, int], np.ndarray] = {(rgb.shape[1], rgb.shape[0]): rgb}
        self.computed = 0  # resizes done for this frame (a test and the bench read it)

    def at(self, size: tuple[int, int] | None) -> np.ndarray:
        """The frame at (w, h); None = the model's size."""
        if size is None:
            return self.rgb
        key = (int(size[0]), int(size[1]))
        with self._lock:
            out = self._copies.get(key)
            if out is None:
                out = scale(self.rgb, key, self.filter)
                out.flags.writeable = False
                self._copies[key] = out
                self.computed += 1
        return out
