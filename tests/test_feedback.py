"""OSC feedback over real UDP: one message per address, XY pads as one message, every target (fixed and
registered with /livevae/hello) fed once, record/scene/source state, reset to the show as it started, and
liblo's oscsend/oscdump as an independent client."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from pythonosc.osc_message_builder import build_msg
from pythonosc.udp_client import SimpleUDPClient

from livevae.control.state import ControlState, LfoSettings
from livevae.controllers.osc import OscServer
from livevae.controllers.osc_feedback import OscFeedback, Status, group_mappings, mapped_args
from livevae.controllers.osc_mapping import Mapping
from livevae.handle import FrameInfo
from tests.helpers.osc import recv_all


def _rx(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    return s


XY = [Mapping("/2/xy", target="z/0", range=(-1.0, 1.0), index=0), Mapping("/2/xy", target="z/1", index=1)]


@pytest.fixture
def rig() -> Iterator[tuple[ControlState, OscServer, OscFeedback, socket.socket]]:
    """A state, a server with a fader, an XY pad and a record toggle, feedback to a fixed target `rx`."""
    st = ControlState(zdim=4, n_pcs=0)
    rx = _rx()
    fb = OscFeedback(st, "127.0.0.1", rx.getsockname()[1], status_interval=0)
    maps = [Mapping("/1/fader3", target="mix"), *XY, Mapping("/1/rec", action="record")]
    srv = OscServer(st, port=0, mappings=maps, feedback=fb)
    srv.start()
    fb.start()
    yield st, srv, fb, rx
    srv.stop()
    fb.stop()
    rx.close()


def test_xy_pad_feedback_is_one_two_argument_message() -> None:
    st = ControlState(zdim=4, n_pcs=0)
    st.set_many({"z/0": 0.5, "z/1": -4.0})
    (ms,) = group_mappings(XY).values()
    args = mapped_args(ms, st, st.snapshot(), record=False)
    assert args == [pytest.approx(0.75), pytest.approx(0.25)]  # z/0 in -1..1, z/1 in the target's -8..8


def test_xy_pad_moved_by_midi_reaches_the_tablet_as_one_ff_message(rig: tuple) -> None:
    st, _, _, rx = rig
    st.set("z/0", 0.0, origin="midi:cc1")  # no change: nothing sent
    st.set_many({"z/0": 0.5, "z/1": 4.0}, origin="midi:cc1")
    got = [a for addr, a in recv_all(rx, 0.4) if addr == "/2/xy"]
    assert got == [[pytest.approx(0.75), pytest.approx(0.75)]]  # one message, x and y


def test_a_burst_and_a_recall_send_each_address_once(rig: tuple) -> None:
    st, _, fb, rx = rig
    for v in np.linspace(0, 1, 50):  # a fader flood from MIDI, then a scene recall resync on top
        st.set("mix", float(v), origin="midi:cc7")
    st.set_many({"mix": 1.0, "z/0": 0.25}, origin="scene")
    fb.send_all()
    counts = Counter(addr for addr, _ in recv_all(rx, 0.5))
    assert counts["/1/fader3"] == 1 and counts["/livevae/mix"] == 1 and counts["/2/xy"] == 1, counts
    assert max(counts.values()) == 1, counts


def test_at_most_one_message_per_address_per_frame(rig: tuple) -> None:
    st, _, fb, rx = rig
    stop = threading.Event()
    frames = [0]

    def frame_clock() -> None:  # the live loop presenting at 20 fps
        while not stop.is_set():
            fb.frame(Status(fps=20.0, index=frames[0]))
            frames[0] += 1
            time.sleep(0.05)

    t = threading.Thread(target=frame_clock, daemon=True)
    t.start()
    try:
        time.sleep(0.1)
        end = time.monotonic() + 0.6
        n = 0
        while time.monotonic() < end:
            st.set("z/0", float(n % 100) / 100, origin="midi:cc1")
            n += 1
            time.sleep(0.001)
        got = recv_all(rx, 0.3)
    finally:
        stop.set()
        t.join()
    xy = sum(1 for addr, _ in got if addr == "/2/xy")
    # one flush per frame; + 1 for a flush the loaded machine made after the frame clock stalled 0.25 s
    assert n > 200 and 0 < xy <= frames[0] + 1, (n, xy, frames[0])


def test_hello_registers_a_second_controller_that_gets_everything_but_its_own_moves(rig: tuple) -> None:
    st, srv, fb, rx = rig
    phone = _rx("127.0.0.2")  # another host on the loopback net: a phone on DHCP
    try:
        phone.sendto(build_msg("/livevae/hello", []).dgram, ("127.0.0.1", srv.port))  # reply to the sender port
        first = recv_all(phone, 0.4)
        assert ("/1/fader3", [0.0]) in first and ("/livevae/record", [0]) in first  # resynced on hello
        assert fb.targets()[-1] == phone.getsockname()
        recv_all(rx, 0.1)
        phone.sendto(build_msg("/1/fader3", [0.6]).dgram, ("127.0.0.1", srv.port))
        time.sleep(0.3)
        assert st.get("mix") == pytest.approx(0.6)
        assert ("/1/fader3", [pytest.approx(0.6)]) in recv_all(rx, 0.3)  # the tablet follows the phone
        assert not [a for a, _ in recv_all(phone, 0.2) if a == "/1/fader3"]  # the phone is not echoed
        st.set("mix", 0.2, origin="midi:cc7")
        assert ("/1/fader3", [pytest.approx(0.2)]) in recv_all(phone, 0.4)
        phone.sendto(build_msg("/livevae/bye", []).dgram, ("127.0.0.1", srv.port))
        time.sleep(0.2)
        st.set("mix", 0.3, origin="midi:cc7")
        assert recv_all(phone, 0.3) == []
    finally:
        phone.close()


def test_hello_with_a_port_and_reply_to_sender() -> None:
    st = ControlState(zdim=4, n_pcs=0)
    fb = OscFeedback(st, status_interval=0)  # no fixed target at all
    srv = OscServer(st, port=0, mappings=[Mapping("/1/fader3", target="mix")], feedback=fb, reply_to_sender=True)
    listen, sender = _rx(), _rx("127.0.0.2")
    srv.start()
    fb.start()
    try:
        SimpleUDPClient("127.0.0.1", srv.port).send_message("/livevae/hello", listen.getsockname()[1])
        assert ("/1/fader3", [0.0]) in recv_all(listen, 0.4)
        sender.sendto(build_msg("/livevae/ping", []).dgram, ("127.0.0.1", srv.port))  # any message registers
        time.sleep(0.2)
        st.set("mix", 0.5, origin="midi")
        assert ("/1/fader3", [0.5]) in recv_all(sender, 0.4)
        assert ("/1/fader3", [0.5]) in recv_all(listen, 0.2)
    finally:
        srv.stop()
        fb.stop()
        listen.close()
        sender.close()


def test_record_state_is_fed_back_and_in_status(rig: tuple) -> None:
    st, _, fb, rx = rig
    fb.frame(Status(24.0, "testcard", "", 3, recording=True, audio=0.5))
    got = recv_all(rx, 0.4)
    assert ("/livevae/record", [1]) in got and ("/1/rec", [1.0]) in got  # a mapped record toggle follows the key
    fb.frame(Status(24.0, "testcard", "", 4, recording=False))
    assert ("/1/rec", [0.0]) in recv_all(rx, 0.4)
    fb2 = OscFeedback(st, "127.0.0.1", rx.getsockname()[1], status_interval=0.1)
    fb2.frame(Status(24.0, "film.mp4", "night", 5, recording=True, audio=0.25))
    fb2.start()
    try:
        status = [a for addr, a in recv_all(rx, 0.35) if addr == "/livevae/status"]
        assert status[-1][1:] == ["film.mp4", "night", 5, 1, 0.25]
    finally:
        fb2.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from livevae.model import random_model, save_model

    m = random_model("tiny", seed=0)
    m.set_pca(torch.zeros(m.cfg.zdim), torch.eye(2, m.cfg.zdim), torch.ones(2))
    return save_model(m, tmp_path_factory.mktemp("model") / "m.safetensors")


SHOW = """
model = "{model}"
hot_reload = false
[osc]
port = 9
[controls]
smooth = 0.3
"pc/0" = 1.5
[[lfo]]
target = "pc/1"
depth = 0.8
rate = 0.5
[scenes.night]
controls = {{ mix = 0.5 }}
"""


def test_reset_returns_to_the_show_as_it_started_and_zero_to_defaults(tmp_path: Path, model: Path) -> None:
    from livevae.show.showfile import ShowController, build_show

    p = tmp_path / "show.toml"
    p.write_text(SHOW.format(model=model))
    rx = _rx()
    _, st, ctrls = build_show(p, osc_port=0, osc_feedback=f"127.0.0.1:{rx.getsockname()[1]}")
    ctrl = ctrls[0]
    assert isinstance(ctrl, ShowController) and ctrl.server is not None
    ctrl.start(None)
    try:
        client = SimpleUDPClient("127.0.0.1", ctrl.server.port)
        ctrl.recall("night")
        for addr, v in (("smooth", 0.0), ("pc/0", 0.0), ("lfo/0/depth", 0.0)):
            client.send_message(f"/livevae/{addr}", v)
        time.sleep(0.3)
        assert st.get("smooth") == 0.0 and st.snapshot().lfos[0].depth == 0.0
        recv_all(rx, 0.2)
        client.send_message("/livevae/reset", [])
        got = recv_all(rx, 0.5)
        snap = st.snapshot()
        assert snap.smooth == pytest.approx(0.3) and snap.get("pc/0") == 1.5 and snap.mix == 0.0
        assert snap.lfos[0] == LfoSettings(rate=0.5, depth=0.8, target="pc/1")  # the LFO plays on
        assert snap.anchor is None and ctrl.scenes.current == ""
        assert ("/livevae/smooth", [pytest.approx(0.3)]) in got  # the tablet's faders go back too
        assert ("/livevae/lfo/0/depth", [pytest.approx(0.8)]) in got and ("/livevae/scene", [""]) in got
        client.send_message("/livevae/zero", [])
        time.sleep(0.3)
        snap = st.snapshot()
        assert snap.smooth == 0.0 and snap.get("pc/0") == 0.0 and snap.lfos[0] == LfoSettings()
    finally:
        ctrl.stop()
        rx.close()


def test_show_controller_feeds_back_recording_from_frames(tmp_path: Path, model: Path) -> None:
    from livevae.show.showfile import build_show

    p = tmp_path / "show.toml"
    p.write_text(SHOW.format(model=model) + '[[mapping]]\naddress = "/1/rec"\naction = "record"\n')
    rx = _rx()
    _, _, (ctrl, *_) = build_show(p, osc_port=0, osc_feedback=f"127.0.0.1:{rx.getsockname()[1]}")
    ctrl.start(None)
    try:
        recv_all(rx, 0.3)
        ctrl.on_frame(FrameInfo(index=1, t=0.0, fps=30.0, source="testcard", dropped=0, latency_ms=1.0,
                                recording=True))  # fmt: skip
        got = recv_all(rx, 0.4)
        assert ("/livevae/record", [1]) in got and ("/1/rec", [1.0]) in got
    finally:
        ctrl.stop()
        rx.close()


def test_reload_with_a_cli_port_does_not_ask_for_a_restart(
    tmp_path: Path, model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from livevae.show.showfile import ShowController, build_show

    p = tmp_path / "show.toml"
    p.write_text(SHOW.format(model=model))
    _, _, (ctrl, *_) = build_show(p, osc_port=0)
    assert isinstance(ctrl, ShowController)
    with caplog.at_level("INFO"):
        assert ctrl.reload()
    assert "reloaded" in caplog.text and "restart" not in caplog.text


# --- liblo's command-line tools: an independent OSC implementation ----------------------------------------------
needs_liblo = pytest.mark.skipif(
    shutil.which("oscsend") is None or shutil.which("oscdump") is None,
    reason="liblo's oscsend/oscdump not installed (Debian: apt-get install liblo-tools, `make sys`)",
)


@needs_liblo
def test_liblo_oscsend_registers_and_oscdump_sees_xy_as_one_message(rig: tuple) -> None:
    st, srv, _, _ = rig
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dump = subprocess.Popen(["oscdump", "-L", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # oscdump binds
        subprocess.run(["oscsend", "127.0.0.1", str(srv.port), "/livevae/hello", "i", str(port)], check=True,
                       timeout=5)  # fmt: skip
        time.sleep(0.3)
        subprocess.run(["oscsend", "127.0.0.1", str(srv.port), "/livevae/z/1", "f", "4.0"], check=True, timeout=5)
        time.sleep(0.3)
        st.set("z/0", 0.5, origin="midi:cc1")
        time.sleep(0.4)
    finally:
        dump.terminate()
        out, _ = dump.communicate(timeout=5)
    lines = [ln[ln.index("/") :] for ln in out.splitlines() if "/" in ln]  # "<timetag> /addr types args"
    assert "/2/xy ff 0.750000 0.750000" in lines, out
    assert not any(ln.startswith("/2/xy f ") for ln in lines), out  # never split into one-argument messages
    assert "/1/rec f 0.000000" in lines and "/livevae/record i 0" in lines, out  # the hello's resync
