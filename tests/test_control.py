"""ControlState: targets, ranges, clamping, vectors, LFO settings, actions, listeners, snapshots, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from livevae.control.state import ControlError, ControlState, LfoSettings


def test_set_get_clamp_and_aliases() -> None:
    s = ControlState(zdim=8, n_pcs=3)
    s.set("mix", 0.5)
    s.set("/livevae/z/3", 2.0, origin="osc")
    s.set("gain/1", 100.0)  # clamped
    s.set("ema", 0.5)  # alias of smooth
    s.set("pc/2", -1.5)
    snap = s.snapshot()
    assert snap.mix == 0.5 and snap.offset[3] == 2.0 and snap.gain[1] == 4.0
    assert snap.smooth == 0.5 and snap.pc[2] == -1.5
    assert snap.get("z/3") == 2.0 and s.get("/livevae/gain/1") == 4.0
    assert s.last_input_time > 0 and s.last_origin == "osc"
    assert snap.values() == {"mix": 0.5, "smooth": 0.5, "z/3": 2.0, "gain/1": 4.0, "pc/2": -1.5}


@pytest.mark.parametrize(
    ("target", "value", "needle"),
    [
        ("bogus", 1.0, "'bogus'"),
        ("z/8", 1.0, "expected 0..7"),
        ("pc/3", 1.0, "expected 0..2"),
        ("lfo/9/rate", 1.0, "expected 0..7"),
        ("mix", float("nan"), "finite"),
        ("mix", "loud", "not a number"),
    ],
)
def test_errors_name_target_and_expectation(target: str, value: object, needle: str) -> None:
    s = ControlState(zdim=8, n_pcs=3)
    with pytest.raises(ControlError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        s.set(target, value)  # type: ignore[arg-type]


def test_set_many_is_all_or_nothing() -> None:
    s = ControlState(zdim=4)
    with pytest.raises(ControlError):
        s.set_many({"mix": 0.3, "nope": 1})
    assert s.snapshot().mix == 0.0


def test_vectors_and_anchor() -> None:
    s = ControlState(zdim=4, n_pcs=2)
    s.set_vector("z", [1, 2, 3, 4])
    s.set_vector("anchor", [0.5] * 4)
    snap = s.snapshot()
    assert snap.offset.tolist() == [1, 2, 3, 4]
    assert snap.anchor is not None and snap.anchor.tolist() == [0.5] * 4
    with pytest.raises(ControlError, match="at most 4"):
        s.set_vector("z", [0] * 5)
    with pytest.raises(ControlError, match="expected 4"):
        s.set_vector("anchor", [0] * 3)
    with pytest.raises(ValueError):
        snap.offset[0] = 9  # snapshots are read-only


def test_lfo_settings() -> None:
    s = ControlState(zdim=4, n_pcs=2, n_lfos=2)
    s.set("lfo/0/rate", 2.0)
    s.set("lfo/0/target", 3)  # an int means z/3
    s.set_text("lfo/1/target", "/livevae/pc/1")
    s.set("lfo/1/shape", 1)
    s.set_lfo(1, LfoSettings(rate=1.0, depth=0.5, target="mix", shape="walk", sync=True))
    lf = s.snapshot().lfos
    assert lf[0].rate == 2.0 and lf[0].target == "z/3"
    assert lf[1] == LfoSettings(rate=1.0, depth=0.5, target="mix", shape="walk", sync=True)
    with pytest.raises(ControlError, match="shape"):
        s.set_text("lfo/0/shape", "square-ish")
    with pytest.raises(ControlError, match="LFO cannot"):
        s.set_text("lfo/0/target", "lfo/1/rate")


def test_actions_queue_and_bound() -> None:
    s = ControlState(zdim=4)
    s.post("scene.recall", "a")
    s.post("record", None)
    assert s.drain_actions() == [("scene.recall", "a"), ("record", None)]
    assert s.drain_actions() == []
    with pytest.raises(ControlError, match="unknown"):
        s.post("explode")
    for i in range(1000):
        s.post("record", i % 2 == 0)
    assert len(s.drain_actions()) == 256
    for i in range(1000):
        s.post("source", i)
    assert s.drain_actions() == [("source", 999)]  # switches coalesce: only the last is opened


def test_listeners_fire_on_change_only_and_survive_errors() -> None:
    s = ControlState(zdim=4)
    seen: list[tuple[str, float, str]] = []
    s.add_listener(lambda t, v, o: seen.append((t, v, o)))

    def broken(t: str, v: float, o: str) -> None:
        raise RuntimeError("feedback socket gone")

    s.add_listener(broken)
    s.set("mix", 0.25, origin="midi")
    s.set("mix", 0.25, origin="midi")  # no change -> no callback
    s.set("noise", 0.0)  # default -> no change
    assert seen == [("mix", 0.25, "midi")]


def test_snapshot_cached_until_change_and_threads() -> None:
    s = ControlState(zdim=16)
    a = s.snapshot()
    assert s.snapshot() is a
    s.set("z/0", 1.0)
    assert s.snapshot() is not a

    def writer(k: int) -> None:
        for i in range(500):
            s.set(f"z/{k}", (i % 10) / 10)

    ts = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for _ in range(200):
        snap = s.snapshot()
        assert np.all(np.isfinite(snap.offset))
    for t in ts:
        t.join()
    assert s.snapshot().offset[:4].tolist() == pytest.approx([0.9] * 4)
    assert len(s.targets()) == 6 + 7 + 16 * 2 + 8 * 4  # scalars, the film mirror's 7, z and gain, 8 LFOs


def test_defaults_cover_every_target() -> None:
    s = ControlState(zdim=3, n_pcs=1, n_lfos=1)
    d = s.defaults()
    assert set(d) == set(s.targets())
    assert d["gain/2"] == 1.0 and d["bpm"] == 120.0 and d["lfo/0/rate"] == 0.25
    s.set_many(d)  # setting every default is a no-op
    assert s.snapshot().values() == {}


def test_reset_tells_listeners_each_control_that_moved() -> None:
    """/livevae/reset moved controls without a word to feedback: the tablet's faders stayed where they were."""
    st = ControlState(zdim=4, n_lfos=2)
    st.set("mix", 0.5, origin="osc")
    st.set("z/2", 1.25, origin="midi:cc")
    st.set("lfo/1/depth", 0.3, origin="show")
    heard: list[tuple[str, float, str]] = []
    st.add_listener(lambda t, v, o: heard.append((t, v, o)))
    st.reset(origin="osc:/livevae/reset")
    assert sorted(heard) == [
        ("lfo/1/depth", 0.0, "osc:/livevae/reset"),
        ("mix", 0.0, "osc:/livevae/reset"),
        ("z/2", 0.0, "osc:/livevae/reset"),
    ]
    heard.clear()
    st.reset()  # nothing left to move: nothing to hear
    assert heard == []
