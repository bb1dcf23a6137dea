"""LFOs: sine, triangle and random-walk waves, deterministic from a seed and the show clock t, tempo-syncable."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from livevae.control.state import (
    LFO_SHAPES,
    SCALARS,
    VECTORS,
    ControlError,
    ControlSnapshot,
    LfoSettings,
    scalar_attr,
)

_MASK = (1 << 64) - 1


def _hash01(seed: int, k: int) -> float:
    """A uniform number in [-1, 1] from (seed, k): splitmix64, so walks repeat on every platform and run."""
    x = (seed * 0x9E3779B97F4A7C15 + k * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK
    x ^= x >> 31
    return (x / _MASK) * 2.0 - 1.0


def _value_noise(x: float, seed: int) -> float:
    """Smooth random values at integer x, eased between them (C1-continuous)."""
    k = math.floor(x)
    f = x - k
    a, b = _hash01(seed, k), _hash01(seed, k + 1)
    u = f * f * (3.0 - 2.0 * f)
    return a + (b - a) * u


def wave(shape: str, cycles: float, seed: int = 0) -> float:
    """The wave at a phase given in cycles, in [-1, 1]. sine and triangle start at 0 going up; "walk" is a
    smooth random walk (three octaves of value noise, 1/f amplitudes) that wanders about one step per cycle."""
    if shape == "sine":
        return math.sin(2.0 * math.pi * cycles)
    if shape == "triangle":
        return 1.0 - 4.0 * abs((cycles + 0.25) % 1.0 - 0.5)
    if shape == "walk":
        v = (
            _value_noise(cycles, seed)
            + 0.5 * _value_noise(2.0 * cycles, seed + 1)
            + 0.25 * _value_noise(4.0 * cycles, seed + 2)
        )
        return max(-1.0, min(1.0, v / 1.75))
    raise ControlError(f"LFO shape {shape!r}: unknown; expected one of {', '.join(LFO_SHAPES)}")


def frequency(lfo: LfoSettings, bpm: float) -> float:
    """Cycles per second: rate in Hz, or with sync, rate cycles per beat at bpm (0.25 = one cycle per 4/4 bar)."""
    return lfo.rate * (bpm / 60.0 if lfo.sync else 1.0)


def cycles_at(lfo: LfoSettings, t: float, bpm: float) -> float:
    """Phase in cycles at show time t for constant settings (the phase offset not included)."""
    return frequency(lfo, bpm) * t


def lfo_value(lfo: LfoSettings, cycles: float, seed: int = 0) -> float:
    """What LFO adds to its target at a phase: depth * wave(shape, cycles + phase)."""
    if not lfo.target or lfo.depth == 0.0:
        return 0.0
    return lfo.depth * wave(lfo.shape, cycles + lfo.phase, seed)


class LfoClock:
    """Integrates each LFO's phase across frames, so changing a rate live bends the wave instead of jumping.

    For constant settings the phase equals cycles_at(lfo, t, bpm), so headless renders (t = index / fps) repeat.
    """

    def __init__(self) -> None:
        self._t: float | None = None
        self._cycles: list[float] = []
        self._freq: list[float] = []

    def advance(self, lfos: Sequence[LfoSettings], bpm: float, t: float) -> list[float]:
        """Phases (cycles, without the phase offset) of each LFO at show time t."""
        freqs = [frequency(lf, bpm) for lf in lfos]
        if self._t is None or len(self._cycles) != len(lfos) or t < self._t:
            self._cycles = [f * t for f in freqs]  # start (or a clock jump back) from the pure phase
        else:
            dt = t - self._t
            # trapezoid: a rate ramp moves the phase by the mean frequency over the step
            self._cycles = [c + 0.5 * (f0 + f1) * dt for c, f0, f1 in zip(self._cycles, self._freq, freqs, strict=True)]
        self._t, self._freq = t, freqs
        return list(self._cycles)

    def reset(self) -> None:
        self._t = None


def lfo_offsets(snap: ControlSnapshot, cycles: Sequence[float], seed: int = 0) -> dict[str, float]:
    """target -> summed LFO contribution; several LFOs may share a target."""
    out: dict[str, float] = {}
    for n, (lf, c) in enumerate(zip(snap.lfos, cycles, strict=False)):
        v = lfo_value(lf, c, seed + 7919 * n)
        if v:
            out[lf.target] = out.get(lf.target, 0.0) + v
    return out


def apply_lfos(
    snap: ControlSnapshot, t: float, cycles: Sequence[float] | None = None, seed: int = 0
) -> ControlSnapshot:
    """The snapshot with every LFO added to its target, clamped to the target's range. Pure: cycles default to
    the constant-settings phase at t. Returns snap itself when no LFO is active."""
    if cycles is None:
        cycles = [cycles_at(lf, t, snap.bpm) for lf in snap.lfos]
    offs = lfo_offsets(snap, cycles, seed)
    if not offs:
        return snap
    scal: dict[str, object] = {}
    arrays: dict[str, np.ndarray] = {}
    for target, d in offs.items():
        if target in SCALARS:
            lo, hi, _ = SCALARS[target]
            base = float(getattr(snap, scalar_attr(target)))
            v = min(max(base + d, lo), hi)
            scal[scalar_attr(target)] = v >= 0.5 if target == "freeze" else v
            continue
        prefix, _, idx = target.partition("/")
        if prefix in VECTORS and idx.isdigit():
            field = {"z": "offset", "gain": "gain", "pc": "pc"}[prefix]
            if field not in arrays:
                arrays[field] = getattr(snap, field).copy()
            i = int(idx)
            if i < arrays[field].size:
                lo, hi, _ = VECTORS[prefix]
                arrays[field][i] = min(max(float(arrays[field][i]) + d, lo), hi)
    return dataclasses.replace(snap, **scal, **arrays)  # type: ignore[arg-type]
