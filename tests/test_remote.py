"""OSCQuery over real HTTP and WebSocket on 127.0.0.1: the tree, HOST_INFO, LISTEN, PATH_ADDED, zeroconf, PINs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp", reason="the remote extra is not installed (pip install -e '.[dev]')")

import aiohttp
from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient

from livevae.control.state import ControlState
from livevae.controllers import oscquery
from livevae.controllers.osc import OscServer
from livevae.controllers.remote import RemoteError, RemoteSection, RemoteServer, from_show
from tests.helpers.handle import RecordingHandle
from tests.helpers.remote import LiveShow, start_live_show, stop_live_show


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShow]:
    from livevae.model import random_model, save_model

    tmp = tmp_path_factory.mktemp("remote")
    model = save_model(random_model("tiny", seed=0), tmp / "tiny.safetensors")
    show = start_live_show(model, tmp, name=f"livevae-test-{uuid.uuid4().hex[:6]}")
    yield show
    stop_live_show(show)


def get(url: str) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            body = await r.read()
            return r.status, json.loads(body) if r.content_type == "application/json" else body.decode()

    return asyncio.run(go())


def check_node(node: dict[str, Any], path: str) -> int:
    """Assert one node and its children follow the proposal's structure; returns the number of methods."""
    assert node["FULL_PATH"] == path, (node.get("FULL_PATH"), path)
    assert isinstance(node["DESCRIPTION"], str)
    assert node["ACCESS"] in (0, 1, 2, 3), path
    methods = 0
    if "TYPE" in node:
        methods += 1
        tt = node["TYPE"]
        assert isinstance(tt, str) and tt and set(tt) <= set("ifsTFNI"), (path, tt)
        if node["ACCESS"] & 1:
            assert isinstance(node["VALUE"], list) and len(node["VALUE"]) == len(tt), path
            for v, t in zip(node["VALUE"], tt, strict=True):
                assert isinstance(v, {"i": int, "f": float, "s": str}[t]) or (t == "f" and isinstance(v, int)), path
        if "RANGE" in node:
            assert isinstance(node["RANGE"], list) and len(node["RANGE"]) == len(tt), path
            for r in node["RANGE"]:
                assert set(r) <= {"MIN", "MAX", "VALS"} and r, path
                if "MIN" in r:
                    assert r["MIN"] <= r["MAX"], path
        if "CLIPMODE" in node:
            assert node["CLIPMODE"] == ["both"] * len(tt), path
    else:
        assert "VALUE" not in node and "RANGE" not in node, path
    for name, child in node.get("CONTENTS", {}).items():
        assert "/" not in name and name, path
        methods += check_node(child, path.rstrip("/") + "/" + name)
    if "CONTENTS" not in node:
        assert node["ACCESS"] != 0 or "TYPE" in node or path.endswith(("reset", "zero")), path
    return methods


# --- the tree, pure ---------------------------------------------------------------------------------------------
def test_tree_from_the_route_registry_has_every_control_action_and_scene() -> None:
    state = ControlState(4, 2, n_lfos=1)
    server = OscServer(state, port=0)
    server.add_route("/livevae/midi/learn", lambda *a: None, "[s]", "arm MIDI learn")
    info = oscquery.ShowInfo(sources=("a.mp4", "testcard"), scenes=("verse", "chorus"), recording=True)
    rows = [(r.address, r.args, r.doc) for r in server.routes()]
    tree = oscquery.build_tree(rows, state, info, server.mappings)
    check_node(tree, "/")
    lv = tree["CONTENTS"]["livevae"]["CONTENTS"]
    assert {"mix", "noise", "smooth", "freeze", "record", "source", "reset", "zero", "midi"} <= set(lv)
    assert set(lv["pc"]["CONTENTS"]) == {"0", "1"} and set(lv["z"]["CONTENTS"]) == {"0", "1", "2", "3"}
    assert set(lv["scene"]["CONTENTS"]) == {"save", "verse", "chorus"}
    assert lv["mix"]["RANGE"] == [{"MIN": 0.0, "MAX": 1.0}] and lv["mix"]["ACCESS"] == 3
    assert lv["record"]["VALUE"] == [1] and lv["source"]["RANGE"] == [{"MIN": 0, "MAX": 1}]
    assert lv["lfo"]["CONTENTS"]["0"]["CONTENTS"]["shape"]["RANGE"] == [{"VALS": ["sine", "triangle", "walk"]}]
    assert lv["midi"]["CONTENTS"]["learn"]["TYPE"] == "s"
    assert "ema" not in lv and "*" not in lv["scene"]["CONTENTS"]  # an alias and a wildcard are no nodes
    state.set("pc/1", 2.5)
    tree = oscquery.build_tree(rows, state, info, server.mappings)
    assert oscquery.find(tree, "/livevae/pc/1")["VALUE"] == [2.5]  # type: ignore[index]


# --- over HTTP and WebSocket --------------------------------------------------------------------------------------
def test_the_tree_over_http_validates_and_host_info_names_the_osc_port(live: LiveShow) -> None:
    base = live.remote.base_url
    status, tree = get(base + "/")
    assert status == 200
    assert check_node(tree, "/") > 50
    status, info = get(base + "/?HOST_INFO")
    assert status == 200
    assert info["OSC_PORT"] == live.osc.port and info["OSC_TRANSPORT"] == "UDP" and info["OSC_IP"] == "127.0.0.1"
    assert info["NAME"] == live.remote.cfg.name
    assert info["EXTENSIONS"]["LISTEN"] is True and info["EXTENSIONS"]["PATH_ADDED"] is True
    assert all(isinstance(v, bool) for v in info["EXTENSIONS"].values())
    live.state.set("mix", 0.25)
    time.sleep(0.15)  # the tree answers from a cache of 100 ms
    assert get(base + "/livevae/mix?VALUE") == (200, {"VALUE": [0.25]})
    status, node = get(base + "/livevae/mix")
    assert status == 200 and node["FULL_PATH"] == "/livevae/mix" and node["TYPE"] == "f"
    assert get(base + "/livevae/nothing")[0] == 404
    assert get(base + "/livevae/mix?GABBAGABBAHEY")[0] == 400
    assert get(base + "/livevae/reset?VALUE")[0] == 204  # a method without a value


def test_a_client_polling_the_tree_in_a_loop_costs_one_build_per_100_ms(live: LiveShow) -> None:
    url = live.remote.base_url + "/livevae/noise?VALUE"

    async def go() -> list[int]:
        async with aiohttp.ClientSession() as s:
            return [r.status for r in await asyncio.gather(*(s.get(url) for _ in range(50)))]

    before, start = live.remote.tree_builds, time.monotonic()
    assert asyncio.run(go()) == [200] * 50
    took = time.monotonic() - start
    assert live.remote.tree_builds - before <= took / 0.1 + 1


def test_a_value_set_over_osc_arrives_on_a_listen_stream_within_one_frame(live: LiveShow) -> None:
    ws_url = live.remote.base_url.replace("http", "ws") + "/"
    osc = SimpleUDPClient("127.0.0.1", live.osc.port)

    async def go() -> list[tuple[int, int, str, list[Any]]]:
        got = []
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url) as ws:
            await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/livevae/noise"}))
            await asyncio.sleep(0.2)  # the server has read the LISTEN
            for k in range(5):
                live.log.wait_frames(1)
                sent = live.log.index
                osc.send_message("/livevae/noise", 0.5 + 0.25 * k)
                msg = await asyncio.wait_for(ws.receive(), 5)
                arrived = live.log.index
                assert msg.type == aiohttp.WSMsgType.BINARY
                m = OscMessage(msg.data)
                got.append((sent, arrived, m.address, list(m.params)))
        return got

    got = asyncio.run(go())
    for k, (sent, arrived, address, params) in enumerate(got):
        assert address == "/livevae/noise" and params == [pytest.approx(0.5 + 0.25 * k)]
        assert arrived - sent <= 1, f"arrived {arrived - sent} frames after it was sent"
    print(f"OSC -> LISTEN stream: frames between send and arrival {[a - s for s, a, _, _ in got]}")


def test_only_what_is_listened_to_is_streamed_and_ignore_stops_it(live: LiveShow) -> None:
    ws_url = live.remote.base_url.replace("http", "ws") + "/"

    async def go() -> list[str]:
        seen = []
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url) as ws:
            await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/livevae/smooth"}))
            await ws.send_str("not json")  # counted, ignored
            await asyncio.sleep(0.2)
            live.state.set("bpm", 99.0)  # not listened to
            live.state.set("smooth", 0.5)
            seen.append(OscMessage((await asyncio.wait_for(ws.receive(), 5)).data).address)
            await ws.send_str(json.dumps({"COMMAND": "IGNORE", "DATA": "/livevae/smooth"}))
            await asyncio.sleep(0.2)
            live.state.set("smooth", 0.1)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.receive(), 0.5)
        return seen

    bad = live.remote.stats.bad
    assert asyncio.run(go()) == ["/livevae/smooth"]
    assert live.remote.stats.bad == bad + 1


def test_a_saved_scene_appears_as_path_added(live: LiveShow) -> None:
    ws_url = live.remote.base_url.replace("http", "ws") + "/"
    osc = SimpleUDPClient("127.0.0.1", live.osc.port)
    name = f"verse{uuid.uuid4().hex[:4]}"

    async def go() -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url) as ws:
            await asyncio.sleep(0.2)
            osc.send_message("/livevae/scene/save", name)
            while True:
                msg = await asyncio.wait_for(ws.receive(), 5)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    return dict(json.loads(msg.data))

    assert asyncio.run(go()) == {"COMMAND": "PATH_ADDED", "DATA": f"/livevae/scene/{name}"}
    status, node = get(live.remote.base_url + f"/livevae/scene/{name}")
    assert status == 200 and node["ACCESS"] == 2


def test_a_route_added_and_removed_appears_as_path_added_then_path_removed(live: LiveShow) -> None:
    ws_url = live.remote.base_url.replace("http", "ws") + "/"

    async def go() -> list[dict[str, Any]]:
        got = []
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url) as ws:
            await asyncio.sleep(0.2)
            live.osc.add_route("/livevae/extra/knob", lambda *a: None, "f", "a route a controller added")
            got.append(json.loads((await asyncio.wait_for(ws.receive(), 5)).data))
            got.append(json.loads((await asyncio.wait_for(ws.receive(), 5)).data))
            live.osc.remove_route("/livevae/extra/knob")
            got.append(json.loads((await asyncio.wait_for(ws.receive(), 5)).data))
            got.append(json.loads((await asyncio.wait_for(ws.receive(), 5)).data))
        return got

    got = asyncio.run(go())
    assert got[:2] == [{"COMMAND": "PATH_ADDED", "DATA": p} for p in ("/livevae/extra", "/livevae/extra/knob")]
    assert got[2:] == [{"COMMAND": "PATH_REMOVED", "DATA": p} for p in ("/livevae/extra", "/livevae/extra/knob")]


def test_a_zeroconf_browser_finds_the_oscjson_service(live: LiveShow) -> None:
    from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf

    found: list[str] = []

    class Listener(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            found.append(name)

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            pass

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            pass

    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        browsers = [ServiceBrowser(zc, kind, Listener()) for kind in ("_oscjson._tcp.local.", "_osc._udp.local.")]
        deadline = time.monotonic() + 15
        ours = [n for n in found if n.startswith(live.remote.cfg.name)]
        while len(ours) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            ours = [n for n in found if n.startswith(live.remote.cfg.name)]
        assert {n.split(".", 1)[1] for n in ours} == {"_oscjson._tcp.local.", "_osc._udp.local."}, found
        name = next(n for n in ours if "_oscjson" in n)
        info = zc.get_service_info("_oscjson._tcp.local.", name, timeout=3000)
        assert info is not None and info.port == live.remote.port
        assert info.parsed_addresses() == ["127.0.0.1"]
        for b in browsers:
            b.cancel()
    finally:
        zc.close()


# --- exposure ----------------------------------------------------------------------------------------------------
def _server(**kw: Any) -> RemoteServer:
    state = ControlState(4, 0)
    rs = RemoteServer(state, RemoteSection(port=0, zeroconf=False, **kw))
    rs.start(RecordingHandle(sources=("testcard",)))
    assert rs.port != 0
    return rs


async def _ui(rs: RemoteServer, pin: str | None, origin: str | None = None) -> tuple[int | None, list[Any]]:
    url = rs.base_url.replace("http", "ws") + "/ui/ws" + (f"?pin={pin}" if pin is not None else "")
    headers = {"Origin": origin} if origin else {}
    out: list[Any] = []
    async with aiohttp.ClientSession() as s:
        try:
            ws = await s.ws_connect(url, headers=headers)
        except aiohttp.WSServerHandshakeError as e:
            return e.status, out
        async with ws:
            msg = await asyncio.wait_for(ws.receive(), 5)
            if msg.type == aiohttp.WSMsgType.TEXT:
                out.append(json.loads(msg.data))
                await ws.send_str(json.dumps({"set": {"mix": 0.5}}))
                await ws.send_str("x" * 10_000)  # over the message bound: the server closes this socket
                msg = await asyncio.wait_for(ws.receive(), 5)
            return ws.close_code, out


def test_on_the_lan_a_pin_is_made_and_a_wrong_one_controls_nothing() -> None:
    rs = RemoteServer(ControlState(4, 0), RemoteSection(host="0.0.0.0", port=0))
    assert rs.lan and rs.pin is not None and len(rs.pin) == 6 and rs.pin.isdigit()
    assert f"pin={rs.pin}" in rs.url
    loopback = RemoteServer(ControlState(4, 0), RemoteSection(port=0))
    assert loopback.pin is None  # 127.0.0.1: the same machine, no PIN unless one is given

    rs = _server(pin="4321")
    try:
        assert rs.hud_lines() == [f"remote http://127.0.0.1:{rs.port}/ui/ PIN 4321, 0 pages"]
        code, out = asyncio.run(_ui(rs, "0000"))
        assert code == 4003 and out == [] and rs.state.get("mix") == 0.0
        code, out = asyncio.run(_ui(rs, None))
        assert code == 4003 and out == []
        code, out = asyncio.run(_ui(rs, "4321"))
        assert out and "hello" in out[0] and rs.state.get("mix") == 0.5
        assert code == 1009  # the oversized message closed the socket: bounded input
        assert rs.stats.refused == 2
    finally:
        rs.stop()


def test_on_the_lan_the_url_with_its_pin_is_printed_with_a_qr_code(capsys: pytest.CaptureFixture[str]) -> None:
    rs = RemoteServer(ControlState(4, 0), RemoteSection(host="0.0.0.0", port=0, zeroconf=False))
    rs.start(RecordingHandle())
    try:
        out = capsys.readouterr().out
        assert f"open {rs.url} on the phone (PIN {rs.pin})" in out
        assert rs.url.endswith(f":{rs.port}/ui/?pin={rs.pin}") and "0.0.0.0" not in rs.url
        assert out.count("\n") > 10 and "█" in out  # segno's QR code of that URL, in block characters
    finally:
        rs.stop()


def test_wrong_pins_lock_an_address_out_and_foreign_origins_are_refused() -> None:
    rs = _server(pin="4321")
    try:
        for _ in range(5):
            assert asyncio.run(_ui(rs, "1111"))[0] == 4003
        code, out = asyncio.run(_ui(rs, "4321"))  # the right PIN, too late: locked out
        assert code == 4029 and out == []
        rs._failures.clear()
        code, _ = asyncio.run(_ui(rs, "4321", origin="http://evil.example"))
        assert code == 403  # another site's page in the performer's browser
        assert rs.state.get("mix") == 0.0
    finally:
        rs.stop()


def test_bad_messages_from_a_page_are_answered_with_one_line_and_change_nothing() -> None:
    rs = _server()

    async def go() -> list[str]:
        errors = []
        async with aiohttp.ClientSession() as s, s.ws_connect(rs.base_url.replace("http", "ws") + "/ui/ws") as ws:
            await ws.receive()  # hello
            for bad in ({"set": {"nope": 1}}, {"set": {"mix": "x"}}, {"action": "quit"}, [1], {"what": 1}):
                await ws.send_str(json.dumps(bad))
                errors.append(json.loads((await asyncio.wait_for(ws.receive(), 5)).data)["error"])
        return errors

    try:
        errors = asyncio.run(go())
        assert "'nope'" in errors[0] and "unknown target" in errors[0]
        assert "'x'" in errors[1] and "quit" in errors[2]
        assert all("\n" not in e for e in errors)
        assert rs.stats.bad == 5 and rs.state.get("mix") == 0.0
    finally:
        rs.stop()


def test_a_taken_port_leaves_the_show_without_the_remote_and_bad_sections_name_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rs = _server()
    try:
        other = RemoteServer(ControlState(4, 0), RemoteSection(port=rs.port, zeroconf=False))
        other.start(RecordingHandle())
        assert other._thread is None and "cannot bind" in caplog.text and f":{rs.port}" in caplog.text
    finally:
        rs.stop()
    with pytest.raises(RemoteError, match=r"\[remote\] port: 70000"):
        from_show({"port": 70000}, ControlState(4, 0), Path("show.toml"))
    with pytest.raises(RemoteError, match=r"\[remote\] pin: 'a b'"):
        from_show({"pin": "a b"}, ControlState(4, 0), Path("show.toml"))


def test_the_remote_flags_add_one_server_over_the_shows_section() -> None:
    import argparse

    from livevae.cli.live import add_arguments, with_remote

    p = argparse.ArgumentParser()
    add_arguments(p)
    state = ControlState(4, 0)
    assert with_remote(p.parse_args(["--model", "m.safetensors"]), state, []) == []
    show_remote = from_show({"port": 9100, "name": "stage"}, state, Path("show.toml"))
    (rs,) = with_remote(p.parse_args(["--remote-host", "0.0.0.0", "--remote-pin", "2468"]), state, [show_remote])
    assert isinstance(rs, RemoteServer) and rs is not show_remote
    assert (rs.host, rs.port, rs.pin, rs.cfg.name) == ("0.0.0.0", 9100, "2468", "stage")
    with pytest.raises(RemoteError, match=r"--remote-\* flags port: 99999"):
        with_remote(p.parse_args(["--remote-port", "99999"]), state, [])


def test_the_page_is_served_from_the_package_with_no_outside_address() -> None:
    rs = _server()
    try:
        status, html = get(rs.base_url + "/ui/")
        assert status == 200 and "app.js" in html
        for name in ("app.js", "style.css"):
            status, text = get(rs.base_url + "/ui/" + name)
            assert status == 200 and "http://" not in text and "https://" not in text  # no CDN
        assert get(rs.base_url + "/ui/..%2Fremote.py")[0] == 404
    finally:
        rs.stop()
