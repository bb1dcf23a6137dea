"""LFO waves, tempo sync, deterministic random walks, phase integration and application to controls."""

from __future__ import annotations

import numpy as np
import pytest

from livevae.control.lfo import LfoClock, apply_lfos, cycles_at, lfo_value, wave
from livevae.control.state import ControlError, ControlState, LfoSettings


def test_sine_and_triangle_shapes() -> None:
    for c, s, tri in [(0.0, 0.0, 0.0), (0.25, 1.0, 1.0), (0.5, 0.0, 0.0), (0.75, -1.0, -1.0), (1.0, 0.0, 0.0)]:
        assert wave("sine", c) == pytest.approx(s, abs=1e-12)
        assert wave("triangle", c) == pytest.approx(tri, abs=1e-12)
    assert wave("triangle", 0.125) == pytest.approx(0.5)
    with pytest.raises(ControlError, match="expected one of sine"):
        wave("square", 0.0)


def test_walk_is_deterministic_bounded_smooth_and_seeded() -> None:
    xs = np.linspace(0, 50, 5001)
    a = np.array([wave("walk", x, seed=3) for x in xs])
    b = np.array([wave("walk", x, seed=3) for x in xs])
    c = np.array([wave("walk", x, seed=4) for x in xs])
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.1
    assert np.abs(np.diff(a)).max() < 0.05  # continuous: no jumps between 0.01-cycle steps


def test_tempo_sync_and_rate() -> None:
    free = LfoSettings(rate=2.0)
    synced = LfoSettings(rate=0.25, sync=True)  # one cycle per 4/4 bar
    assert cycles_at(free, 1.5, bpm=90) == pytest.approx(3.0)
    assert cycles_at(synced, 2.0, bpm=120) == pytest.approx(1.0)  # 4 beats at 120 bpm = 2 s
    lf = LfoSettings(rate=1, depth=2.0, target="mix", phase=0.25)
    assert lfo_value(lf, 0.0) == pytest.approx(2.0)
    assert lfo_value(LfoSettings(depth=2.0), 0.3) == 0.0  # no target: off


def test_clock_matches_pure_phase_and_bends_on_rate_change() -> None:
    lf = LfoSettings(rate=0.5, target="mix", depth=1)
    clock = LfoClock()
    for i in range(50):
        t = i / 25
        (c,) = clock.advance([lf], 120, t)
        assert c == pytest.approx(cycles_at(lf, t, 120))
    fast = LfoSettings(rate=4.0, target="mix", depth=1)
    (c1,) = clock.advance([fast], 120, 50 / 25)
    # the phase moves continuously (by the mean rate over one step), never jumps to 4 * t
    assert c1 == pytest.approx(0.5 * 49 / 25 + 0.5 * (0.5 + 4.0) / 25)


def test_apply_lfos_adds_to_targets_and_clamps() -> None:
    s = ControlState(zdim=4, n_pcs=2, n_lfos=3)
    s.set("mix", 0.9)
    s.set_lfo(0, LfoSettings(rate=1, depth=0.5, target="mix"))
    s.set_lfo(1, LfoSettings(rate=1, depth=1.5, target="pc/1"))
    s.set_lfo(2, LfoSettings(rate=1, depth=0.5, target="pc/1", shape="triangle"))
    snap = s.snapshot()
    out = apply_lfos(snap, 0.25)  # sine and triangle both at +1
    assert out.mix == 1.0  # 0.9 + 0.5 clamped to the range
    assert out.pc[1] == pytest.approx(2.0)
    assert snap.pc[1] == 0.0  # the snapshot itself is untouched
    assert apply_lfos(ControlState(zdim=4).snapshot(), 1.0) is not None
