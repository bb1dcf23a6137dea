"""The mirror's arithmetic, pure: weights of the k nearest film moments, their blended latent, the film played on."""

from __future__ import annotations

import numpy as np


def neighbour_weights(d2: np.ndarray, soft: float) -> np.ndarray:
    """Squared distances [B, k] (nearest first) -> weights [B, k], each row summing to 1.

    w_j ~ exp(-(d_j - d_0) / (soft * (d_{k-1} - d_0))): the temperature is relative to the spread of the k
    distances, so one fader behaves alike in any film's latent scale. soft 0 = the nearest moment only.
    """
    d = np.sqrt(np.maximum(np.atleast_2d(d2).astype(np.float64), 0.0))  # [B, k]
    spread = d[:, -1:] - d[:, :1]  # [B, 1]
    w = np.zeros_like(d)
    if soft <= 0.0 or d.shape[1] == 1:
        w[:, 0] = 1.0
        return w
    tau = soft * spread
    flat = tau[:, 0] <= 1e-12  # all k at the same distance: equal weights
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.exp(-(d - d[:, :1]) / np.where(flat[:, None], 1.0, tau))
    w[flat] = 1.0
    return w / w.sum(axis=1, keepdims=True)


def blend_target(latents: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Index latents [N, zdim] (any float dtype), rows int [B, k], weights [B, k] -> float32 [B, zdim]."""
    picked = latents[rows].astype(np.float32)  # [B, k, zdim]
    return np.einsum("bk,bkd->bd", weights.astype(np.float32), picked)


def mirror_blend(z: np.ndarray, target: np.ndarray, amount: float) -> np.ndarray:
    """(1 - a) z + a target, float32 [B, zdim]; a = 1 gives `target` exactly (0 * z is 0 for finite z)."""
    a = np.float32(min(max(amount, 0.0), 1.0))
    if a >= 1.0:
        return np.array(target, np.float32, copy=True)
    return ((np.float32(1.0) - a) * z + a * target).astype(np.float32)


def played_on(row0: int, t0: float, t: float, fps: float, n: int, rate: float = 1.0) -> int:
    """The index row the film has reached at show time t, having left row0 at t0 and played at fps * rate
    (wrapping at the end, so a held moment loops the film)."""
    # + 1e-6: a clock stepping by exactly 1/fps must reach the next frame, not fall short of it by a rounding
    return int((row0 + int(np.floor(max(t - t0, 0.0) * fps * rate + 1e-6))) % max(n, 1))


def compose_film(out: np.ndarray, film: np.ndarray, amount: float, split: bool) -> np.ndarray:
    """The output with the film's own frame: uint8 [H, W, 3] each (same size).

    split: the left half is the reconstruction, the right half the film frame; else a cross-fade by amount.
    """
    if split:
        res = out.copy()
        half = out.shape[1] // 2
        res[:, half:] = film[:, half:]
        return res
    a = min(max(amount, 0.0), 1.0)
    if a >= 1.0:
        return np.ascontiguousarray(film)
    mixed = (1.0 - a) * out.astype(np.float32) + a * film.astype(np.float32)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
