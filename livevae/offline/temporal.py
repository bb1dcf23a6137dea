"""Temporal quality of a reconstructed clip: motion ratio, temporal error and collapse rate against the source.

All functions take the reconstruction and the source as float frames in [0, 1], shape [T, 3, H, W] (torch tensors
or numpy arrays, frames in playback order) and return python floats. They are computed over the T - 1 pairs of
consecutive frames, so a caller with several separate segments calls them per segment and pools with
`pool_summaries` (pairs never span two segments: a jump between segments is not motion).
"""

from __future__ import annotations

from typing import Any

import numpy as np

DISTINCT = 1.0 / 255.0  # a source pair "moves" when its mean |difference| is at least one grey level
NEAR = 0.2  # a reconstruction pair is "collapsed" when it changes less than this fraction of its source's change


def _arr(x: Any) -> np.ndarray:
    """A [T, C, H, W] float32 numpy array from a torch tensor or an array."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 4:
        raise ValueError(f"frames have shape {a.shape}; expected [T, 3, H, W]")
    return a


def _pair_motion(rec: Any, src: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair t = 1..T-1: mean |rec_t - rec_{t-1}|, mean |src_t - src_{t-1}| and the mean |difference of the
    differences|, each [T - 1]."""
    r, s = _arr(rec), _arr(src)
    if r.shape != s.shape:
        raise ValueError(f"reconstruction {r.shape} and source {s.shape} differ; expected the same [T, 3, H, W]")
    dr = np.diff(r, axis=0)  # [T-1, C, H, W]
    ds = np.diff(s, axis=0)
    return (
        np.abs(dr).reshape(len(dr), -1).mean(1),
        np.abs(ds).reshape(len(ds), -1).mean(1),
        np.abs(dr - ds).reshape(len(dr), -1).mean(1),
    )


def motion_ratio(rec: Any, src: Any) -> float:
    """Mean |rec_t - rec_{t-1}| over mean |src_t - src_{t-1}|: below 1 the reconstruction moves less than the
    source (collapse onto fewer pictures), above 1 it moves more (flicker). 1.0 for a static source and a static
    reconstruction; inf for a static source and a moving reconstruction."""
    return temporal_summary(rec, src)["motion_ratio"]


def temporal_error(rec: Any, src: Any) -> float:
    """Mean |(rec_t - rec_{t-1}) - (src_t - src_{t-1})|, in [0, 1] pixel units: motion in the wrong place or of the
    wrong size, which the motion ratio alone misses (a late reconstruction has the right ratio)."""
    return temporal_summary(rec, src)["temporal_error"]


def collapse_rate(rec: Any, src: Any, distinct: float = DISTINCT, near: float = NEAR) -> float:
    """The fraction of consecutive source pairs that differ (mean |diff| >= `distinct`) whose reconstructions
    barely do (change < `near` x the source's change): Broad's runs of similar frames collapsed into one picture.
    0.0 when no source pair moves."""
    return temporal_summary(rec, src, distinct, near)["collapse_rate"]


def temporal_summary(rec: Any, src: Any, distinct: float = DISTINCT, near: float = NEAR) -> dict[str, float]:
    """The three figures for one segment, plus the sums `pool_summaries` needs to pool segments exactly (one pass
    over the frames; the figures are that segment pooled on its own)."""
    mr, ms, te = _pair_motion(rec, src)
    moving = ms >= distinct
    sums = {
        "pairs": float(len(ms)),
        "_rec_motion": float(mr.sum()),
        "_src_motion": float(ms.sum()),
        "_te_sum": float(te.sum()),
        "_moving": float(moving.sum()),
        "_collapsed": float((mr[moving] < near * ms[moving]).sum()),
    }
    return {**pool_summaries([sums]), **sums}


def pool_summaries(parts: list[dict[str, float]]) -> dict[str, float]:
    """Pool per-segment summaries as if all their pairs were one set (ratios of sums, not means of ratios)."""
    rm = sum(p["_rec_motion"] for p in parts)
    sm = sum(p["_src_motion"] for p in parts)
    pairs = sum(p["pairs"] for p in parts)
    moving = sum(p["_moving"] for p in parts)
    return {
        "motion_ratio": (rm / sm) if sm > 0 else (1.0 if rm == 0 else float("inf")),
        "temporal_error": sum(p["_te_sum"] for p in parts) / pairs if pairs else 0.0,
        "collapse_rate": sum(p["_collapsed"] for p in parts) / moving if moving else 0.0,
        "pairs": float(pairs),
    }


STILL = 2.0 / 255.0  # a pixel is "still" in a pair when no channel of the source changes by this much


def still_flicker_sums(rec: Any, src: Any, still: float = STILL) -> tuple[float, float]:
    """(sum of |rec_t - rec_{t-1}| over the still pixels of every pair, how many such pixel-channels): the two
    sums behind `still_flicker`, so that clips pool exactly. A pixel is still when every channel of the source
    changes by less than `still` in that pair."""
    r, s = _arr(rec), _arr(src)
    if r.shape != s.shape:
        raise ValueError(f"reconstruction {r.shape} and source {s.shape} differ; expected the same [T, 3, H, W]")
    dr = np.abs(np.diff(r, axis=0))  # [T-1, C, H, W]
    calm = np.abs(np.diff(s, axis=0)).max(axis=1, keepdims=True) < still  # [T-1, 1, H, W]
    mask = np.broadcast_to(calm, dr.shape)
    return float(dr[mask].sum()), float(mask.sum())


def still_flicker(rec: Any, src: Any, still: float = STILL) -> float:
    """Mean |rec_t - rec_{t-1}| where the source is still: the boiling of a picture that should not move, which
    is what a VJ calls flicker. It is motion the source does not have, so a smoother picture lowers it even when
    the motion ratio is below 1. 0.0 when the source has no still pixel."""
    total, n = still_flicker_sums(rec, src, still)
    return total / n if n else 0.0
