"""Remote control: an OSCQuery server and the browser control surface, on one aiohttp server on its own thread.

Over 600 lines on purpose: one aiohttp server (HTTP, WebSocket, PIN, zeroconf) on one event loop; the tree itself is
built in oscquery.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pythonosc.osc_message_builder import build_msg

from livevae.control.state import ControlError, ControlState
from livevae.controllers import oscquery
from livevae.controllers.osc_mapping import PREFIX
from livevae.errors import LivevaeError
from livevae.handle import FrameInfo, LoopHandle

log = logging.getLogger("livevae.controllers.remote")

MAX_CLIENTS = 16  # WebSocket clients of each kind (OSCQuery, pages); the next one is refused with 503
MAX_MESSAGE = 4096  # bytes in one incoming WebSocket message; a page sends a few dozen
MAX_REQUEST = 16 * 1024  # bytes in an HTTP request body (nothing here takes one)
MAX_LISTEN = 4096  # addresses one OSCQuery client may LISTEN to
PIN_TRIES = 5  # wrong PINs from one address before it is locked out for LOCKOUT_S
LOCKOUT_S = 60.0
CLOSE_WRONG_PIN, CLOSE_LOCKED = 4003, 4029  # WebSocket close codes the page tells apart
TREE_CACHE_S = 0.1  # a tree answers GETs for this long: a client polling in a loop costs one build per 100 ms
PATHS_POLL_S = 0.1  # how often the address tree is checked for PATH_ADDED / PATH_REMOVED (saves, reloads)
UI_ACTIONS = ("scene.recall", "scene.save", "record", "source", "midi.learn", "screenshot")
WEB = "livevae.controllers.web"


class RemoteError(LivevaeError):
    """The remote server cannot start, or its configuration is wrong."""


class RemoteSection(BaseModel):
    """A show's [remote] section (every key optional)."""

    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"  # the LAN only when asked for (0.0.0.0), and then with a PIN
    port: int = Field(default=8080, ge=0, le=65535)  # HTTP and WebSocket; 0 = any free port
    pin: str | None = None  # LAN: this PIN (4-32 letters/digits) instead of a random one printed at start
    zeroconf: bool = True  # advertise _oscjson._tcp (and _osc._udp)
    preview_fps: float = Field(default=4.0, ge=0, le=15)  # the page's live picture; 0 = none
    preview_quality: int = Field(default=70, ge=10, le=95)
    name: str = "livevae"


@dataclass
class RemoteStats:
    """Counters, for tests and the HUD."""

    http: int = 0
    refused: int = 0  # wrong PINs, foreign origins, lockouts
    bad: int = 0  # malformed or unknown messages from pages and OSCQuery clients
    sets: int = 0
    actions: int = 0
    previews: int = 0
    clients: dict[str, int] = field(default_factory=lambda: {"oscquery": 0, "ui": 0})


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_pin(pin: str) -> str:
    p = pin.strip()
    if not (4 <= len(p) <= 32 and p.isalnum()):
        raise RemoteError(f"[remote] pin: {pin!r}; expected 4 to 32 letters or digits")
    return p


class _Client:
    """One WebSocket: what it is due, coalesced (latest value per address), so a slow phone costs no memory."""

    def __init__(self, ws: Any, kind: str, cid: str) -> None:
        self.ws, self.kind, self.cid = ws, kind, cid
        self.listening: set[str] = set()  # OSCQuery: addresses to stream
        self.values: OrderedDict[str, Any] = OrderedDict()  # address or control target -> value(s)
        self.notes: deque[str] = deque(maxlen=256)  # JSON texts (PATH_ADDED, state); the oldest go first
        self.picture: bytes | None = None  # the newest preview only
        self.wake = asyncio.Event()


class RemoteServer:
    """A Controller: serves the OSCQuery tree (HTTP GET with ?HOST_INFO or an attribute), the OSCQuery WebSocket
    (LISTEN / IGNORE, values streamed as OSC binary, PATH_ADDED / PATH_REMOVED), and the browser surface under
    /ui/ with its own JSON WebSocket. Everything runs on one asyncio loop on its own thread; the frame thread only
    copies a few numbers (and a preview picture a few times a second) and wakes it."""

    def __init__(self, state: ControlState, cfg: RemoteSection | None = None) -> None:
        self.state = state
        self.cfg = cfg or RemoteSection()
        self.host, self.port = self.cfg.host, self.cfg.port
        self.lan = not is_loopback(self.host)
        # No control from the LAN without a PIN: one given, or a random 6-digit one printed at start.
        self.pin: str | None = check_pin(self.cfg.pin) if self.cfg.pin else None
        if self.lan and self.pin is None:
            self.pin = f"{secrets.randbelow(10**6):06d}"
        self.stats = RemoteStats()
        self.handle: LoopHandle | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._clients: dict[str, _Client] = {}
        self._lock = threading.Lock()
        self._dirty: dict[str, str] = {}  # control target -> origin of its last change
        self._show: dict[str, Any] = {"recording": False, "source": 0, "scene": ""}
        self._show_dirty = False
        self._wake_due = False
        self._last_preview = 0.0
        self._failures: dict[str, tuple[int, float]] = {}  # remote address -> (wrong PINs, monotonic of the last)
        self._paths: set[str] = set()
        self._scenes: tuple[str, ...] = ()
        self._next_id = 0
        self._zeroconf: Any = None
        self._tree: tuple[float, dict[str, Any]] | None = None  # (monotonic when built, the tree)
        self._tree_lock: asyncio.Lock | None = None
        self.tree_builds = 0

    # -- Controller protocol --
    def start(self, loop: LoopHandle | None) -> None:
        """Bind and serve on a daemon thread; the show goes on without the remote (one warning) when it cannot."""
        self.handle = loop
        self._thread = threading.Thread(target=self._run, name="remote", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            log.warning("%s; playing without the remote", self._error)
            self._thread.join(2)
            self._thread = None
            return
        self.state.add_listener(self._on_change)
        self.state.add_reset_listener(self._on_reset)
        log.info("remote control on %s (OSCQuery tree at %s)", self.url, self.base_url + "/")
        if self.lan:
            print(f"livevae remote: open {self.url} on the phone (PIN {self.pin})", flush=True)
            _print_qr(self.url)

    def modulate(self, z: np.ndarray, t: float) -> np.ndarray:
        return z

    def handle_action(self, action: str, arg: object) -> bool:
        return False

    def on_frame(self, info: FrameInfo) -> None:
        """From the frame thread: the show state when it moved, and the preview a few times a second."""
        if self._aloop is None:
            return
        status = self.handle.status() if self.handle is not None else None
        scenes = self._scene_bank()
        show = {
            "recording": bool(info.recording),
            "source": status.source_index if status is not None else 0,
            "scene": getattr(scenes, "current", "") if scenes is not None else "",
        }
        wake = False
        with self._lock:
            if show != self._show:
                self._show, self._show_dirty = show, True
                wake = self._due()
        if wake:
            self._call(self._flush)
        fps = self.cfg.preview_fps
        if fps > 0 and info.output is not None and self.stats.clients["ui"] > 0:
            now = time.monotonic()
            if now - self._last_preview >= 1.0 / fps:
                self._last_preview = now
                self._call(self._encode_preview, info.output.copy(), info.index)  # [H, W, 3] uint8, a copy

    def hud_lines(self) -> list[str]:
        """The page's address (with the PIN on the LAN) and who is connected, for the window's HUD."""
        if self._aloop is None:
            return []
        c = self.stats.clients
        return [f"remote {self.base_url}/ui/" + (f" PIN {self.pin}" if self.pin else "") + f", {c['ui']} pages"]

    def stop(self) -> None:
        self.state.remove_listener(self._on_change)
        if self._aloop is not None and self._stopping is not None:
            self._call(self._stopping.set)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    # -- where it is --
    @property
    def base_url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = _lan_address()
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The page's address, with the PIN in it when there is one (what the QR code holds)."""
        return self.base_url + "/ui/" + (f"?pin={self.pin}" if self.pin else "")

    # -- change events (any thread) --
    def _call(self, fn: Any, *args: Any) -> None:
        aloop = self._aloop
        if aloop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the show stops
                aloop.call_soon_threadsafe(fn, *args)

    def _due(self) -> bool:
        """Under the lock: True when the loop must be woken (once per batch of changes)."""
        if self._wake_due:
            return False
        self._wake_due = True
        return True

    def _on_change(self, target: str, value: float, origin: str) -> None:
        with self._lock:
            self._dirty[target] = origin
            wake = self._due()
        if wake:
            self._call(self._flush)

    def _on_reset(self, origin: str) -> None:
        with self._lock:
            self._show_dirty = True
            wake = self._due()
        if wake:
            self._call(self._flush)

    # -- the asyncio side --
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported by start(); never raised into the show
            self._error = e if isinstance(e, RemoteError) else RemoteError(f"remote {self.host}:{self.port}: {e}")
            self._ready.set()

    async def _main(self) -> None:
        from aiohttp import web

        self._aloop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=MAX_REQUEST)
        app.router.add_get("/ui/ws", self._ui_ws)
        app.router.add_get("/ui", self._ui_redirect)
        app.router.add_get("/ui/", self._ui_file)
        app.router.add_get("/ui/{name}", self._ui_file)
        app.router.add_get("/{path:.*}", self._oscquery)
        # keep-alive bounded: an idle phone in a pocket must not hold a connection slot for long
        runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=15)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise RemoteError(
                f"remote {self.host}:{self.port}: cannot bind ({e.strerror or e}); expected a free TCP port "
                "(choose another with --remote-port or [remote] port)"
            ) from None
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]  # the real port when 0 asked for any
        self._paths = self._current_paths()
        self._ready.set()
        poll = asyncio.create_task(self._poll_paths())
        advertise = asyncio.create_task(self._advertise()) if self.cfg.zeroconf else None
        try:
            await self._stopping.wait()
        finally:
            poll.cancel()
            if advertise is not None:
                advertise.cancel()
            await self._unadvertise()
            for c in list(self._clients.values()):
                with contextlib.suppress(Exception):
                    await c.ws.close()
            await runner.cleanup()
            self._aloop = None

    # -- the tree --
    def _routes(self) -> Any:
        return self.handle.service("osc.routes") if self.handle is not None else None

    def _scene_bank(self) -> Any:
        return self.handle.service("scenes") if self.handle is not None else None

    def _info(self) -> oscquery.ShowInfo:
        st = self.handle.status() if self.handle is not None else None
        bank = self._scene_bank()
        return oscquery.ShowInfo(
            recording=bool(self._show["recording"]),
            sources=st.sources if st is not None else (),
            source_index=st.source_index if st is not None else 0,
            scene=str(self._show["scene"]),
            scenes=tuple(bank.names()) if bank is not None else (),
        )

    def _route_rows(self) -> tuple[list[tuple[str, str, str]], list[Any]]:
        server = self._routes()
        if server is None:
            return oscquery.default_routes(self.state), []
        return [(r.address, r.args, r.doc) for r in server.routes()], list(server.mappings)

    def tree(self) -> dict[str, Any]:
        rows, mappings = self._route_rows()
        return oscquery.build_tree(rows, self.state, self._info(), mappings, self.cfg.name)

    async def _cached_tree(self) -> dict[str, Any]:
        """The tree, built off the loop in a worker thread, at most once per TREE_CACHE_S however many ask (live
        values come from LISTEN, not from polling)."""
        if self._tree_lock is None:
            self._tree_lock = asyncio.Lock()
        async with self._tree_lock:
            cached = self._tree
            if cached is None or time.monotonic() - cached[0] >= TREE_CACHE_S:
                tree = await asyncio.get_running_loop().run_in_executor(None, self.tree)
                self.tree_builds += 1
                cached = self._tree = (time.monotonic(), tree)
            return cached[1]

    def _current_paths(self) -> set[str]:
        rows, mappings = self._route_rows()
        groups: dict[str, list[Any]] = {}
        for m in mappings:
            groups.setdefault(m.address, []).append(m)
        out = {"/"}
        for address in oscquery.addresses(rows, self._info(), groups):
            parts = [p for p in address.split("/") if p]
            out |= {"/" + "/".join(parts[: i + 1]) for i in range(len(parts))}
        return out

    def osc_port(self) -> int | None:
        server = self._routes()
        return getattr(server, "port", None) if server is not None and getattr(server, "_sock", None) else None

    # -- HTTP: OSCQuery --
    async def _oscquery(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        self.stats.http += 1
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._oscquery_ws(request, WSMsgType)
        path = "/" + request.match_info.get("path", "").strip("/")
        query = request.query_string
        if query == "HOST_INFO":
            return web.json_response(oscquery.host_info(self.cfg.name, self._osc_ip(), self.osc_port(), self.port))
        tree = await self._cached_tree()
        node = oscquery.find(tree, path)
        if node is None:
            return web.Response(status=404, text=f"OSCQuery: no node at {path}")
        if not query:
            return web.json_response(node)
        if query not in oscquery.ATTRIBUTES:
            return web.Response(status=400, text=f"OSCQuery: attribute {query!r}; expected one of "
                                + ", ".join(oscquery.ATTRIBUTES))  # fmt: skip
        if query not in node:
            return web.Response(status=204)
        return web.json_response({query: node[query]})

    def _osc_ip(self) -> str:
        server = self._routes()
        host = getattr(server, "host", self.host) if server is not None else self.host
        return _lan_address() if host in ("0.0.0.0", "::") else str(host)

    async def _oscquery_ws(self, request: Any, types: Any) -> Any:
        from aiohttp import web

        if self.stats.clients["oscquery"] >= MAX_CLIENTS:
            return web.Response(status=503, text=f"OSCQuery: more than {MAX_CLIENTS} clients")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=20)
        await ws.prepare(request)
        client = self._add(ws, "oscquery")
        writer = asyncio.create_task(self._writer(client))
        try:
            async for msg in ws:
                if msg.type != types.TEXT:
                    continue  # OSC over the WebSocket is not offered (OSC_TRANSPORT is UDP)
                self._oscquery_command(client, msg.data)
        finally:
            self._remove(client)
            writer.cancel()
        return ws

    def _oscquery_command(self, client: _Client, text: str) -> None:
        try:
            cmd = json.loads(text)
            command, data = str(cmd["COMMAND"]), str(cmd["DATA"])
        except (ValueError, KeyError, TypeError):
            self.stats.bad += 1
            return
        if command == "LISTEN" and len(client.listening) < MAX_LISTEN:
            client.listening.add(data)
        elif command == "IGNORE":
            client.listening.discard(data)
        else:
            self.stats.bad += 1

    # -- HTTP: the page --
    async def _ui_redirect(self, request: Any) -> Any:
        from aiohttp import web

        raise web.HTTPFound("/ui/" + (f"?{request.query_string}" if request.query_string else ""))

    async def _ui_file(self, request: Any) -> Any:
        from aiohttp import web

        self.stats.http += 1
        name = request.match_info.get("name", "") or "index.html"
        types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
        kind = types.get(Path(name).suffix)
        if kind is None or "/" in name or name.startswith("."):
            return web.Response(status=404, text=f"remote: no page {name}")
        try:
            body = resources.files(WEB).joinpath(name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return web.Response(status=404, text=f"remote: no page {name}")
        return web.Response(body=body, content_type=kind, charset="utf-8", headers={"Cache-Control": "no-cache"})

    def _pin_check(self, request: Any) -> str:
        """ "ok" when the page may control (no PIN set, or the right one), "wrong", or "locked" (too many wrong
        PINs from its address in the last LOCKOUT_S, right or not: guessing 6 digits must take years)."""
        if self.pin is None:
            return "ok"
        who = request.remote or "?"
        n, last = self._failures.get(who, (0, 0.0))
        now = time.monotonic()
        if n >= PIN_TRIES and now - last < LOCKOUT_S:
            return "locked"
        given = request.query.get("pin", "")
        if hmac.compare_digest(given.encode(), self.pin.encode()):
            self._failures.pop(who, None)
            return "ok"
        if len(self._failures) < 1024 or who in self._failures:
            self._failures[who] = (0 if now - last >= LOCKOUT_S else n) + 1, now
        return "wrong"

    async def _ui_ws(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            self.stats.refused += 1  # another site's page in the performer's browser must not drive the show
            return web.Response(status=403, text="remote: cross-origin WebSocket refused")
        if self.stats.clients["ui"] >= MAX_CLIENTS:
            return web.Response(status=503, text=f"remote: more than {MAX_CLIENTS} pages")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=20)
        await ws.prepare(request)
        pin = self._pin_check(request)
        if pin != "ok":
            self.stats.refused += 1
            if pin == "locked":
                await ws.close(code=CLOSE_LOCKED, message=f"too many wrong PINs; wait {LOCKOUT_S:g} s".encode())
            else:
                await ws.close(code=CLOSE_WRONG_PIN, message=b"wrong PIN")
            return ws
        client = self._add(ws, "ui")
        await ws.send_str(json.dumps({"hello": self._hello()}))
        writer = asyncio.create_task(self._writer(client))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._ui_message(client, msg.data)
        finally:
            self._remove(client)
            writer.cancel()
        return ws

    def _hello(self) -> dict[str, Any]:
        """What a page needs to draw itself: its faders and pad, the scenes, the sources and the show state."""
        snap = self.state.snapshot()
        if self.state.n_pcs:
            dirs = [f"pc/{k}" for k in range(min(self.state.n_pcs, 8))]
        else:
            dirs = [f"z/{i}" for i in range(min(self.state.zdim, 8))]
        controls = []
        for t in [*dirs, "mix", "noise", "smooth"]:
            lo, hi = self.state.check_target(t)
            controls.append({"target": t, "lo": lo, "hi": hi, "value": snap.get(t)})
        st = self.handle.status() if self.handle is not None else None
        bank = self._scene_bank()
        return {
            "name": self.cfg.name,
            "controls": controls,
            "xy": dirs[:2],
            "scenes": bank.names() if bank is not None else [],
            "sources": list(st.sources) if st is not None else [],
            "show": dict(self._show),
            "preview": self.cfg.preview_fps > 0,
        }

    def _ui_message(self, client: _Client, text: str) -> None:
        origin = f"ui:{client.cid}"
        try:
            msg = json.loads(text)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
            if "set" in msg:
                values = msg["set"]
                if not isinstance(values, dict) or not values or len(values) > 16:
                    raise ValueError("set: expected an object of 1..16 target: number")
                self.state.set_many({str(k): float(v) for k, v in values.items()}, origin=origin)
                self.stats.sets += 1
            elif "action" in msg:
                action, arg = str(msg["action"]), msg.get("arg")
                if action not in UI_ACTIONS:
                    raise ValueError(f"action {action!r}; expected one of {', '.join(UI_ACTIONS)}")
                if arg is not None and not isinstance(arg, bool | int | str):
                    raise ValueError(f"action {action}: argument {arg!r}; expected a string, number or nothing")
                if isinstance(arg, str) and len(arg) > 128:
                    raise ValueError(f"action {action}: argument of {len(arg)} characters; expected at most 128")
                self.state.post(action, arg, origin=origin)
                self.stats.actions += 1
            else:
                raise ValueError("expected {set: {...}} or {action: ...}")
        except (ValueError, TypeError, ControlError) as e:
            self.stats.bad += 1
            client.notes.append(json.dumps({"error": str(e)[:300]}))
            client.wake.set()

    # -- clients --
    def _add(self, ws: Any, kind: str) -> _Client:
        self._next_id += 1
        c = _Client(ws, kind, str(self._next_id))
        self._clients[c.cid] = c
        self.stats.clients[kind] += 1
        return c

    def _remove(self, c: _Client) -> None:
        if self._clients.pop(c.cid, None) is not None:
            self.stats.clients[c.kind] -= 1

    async def _writer(self, c: _Client) -> None:
        """Send what the client is due, newest values only; one slow client waits on its own socket alone."""
        while not c.ws.closed:
            await c.wake.wait()
            c.wake.clear()
            notes, c.notes = list(c.notes), deque(maxlen=256)
            values, c.values = c.values, OrderedDict()
            picture, c.picture = c.picture, None
            try:
                for n in notes:
                    await c.ws.send_str(n)
                if c.kind == "oscquery":
                    for address, args in values.items():
                        await c.ws.send_bytes(build_msg(address, list(args)).dgram)
                elif values:
                    await c.ws.send_str(json.dumps({"values": values}))
                if picture is not None:
                    await c.ws.send_bytes(picture)
            except (ConnectionError, RuntimeError):
                return

    def _flush(self) -> None:
        """On the loop: hand every change since the last flush to the clients that want it."""
        with self._lock:
            dirty, self._dirty = self._dirty, {}
            show = dict(self._show) if self._show_dirty else None
            self._show_dirty = self._wake_due = False
        snap = self.state.snapshot()
        values: dict[str, float] = {}
        for t in dirty:
            with contextlib.suppress(ControlError):
                values[t] = snap.get(t)
        for c in self._clients.values():
            if c.kind == "oscquery":
                for t, v in values.items():
                    address = f"{PREFIX}/{t}"
                    if address in c.listening:
                        c.values[address] = [round(v) if t == "freeze" or t.endswith("/sync") else v]
                if show is not None:
                    for key, address in (("recording", f"{PREFIX}/record"), ("source", f"{PREFIX}/source")):
                        if address in c.listening:
                            c.values[address] = [int(show[key])]
            else:
                for t, v in values.items():
                    if dirty[t] != f"ui:{c.cid}":  # the page whose fader moved it already shows it
                        c.values[t] = v
                if show is not None:
                    c.notes.append(json.dumps({"show": show}))
            if c.values or c.notes:
                c.wake.set()

    def _encode_preview(self, picture: np.ndarray, index: int) -> None:
        import cv2

        ok, jpg = cv2.imencode(".jpg", picture[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.cfg.preview_quality])
        if not ok:
            return
        data = jpg.tobytes()
        self.stats.previews += 1
        for c in self._clients.values():
            if c.kind == "ui":
                c.picture = data
                c.wake.set()

    async def _poll_paths(self) -> None:
        """PATH_ADDED / PATH_REMOVED when the address tree changes: a scene saved, a show reloaded, a route added."""
        while True:
            await asyncio.sleep(PATHS_POLL_S)
            try:
                now = self._current_paths()
            except Exception as e:  # a controller mid-reload; the next poll sees the settled tree
                log.debug("remote: address tree not readable now: %s", e)
                continue
            added, removed = sorted(now - self._paths), sorted(self._paths - now)
            self._paths = now
            if added or removed:
                self._tree = None  # a GET after PATH_ADDED must find the new node
            bank = self._scene_bank()
            scenes = tuple(bank.names()) if bank is not None else ()
            scenes_moved = scenes != self._scenes
            self._scenes = scenes
            for c in self._clients.values():
                if c.kind == "oscquery":
                    c.notes.extend(json.dumps({"COMMAND": "PATH_ADDED", "DATA": p}) for p in added)
                    c.notes.extend(json.dumps({"COMMAND": "PATH_REMOVED", "DATA": p}) for p in removed)
                elif scenes_moved:
                    c.notes.append(json.dumps({"scenes": list(scenes)}))
                if c.notes:
                    c.wake.set()

    # -- zeroconf --
    async def _advertise(self) -> None:
        try:
            from zeroconf import IPVersion, ServiceInfo
            from zeroconf.asyncio import AsyncZeroconf
        except ImportError:
            log.info("remote: zeroconf is not installed (pip install 'livevae[remote]'); not advertised")
            return
        address = "127.0.0.1" if not self.lan else _lan_address()
        # On 127.0.0.1 the service is announced on the loopback interface only: what the same machine can reach.
        interfaces: Any = ["127.0.0.1"] if not self.lan else None
        try:
            zc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only) if interfaces else AsyncZeroconf()
            self._zeroconf = zc
            host = socket.gethostname().split(".")[0] or "livevae"
            label = f"{self.cfg.name} on {host}"[:60]

            def service(kind: str, port: int) -> Any:
                return ServiceInfo(kind, f"{label}.{kind}", addresses=[packed], port=port, server=f"{host}.local.")

            packed = socket.inet_aton(address)
            infos = [service("_oscjson._tcp.local.", self.port)]
            osc = self.osc_port()
            if osc is not None:
                infos.append(service("_osc._udp.local.", osc))
            for info in infos:
                await zc.async_register_service(info, allow_name_change=True)
            log.info("remote: advertised %s over zeroconf", ", ".join(i.type for i in infos))
        except Exception as e:  # no multicast on this network: the show goes on, the URL still works
            log.warning("remote: cannot advertise over zeroconf (%s); clients must be given the address", e)

    async def _unadvertise(self) -> None:
        zc = self._zeroconf
        if zc is None:
            return
        with contextlib.suppress(Exception):
            await zc.async_unregister_all_services()
        with contextlib.suppress(Exception):
            await zc.async_close()
        self._zeroconf = None


def _lan_address() -> str:
    """This machine's address on the LAN (the one a phone would reach), without sending anything."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # TEST-NET: no packet leaves, the kernel only picks the route
        return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


def _print_qr(url: str) -> None:
    try:
        import segno
    except ImportError:
        return
    with contextlib.suppress(Exception):  # a terminal without the block characters: the URL is printed already
        segno.make(url, error="m").terminal(compact=True)


def remote_section(values: dict[str, Any], where: str = "[remote]") -> RemoteSection:
    """Validated remote settings; raises RemoteError naming the key, what was found and what was expected."""
    try:
        cfg = RemoteSection.model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(x) for x in first["loc"])
        raise RemoteError(f"{where} {key}: {first.get('input')!r}: {first['msg']}") from None
    if cfg.pin is not None:
        check_pin(cfg.pin)
    return cfg


def from_show(section: dict[str, Any], state: ControlState, show_path: Path) -> RemoteServer:
    """A RemoteServer from a show's [remote] section. Raises RemoteError naming the key and what was expected."""
    return RemoteServer(state, remote_section(section))
