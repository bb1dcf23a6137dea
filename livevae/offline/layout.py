"""Reconstruct's output layout: tiles (original, one per model) resized and arranged side by side or in a grid."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Upscaling filters for --size; shrinking always averages (INTER_AREA) so nothing aliases.
FILTERS: dict[str, int] = {
    "lanczos": cv2.INTER_LANCZOS4,
    "bicubic": cv2.INTER_CUBIC,
    "bilinear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
}


# swscale names of the --filter choices, for the original tile scaled straight from the source.
SWS_FLAGS = {"lanczos": "lanczos", "bicubic": "bicubic", "bilinear": "bilinear", "nearest": "neighbor"}


def resize_to(img: np.ndarray, size: tuple[int, int], upscale: str = "lanczos") -> np.ndarray:
    """uint8 [h, w, 3] -> [size[1], size[0], 3]: area average when shrinking, `upscale` filter when growing."""
    w, h = size
    if img.shape[1] == w and img.shape[0] == h:
        return img
    interp = cv2.INTER_AREA if (img.shape[1] >= w and img.shape[0] >= h) else FILTERS[upscale]
    return cv2.resize(img, (w, h), interpolation=interp)


@dataclass(frozen=True)
class Layout:
    """Tiles of one size in a rows x cols canvas, filled row by row; unused cells stay black."""

    tile: tuple[int, int]  # (w, h)
    rows: int
    cols: int
    labels: tuple[str, ...] = ()

    @classmethod
    def for_tiles(cls, n: int, tile: tuple[int, int], grid: bool, labels: tuple[str, ...] = ()) -> Layout:
        """A row of n tiles, or with `grid` the most square arrangement (2 -> 2x1, 3-4 -> 2x2, 5-6 -> 3x2)."""
        if not grid or n <= 2:
            return cls(tile, 1, n, labels)
        cols = math.ceil(math.sqrt(n))
        return cls(tile, math.ceil(n / cols), cols, labels)

    @property
    def size(self) -> tuple[int, int]:
        return self.tile[0] * self.cols, self.tile[1] * self.rows

    def compose(self, tiles: list[np.ndarray]) -> np.ndarray:
        """Tiles uint8 [h, w, 3] (already tile-sized) -> canvas uint8 [rows*h, cols*w, 3]."""
        if len(tiles) == 1 and not self.labels:
            return tiles[0]
        w, h = self.tile
        canvas = np.zeros((h * self.rows, w * self.cols, 3), np.uint8)
        for k, t in enumerate(tiles):
            r, c = divmod(k, self.cols)
            canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = t
            if k < len(self.labels) and self.labels[k]:
                scale = max(0.35, h / 400)
                org = (c * w + 6, r * h + int(22 * scale) + 4)
                cv2.putText(canvas, self.labels[k], org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
                cv2.putText(
                    canvas, self.labels[k], org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
                )
        return canvas
