"""The NDI send conversion: BT.709 limited-range I420, scaled in planes, against the standard's own formulas."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from livevae.outputs.scaling import ScaleError, scale
from livevae.outputs.yuv import I420Scaler, i420_size, rgb_to_ycbcr

# written out from ITU-R BT.709 here, not taken from the module: a wrong matrix or range there fails against it
KR, KB = 0.2126, 0.0722
KG = 1 - KR - KB


def bt709_limited(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (np.asarray(rgb, np.float64)[..., i] / 255.0 for i in range(3))
    y = KR * r + KG * g + KB * b
    return np.stack([16 + 219 * y, 128 + 224 * (b - y) / (2 * (1 - KB)), 128 + 224 * (r - y) / (2 * (1 - KR))], -1)


def decode_bt709_limited(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """What an NDI receiver does with the planes (chroma already at luma size): float64 [..., 3] RGB 0..255."""
    yy = (y.astype(np.float64) - 16) / 219
    pb, pr = (cb.astype(np.float64) - 128) / 224, (cr.astype(np.float64) - 128) / 224
    r = yy + 2 * (1 - KR) * pr
    b = yy + 2 * (1 - KB) * pb
    g = (yy - KR * r - KB * b) / KG
    return np.stack([r, g, b], -1) * 255


def planes(buf: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = w * h
    return buf[:n].reshape(h, w), buf[n : n + n // 4].reshape(h // 2, w // 2), buf[n + n // 4 :].reshape(h // 2, w // 2)


CHART = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255],
     [255, 255, 255], [0, 0, 0], [64, 64, 64], [192, 192, 192], [200, 60, 30], [90, 140, 200]],
    np.uint8,
)  # fmt: skip


def test_the_matrix_is_bt709_limited_range_to_half_a_level() -> None:
    got = rgb_to_ycbcr(CHART[None]).astype(np.float64)[0]
    want = bt709_limited(CHART)
    assert np.abs(got - want).max() <= 0.5 + 1e-6, np.c_[got, want]
    # the corners of the range: black 16, white 235, no chroma on greys, 240/16 on the saturated primaries
    assert tuple(got[7]) == (16, 128, 128) and tuple(got[6]) == (235, 128, 128)
    assert got[2][1] == 240 and got[0][2] == 240


def test_i420_at_720p_decodes_to_the_rgb_upscale_within_a_few_levels_even_saturated() -> None:
    # a chart of 12 flat patches at the model's size (each 64x48 of 256x144), scaled to 1280x720
    model = np.zeros((144, 256, 3), np.uint8)
    for k, c in enumerate(CHART):
        r, col = divmod(k, 4)
        model[r * 48 : (r + 1) * 48, col * 64 : (col + 1) * 64] = c
    s = I420Scaler((1280, 720), "bilinear")
    y, u, v = planes(s.convert(model), 1280, 720)
    up = lambda p: cv2.resize(p, (1280, 720), interpolation=cv2.INTER_NEAREST)  # noqa: E731
    rgb = decode_bt709_limited(y, up(u), up(v))
    want = scale(model, (1280, 720), "bilinear").astype(np.float64)
    for k, c in enumerate(CHART):
        r, col = divmod(k, 4)
        ys, xs = slice(r * 240 + 60, r * 240 + 180), slice(col * 320 + 80, col * 320 + 240)  # patch centres
        err = np.abs(rgb[ys, xs] - want[ys, xs]).max()
        assert err <= 1.5, (tuple(c), err)  # 8-bit rounding of Y, Cb and Cr, and no more
    # across the whole frame (edges: chroma is one sample per 2x2 pixels) the mean stays within a level
    assert np.abs(np.clip(rgb, 0, 255) - want).mean() < 1.5


def test_the_buffer_is_reused_in_place_and_laid_out_y_then_u_then_v() -> None:
    s = I420Scaler((320, 240))
    grey = np.full((48, 64, 3), 128, np.uint8)
    a = s.convert(grey)
    b = s.convert(np.full((48, 64, 3), 255, np.uint8))
    assert a is b is s.buffer and a.size == i420_size((320, 240)) == 320 * 240 * 3 // 2
    y, u, v = planes(a, 320, 240)
    assert int(y.min()) == int(y.max()) == 235 and int(u.min()) == int(v.max()) == 128
    assert np.shares_memory(s.y, s.buffer) and np.shares_memory(s.v, s.buffer)


def test_a_downscale_averages_the_chroma_and_an_odd_size_is_refused() -> None:
    stripes = np.zeros((144, 256, 3), np.uint8)
    stripes[:, 0::2] = (255, 0, 0)  # red and black columns: subsampled, not averaged, chroma would be all red
    s = I420Scaler((128, 72))
    _, _, v = planes(s.convert(stripes), 128, 72)
    half_red_cr = bt709_limited(np.array([[127.5, 0, 0]]))[0, 2]
    assert abs(float(v.mean()) - half_red_cr) < 2
    with pytest.raises(ScaleError, match=r"I420 size 1281x720; expected an even width and height"):
        I420Scaler((1281, 720))
