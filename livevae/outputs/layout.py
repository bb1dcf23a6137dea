"""Fitting a picture into a frame with its aspect kept: the window, the monitor and recordings share it."""

from __future__ import annotations

import cv2
import numpy as np


def fit_rect(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """The largest (x, y, w, h) of the source's aspect centred in the destination (letterbox/pillarbox)."""
    scale = min(dst_w / src_w, dst_h / src_h)
    w, h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    return (dst_w - w) // 2, (dst_h - h) // 2, w, h


def letterbox(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 [h, w, 3] scaled into (W, H) with its aspect kept and black bars: uint8 [H, W, 3]."""
    w, h = size
    if (rgb.shape[1], rgb.shape[0]) == (w, h):
        return rgb
    x, y, fw, fh = fit_rect(rgb.shape[1], rgb.shape[0], w, h)
    out = np.zeros((h, w, 3), np.uint8)
    out[y : y + fh, x : x + fw] = cv2.resize(rgb, (fw, fh), interpolation=cv2.INTER_LINEAR)
    return out
