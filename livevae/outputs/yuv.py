"""YUV for senders: the model's RGB picture to BT.709 limited-range I420 at an output's size, scaled in YUV planes."""

from __future__ import annotations

import cv2
import numpy as np

from livevae.outputs.scaling import ScaleError, interpolation

# BT.709 (Kr 0.2126, Kb 0.0722), limited ("video") range: Y 16..235, Cb/Cr 16..240 around 128. The NDI 6 SDK's
# receivers decode YUV with this matrix and range at every size (measured from 256x144 to 3840x2160: an SD frame
# encoded as BT.601 came back up to 40 levels off on saturated colours, a full-range one 11 levels off on greys).
KR, KB = 0.2126, 0.0722
_KG = 1.0 - KR - KB
_RGB_TO_YCC = np.array(
    [
        [KR, _KG, KB],
        [-KR / (2 * (1 - KB)), -_KG / (2 * (1 - KB)), 0.5],
        [0.5, -_KG / (2 * (1 - KR)), -KB / (2 * (1 - KR))],
    ]
) * np.array([[219.0 / 255.0], [224.0 / 255.0], [224.0 / 255.0]])
# cv2.transform wants [3, 4]: the matrix and the offsets; it rounds to nearest and saturates to uint8
BT709_LIMITED = np.hstack([_RGB_TO_YCC, [[16.0], [128.0], [128.0]]]).astype(np.float32)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """uint8 [h, w, 3] RGB -> uint8 [h, w, 3] (Y, Cb, Cr), BT.709 limited range."""
    return cv2.transform(np.ascontiguousarray(rgb), BT709_LIMITED)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """The inverse of rgb_to_ycbcr, in float64 [..., 3] (for tests and checks; nothing live calls it)."""
    inv = np.linalg.inv(_RGB_TO_YCC)
    return (np.asarray(ycc, np.float64) - np.array([16.0, 128.0, 128.0])) @ inv.T


def i420_size(size: tuple[int, int]) -> int:
    """Bytes of one I420 frame at (w, h): a Y plane and two quarter-size chroma planes."""
    w, h = size
    return w * h * 3 // 2


class I420Scaler:
    """The model's RGB picture -> one I420 frame (Y [h, w], then U and V [h/2, w/2]) at `size`, in a buffer
    reused frame after frame.

    The colour conversion runs at the model's size (256x144: 37k pixels, not 922k at 720p), then each plane is
    scaled straight into its place in the buffer: 1.5 bytes written per output pixel, where upscaling RGB and
    converting at full size writes 3 (RGB), 4 (RGBA) and leaves the sender 4 more to read and convert. At 720p
    the chroma planes (640x360) are still larger than the model's picture, so 4:2:0 loses none of its colour."""

    def __init__(self, size: tuple[int, int], filter: str = "bilinear") -> None:
        w, h = int(size[0]), int(size[1])
        if w % 2 or h % 2 or w < 2 or h < 2:
            raise ScaleError(f"I420 size {w}x{h}; expected an even width and height (4:2:0 chroma)")
        self.size = (w, h)
        self.filter = filter
        self._interp = interpolation(filter)
        self.buffer = np.empty(i420_size(self.size), np.uint8)  # uint8 [w*h*3/2], handed to the sender as is
        n = w * h
        self.y = self.buffer[:n].reshape(h, w)  # each plane a contiguous view: cv2.resize writes into it directly
        self.u = self.buffer[n : n + n // 4].reshape(h // 2, w // 2)
        self.v = self.buffer[n + n // 4 :].reshape(h // 2, w // 2)

    def convert(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] RGB at any size -> the reused uint8 [w*h*3/2] I420 buffer at self.size."""
        ycc = rgb_to_ycbcr(rgb)  # uint8 [H, W, 3]
        y, u, v = cv2.split(ycc)  # three uint8 [H, W] planes
        self._plane(y, self.y)
        self._plane(u, self.u)
        self._plane(v, self.v)
        return self.buffer

    def _plane(self, src: np.ndarray, dst: np.ndarray) -> None:
        dh, dw = dst.shape
        if (src.shape[1], src.shape[0]) == (dw, dh):
            np.copyto(dst, src)
            return
        # a plane smaller than its source (chroma of a small output, or a downscale) averages, never aliases
        smaller = dw < src.shape[1] and dh < src.shape[0]
        cv2.resize(src, (dw, dh), dst=dst, interpolation=cv2.INTER_AREA if smaller else self._interp)
