"""Temporal metrics on synthetic clips whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from livevae.offline.temporal import (
    collapse_rate,
    motion_ratio,
    pool_summaries,
    temporal_error,
    temporal_summary,
)


def ramp(t: int = 8, step: float = 0.05) -> np.ndarray:
    """A clip whose every pixel brightens by `step` per frame: [T, 3, 4, 4]."""
    return np.stack([np.full((3, 4, 4), 0.1 + step * i, np.float32) for i in range(t)])


def test_exact_copy_is_perfect() -> None:
    s = ramp()
    assert motion_ratio(s, s) == pytest.approx(1.0)
    assert temporal_error(s, s) == 0.0
    assert collapse_rate(s, s) == 0.0


def test_frozen_reconstruction_is_total_collapse() -> None:
    s = ramp()
    frozen = np.repeat(s[:1], len(s), axis=0)
    assert motion_ratio(frozen, s) == 0.0
    assert collapse_rate(frozen, s) == 1.0
    assert temporal_error(frozen, s) == pytest.approx(0.05, abs=1e-6)  # the whole source motion is missed


def test_half_motion_and_double_motion() -> None:
    s = ramp(step=0.04)
    half = ramp(step=0.02)
    double = ramp(step=0.08)
    assert motion_ratio(half, s) == pytest.approx(0.5, rel=1e-5)
    assert motion_ratio(double, s) == pytest.approx(2.0, rel=1e-5)
    assert temporal_error(half, s) == pytest.approx(0.02, abs=1e-6)
    assert collapse_rate(half, s) == 0.0  # half the motion is not near-identical (near = 0.2)


def test_a_late_reconstruction_has_the_right_ratio_but_a_temporal_error() -> None:
    rng = np.random.default_rng(0)
    s = rng.random((10, 3, 4, 4)).astype(np.float32)
    late = np.concatenate([s[:1], s[:-1]])  # one frame behind
    assert 0.8 < motion_ratio(late, s) < 1.2
    assert temporal_error(late, s) > 0.2


def test_static_source() -> None:
    s = np.zeros((5, 3, 4, 4), np.float32)
    assert motion_ratio(s, s) == 1.0
    assert math.isinf(motion_ratio(ramp(5), s))
    assert collapse_rate(ramp(5), s) == 0.0


def test_torch_and_numpy_agree_and_shapes_are_checked() -> None:
    s = ramp()
    r = ramp(step=0.03)
    assert motion_ratio(torch.from_numpy(r), torch.from_numpy(s)) == pytest.approx(motion_ratio(r, s))
    with pytest.raises(ValueError, match=r"expected the same"):
        motion_ratio(r[:4], s)
    with pytest.raises(ValueError, match=r"expected \[T, 3, H, W\]"):
        motion_ratio(r[0], s[0])


def test_pooling_is_over_pairs_not_a_mean_of_ratios() -> None:
    a_src, a_rec = ramp(5, 0.04), ramp(5, 0.04)  # ratio 1, 4 pairs of motion 0.04
    b_src, b_rec = ramp(3, 0.01), ramp(3, 0.0)  # ratio 0, 2 pairs of motion 0.01
    pooled = pool_summaries([temporal_summary(a_rec, a_src), temporal_summary(b_rec, b_src)])
    assert pooled["motion_ratio"] == pytest.approx((4 * 0.04) / (4 * 0.04 + 2 * 0.01), rel=1e-5)
    assert pooled["collapse_rate"] == pytest.approx(2 / 6)
    assert pooled["pairs"] == 6
    both = np.concatenate([a_src, b_src])
    # Pooled segments never count the jump between them as motion.
    assert pooled["motion_ratio"] != pytest.approx(motion_ratio(np.concatenate([a_rec, b_rec]), both))


def test_still_flicker_counts_only_motion_where_the_source_is_still() -> None:
    from livevae.offline.temporal import still_flicker, still_flicker_sums

    src = np.zeros((4, 3, 2, 2), np.float32)
    src[:, :, 0, 0] = np.array([0.0, 0.5, 0.0, 0.5])[:, None]  # one pixel moves a lot; three are still
    rec = src.copy()
    rec[:, :, 1, 1] = np.array([0.0, 0.1, 0.0, 0.1])[:, None]  # a still pixel boils by 0.1 a frame
    assert still_flicker(src, src) == 0.0
    assert still_flicker(rec, src) == pytest.approx(0.1 / 3, rel=1e-5)  # 1 boiling pixel of 3 still ones
    total, n = still_flicker_sums(rec, src)
    assert n == 3 * 3 * 3  # 3 pairs x 3 still pixels x 3 channels
    assert total == pytest.approx(0.1 * 3 * 3, rel=1e-5)
    moving = np.stack([np.full((3, 2, 2), 0.1 * i, np.float32) for i in range(4)])
    assert still_flicker(moving, moving) == 0.0  # no still pixel: nothing to flicker against
