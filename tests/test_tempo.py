"""Tempo: a MIDI clock through a mido socket port moves a synced LFO at its bpm; tap tempo; Ableton Link."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from livevae.control.lfo import LfoClock
from livevae.control.state import ControlState, LfoSettings
from livevae.control.tempo import ClockTempo, TapTempo
from livevae.controllers.tempo import TempoController, TempoError, TempoSection, from_show
from tests.helpers.midi import connect_when_listening, free_port


def synced_lfo_bpm(state: ControlState, seconds: float = 4.0, fps: float = 30.0) -> float:
    """Beats per minute of a one-cycle-per-beat synced LFO, measured by running its clock over show time."""
    lfo = LfoSettings(rate=1.0, depth=1.0, sync=True, target="mix")
    clock = LfoClock()
    bpm = state.get("bpm")
    n = int(seconds * fps)
    cycles = [clock.advance([lfo], bpm, i / fps)[0] for i in range(n + 1)]
    return (cycles[-1] - cycles[0]) / seconds * 60.0


def test_a_128_bpm_midi_clock_on_a_mido_socket_port_moves_a_synced_lfo_at_128_bpm() -> None:
    from mido import Message

    port = free_port()
    state = ControlState(8)
    tempo = TempoController(state, TempoSection(lead="midi", midi_port=f"listen:127.0.0.1:{port}"))
    tempo.start(None)
    try:
        out = connect_when_listening(port)
        period = 60.0 / (128 * 24)  # 19.53 ms between ticks at 128 bpm
        out.send(Message("start"))
        t0 = time.perf_counter()
        for k in range(24 * 5):  # five beats
            while time.perf_counter() < t0 + k * period:
                time.sleep(0.0005)
            out.send(Message("clock"))
        time.sleep(0.2)
        out.close()
    finally:
        tempo.stop()
    assert tempo.ticks == 120
    assert state.get("bpm") == pytest.approx(128, rel=0.01)
    assert synced_lfo_bpm(state) == pytest.approx(128, rel=0.01)


def test_tap_tempo_is_within_2_percent_after_four_taps() -> None:
    state = ControlState(8)
    tempo = TempoController(state)  # lead = "tap"
    t0 = 100.0
    got = [tempo.tap(t0 + i * 60 / 96) for i in range(4)]  # taps at 96 bpm
    assert got[:3] == [None, None, None]
    assert got[3] == pytest.approx(96, rel=0.02)
    assert state.get("bpm") == pytest.approx(96, rel=0.02)
    assert synced_lfo_bpm(state) == pytest.approx(96, rel=0.02)


def test_human_taps_with_jitter_stay_within_2_percent() -> None:
    import random

    rnd = random.Random(3)
    taps = TapTempo()
    t, bpm = 0.0, None
    for _ in range(4):
        bpm = taps.tap(t)
        t += 60 / 120 + rnd.uniform(-0.008, 0.008)  # +-8 ms, a steady hand
    assert bpm == pytest.approx(120, rel=0.02)


def test_a_pause_starts_a_new_tap_count() -> None:
    taps = TapTempo(timeout=2.0)
    for i in range(4):
        taps.tap(i * 0.5)
    assert taps.bpm() == pytest.approx(120)
    assert taps.tap(10.0) is None  # 8.5 s later: the old tempo is not averaged in


def test_a_clock_leading_ignores_taps_and_the_tap_action_and_osc_tap_reach_the_controller() -> None:
    state = ControlState(8)
    tempo = TempoController(state, TempoSection(lead="midi", midi_port="tcp:127.0.0.1:9"))
    for i in range(4):
        tempo.tap(i * 0.25)  # 240 bpm of taps
    assert state.get("bpm") == 120.0  # the clock leads: taps do not move bpm
    assert tempo.handle_action("tap", None) is True and tempo.handle_action("record", None) is False


def test_clock_tempo_needs_half_a_beat_and_forgets_a_stopped_clock() -> None:
    c = ClockTempo()
    for k in range(11):
        c.tick(k * 0.02)
    assert c.bpm() is None
    c.tick(11 * 0.02)
    assert c.bpm() == pytest.approx(125.0)
    c.tick(5.0)  # the clock stopped for seconds: start afresh
    assert c.bpm() is None


def test_tempo_section_errors_name_the_key() -> None:
    with pytest.raises(TempoError, match=r"tempo.lead"):
        from_show({"lead": "metronome"}, ControlState(8), Path("show.toml"))
    with pytest.raises(TempoError, match=r"tempo.midi_port"):
        from_show({"lead": "midi", "midi_port": "tcp:host:99999"}, ControlState(8), Path("show.toml"))


def test_ableton_link_tempo_reaches_the_bpm_control() -> None:
    aalink = pytest.importorskip("aalink", reason="Ableton Link needs the `link` extra (aalink)")
    import asyncio
    import threading

    state = ControlState(8)
    tempo = TempoController(state, TempoSection(lead="link"))
    tempo.start(None)
    peer_loop = asyncio.new_event_loop()
    stop = threading.Event()
    peers: list[int] = []

    async def peer() -> None:
        link = aalink.Link(128)
        link.enabled = True
        deadline = time.monotonic() + 4
        while not stop.is_set() and time.monotonic() < deadline:
            peers.append(int(link.num_peers))
            link.tempo = 128.0
            await asyncio.sleep(0.05)
        link.enabled = False

    th = threading.Thread(target=lambda: peer_loop.run_until_complete(peer()), daemon=True)
    th.start()
    deadline = time.monotonic() + 4
    while abs(state.get("bpm") - 128) > 0.01 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    th.join(5)
    tempo.stop()
    if not any(peers):
        pytest.skip("no Ableton Link peer seen within 4 s (Link discovers peers by multicast, not routed here)")
    assert state.get("bpm") == pytest.approx(128, abs=0.01)


def test_beat_position_extrapolates_caps_goes_stale_and_finds_the_next_line() -> None:
    from livevae.control.tempo import BeatPosition, next_line

    pos = BeatPosition(stale=0.5, max_ahead=2 / 24)
    assert pos.beat_at(0.0) is None and pos.tempo() is None
    pos.anchor(10.0, 4.0, 120.0)
    assert pos.beat_at(10.01) == pytest.approx(4.02)  # 120 bpm: 2 beats a second
    assert pos.beat_at(10.2) == pytest.approx(4 + 2 / 24)  # a clock never runs more than two ticks ahead
    assert pos.beat_at(10.6) is None  # nothing for 0.5 s: no position, nothing waits on it
    pos.clear()
    assert pos.beat_at(10.0) is None
    assert next_line(3.2, 4) == 4 and next_line(4.0, 4) == 8 and next_line(-0.5, 4) == 0 and next_line(5.5, 1) == 6


def test_midi_start_songpos_stop_and_continue_move_the_bar_position() -> None:
    from mido import Message

    tempo = TempoController(ControlState(8), TempoSection(lead="midi", beats_per_bar=3))
    assert tempo.services() == {"tempo": tempo} and tempo.beats_per_bar == 3
    period = 60.0 / (120 * 24)
    for k in range(30):  # joined mid-song: counted from the first tick heard
        tempo._on_midi(Message("clock"), 1.0 + k * period)
    assert tempo.beat_at(1.0 + 29 * period) == pytest.approx(29 / 24)
    tempo._on_midi(Message("start"), 2.0)  # the next tick is beat 0
    tempo._on_midi(Message("clock"), 2.01)
    assert tempo.beat_at(2.01) == 0.0
    tempo._on_midi(Message("songpos", pos=16), 2.02)  # 16 sixteenths: beat 4
    tempo._on_midi(Message("clock"), 2.03)
    assert tempo.beat_at(2.03) == 4.0
    tempo._on_midi(Message("stop"), 2.04)
    tempo._on_midi(Message("clock"), 2.05)  # many clocks keep ticking while stopped
    assert tempo.beat_at(2.05) is None
    tempo._on_midi(Message("continue"), 2.06)
    tempo._on_midi(Message("clock"), 2.07)
    assert tempo.beat_at(2.07) == pytest.approx(4 + 1 / 24)  # on from where it stopped


def test_beats_per_bar_is_checked_with_a_one_line_error() -> None:
    with pytest.raises(TempoError, match=r"tempo.beats_per_bar: Input should be less than or equal to 16 \(got 17\)"):
        from_show({"beats_per_bar": 17}, ControlState(8), Path("show.toml"))
