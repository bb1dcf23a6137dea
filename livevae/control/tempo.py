"""Tempo, pure: a MIDI clock's ticks and tap-tempo taps into beats per minute, as functions of their timestamps."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

PPQN = 24  # MIDI beat clock: 24 ticks per quarter note
BPM_RANGE = (20.0, 300.0)  # the "bpm" control's range


class ClockTempo:
    """MIDI clock ticks (0xF8, with their arrival times in seconds) -> bpm.

    A least-squares line through the last `window` ticks' times, so the jitter of single ticks (a USB interface,
    a busy OS) averages out instead of moving the tempo every tick. 48 ticks = two beats."""

    def __init__(self, window: int = 48) -> None:
        self.window = max(8, window)
        self._times: deque[float] = deque(maxlen=self.window)

    def tick(self, t: float) -> None:
        if self._times and t - self._times[-1] > 1.0:  # a clock that stopped and came back: start afresh
            self._times.clear()
        self._times.append(t)

    def reset(self) -> None:
        """MIDI start / stop / continue."""
        self._times.clear()

    def bpm(self) -> float | None:
        """The clock's tempo, or None before 12 ticks (half a beat) or for a clock outside 20..300 bpm."""
        n = len(self._times)
        if n < 12:
            return None
        t = np.fromiter(self._times, np.float64, n)
        k = np.arange(n, dtype=np.float64)
        slope = float(np.polyfit(k, t - t[0], 1)[0])  # seconds per tick
        if not math.isfinite(slope) or slope <= 0:
            return None
        bpm = 60.0 / (slope * PPQN)
        return bpm if BPM_RANGE[0] <= bpm <= BPM_RANGE[1] else None


class TapTempo:
    """Taps (their times in seconds) -> bpm: the mean interval of the last `keep` taps. A gap longer than
    `timeout` starts a new count, so a tap after a pause never averages with the old tempo."""

    def __init__(self, keep: int = 8, timeout: float = 2.0, min_taps: int = 4) -> None:
        self.keep, self.timeout, self.min_taps = keep, timeout, min_taps
        self._taps: deque[float] = deque(maxlen=keep)

    def tap(self, t: float) -> float | None:
        """Record a tap; returns the tempo once `min_taps` taps are in a row, else None."""
        if self._taps and (t - self._taps[-1] > self.timeout or t <= self._taps[-1]):
            self._taps.clear()
        self._taps.append(t)
        return self.bpm()

    def bpm(self) -> float | None:
        if len(self._taps) < self.min_taps:
            return None
        span = self._taps[-1] - self._taps[0]
        bpm = 60.0 * (len(self._taps) - 1) / span
        return min(max(bpm, BPM_RANGE[0]), BPM_RANGE[1])


def beats_between(t0: float, t1: float, bpm: float) -> float:
    """How many beats pass from t0 to t1 (seconds) at bpm: for beat-synced scene changes and LFO checks."""
    return (t1 - t0) * bpm / 60.0


class BeatPosition:
    """Where the lead source is in its bars: the beat count at a known instant, extrapolated at its tempo.

    A source writes anchor(t, beat, bpm) as it learns where it is (a MIDI clock at every tick, Link every poll, a
    tap at every tap); beat_at(now) reads it from any thread (the anchor is one tuple, swapped whole). Beat 0 is
    the first downbeat: MIDI start, the first tap of a count, Link's own beat 0. A source that goes quiet for
    `stale` seconds, or stops, has no position (None), so nothing waits forever on a clock that is not there."""

    def __init__(self, stale: float = 1.0, max_ahead: float | None = None) -> None:
        self.stale = stale
        self.max_ahead = max_ahead  # beats it may run past the last anchor (a MIDI clock: 2 ticks), None = no cap
        self._anchor: tuple[float, float, float] | None = None  # (t seconds, beat, bpm)

    def anchor(self, t: float, beat: float, bpm: float) -> None:
        self._anchor = (t, beat, bpm)

    def clear(self) -> None:
        """The source stopped: no position until it anchors again."""
        self._anchor = None

    def tempo(self) -> float | None:
        """The bpm the position runs at (its last anchor's), or None before the first anchor."""
        a = self._anchor
        return a[2] if a is not None else None

    def beat_at(self, now: float) -> float | None:
        """The beat count at `now` (seconds on the anchors' clock), or None with no fresh anchor."""
        a = self._anchor
        if a is None or now - a[0] > self.stale:
            return None
        t, beat, bpm = a
        ahead = max(0.0, now - t) * bpm / 60.0
        return beat + (ahead if self.max_ahead is None else min(ahead, self.max_ahead))


def next_line(beat: float, every: float) -> float:
    """The first beat count after `beat` that is a multiple of `every` (beats): the next beat (1), bar (4), or
    phrase (4 x bars). A position exactly on a line gives the one after it."""
    return (math.floor(beat / every + 1e-9) + 1) * every
