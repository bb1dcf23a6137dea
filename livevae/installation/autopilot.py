"""The autopilot, pure: drift and LFOs on z, hand-over to and from a performer, scene order; functions of t."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from livevae.control.lfo import wave
from livevae.installation.section import AutopilotLfo, InstallationError

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _hash01(seed: int, dims: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Uniform numbers in [-1, 1] from (seed, dim, k), splitmix64-style; the same on every platform."""
    with np.errstate(over="ignore"):
        x = (
            np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
            + dims.astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)
            + k.astype(np.int64).astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
        )
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53) * 2.0 - 1.0


def _noise(x: float, dims: np.ndarray, seed: int) -> np.ndarray:
    k = math.floor(x)
    f = x - k
    u = f * f * (3.0 - 2.0 * f)  # smoothstep: the walk has no corners
    kk = np.full(dims.shape, k, np.int64)
    a, b = _hash01(seed, dims, kk), _hash01(seed, dims, kk + 1)
    return a + (b - a) * u


def drift(t: float, zdim: int, amplitude: float, period: float, seed: int = 0) -> np.ndarray:
    """The autopilot's latent drift at show time t: float32 [zdim], a smooth seeded random walk per dimension
    (three octaves of value noise, each dimension with its own phase), bounded by `amplitude` latent units and
    taking about `period` seconds per step. Pure: the same (t, seed) gives the same offset, so renders repeat."""
    if amplitude == 0.0:
        return np.zeros(zdim, np.float32)
    dims = np.arange(zdim)
    x = t / period
    v = _noise(x, dims, seed) + 0.5 * _noise(2 * x + 0.37, dims, seed + 1) + 0.25 * _noise(4 * x + 0.71, dims, seed + 2)
    return (np.clip(v / 1.75, -1.0, 1.0) * amplitude).astype(np.float32)


def autopilot_wanted(now: float, last_input: float, idle_timeout: float) -> bool:
    """Whether the autopilot should drive at monotonic time `now`: nobody has played yet (last_input 0), or
    nobody for idle_timeout seconds."""
    return last_input <= 0.0 or now - last_input >= idle_timeout


def step_weight(w: float, wanted: bool, dt: float, fade_in: float, release: float) -> float:
    """The autopilot's weight after dt seconds: toward 1 over fade_in s when wanted, toward 0 over release s."""
    dt = max(0.0, dt)
    if wanted:
        return 1.0 if fade_in <= 0 else min(1.0, w + dt / fade_in)
    return 0.0 if release <= 0 else max(0.0, w - dt / release)


def scene_at(k: int, scenes: Sequence[str], order: str = "cycle", seed: int = 0) -> str:
    """The k-th scene the autopilot recalls: in turn, or shuffled anew each round (never the same one twice in a
    row across rounds when there are at least two)."""
    n = len(scenes)
    if n == 0:
        raise InstallationError("autopilot: no scenes to cycle")
    if order == "cycle" or n <= 2:  # two scenes never repeating is a cycle
        return scenes[k % n]
    rnd, i = divmod(k, n)
    perm = _round_perm(rnd, n, seed)
    # n >= 3: the swap below moves only the first two entries, so a round's last entry is its raw permutation's
    if rnd > 0 and perm[0] == _round_perm(rnd - 1, n, seed)[-1]:
        perm[0], perm[1] = perm[1], perm[0]
    return scenes[perm[i]]


def _round_perm(rnd: int, n: int, seed: int) -> list[int]:
    return [int(p) for p in np.random.default_rng([seed, rnd]).permutation(n)]


def lfo_offset(lfos: Sequence[AutopilotLfo], t: float, zdim: int, seed: int = 0) -> np.ndarray:
    """Sum of the autopilot's LFOs at show time t: float32 [zdim]; dimensions past zdim are ignored."""
    out = np.zeros(zdim, np.float32)
    for n, lf in enumerate(lfos):
        if lf.dim < zdim and lf.depth:
            out[lf.dim] += lf.depth * wave(lf.shape, lf.rate * t + lf.phase, seed + 7919 * n)
    return out
