"""Frame preprocessing shared by prep, reconstruct and live: crop box, area resize, tensor conversion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from livevae.errors import LivevaeError


class PreprocessError(LivevaeError):
    """A crop box or target size is malformed or does not fit the frame."""


@dataclass(frozen=True)
class CropBox:
    """A rectangle in source pixels: x, y of the top-left corner, width, height."""

    x: int
    y: int
    w: int
    h: int

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    def check(self, frame_w: int, frame_h: int) -> CropBox:
        if (
            self.w <= 0
            or self.h <= 0
            or self.x < 0
            or self.y < 0
            or self.x + self.w > frame_w
            or (self.y + self.h > frame_h)
        ):
            raise PreprocessError(
                f"crop {self.x},{self.y},{self.w},{self.h} does not fit a {frame_w}x{frame_h} frame; "
                "expected x,y >= 0 and the box inside the frame"
            )
        return self


def parse_size(text: str) -> tuple[int, int]:
    """'256x144' -> (256, 144); raises PreprocessError unless it is a pair of positive integers."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise PreprocessError(f"size {text!r}: expected WIDTHxHEIGHT with positive integers, e.g. 256x144") from None
    if w <= 0 or h <= 0:
        raise PreprocessError(f"size {text!r}: expected positive integers, e.g. 256x144")
    return w, h


def parse_crop(text: str) -> CropBox:
    """'x,y,w,h' -> CropBox; raises PreprocessError on anything else."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise PreprocessError(f"crop {text!r}: expected four integers x,y,w,h (or 'auto' / 'centre')") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise PreprocessError(f"crop {text!r}: expected x,y >= 0 and w,h > 0")
    return CropBox(x, y, w, h)


def centre_crop(frame_w: int, frame_h: int, aspect: float, within: CropBox | None = None) -> CropBox:
    """The largest box of the given aspect (w/h) centred in `within` (default: the whole frame)."""
    b = within or CropBox(0, 0, frame_w, frame_h)
    if b.w / b.h > aspect:  # too wide: trim the sides
        w = max(1, round(b.h * aspect))
        return CropBox(b.x + (b.w - w) // 2, b.y, w, b.h)
    h = max(1, round(b.w / aspect))
    return CropBox(b.x, b.y + (b.h - h) // 2, b.w, h)


def detect_bars(frames: list[np.ndarray], threshold: int = 24) -> CropBox:
    """Find letterbox/pillarbox bars: the box outside which every sampled frame is near-black.

    frames: RGB uint8 [H, W, 3] samples from across the film (bars are constant, content moves).
    A row/column counts as picture when any sample has a pixel brighter than `threshold` in it,
    so a dark scene in one sample does not shrink the box.
    """
    if not frames:
        raise PreprocessError("auto-crop: no frames to sample")
    h, w = frames[0].shape[:2]
    peak = np.zeros((h, w), np.uint8)
    for f in frames:
        np.maximum(peak, f.max(axis=2), out=peak)  # [H, W] brightest channel over samples
    # A row is picture if a meaningful share (not one noisy pixel) of it is bright.
    rows = np.flatnonzero((peak > threshold).mean(axis=1) > 0.02)
    cols = np.flatnonzero((peak > threshold).mean(axis=0) > 0.02)
    if rows.size == 0 or cols.size == 0:
        return CropBox(0, 0, w, h)  # all black: nothing to detect, keep the frame
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return CropBox(x0, y0, x1 - x0, y1 - y0)


def crop_resize(frame: np.ndarray, box: CropBox, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> crop to `box` -> area-resize to size=(w, h): uint8 [h, w, 3].

    INTER_AREA averages every source pixel under each target pixel when shrinking, so there is no
    aliasing; upscaling (small sources) uses bicubic instead, since area then degrades to nearest.
    """
    crop = frame[box.y : box.y + box.h, box.x : box.x + box.w]
    w, h = size
    if crop.shape[1] == w and crop.shape[0] == h:
        return np.ascontiguousarray(crop)
    interp = cv2.INTER_AREA if (crop.shape[1] >= w and crop.shape[0] >= h) else cv2.INTER_CUBIC
    return cv2.resize(crop, (w, h), interpolation=interp)


class Preprocessor:
    """Crop + resize for a stream whose frame size may change (live sources switch, playlists)."""

    def __init__(self, size: tuple[int, int], crop: str | CropBox = "centre") -> None:
        self.size = size
        self.crop = crop
        self._box: CropBox | None = None
        self._frame_shape: tuple[int, int] | None = None

    def box_for(self, frame_w: int, frame_h: int) -> CropBox:
        if self._frame_shape != (frame_w, frame_h) or self._box is None:
            aspect = self.size[0] / self.size[1]
            if isinstance(self.crop, CropBox):
                self._box = self.crop.check(frame_w, frame_h)
            else:  # "centre" (auto-detection needs samples: prep resolves it to a CropBox first)
                self._box = centre_crop(frame_w, frame_h, aspect)
            self._frame_shape = (frame_w, frame_h)
        return self._box

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        box = self.box_for(frame.shape[1], frame.shape[0])
        return crop_resize(frame, box, self.size)


def to_tensor(frames: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 [N, H, W, 3] (or one [H, W, 3]) -> float32 [N, 3, H, W] in [-1, 1]."""
    t = torch.as_tensor(frames, device=device)
    if t.ndim == 3:
        t = t[None]
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3] (rounded, clamped)."""
    y = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round_().to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous().cpu().numpy()


class DevicePreprocessor:
    """Crop + resize on a torch device: the camera frame is uploaded as uint8 (a quarter of float32) and
    area-resized there, so a 1080p frame costs the CPU one copy. Same box and filters as Preprocessor."""

    def __init__(self, pre: Preprocessor, device: Any) -> None:
        self.pre = pre
        self.device = device

    def __call__(self, frame: np.ndarray) -> Any:
        """RGB uint8 [H, W, 3] -> float32 [1, 3, h, w] in [-1, 1] on the device (a torch tensor)."""
        import torch
        import torch.nn.functional as F

        box = self.pre.box_for(frame.shape[1], frame.shape[0])
        w, h = self.pre.size
        crop = np.ascontiguousarray(frame[box.y : box.y + box.h, box.x : box.x + box.w])
        t = torch.from_numpy(crop).to(self.device, non_blocking=True)  # uint8 [bh, bw, 3]
        x = t.permute(2, 0, 1)[None].float()  # [1, 3, bh, bw] in [0, 255]
        if (box.w, box.h) != (w, h):
            # Area averaging when shrinking (no aliasing), bicubic when enlarging: as crop_resize does.
            shrink = box.w >= w and box.h >= h
            x = F.interpolate(
                x, size=(h, w), mode="area" if shrink else "bicubic", align_corners=None if shrink else False
            )
        # Round to whole levels first so a frame gives the model exactly what the CPU path would give it.
        return x.round_().clamp_(0, 255).div_(127.5).sub_(1.0)
