"""OSC: pure mapping and parsing, then real UDP on 127.0.0.1 into the control state, the live loop's decoded
frames, feedback to a listening socket, ping, and a flood of garbage that must neither crash nor stall the loop."""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hst
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from pythonosc.udp_client import SimpleUDPClient

from livevae.control.curves import CURVES
from livevae.control.state import ControlState
from livevae.controllers.osc import OscServer
from livevae.controllers.osc_feedback import OscFeedback
from livevae.controllers.osc_mapping import (
    Mapping,
    OscError,
    address_map,
    coerce_number,
    format_address_map,
    map_value,
    unmap_value,
)
from livevae.loop import Watcher
from tests.helpers.osc import recv_all

# --- pure ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", [c for c in CURVES if c != "toggle"])
def test_map_unmap_roundtrip(curve: str) -> None:
    m = Mapping("/1/fader1", target="pc/0", range=(-3.0, 3.0), curve=curve)
    for x in np.linspace(0, 1, 11):
        v = map_value(m, float(x), (-6.0, 6.0))
        assert -3.0 <= v <= 3.0
        assert unmap_value(m, v, (-6.0, 6.0)) == pytest.approx(x, abs=1e-6)
    assert map_value(m, 0.0, (-6, 6)) == -3.0 and map_value(m, 1.0, (-6, 6)) == 3.0
    assert map_value(m, 7.0, (-6, 6)) == 3.0  # out-of-range input clamps


def test_map_value_curves_and_ranges() -> None:
    assert map_value(Mapping("/a", target="noise", curve="exp"), 0.5, (0.0, 4.0)) == pytest.approx(1.0)
    assert map_value(Mapping("/a", target="mix", curve="log"), 0.25, (0.0, 1.0)) == pytest.approx(0.5)
    assert map_value(Mapping("/a", target="freeze", curve="toggle"), 0.6, (0.0, 1.0)) == 1.0
    midi = Mapping("/a", target="mix", in_range=(0, 127))  # a controller that sends 0..127
    assert map_value(midi, 127, (0.0, 1.0)) == 1.0
    assert map_value(midi, 63.5, (0.0, 1.0)) == pytest.approx(0.5)


def test_coerce_number() -> None:
    assert coerce_number([1]) == 1.0 and coerce_number([True]) == 1.0 and coerce_number([0.25]) == 0.25
    assert coerce_number(["0.5"]) is None and coerce_number([]) is None and coerce_number([b"x"]) is None
    assert coerce_number([float("nan")]) is None
    assert coerce_number([0.0, 0.7], index=1) == 0.7


def test_address_map_lists_every_address_of_the_issue() -> None:
    text = format_address_map(address_map(200, 16, 8), markdown=True)
    for a in ("/livevae/z/{0..199}", "/livevae/z`", "/livevae/pc/{0..15}", "/livevae/gain/", "/livevae/mix",
              "/livevae/freeze", "/livevae/noise", "/livevae/smooth", "/livevae/scene/{name}", "/livevae/scene/save",
              "/livevae/source", "/livevae/record", "/livevae/lfo/", "/livevae/ping", "/livevae/status"):  # fmt: skip
        assert a in text, a


def _dgram(address: str, *args: object) -> bytes:
    return build_msg(address, list(args)).dgram


def test_dispatch_from_literal_bytes_without_sockets() -> None:
    st = ControlState(zdim=8, n_pcs=2, n_lfos=2)
    srv = OscServer(st, mappings=[Mapping("/1/fader3", target="pc/1", range=(-2.0, 2.0))])
    srv.handle_datagram(_dgram("/livevae/mix", 1))  # int accepted
    srv.handle_datagram(_dgram("/livevae/freeze", True))  # bool accepted
    srv.handle_datagram(_dgram("/livevae/z", 1.0, 2.0, 3.0))
    srv.handle_datagram(_dgram("/1/fader3", 0.75))
    srv.handle_datagram(_dgram("/livevae/lfo/1/target", "pc/0"))
    srv.handle_datagram(_dgram("/livevae/gain/{2,3}", 2.0))  # a pattern: both addresses
    b = OscBundleBuilder(IMMEDIATELY)
    b.add_content(build_msg("/livevae/noise", [0.5]))
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(build_msg("/livevae/scene/night", []))
    b.add_content(inner.build())
    srv.handle_datagram(b.build().dgram)
    snap = st.snapshot()
    assert snap.mix == 1.0 and snap.freeze and snap.noise == 0.5
    assert snap.offset[:3].tolist() == [1.0, 2.0, 3.0]
    assert snap.pc[1] == pytest.approx(1.0)
    assert snap.gain[2:4].tolist() == [2.0, 2.0] and snap.gain[1] == 1.0
    assert snap.lfos[1].target == "pc/0"
    assert st.drain_actions() == [("scene.recall", "night")]
    assert srv.stats.handled == 9 and srv.stats.bad_args == srv.stats.unknown == srv.stats.malformed == 0
    assert st.last_origin == "osc:/livevae/scene/night"


def test_bad_messages_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    st = ControlState(zdim=4)
    srv = OscServer(st)
    for _ in range(3):
        srv.handle_datagram(_dgram("/livevae/nope", 1.0))
        srv.handle_datagram(_dgram("/livevae/mix", "loud"))
        srv.handle_datagram(_dgram("/livevae/mix"))
        srv.handle_datagram(_dgram("/livevae/z/99", 1.0))  # unknown: only z/0..3 exist
        srv.handle_datagram(b"\x00garbage")
    s = srv.stats
    assert (s.unknown, s.bad_args, s.malformed) == (6, 6, 3)
    assert s.by_address["/livevae/mix"] == 6
    warnings = [r.getMessage() for r in caplog.records if r.name == "livevae.controllers.osc"]
    assert len(warnings) == 4  # once per address (and once for malformed datagrams)
    assert any("/livevae/mix" in w and "expected one number" in w for w in warnings)
    assert st.snapshot().values() == {}


@settings(max_examples=300, deadline=None)
@given(data=hst.binary(max_size=512), prefix=hst.sampled_from([b"", b"/livevae/mix\x00\x00\x00\x00,", b"#bundle\x00"]))
def test_any_datagram_is_handled_without_raising(data: bytes, prefix: bytes) -> None:
    srv = _FUZZ_SERVER
    before = srv.stats.datagrams
    srv.handle_datagram(prefix + data)
    assert srv.stats.datagrams == before + 1
    snap = srv.state.snapshot()
    assert np.isfinite(snap.offset).all() and 0.0 <= snap.mix <= 1.0


_FUZZ_SERVER = OscServer(ControlState(zdim=4, n_pcs=1, n_lfos=1))


def test_action_addresses() -> None:
    st = ControlState(zdim=4)
    srv = OscServer(st)
    for d in (_dgram("/livevae/source", 2), _dgram("/livevae/source", "film.mp4"), _dgram("/livevae/record"),
              _dgram("/livevae/record", 0), _dgram("/livevae/scene/save", "dusk"), _dgram("/livevae/scene/dusk", 0),
              _dgram("/livevae/screenshot")):  # fmt: skip
        srv.handle_datagram(d)
    assert st.drain_actions() == [
        ("source", "film.mp4"),  # two queued switches coalesce into the last one
        ("record", None),
        ("record", False),
        ("scene.save", "dusk"),
        ("screenshot", None),
    ]  # scene/dusk 0 is a button release: nothing


def test_bind_error_names_the_port() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        srv = OscServer(ControlState(zdim=4), port=taken.getsockname()[1])
        with pytest.raises(OscError, match=f"127.0.0.1:{taken.getsockname()[1]}"):
            srv.start()
    finally:
        taken.close()


# --- real UDP --------------------------------------------------------------------------------------------------


def _wait(cond: object, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.005)
    return False


@pytest.fixture
def server() -> Iterator[tuple[OscServer, SimpleUDPClient]]:
    st = ControlState(zdim=16, n_pcs=0)
    srv = OscServer(st, port=0, mappings=[Mapping("/1/fader1", target="mix", curve="exp")])
    srv.start()
    try:
        yield srv, SimpleUDPClient("127.0.0.1", srv.port)
    finally:
        srv.stop()


def test_udp_messages_change_the_state(server: tuple[OscServer, SimpleUDPClient]) -> None:
    srv, client = server
    client.send_message("/livevae/z/3", 1.5)
    client.send_message("/1/fader1", 0.5)
    assert _wait(lambda: srv.stats.handled == 2)
    snap = srv.state.snapshot()
    assert snap.offset[3] == 1.5 and snap.mix == pytest.approx(0.25)


def test_ping_pong_to_sender_and_to_a_port(server: tuple[OscServer, SimpleUDPClient]) -> None:
    srv, _ = server
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(3)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.settimeout(3)
    try:
        rx.sendto(_dgram("/livevae/ping"), ("127.0.0.1", srv.port))
        assert OscMessage(rx.recv(1024)).address == "/livevae/pong"
        rx.sendto(_dgram("/livevae/ping", other.getsockname()[1]), ("127.0.0.1", srv.port))
        assert OscMessage(other.recv(1024)).address == "/livevae/pong"
    finally:
        rx.close()
        other.close()


def test_feedback_echoes_changes_mapped_values_and_status() -> None:
    st = ControlState(zdim=4, n_pcs=0)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    fb = OscFeedback(st, "127.0.0.1", rx.getsockname()[1], status_interval=0.2)
    srv = OscServer(st, port=0, mappings=[Mapping("/1/fader3", target="mix", range=(0.0, 0.5))], feedback=fb)
    srv.start()
    fb.start()
    try:
        st.set("mix", 0.25, origin="midi")  # another controller moves mix: the tablet's fader follows
        fb.note_status(24.5, "testcard", "night", 7)
        got = recv_all(rx, 0.6)
        assert ("/1/fader3", [pytest.approx(0.5)]) in got
        assert ("/livevae/mix", [0.25]) in got
        status = [a for addr, a in got if addr == "/livevae/status"]
        assert status and status[-1][1:] == ["testcard", "night", 7, 0, 0.0] and status[-1][0] == pytest.approx(24.5)
        # the fader that made a change is not echoed back to itself (it would jitter)
        SimpleUDPClient("127.0.0.1", srv.port).send_message("/1/fader3", 1.0)
        got = recv_all(rx, 0.3)
        assert st.snapshot().mix == 0.5
        assert not any(addr == "/1/fader3" for addr, _ in got)
        assert ("/livevae/mix", [0.5]) in got
        fb.send_all()  # after a scene recall: every mapped control
        assert ("/1/fader3", [pytest.approx(1.0)]) in recv_all(rx, 0.3)
    finally:
        srv.stop()
        fb.stop()
        rx.close()


# --- the live loop ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pca_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (64x48, z=16, BN warmed) with a 4-direction PCA along the first dimensions; built once
    per module, since building it costs about a second on a busy 2-core machine."""
    from livevae.model import random_model, save_model

    m = random_model("tiny", seed=0)
    m.set_pca(torch.zeros(m.cfg.zdim), torch.eye(4, m.cfg.zdim), torch.tensor([2.0, 1.5, 1.0, 0.5]))
    return save_model(m, tmp_path_factory.mktemp("model") / "pca.safetensors")


def _show(tmp_path: Path, model: Path, extra: str = "") -> Path:
    p = tmp_path / "show.toml"
    p.write_text(
        f'model = "{model}"\nhot_reload = false\n[input]\nsources = ["testcard:96x72"]\nfps = 25\n'
        f"[output]\nheadless = true\nframes = 12\n[osc]\nport = 0\n{extra}"
    )
    return p


class _Probe(Watcher):
    """A controller after the show's: at frame `at` it sends OSC over UDP and waits for its arrival, and it
    keeps every decoded frame and modulated latent."""

    def __init__(self, port: int, at: int, messages: list[tuple[str, float]]) -> None:
        self.port, self.at, self.messages = port, at, messages
        self.outputs: list[np.ndarray] = []
        self.zs: list[np.ndarray] = []
        self.server: OscServer | None = None

    def on_frame(self, info: object) -> None:
        self.outputs.append(info.output.copy())  # type: ignore[attr-defined]
        self.zs.append(info.z.copy())  # type: ignore[attr-defined]
        if info.index == self.at and self.server is not None:  # type: ignore[attr-defined]
            before = self.server.stats.handled
            c = SimpleUDPClient("127.0.0.1", self.server.port)
            for a, v in self.messages:
                c.send_message(a, v)
            assert _wait(lambda: self.server.stats.handled >= before + len(self.messages))  # type: ignore[union-attr]


def _run(show: Path, messages: list[tuple[str, float]], at: int = 5) -> tuple[_Probe, object]:
    from livevae.backends import create
    from livevae.loop import LiveLoop
    from livevae.show.showfile import build_show

    cfg, state, controllers = build_show(show, osc_port=0)
    probe = _Probe(0, at, messages)
    ctrl = controllers[0]
    probe.server = ctrl.server  # type: ignore[attr-defined]
    loop = LiveLoop(cfg, create(cfg.model, "torch"), state, [*controllers, probe])
    loop.run()
    return probe, state


def test_osc_changes_decoded_frames_on_the_next_frame(tmp_path: Path, pca_model: Path) -> None:
    """Latency: a message that arrives while frame k is on screen shows in frame k + 1 (1 frame), offline."""
    show = _show(tmp_path, pca_model)
    ref, _ = _run(show, [])
    got, state = _run(show, [("/livevae/pc/0", 5.0), ("/livevae/z/7", -8.0)], at=5)
    assert state.snapshot().pc[0] == 5.0  # type: ignore[attr-defined]
    for i in range(6):  # frames up to and including the one during which the message arrived: unchanged
        assert np.array_equal(got.outputs[i], ref.outputs[i]), i
    for i in range(6, 12):  # the very next frame shows it, in the latent and in the decoded picture
        dz = got.zs[i] - ref.zs[i]
        want = np.zeros_like(dz)
        want[0, 0] = 5.0 * 2.0  # 5 std along direction 0 (std 2, unit row e0)
        want[0, 7] = -8.0
        np.testing.assert_allclose(dz, want, atol=1e-5)
        assert not np.array_equal(got.outputs[i], ref.outputs[i]), i  # (an untrained model: small but real)


def _garbage(n: int, seed: int = 0) -> list[bytes]:
    """Random bytes, truncated messages, wrong types, unknown addresses, far-future and nested bundles."""
    rng = random.Random(seed)
    valid = [_dgram("/livevae/mix", 0.3), _dgram("/livevae/z/1", 1.0), _dgram("/livevae/scene/x", 1)]
    out: list[bytes] = []
    for i in range(n):
        k = i % 8
        if k == 0:
            out.append(os.urandom(rng.randrange(1, 600)))
        elif k == 1:
            d = rng.choice(valid)
            out.append(d[: rng.randrange(1, len(d))])
        elif k == 2:
            out.append(_dgram("/livevae/mix", "not a number"))
        elif k == 3:
            out.append(_dgram(f"/livevae/{rng.random()}", 1.0))  # a new unknown address every time
        elif k == 4:
            future = struct.pack(">Q", (2**32) * (int(time.time()) + 2208988800 + 3600))
            out.append(b"#bundle\x00" + future + struct.pack(">i", len(valid[0])) + valid[0])
        elif k == 5:
            out.append(b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", 10**6) + b"short")  # lies about its size
        elif k == 6:
            out.append(_dgram("/livevae/z", *(["x"] * 5)))
        else:
            out.append(b"/livevae/mix\x00\x00\x00\x00,f\x00")  # float promised, missing
    return out


def test_garbage_flood_neither_crashes_nor_stalls_the_loop(tmp_path: Path, pca_model: Path) -> None:
    from livevae.backends import create
    from livevae.loop import LiveLoop
    from livevae.show.showfile import build_show

    # long enough to outlast a slow flood on a busy machine: the test ends the show itself (request_quit)
    show = _show(tmp_path, pca_model).read_text().replace("frames = 12", "seconds = 60.0\nrealtime = true")
    (tmp_path / "flood.toml").write_text(show)
    cfg, state, controllers = build_show(tmp_path / "flood.toml", osc_port=0)
    ctrl = controllers[0]
    srv = ctrl.server  # type: ignore[attr-defined]
    presented: list[float] = []

    class Clock(Watcher):
        def on_frame(self, info: object) -> None:
            presented.append(time.monotonic())

    loop = LiveLoop(cfg, create(cfg.model, "torch"), state, [*controllers, Clock()])
    runner = threading.Thread(target=loop.run)
    runner.start()
    assert _wait(lambda: len(presented) >= 3, 10)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    garbage = _garbage(2000)
    t0 = time.monotonic()
    sent = 0
    give_up = t0 + 20.0  # 10,000 datagrams at up to ~10k per second; a busy machine takes longer, not fewer
    while sent < 10000 and time.monotonic() < give_up:
        for d in garbage[sent % 2000 : sent % 2000 + 100]:
            tx.sendto(d, ("127.0.0.1", srv.port))
        sent += 100
        time.sleep(max(0.0, t0 + sent / 10000 - time.monotonic()))
    t1 = time.monotonic()
    tx.sendto(_dgram("/livevae/noise", 0.7), ("127.0.0.1", srv.port))
    tx.close()
    applied = _wait(lambda: state.snapshot().noise == pytest.approx(0.7), 10)  # while the show still plays
    loop.request_quit()
    runner.join(30)
    assert not runner.is_alive()
    during = [t for t in presented if t0 <= t <= t1]
    gaps = np.diff([t for t in presented if t0 - 0.5 <= t <= t1 + 0.5])
    print(f"flood: {sent} datagrams in {t1 - t0:.2f} s; {len(during)} frames during it; max gap {gaps.max():.3f} s; "
          f"malformed {srv.stats.malformed}, unknown {srv.stats.unknown}, bad args {srv.stats.bad_args}")  # fmt: skip
    assert sent >= 8000
    assert len(during) >= 3 and gaps.max() < 1.0  # frames kept coming (generous: the CPU is shared)
    assert srv.stats.malformed > 0 and srv.stats.unknown > 0 and srv.stats.bad_args > 0
    assert applied, state.snapshot().noise  # and a good message after the flood still works
    assert loop.stats.controller_errors == 0


def test_osc_map_command(tmp_path: Path, pca_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from livevae.cli.main import main

    assert main(["osc-map", "--zdim", "8", "--pcs", "2"]) == 0
    out = capsys.readouterr().out
    assert "/livevae/z/{0..7}" in out and "/livevae/pc/{0..1}" in out
    show = _show(tmp_path, pca_model, '[[mapping]]\naddress = "/1/fader3"\ntarget = "pc/1"\nrange = [-2, 2]\n')
    assert main(["osc-map", str(show), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| `/livevae/z/{0..15}` | `f` |" in out and "/livevae/pc/{0..3}" in out
    assert "/1/fader3 -> pc/1 range -2..2" in out


def test_python_osc_root_warnings_are_filtered_once_server_runs(caplog: pytest.LogCaptureFixture) -> None:
    """A flood of datagrams with unknown type tags must not flood the show's log through python-osc's
    root-logger warnings; livevae's own once-per-address warning stays."""
    import logging

    from pythonosc.osc_message import OscMessage

    from livevae.controllers.osc import _QUIET

    logging.getLogger().addFilter(_QUIET)
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(50):
                OscMessage(b"/x\x00\x00,q\x00\x00")  # 'q' is not an OSC type tag
        assert not [r for r in caplog.records if "pythonosc" in r.pathname]
    finally:
        logging.getLogger().removeFilter(_QUIET)


def test_reset_over_osc_moves_the_feedback_target_faders() -> None:
    st = ControlState(zdim=4, n_pcs=0)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    fb = OscFeedback(st, "127.0.0.1", rx.getsockname()[1], status_interval=0)
    srv = OscServer(st, port=0, mappings=[Mapping("/1/fader3", target="mix")], feedback=fb)
    srv.start()
    fb.start()
    try:
        st.set("mix", 0.75, origin="midi:cc")
        assert ("/1/fader3", [pytest.approx(0.75)]) in recv_all(rx, 0.5)
        SimpleUDPClient("127.0.0.1", srv.port).send_message("/livevae/reset", [])
        got = recv_all(rx, 0.5)
        assert st.get("mix") == 0.0
        assert ("/1/fader3", [0.0]) in got and ("/livevae/mix", [0.0]) in got
    finally:
        srv.stop()
        fb.stop()
        rx.close()


def test_route_registry_adds_and_removes_routes_while_serving(server: tuple[OscServer, SimpleUDPClient]) -> None:
    srv, client = server
    builtin = {r.address for r in srv.routes()}
    assert {"/livevae/mix", "/livevae/reset", "/livevae/z/15", "/livevae/scene/*"} <= builtin
    got: list[tuple[str, tuple[object, ...]]] = []
    srv.add_route("/livevae/test/poke", lambda address, *args: got.append((address, args)), "i", "a test route")
    assert srv.routes()[-1].address == "/livevae/test/poke" and not srv.routes()[-1].builtin
    with pytest.raises(OscError, match="already taken"):
        srv.add_route("/livevae/test/poke", lambda address, *args: None)
    with pytest.raises(OscError, match="plain address"):
        srv.add_route("/livevae/*", lambda address, *args: None)
    client.send_message("/livevae/test/poke", 3)
    assert _wait(lambda: got == [("/livevae/test/poke", (3,))])
    srv.remove_route("/livevae/test/poke")
    srv.remove_route("/livevae/mix")  # built-in routes stay
    client.send_message("/livevae/test/poke", 4)
    client.send_message("/livevae/mix", 0.5)
    assert _wait(lambda: srv.state.get("mix") == 0.5)
    assert _wait(lambda: srv.stats.unknown == 1) and got == [("/livevae/test/poke", (3,))]


def test_root_logger_filter_goes_away_with_the_last_server() -> None:
    import logging

    from livevae.controllers.osc import _QUIET

    a, b = OscServer(ControlState(4), port=0), OscServer(ControlState(4), port=0)
    a.start()
    b.start()
    try:
        assert logging.getLogger().filters.count(_QUIET) == 1
        a.stop()
        assert _QUIET in logging.getLogger().filters  # b still serves
    finally:
        a.stop()
        b.stop()
    assert _QUIET not in logging.getLogger().filters  # no filter left behind on the root logger
