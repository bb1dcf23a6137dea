"""MIDI: mappings and learn as pure functions of mido messages, the show section, learn files, socket ports."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mido
import pytest
from mido import sockets

from livevae.control.state import ControlState
from livevae.controllers.midi import (
    Learned,
    MidiController,
    MidiError,
    MidiMapper,
    MidiMapping,
    PortSpec,
    PostAction,
    SetControl,
    from_show,
    learn_path,
    load_learned,
    message_for,
    relative_delta,
    save_learned,
    scale,
    unscale,
)


def cc(n: int, v: int, ch: int = 0) -> mido.Message:
    return mido.Message("control_change", channel=ch, control=n, value=v)


def note(n: int, vel: int, ch: int = 0) -> mido.Message:
    return mido.Message("note_on", channel=ch, note=n, velocity=vel)


def mapper(*maps: MidiMapping, state: ControlState | None = None) -> tuple[MidiMapper, ControlState]:
    st = state or ControlState(zdim=8, n_pcs=4)
    return MidiMapper(maps, st.check_target, st.get), st


def sets(effects: Sequence[object]) -> list[tuple[str, float]]:
    return [(e.target, round(e.value, 5)) for e in effects if isinstance(e, SetControl)]


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def drain(port: sockets.SocketPort, got: list[mido.Message]) -> list[mido.Message]:
    got.extend(port.iter_pending())
    return got


def hang_up(port: sockets.SocketPort) -> None:
    """Close a socket port the way a dying process does (mido's close() leaves the connection open while its
    file objects live)."""
    port._socket.shutdown(socket.SHUT_RDWR)
    port.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- pure mapping ------------------------------------------------------------------------------------------------
def test_cc_7bit_range_and_target_range() -> None:
    m, _ = mapper(MidiMapping("cc", 7, target="pc/0", range=(-2.0, 2.0)), MidiMapping("cc", 8, target="mix"))
    assert sets(m.handle(cc(7, 0))) == [("pc/0", -2.0)]
    assert sets(m.handle(cc(7, 127))) == [("pc/0", 2.0)]
    assert sets(m.handle(cc(8, 127))) == [("mix", 1.0)]  # no range: the target's own (mix 0..1)
    assert sets(m.handle(cc(9, 127))) == []  # unmapped
    assert m.handle(mido.Message("program_change", program=3)) == []


def test_channel_and_port_filters() -> None:
    m, _ = mapper(MidiMapping("cc", 1, channel=2, target="mix"), MidiMapping("cc", 1, port="nano", target="noise"))
    assert sets(m.handle(cc(1, 127, ch=0), port="Launch")) == []
    assert sets(m.handle(cc(1, 127, ch=2), port="Launch")) == [("mix", 1.0)]
    assert sets(m.handle(cc(1, 127, ch=5), port="nanoKONTROL2 MIDI 1")) == [("noise", 4.0)]


def test_curves() -> None:
    m, _ = mapper(
        MidiMapping("cc", 1, target="mix", curve="exp"),
        MidiMapping("cc", 2, target="mix", curve="log"),
        MidiMapping("cc", 3, target="freeze", curve="toggle"),
    )
    half = 64 / 127
    assert sets(m.handle(cc(1, 64))) == [("mix", round(half * half, 5))]
    assert sets(m.handle(cc(2, 64))) == [("mix", round(half**0.5, 5))]
    assert sets(m.handle(cc(3, 63))) == [("freeze", 0.0)]
    assert sets(m.handle(cc(3, 64))) == [("freeze", 1.0)]
    for c in ("linear", "exp", "log", "smooth"):  # feedback and relative encoders rely on the inverse
        assert unscale(scale(0.3, c, (-1, 3)), c, (-1, 3)) == pytest.approx(0.3, abs=1e-6)


def test_14bit_pair() -> None:
    m, _ = mapper(MidiMapping("cc14", 1, target="pc/1", range=(0.0, 1.0)))
    m.handle(cc(1, 64))
    eff = m.handle(cc(33, 0))
    assert sets(eff) == [("pc/1", round((64 << 7) / 16383, 5))]
    eff = m.handle(cc(33, 127))  # LSB alone refines the value: 14-bit resolution
    assert sets(eff) == [("pc/1", round(((64 << 7) | 127) / 16383, 5))]
    m.handle(cc(1, 127))
    assert sets(m.handle(cc(33, 127))) == [("pc/1", 1.0)]


def test_relative_encoder_codings() -> None:
    assert [relative_delta(v, "twos") for v in (1, 3, 127, 125, 64)] == [1, 3, -1, -3, -64]
    assert [relative_delta(v, "offset") for v in (65, 67, 63, 61, 64)] == [1, 3, -1, -3, 0]
    assert [relative_delta(v, "signmag") for v in (1, 3, 65, 67)] == [1, 3, -1, -3]
    with pytest.raises(MidiError, match="relative mode"):
        relative_delta(1, "bogus")


@pytest.mark.parametrize(("mode", "up", "down"), [("twos", 1, 127), ("offset", 65, 63), ("signmag", 1, 65)])
def test_relative_encoder_moves_from_current_value(mode: str, up: int, down: int) -> None:
    m, st = mapper(MidiMapping("cc", 20, target="mix", mode=mode, step=0.1))
    st.set("mix", 0.5)
    (e,) = m.handle(cc(20, up))
    assert isinstance(e, SetControl) and e.value == pytest.approx(0.6)
    st.set("mix", e.value)
    (e,) = m.handle(cc(20, down))
    assert e.value == pytest.approx(0.5)
    st.set("mix", 0.95)
    (e,) = m.handle(cc(20, up))
    assert e.value == pytest.approx(1.0)  # clamped at the range's end


def test_notes_gate_toggle_trigger_and_actions() -> None:
    m, st = mapper(
        MidiMapping("note", 36, target="noise", mode="gate", range=(0.0, 2.0)),
        MidiMapping("note", 37, target="freeze", mode="toggle"),
        MidiMapping("note", 38, target="mix", mode="trigger"),
        MidiMapping("note", 40, action="scene.recall", arg="intro"),
        MidiMapping("cc", 64, action="record"),
    )
    assert sets(m.handle(note(36, 127))) == [("noise", 2.0)]  # velocity is the value
    assert sets(m.handle(note(36, 0))) == [("noise", 0.0)]  # note on with velocity 0 = release
    assert sets(m.handle(mido.Message("note_off", note=36))) == [("noise", 0.0)]
    assert sets(m.handle(note(37, 10))) == [("freeze", 1.0)]
    st.set("freeze", 1.0)
    assert sets(m.handle(mido.Message("note_off", note=37))) == []
    assert sets(m.handle(note(37, 10))) == [("freeze", 0.0)]
    assert sets(m.handle(note(38, 64))) == [("mix", round(64 / 127, 5))]
    assert sets(m.handle(mido.Message("note_off", note=38))) == []
    assert m.handle(note(40, 100)) == [PostAction("scene.recall", "intro", "midi:note40")]
    assert m.handle(note(40, 0)) == []
    # a button CC fires once per press (the rising edge), not on release or repeats
    assert [type(e) for e in m.handle(cc(64, 127))] == [PostAction]
    assert m.handle(cc(64, 127)) == [] and m.handle(cc(64, 0)) == []
    assert len(m.handle(cc(64, 127))) == 1


def test_pitch_bend() -> None:
    m, _ = mapper(MidiMapping("pitchbend", target="z/3", range=(-1.0, 1.0)))
    assert sets(m.handle(mido.Message("pitchwheel", pitch=-8192))) == [("z/3", -1.0)]
    assert sets(m.handle(mido.Message("pitchwheel", pitch=8191))) == [("z/3", 1.0)]
    (e,) = m.handle(mido.Message("pitchwheel", pitch=0))
    assert isinstance(e, SetControl) and e.value == pytest.approx(0.0, abs=1e-3)


def test_feedback_messages_invert_the_mapping() -> None:
    assert message_for(MidiMapping("cc", 7, channel=1), 1.0) == [cc(7, 127, ch=1)]
    assert message_for(MidiMapping("cc14", 2), 0.5) == [cc(2, 64), cc(34, 0)]
    assert message_for(MidiMapping("note", 36), 1.0)[0].velocity == 127
    assert message_for(MidiMapping("note", 36), 0.0)[0].type == "note_off"
    assert message_for(MidiMapping("pitchbend"), 0.0)[0].pitch == -8192


# --- learn -------------------------------------------------------------------------------------------------------
def test_learn_binds_next_cc_and_overrides_show_mapping() -> None:
    m, _ = mapper(MidiMapping("cc", 5, target="noise"))
    m.arm("pc/2", now=0.0)
    eff = m.handle(cc(5, 127, ch=3), now=0.1)
    learned = [e for e in eff if isinstance(e, Learned)]
    assert learned[0].mapping == MidiMapping("cc", 5, 3, target="pc/2")
    assert sets(eff) == [("pc/2", 6.0)]  # the move that bound it also sets it
    assert m.armed is None
    assert sets(m.handle(cc(5, 0, ch=3))) == [("pc/2", -6.0)]  # learned replaces the show's cc5 on that channel
    assert sets(m.handle(cc(5, 0, ch=0))) == [("noise", 0.0)]  # other channels keep the show mapping
    m.arm("pc/2", now=1.0)  # re-learning a target moves it to the new control
    m.handle(cc(6, 0), now=1.1)
    assert [x.number for x in m.learned] == [6]
    assert m.unlearn("pc/2") == 1 and m.learned == []


def test_learn_detects_14bit_and_notes() -> None:
    m, _ = mapper()
    m.arm("mix", now=0.0)
    m.handle(cc(3, 100), now=0.01)
    eff = m.handle(cc(35, 5), now=0.02)
    assert [e.mapping.kind for e in eff if isinstance(e, Learned)] == ["cc14"]
    assert [x.kind for x in m.learned] == ["cc14"]
    assert sets(eff) == [("mix", round(((100 << 7) | 5) / 16383, 5))]
    m.arm("freeze", now=1.0)
    m.handle(mido.Message("note_off", note=50), now=1.1)  # a release does not bind
    eff = m.handle(note(50, 90), now=1.2)
    assert [(e.mapping.kind, e.mapping.mode) for e in eff if isinstance(e, Learned)] == [("note", "toggle")]


def test_learn_pad_arms_learn_and_is_never_learned_itself(tmp_path: Path) -> None:
    st = ControlState(zdim=8, n_pcs=4)
    ctl = MidiController(st, [MidiMapping("note", 48, action="midi.learn", arg="pc/2")], inputs=[])
    ctl.feed(note(48, 100))
    assert ctl.mapper.armed == "pc/2"
    ctl.feed(mido.Message("note_off", note=48))
    ctl.feed(note(48, 100))  # pressing the learn pad again re-arms; it does not bind the pad
    assert ctl.mapper.learned == [] and ctl.mapper.armed == "pc/2"
    ctl.feed(cc(12, 127))
    assert [(m.number, m.target) for m in ctl.mapper.learned] == [(12, "pc/2")] and st.get("pc/2") == 6.0


def test_learn_unknown_target_raises_control_error() -> None:
    from livevae.control.state import ControlError

    m, _ = mapper()
    with pytest.raises(ControlError):
        m.arm("z/999", now=0.0)


# --- show section and learn file ---------------------------------------------------------------------------------
def test_from_show_validates_with_clear_errors(tmp_path: Path) -> None:
    st = ControlState(zdim=8, n_pcs=4)
    show = tmp_path / "show.toml"
    ctl = from_show(
        {
            "inputs": "nano",
            "output": "nano",
            "map": [
                {"cc": 7, "channel": 1, "target": "pc/0", "range": [-3, 3], "curve": "smooth"},
                {"cc14": 1, "target": "mix"},
                {"cc": 16, "target": "z/3", "mode": "twos", "step": 0.02},
                {"note": 36, "action": "scene.recall", "arg": "intro"},
                {"note": 37, "target": "freeze", "mode": "toggle"},
                {"pitchbend": True, "target": "/livevae/noise", "smoothing": 0.2},
            ],
        },
        st,
        show,
    )
    assert [m.kind for m in ctl.mappings] == ["cc", "cc14", "cc", "note", "note", "pitchbend"]
    assert ctl.mappings[0].channel == 0  # show files count channels 1..16
    assert ctl.mappings[-1].target == "noise"  # OSC-style names are accepted, stored as the state names them
    assert st.snapshot().slews["noise"] == pytest.approx(0.2)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"map": [{"cc": 200, "target": "mix"}]}, r"\[midi\] map\[0\].cc: .*127.*found 200"),
        ({"map": [{"cc": 1, "note": 3, "target": "mix"}]}, "exactly one of cc, cc14, note, pitchbend"),
        ({"map": [{"cc": 1}]}, "exactly one of target"),
        ({"map": [{"cc": 1, "target": "mix", "curve": "cubic"}]}, "curve 'cubic'; expected one of linear"),
        ({"map": [{"note": 1, "target": "mix", "mode": "twos"}]}, "mode 'twos' for note; expected one of gate"),
        ({"map": [{"cc": 1, "target": "z/99"}]}, r"map\[0\].target: .*z/99"),
        ({"map": [{"cc": 1, "action": "explode"}]}, "action 'explode'; expected one of"),
        ({"map": [{"note": 1, "action": "midi.learn", "arg": "pc/9"}]}, r"map\[0\].arg: .*pc/9"),
        ({"channel": 3}, "channel: Extra inputs are not permitted"),
        ({"inputs": ["tcp:localhost"]}, "expected tcp:HOST:PORT"),
    ]
    for section, pattern in bad:
        with pytest.raises(MidiError, match=pattern):
            from_show(section, st, show)


def test_learn_file_written_reloaded_and_show_untouched(tmp_path: Path) -> None:
    show = tmp_path / "gig.toml"
    show_text = '[midi]\n[[midi.map]]\ncc = 5\ntarget = "noise"\n'
    show.write_text(show_text)
    st = ControlState(zdim=8, n_pcs=4)
    ctl = from_show({"inputs": [], "map": [{"cc": 5, "target": "noise"}]}, st, show)
    assert ctl.arm_learn("pc/1")
    ctl.feed(cc(5, 127, ch=0))
    assert st.get("pc/1") == pytest.approx(6.0)
    ctl.arm_learn("lfo/0/depth")
    ctl.feed(cc(21, 127, ch=9))
    side = learn_path(show)
    assert side == tmp_path / "gig.midi-learn.toml" and side.exists()
    assert show.read_text() == show_text  # the user's show is never rewritten
    assert [(m.number, m.channel, m.target) for m in load_learned(side)] == [(5, 0, "pc/1"), (21, 9, "lfo/0/depth")]
    # a fresh load merges the learn file over the show's mappings: cc5 now drives pc/1, not noise
    st2 = ControlState(zdim=8, n_pcs=4)
    ctl2 = from_show({"inputs": [], "map": [{"cc": 5, "target": "noise"}]}, st2, show)
    ctl2.feed(cc(5, 0))
    assert st2.get("pc/1") == pytest.approx(-6.0) and st2.get("noise") == 0.0
    ctl2.feed(cc(5, 0, ch=4))
    assert st2.get("noise") == 0.0
    ctl2.feed(cc(5, 127, ch=4))  # other channels still reach the show's own mapping
    assert st2.get("noise") == pytest.approx(4.0)
    assert ctl2.unlearn("pc/1") == 1
    assert [m.target for m in load_learned(side)] == ["lfo/0/depth"]
    with pytest.raises(MidiError, match="is the show itself"):
        save_learned(show, [], show_path=show)
    side.write_text("[[map]]\ncc = 999\ntarget = 'mix'\n")
    with pytest.raises(MidiError, match=r"gig.midi-learn.toml map\[0\].cc"):
        from_show({}, st2, show)


def test_learn_without_target_uses_last_touched_control(tmp_path: Path) -> None:
    st = ControlState(zdim=8, n_pcs=4)
    ctl = MidiController(st, inputs=[])
    st.add_listener(ctl._on_change)  # what start() does
    assert not ctl.arm_learn(None)  # nothing touched yet: a warning, no exception
    st.set("pc/3", 1.0, origin="osc:/livevae/pc/3")
    st.set("mix", 0.5, origin="audio")  # audio and MIDI do not count as "touched"
    assert ctl.handle_action("midi.learn", None)
    ctl.feed(cc(10, 0))
    assert [m.target for m in ctl.mapper.learned] == ["pc/3"]
    assert not ctl.handle_action("scene.recall", "x")


def test_learn_armed_through_control_state_post(tmp_path: Path) -> None:
    """The window's `l` key and any controller arm learn with ControlState.post; the loop hands it on."""
    st = ControlState(zdim=8, n_pcs=4)
    ctl = MidiController(st, inputs=[])
    st.add_listener(ctl._on_change)
    st.set("pc/1", 0.5, origin="key")
    st.post("midi.learn", None, origin="key")
    (action, arg), *_ = st.drain_actions()
    assert ctl.handle_action(action, arg)
    ctl.feed(cc(21, 64))
    assert [m.target for m in ctl.mapper.learned] == ["pc/1"]


def test_port_specs() -> None:
    assert PortSpec.parse("tcp:127.0.0.1:5004").kind == "tcp"
    assert PortSpec.parse("listen:0.0.0.0:5004").portno == 5004
    assert PortSpec.parse("*").matches("anything")
    assert PortSpec.parse("nanokontrol").matches("nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0")
    assert not PortSpec.parse("Launch").matches("nanoKONTROL2")
    with pytest.raises(MidiError, match="out of range"):
        PortSpec.parse("tcp:h:70000")


# --- end to end through real ports -------------------------------------------------------------------------------
def test_no_midi_system_warns_once_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """Without an ALSA sequencer (this machine) listing ports raises inside rtmidi: one warning, no exception."""
    st = ControlState(zdim=4)
    ctl = MidiController(st, inputs=["*"], output="nano", rescan=0.1)
    with caplog.at_level(logging.WARNING, logger="livevae.controllers.midi"):
        ctl.start()
        try:
            time.sleep(0.35)
            ctl.feed(cc(1, 1))  # still alive
        finally:
            ctl.stop()
    try:
        mido.get_input_names()
        has_midi = True
    except Exception:
        has_midi = False
    if not has_midi:
        listing = [r for r in caplog.records if "cannot list inputs" in r.getMessage()]
        assert len(listing) == 1  # not once per rescan


@pytest.mark.timeout(30)
class FakeRtMidi:
    """Stands in for rtmidi's port list and ports (this machine has no MIDI system): names can appear and vanish."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.callbacks: dict[str, Callable[[mido.Message], None]] = {}
        self.closed: list[str] = []

    def get_input_names(self) -> list[str]:
        return list(self.names)

    def open_input(self, name: str, callback: Callable[[mido.Message], None]) -> Any:
        if name not in self.names:
            raise OSError(f"no port {name}")
        self.callbacks[name] = callback
        return SimpleNamespace(close=lambda: self.closed.append(name))


def test_hot_plug_opens_chosen_ports_by_prefix_and_survives_unplug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeRtMidi()
    monkeypatch.setattr(mido, "get_input_names", fake.get_input_names)
    monkeypatch.setattr(mido, "open_input", fake.open_input)
    st = ControlState(zdim=4)
    ctl = MidiController(st, [MidiMapping("cc", 1, target="mix")], inputs=["nanoKONTROL", "Launch"])
    ctl.scan()
    assert ctl.open_ports == []
    fake.names = ["Midi Through:Midi Through Port-0 14:0", "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"]  # plugged in
    ctl.scan()
    assert ctl.open_ports == ["nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"]  # chosen by prefix; Midi Through is not
    fake.callbacks["nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"](cc(1, 127))  # rtmidi's thread delivers
    assert st.get("mix") == 1.0
    with caplog.at_level(logging.WARNING, logger="livevae.controllers.midi"):
        fake.names = fake.names[:1]  # unplugged mid-show
        ctl.scan()
    assert ctl.open_ports == [] and fake.closed == ["nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"]
    # Only warnings: another test may have left the livevae logger at INFO, which caplog also records.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "MIDI port nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0 vanished; will reopen it when it comes back"
    ]
    fake.names.append("nanoKONTROL2:nanoKONTROL2 MIDI 1 24:0")  # back, on another ALSA client number
    ctl.scan()
    assert ctl.open_ports == ["nanoKONTROL2:nanoKONTROL2 MIDI 1 24:0"]
    all_ports = MidiController(st, inputs=["*"])
    all_ports.scan()
    assert len(all_ports.open_ports) == 2


def test_end_to_end_through_socket_port(caplog: pytest.LogCaptureFixture) -> None:
    """A mido socket-port server plays a controller; the controller connects as tcp:HOST:PORT, CCs change the
    state, feedback comes back on the same socket, and the server vanishing is a warning and a reconnect."""
    port = free_port()
    server = sockets.PortServer("127.0.0.1", port)
    st = ControlState(zdim=8, n_pcs=4)
    ctl = MidiController(
        st,
        [MidiMapping("cc", 7, target="pc/0", range=(-2.0, 2.0)), MidiMapping("cc", 8, target="mix")],
        inputs=[f"tcp:127.0.0.1:{port}"],
        output=f"tcp:127.0.0.1:{port}",
        rescan=0.1,
    )
    ctl.start()
    try:
        client = server.accept()  # our controller's connection
        got: list[mido.Message] = []
        # on connecting, the controller's faders are put where the show is (pc/0 = 0 -> 64, mix = 0 -> 0)
        assert wait_for(lambda: len(drain(client, got)) >= 2)
        assert sorted((m.control, m.value) for m in got) == [(7, 64), (8, 0)]
        got.clear()
        client.send(cc(7, 127))
        assert wait_for(lambda: st.get("pc/0") == pytest.approx(2.0))
        assert st.last_origin.startswith("midi:")
        st.set("mix", 1.0, origin="osc:/livevae/mix")  # moved elsewhere: the controller's LED/fader follows
        assert wait_for(lambda: any(m.is_cc(8) for m in drain(client, got)))
        assert [m.value for m in got if m.is_cc(8)][-1] == 127
        assert not any(m.is_cc(7) for m in got)  # no echo to the fader that made the change
        with caplog.at_level(logging.WARNING, logger="livevae.controllers.midi"):
            hang_up(client)
            server.close()
            assert wait_for(lambda: ctl.stats.vanished >= 1)
            # the warning is logged on the controller's thread: wait for it too, not just the count
            assert wait_for(lambda: any("vanished" in r.getMessage() for r in caplog.records))
            server = sockets.PortServer("127.0.0.1", port)  # the bridge comes back: reconnect on a rescan
            client2 = None
            end = time.monotonic() + 5
            while client2 is None and time.monotonic() < end:
                client2 = server.accept(block=False)
                time.sleep(0.02)
            assert client2 is not None
            client2.send(cc(7, 0))
            assert wait_for(lambda: st.get("pc/0") == pytest.approx(-2.0))
            hang_up(client2)
    finally:
        ctl.stop()
        server.close()


@pytest.mark.timeout(30)
def test_listen_port_accepts_senders() -> None:
    port = free_port()
    st = ControlState(zdim=4)
    ctl = MidiController(st, [MidiMapping("cc", 1, target="noise")], inputs=[f"listen:127.0.0.1:{port}"])
    ctl.start()
    try:
        assert wait_for(lambda: ctl.open_ports == [f"listen:127.0.0.1:{port}"])
        out = sockets.connect("127.0.0.1", port)
        out.send(cc(1, 127))
        assert wait_for(lambda: st.get("noise") == pytest.approx(4.0))
        hang_up(out)
    finally:
        ctl.stop()


@pytest.mark.timeout(30)
def test_end_to_end_through_virtual_rtmidi_port() -> None:
    try:
        out = mido.open_output("livevae-test-virtual", virtual=True)
    except Exception as e:
        pytest.skip(f"no MIDI system for virtual ports here (needs the ALSA sequencer /dev/snd/seq): {e}")
    st = ControlState(zdim=4)
    ctl = MidiController(st, [MidiMapping("cc", 1, target="mix")], inputs=["livevae-test-virtual"], rescan=0.1)
    ctl.start()
    try:
        assert wait_for(lambda: bool(ctl.open_ports))
        out.send(cc(1, 127))
        assert wait_for(lambda: st.get("mix") == 1.0)
        out.close()  # unplugged: a warning, the show goes on
        assert wait_for(lambda: ctl.stats.vanished == 1)
    finally:
        ctl.stop()


@pytest.mark.timeout(30)
def test_show_with_midi_section_over_a_socket_port(tmp_path: Path, tiny_model_file: Path) -> None:
    """build_show with a [midi] section listening on a socket port; the loop starts it, a sender's CC moves the
    control, and OSC /livevae/midi/learn arms learn on the show's OSC server."""
    from pythonosc.osc_message_builder import build_msg

    from livevae.backends import create
    from livevae.loop import LiveLoop
    from livevae.show.showfile import build_show

    port = free_port()
    show = tmp_path / "show.toml"
    show.write_text(
        f'model = "{tiny_model_file}"\n[input]\nsources = ["testcard"]\n[osc]\nport = 0\n'
        "[output]\nheadless = true\nrealtime = true\nseconds = 1.5\n"
        f'[midi]\ninputs = ["listen:127.0.0.1:{port}"]\n[[midi.map]]\ncc = 1\nchannel = 1\ntarget = "noise"\n'
    )
    cfg, state, controllers = build_show(show)
    (midi,) = [c for c in controllers if isinstance(c, MidiController)]
    osc = next(c for c in controllers if getattr(c, "server", None) is not None).server  # type: ignore[attr-defined]

    import threading

    def play() -> None:
        assert wait_for(lambda: bool(midi.open_ports))
        out = sockets.connect("127.0.0.1", port)
        out.send(cc(1, 127))
        wait_for(lambda: state.get("noise") > 0)  # before arming learn, or learn would take this very CC
        osc.handle_datagram(build_msg("/livevae/midi/learn", ["mix"]).dgram)
        out.send(cc(2, 127))
        wait_for(lambda: bool(midi.mapper.learned))
        hang_up(out)

    th = threading.Thread(target=play)
    th.start()
    LiveLoop(cfg, create(str(tiny_model_file), "torch"), state, controllers).run()
    th.join()
    assert state.get("noise") == pytest.approx(4.0)
    assert [(m.number, m.target) for m in midi.mapper.learned] == [(2, "mix")]
    assert load_learned(tmp_path / "show.midi-learn.toml")[0].target == "mix"


def test_port_listing_command(capsys: pytest.CaptureFixture[str]) -> None:
    from livevae.controllers.midi import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert "MIDI inputs:" in out and "MIDI outputs:" in out


def test_learn_route_reaches_the_show_osc_server_through_the_handle() -> None:
    """MIDI used to find the OSC server among the loop's controllers and take its private lock; it now asks the
    handle for the "osc.routes" service and registers its routes there."""
    from pythonosc.osc_message_builder import build_msg

    from livevae.controllers.osc import OscServer
    from tests.helpers.handle import RecordingHandle

    st = ControlState(zdim=8, n_pcs=4)
    srv = OscServer(st, port=0)
    handle = RecordingHandle()
    handle.offered["osc.routes"] = srv
    ctl = MidiController(st, inputs=[])
    ctl.start(handle)
    try:
        assert {"/livevae/midi/learn", "/livevae/midi/unlearn"} <= {r.address for r in srv.routes()}
        srv.handle_datagram(build_msg("/livevae/midi/learn", ["pc/2"]).dgram)
        assert ctl.mapper.armed == "pc/2"
    finally:
        ctl.stop()
