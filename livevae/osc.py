"""OSC in and out: the /livevae address space and show mappings into the control state, feedback, ping, status."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pythonosc.dispatcher import Dispatcher, Handler
from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_packet import OscPacket

from livevae.control import ACTIONS, LFO_PARAMS, SCALARS, VECTORS, ControlError, ControlState
from livevae.curves import CurveError, curve, curve_inverse
from livevae.oscmatch import MAX_PATTERN, AddressTree, PatternError, is_pattern
from livevae.oscmatch import match as match_pattern

log = logging.getLogger("livevae.osc")


class _QuietPythonOsc(logging.Filter):
    """python-osc warns on the root logger for every datagram with an unknown type tag; a flood of garbage
    would then flood the show's log. OscServer already counts bad input and warns once per address."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.WARNING and "pythonosc" in record.pathname)


_QUIET = _QuietPythonOsc()

DEFAULT_HOST = "127.0.0.1"  # the LAN only when asked for (--osc-host 0.0.0.0)
DEFAULT_PORT = 9000
PREFIX = "/livevae"
MAX_WARNED = 1000  # distinct bad addresses remembered for log-once; garbage must not grow memory without bound
# Handler calls per datagram: /livevae/z/* reaches zdim (200 for the presets); /livevae/*/* (~600) or a bundle of
# wildcards is cut here, so one datagram costs the server thread a few ms at most.
MAX_FANOUT = 256
# The server thread's share of the GIL: a token bucket of busy time. A burst (a page of faders) goes through at
# once; a sustained flood is slowed to BUSY_SHARE of one core, so the frame thread always gets the GIL.
BUSY_SHARE = 0.05
BUSY_BURST_S = 0.02
KEEP_NEWEST = 16  # datagrams kept from what queued during a throttled pause
# Actions that open a source or write a file, per second (with a burst of as many): beyond, the latest waits
HEAVY_ACTIONS = {"source": 4.0, "scene.save": 4.0}


class OscError(Exception):
    """An OSC server cannot start, or a mapping is malformed."""


# --- mappings (pure) -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mapping:
    """One controller address (e.g. TouchOSC's /1/fader3) driving one control target or one action.

    A control mapping scales its input from `in_range` (0..1 by default) through `curve` onto `range` (the
    target's own range when None). An action mapping fires on a press (no argument, or an argument >= 0.5).
    """

    address: str
    target: str = ""  # control target, e.g. "pc/0", "mix"
    action: str = ""  # or an action: "scene.recall", "record", "source", ...
    arg: object = None  # the action's argument (a scene name, a source index)
    range: tuple[float, float] | None = None
    in_range: tuple[float, float] = (0.0, 1.0)
    curve: str = "linear"
    smoothing: float = 0.0  # seconds of slew on the target
    index: int = 0  # which OSC argument to read (an XY pad sends two)


def map_value(m: Mapping, x: float, target_range: tuple[float, float]) -> float:
    """An input value -> the control value: normalise by in_range, clamp to 0..1, curve, scale to range."""
    a, b = m.in_range
    u = 0.0 if b == a else (x - a) / (b - a)
    u = curve(m.curve, min(max(u, 0.0), 1.0))
    lo, hi = m.range if m.range is not None else target_range
    return lo + u * (hi - lo)


def unmap_value(m: Mapping, v: float, target_range: tuple[float, float]) -> float:
    """The inverse of map_value, for feedback: a control value -> where the controller's fader should sit."""
    lo, hi = m.range if m.range is not None else target_range
    u = 0.0 if hi == lo else (v - lo) / (hi - lo)
    u = curve_inverse(m.curve, min(max(u, 0.0), 1.0))
    a, b = m.in_range
    return a + u * (b - a)


def coerce_number(args: Sequence[Any], index: int = 0) -> float | None:
    """The index-th OSC argument as a float when it is an int, float or bool (T/F); None otherwise."""
    if index >= len(args):
        return None
    a = args[index]
    if isinstance(a, bool | int | float):
        x = float(a)
        return x if math.isfinite(x) else None
    return None


# --- the address map -------------------------------------------------------------------------------------------
def address_map(zdim: int, n_pcs: int, n_lfos: int) -> list[tuple[str, str, str]]:
    """(address, arguments, what it does) of every built-in address, for the README and `livevae osc-map`."""

    def rng(name: str) -> str:
        lo, hi, d = SCALARS[name]
        return f"{lo:g}..{hi:g}, default {d:g}"

    zl, zh, _ = VECTORS["z"]
    gl, gh, _ = VECTORS["gain"]
    pl, ph, _ = VECTORS["pc"]
    return [
        (f"{PREFIX}/z/{{0..{zdim - 1}}}", "f", f"offset of dimension i, latent units ({zl:g}..{zh:g})"),
        (f"{PREFIX}/z", "f f ...", f"the whole offset vector (up to {zdim} values)"),
        (
            f"{PREFIX}/pc/{{0..{max(n_pcs - 1, 0)}}}",
            "f",
            f"move along principal direction k, in the film's std ({pl:g}..{ph:g})"
            + ("" if n_pcs else "; this model has no PCA"),
        ),
        (f"{PREFIX}/pc", "f f ...", "every principal direction at once"),
        (f"{PREFIX}/gain/{{0..{zdim - 1}}}", "f", f"gain of dimension i ({gl:g}..{gh:g}, default 1)"),
        (f"{PREFIX}/mix", "f", f"mix toward the stored latent (scene anchor) ({rng('mix')})"),
        (f"{PREFIX}/freeze", "i", "1 holds the current z, 0 lets it go"),
        (f"{PREFIX}/noise", "f", f"Gaussian noise on z, std in latent units ({rng('noise')})"),
        (f"{PREFIX}/smooth", "f", f"EMA on z across frames, tames flicker ({rng('smooth')}); alias /livevae/ema"),
        (f"{PREFIX}/slew", "f", f"default slew time of every control, seconds ({rng('slew')})"),
        (f"{PREFIX}/bpm", "f", f"tempo for synced LFOs ({rng('bpm')})"),
        (f"{PREFIX}/reset", "", "every control back to its default"),
        (f"{PREFIX}/scene/{{name}}", "[i]", "recall a scene (a press: no argument or >= 0.5)"),
        (f"{PREFIX}/scene/save", "s", "save the current latent and controls as a scene"),
        (f"{PREFIX}/source", "i | s", "switch source: index in the show's list, or a path/URL/camera"),
        (f"{PREFIX}/record", "[i]", "1 starts, 0 stops recording; no argument toggles"),
        (f"{PREFIX}/screenshot", "", "save the current output frame"),
        (f"{PREFIX}/fullscreen", "", "toggle fullscreen"),
        (
            f"{PREFIX}/lfo/{{0..{n_lfos - 1}}}/{{rate|depth|phase|sync}}",
            "f",
            "LFO rate (Hz; cycles per beat when synced), depth (target units), phase (cycles), sync (0/1)",
        ),
        (f"{PREFIX}/lfo/{{n}}/target", "s | i", "what the LFO moves: a control such as pc/0, mix, z/12 (i = z/i)"),
        (f"{PREFIX}/lfo/{{n}}/shape", "s | i", "sine, triangle or walk (0, 1, 2)"),
        (f"{PREFIX}/ping", "[i]", "answers /livevae/pong to the sender (to port i when given)"),
        (f"{PREFIX}/feedback", "", "re-send every mapped value to the feedback target (resync faders)"),
        ("(out) /livevae/status", "f s s i", "periodically: fps, source, scene, frame index"),
        ("(out) /livevae/<control>", "f", "feedback: each control's value on change and after a scene recall"),
    ]


def format_address_map(rows: Iterable[tuple[str, str, str]], markdown: bool = False) -> str:
    rows = list(rows)
    if markdown:
        lines = ["| address | args | what it does |", "| --- | --- | --- |"]

        def cell(x: str) -> str:  # a bare | would split the table's cell, even inside backticks
            return x.replace("|", "\\|")

        lines += [
            f"| `{cell(a)}` | `{cell(t)}` | {cell(w)} |" if t else f"| `{cell(a)}` | | {cell(w)} |" for a, t, w in rows
        ]
        return "\n".join(lines)
    wa = max(len(a) for a, _, _ in rows)
    wt = max(len(t) for _, t, _ in rows)
    return "\n".join(f"{a:<{wa}}  {t:<{wt}}  {w}" for a, t, w in rows)


# --- the server ------------------------------------------------------------------------------------------------
@dataclass
class OscStats:
    """Counters of what arrived, for tests and the status line."""

    datagrams: int = 0
    messages: int = 0
    handled: int = 0
    malformed: int = 0  # datagrams that are not OSC
    unknown: int = 0  # messages to no known address
    bad_args: int = 0  # known address, wrong arguments
    last_arrival: float = 0.0  # time.monotonic() of the last handled message
    dropped: int = 0  # datagrams cut short for reaching more than MAX_FANOUT handlers
    throttled: int = 0  # times the server thread slept to keep its share of the GIL
    coalesced: int = 0  # source switches and scene saves replaced by a later one before they were posted
    stale: int = 0  # datagrams dropped unread after a throttled pause (older than the newest KEEP_NEWEST)
    by_address: dict[str, int] = field(default_factory=dict)  # bad messages per address (first MAX_WARNED)


class _FastDispatcher(Dispatcher):
    """The python-osc dispatcher with our own matching: literal addresses in O(1) (the map holds hundreds of
    /livevae/z/i entries), incoming patterns over a tree of the known addresses in linear time (python-osc's
    regex backtracks: a few dozen bytes of wildcards held the GIL for seconds), and the show's own wildcard
    mappings (/1/*) matched the same way. An incoming pattern never matches a mapped wildcard: which scene would
    "/livevae/scene/*" recall?"""

    def __init__(self, strict_timing: bool = True) -> None:
        super().__init__(strict_timing=strict_timing)
        self._tree: AddressTree | None = None
        self._wild: list[str] | None = None

    def map(self, address: str, handler: Callable[..., Any], *args: Any, needs_reply_address: bool = False) -> Handler:
        self._tree = self._wild = None
        return super().map(address, handler, *args, needs_reply_address=needs_reply_address)

    def unmap(self, address: str, handler: Any, *args: Any, needs_reply_address: bool = False) -> None:  # type: ignore[override]
        self._tree = self._wild = None
        super().unmap(address, handler, *args, needs_reply_address=needs_reply_address)  # type: ignore[call-overload]

    def handlers_for_address(self, address_pattern: str) -> Any:
        """Handlers for one incoming address or pattern. Raises PatternError for a pattern out of bounds."""
        if is_pattern(address_pattern):
            if self._tree is None:
                self._tree = AddressTree(k for k in self._map if not is_pattern(k))
            hs = [h for a in self._tree.matches(address_pattern) for h in self._map[a]]
            return hs or ([self._default_handler] if self._default_handler else [])
        literal = self._map.get(address_pattern)
        if literal:
            return list(literal)
        if len(address_pattern) <= MAX_PATTERN:
            if self._wild is None:
                self._wild = [k for k in self._map if is_pattern(k)]
            for k in self._wild:
                with contextlib.suppress(PatternError):
                    if match_pattern(k, address_pattern):
                        return list(self._map[k])
        return [self._default_handler] if self._default_handler else []


class OscServer:
    """A UDP OSC server on its own thread that writes into a ControlState (and queues actions on it).

    Never raises into its thread on bad input: malformed datagrams, unknown addresses and wrong arguments are
    counted, and logged once per address.
    """

    def __init__(
        self,
        state: ControlState,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        mappings: Sequence[Mapping] = (),
        feedback: OscFeedback | None = None,
        busy_share: float = BUSY_SHARE,
    ) -> None:
        """busy_share: the most of one core the server thread may use under a sustained flood (1.0: no limit, for
        fuzzing the parser itself)."""
        self.state, self.host, self.port = state, host, port
        self.busy_share = busy_share
        self.feedback = feedback
        self.stats = OscStats()
        self._warned: set[str] = set()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._bucket, self._bucket_t = BUSY_BURST_S, time.monotonic()
        self._pending: dict[str, tuple[str, object]] = {}  # heavy action -> (address, arg), the latest asked for
        self._heavy = {a: (float(r), time.monotonic()) for a, r in HEAVY_ACTIONS.items()}  # (tokens, when)
        self._mappings: tuple[Mapping, ...] = ()
        self._map_lock = threading.Lock()  # hot reload remaps while the server thread dispatches
        self.dispatcher = _FastDispatcher(strict_timing=False)  # never sleep on a future timetag
        self._install_builtin()
        self.dispatcher.set_default_handler(self._on_unknown)
        self.set_mappings(mappings)

    # -- lifecycle --
    def start(self) -> None:
        """Bind and serve on a daemon thread; raises OscError naming host:port when it cannot bind."""
        if self._thread is not None:
            return
        root = logging.getLogger()
        if _QUIET not in root.filters:
            root.addFilter(_QUIET)
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            s.bind((self.host, self.port))
        except OSError as e:
            s.close()
            raise OscError(
                f"OSC {self.host}:{self.port}: cannot bind ({e.strerror or e}); expected a free UDP port "
                "(choose another with --osc-port or [osc] port in the show)"
            ) from e
        # room for a page of faders while the GIL is busy, small enough that draining a flood stays short
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        s.settimeout(0.2)  # so stop() is noticed
        self._sock = s
        self.port = s.getsockname()[1]  # the real port when 0 asked for a free one
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"osc-{self.port}", daemon=True)
        self._thread.start()
        log.info("OSC listening on %s:%d", self.host, self.port)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _serve(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            sock.settimeout(0.05 if self._pending else 0.2)  # a held-back source switch goes out soon
            try:
                data, addr = sock.recvfrom(65536)
            except TimeoutError:
                self._flush_heavy()
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            t0 = time.perf_counter()
            self.handle_datagram(data, addr)
            if self._throttle(time.perf_counter() - t0):
                self._serve_newest(sock)

    def _throttle(self, busy: float) -> bool:
        """Spend `busy` seconds from the bucket; when it is empty, sleep (which hands the GIL to the frame thread)
        until it refills, and return True: a flood is on."""
        now = time.monotonic()
        self._bucket = min(BUSY_BURST_S, self._bucket + (now - self._bucket_t) * self.busy_share) - busy
        self._bucket_t = now
        if self._bucket >= 0:
            return False
        self.stats.throttled += 1
        time.sleep(-self._bucket / self.busy_share)
        return True

    def _serve_newest(self, sock: socket.socket) -> None:
        """After a throttled pause, what queued meanwhile is stale: keep the newest KEEP_NEWEST datagrams (the
        latest fader positions, the last press) and drop the rest, so a flood never leaves seconds of backlog."""
        t0 = time.perf_counter()
        newest: deque[tuple[bytes, Any]] = deque(maxlen=KEEP_NEWEST)
        sock.setblocking(False)
        try:
            for _ in range(1 << 16):  # the buffer holds far fewer; a bound all the same
                try:
                    got = sock.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if len(newest) == KEEP_NEWEST:
                    self.stats.stale += 1
                newest.append(got)
        finally:
            sock.settimeout(0.2)
        self._throttle(time.perf_counter() - t0)
        for data, addr in newest:
            t0 = time.perf_counter()
            self.handle_datagram(data, addr)
            self._throttle(time.perf_counter() - t0)

    # -- dispatch --
    def handle_datagram(self, data: bytes, client: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        """Parse one datagram (message or bundle, nested) and dispatch each message. Never raises."""
        self.stats.datagrams += 1
        try:
            packet = OscPacket(data)
            messages = [m.message for m in packet.messages]
        except Exception:  # ParseError, but garbage also trips IndexError/struct.error/RecursionError
            self.stats.malformed += 1
            self._warn_once("<malformed>", f"OSC: a datagram of {len(data)} bytes is not OSC; ignored")
            return
        calls = 0
        for msg in messages:
            self.stats.messages += 1
            try:
                with self._map_lock:
                    handlers = list(self.dispatcher.handlers_for_address(msg.address))
                if calls + len(handlers) > MAX_FANOUT:
                    self.stats.dropped += 1
                    self._warn_once(
                        "<fanout>",
                        f"OSC {msg.address:.60}: a datagram reaching more than {MAX_FANOUT} addresses; the rest of "
                        "it dropped (logged once)",
                    )
                    return
                calls += len(handlers)
                for h in handlers:
                    h.invoke(client, msg)
            except PatternError as e:
                self._bad(msg.address[:60], f"address pattern {e}")
            except Exception as e:  # a handler bug must not kill the server thread
                self._bad(msg.address, f"error {type(e).__name__}: {e}")

    def _warn_once(self, key: str, text: str) -> None:
        if key in self._warned:
            return
        if len(self._warned) >= MAX_WARNED:
            if "<too-many>" not in self._warned:
                self._warned.add("<too-many>")
                log.warning("OSC: more than %d distinct bad addresses; no longer logging new ones", MAX_WARNED)
            return
        self._warned.add(key)
        log.warning("%s", text)

    def _bad(self, address: str, why: str) -> None:
        self.stats.bad_args += 1
        if address in self.stats.by_address or len(self.stats.by_address) < MAX_WARNED:
            self.stats.by_address[address] = self.stats.by_address.get(address, 0) + 1
        self._warn_once(address, f"OSC {address}: {why}; ignored (logged once per address)")

    def _on_unknown(self, address: str, *args: Any) -> None:
        self.stats.unknown += 1
        if address in self.stats.by_address or len(self.stats.by_address) < MAX_WARNED:
            self.stats.by_address[address] = self.stats.by_address.get(address, 0) + 1
        self._warn_once(address, f"OSC {address}: unknown address; see `livevae osc-map` (logged once per address)")

    def _ok(self) -> None:
        self.stats.handled += 1
        self.stats.last_arrival = time.monotonic()

    # -- handlers --
    def _map(self, address: str, cb: Callable[..., None], needs_reply: bool = False) -> None:
        # Handlers get the address they are mapped to, not the incoming pattern: "/livevae/z/*" must set z/0,
        # z/1, ... each with its own name. A mapped wildcard (scene/*) passes the incoming address on.
        def real(pattern: str) -> str:
            return pattern if "*" in address else address

        if needs_reply:

            def on_reply(client: tuple[str, int], pattern: str, *args: Any) -> None:
                cb(client, real(pattern), *args)

            self.dispatcher.map(address, on_reply, needs_reply_address=True)
        else:

            def on(pattern: str, *args: Any) -> None:
                cb(real(pattern), *args)

            self.dispatcher.map(address, on)

    def _install_builtin(self) -> None:
        st = self.state
        for name in SCALARS:
            self._map(f"{PREFIX}/{name}", self._on_control)
        self._map(f"{PREFIX}/ema", self._on_control)
        for i in range(st.zdim):
            self._map(f"{PREFIX}/z/{i}", self._on_control)
            self._map(f"{PREFIX}/gain/{i}", self._on_control)
        for k in range(st.n_pcs):
            self._map(f"{PREFIX}/pc/{k}", self._on_control)
        for n in range(st.n_lfos):
            for p in LFO_PARAMS:
                self._map(f"{PREFIX}/lfo/{n}/{p}", self._on_control)
            self._map(f"{PREFIX}/lfo/{n}/target", self._on_lfo_text)
            self._map(f"{PREFIX}/lfo/{n}/shape", self._on_lfo_text)
        for vec in ("z", "gain", "pc"):
            self._map(f"{PREFIX}/{vec}", self._on_vector)
        self._map(f"{PREFIX}/scene/save", self._on_scene_save)
        self._map(f"{PREFIX}/scene/*", self._on_scene_recall)
        self._map(f"{PREFIX}/source", self._on_source)
        self._map(f"{PREFIX}/record", self._on_record)
        self._map(f"{PREFIX}/screenshot", self._on_trigger)
        self._map(f"{PREFIX}/fullscreen", self._on_trigger)
        self._map(f"{PREFIX}/reset", self._on_reset)
        self._map(f"{PREFIX}/ping", self._on_ping, needs_reply=True)
        self._map(f"{PREFIX}/feedback", self._on_feedback)

    def _on_control(self, address: str, *args: Any) -> None:
        x = coerce_number(args)
        if x is None or len(args) != 1:
            self._bad(address, f"arguments {_types(args)}; expected one number (int, float or bool)")
            return
        try:
            self.state.set(address, x, origin=f"osc:{address}")
        except ControlError as e:
            self._bad(address, str(e))
            return
        self._ok()

    def _on_lfo_text(self, address: str, *args: Any) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            try:
                self.state.set_text(address, args[0], origin=f"osc:{address}")
            except ControlError as e:
                self._bad(address, str(e))
                return
            self._ok()
            return
        self._on_control(address, *args)

    def _on_vector(self, address: str, *args: Any) -> None:
        vals = [coerce_number(args, i) for i in range(len(args))]
        if not vals or any(v is None for v in vals):
            self._bad(address, f"arguments {_types(args)}; expected one or more numbers")
            return
        try:
            self.state.set_vector(address, [v for v in vals if v is not None], origin=f"osc:{address}")
        except ControlError as e:
            self._bad(address, str(e))
            return
        self._ok()

    def _pressed(self, address: str, args: Sequence[Any]) -> bool | None:
        """True for a press (no argument, or a number >= 0.5), False for a release, None for a bad argument."""
        if not args:
            return True
        x = coerce_number(args)
        if x is None:
            self._bad(address, f"arguments {_types(args)}; expected nothing or a number (a button)")
            return None
        return x >= 0.5

    def _post(self, address: str, action: str, arg: object) -> None:
        if action in HEAVY_ACTIONS:  # each opens a source or writes a file: rate-limited, the latest one wins
            if action in self._pending:
                self.stats.coalesced += 1
            self._pending[action] = (address, arg)
            self._flush_heavy()
            return
        self._post_now(address, action, arg)

    def _flush_heavy(self) -> None:
        """Post each pending heavy action whose bucket holds a token (called per datagram and on idle ticks)."""
        now = time.monotonic()
        for action in list(self._pending):
            rate = HEAVY_ACTIONS[action]
            tokens = min(rate, self._heavy[action][0] + (now - self._heavy[action][1]) * rate)
            if tokens >= 1:
                address, arg = self._pending.pop(action)
                tokens -= 1
                self._post_now(address, action, arg)
            self._heavy[action] = (tokens, now)

    def _post_now(self, address: str, action: str, arg: object) -> None:
        try:
            self.state.post(action, arg, origin=f"osc:{address}")
        except ControlError as e:
            self._bad(address, str(e))
            return
        self._ok()

    def _on_scene_recall(self, address: str, *args: Any) -> None:
        name = address.rsplit("/", 1)[-1]
        if self._pressed(address, args) and name:
            self._post(address, "scene.recall", name)

    def _on_scene_save(self, address: str, *args: Any) -> None:
        if len(args) == 1 and isinstance(args[0], str) and args[0].strip():
            self._post(address, "scene.save", args[0].strip())
        else:
            self._bad(address, f"arguments {_types(args)}; expected one string (the scene's name)")

    def _on_source(self, address: str, *args: Any) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            self._post(address, "source", args[0])
        elif len(args) == 1 and isinstance(args[0], int) and not isinstance(args[0], bool):
            self._post(address, "source", int(args[0]))
        elif len(args) == 1 and coerce_number(args) is not None:
            self._post(address, "source", int(coerce_number(args) or 0))
        else:
            self._bad(address, f"arguments {_types(args)}; expected one int (index) or string (path)")

    def _on_record(self, address: str, *args: Any) -> None:
        if not args:
            self._post(address, "record", None)
            return
        x = coerce_number(args)
        if x is None:
            self._bad(address, f"arguments {_types(args)}; expected nothing (toggle) or 0/1")
            return
        self._post(address, "record", x >= 0.5)

    def _on_trigger(self, address: str, *args: Any) -> None:
        if self._pressed(address, args):
            self._post(address, address.rsplit("/", 1)[-1], None)

    def _on_reset(self, address: str, *args: Any) -> None:
        if self._pressed(address, args):
            self.state.reset(origin=f"osc:{address}")
            self._ok()

    def _on_ping(self, client: tuple[str, int], address: str, *args: Any) -> None:
        port = client[1]
        if args:
            p = coerce_number(args)
            if p is None or not 0 < p < 65536:
                self._bad(address, f"arguments {_types(args)}; expected nothing or a reply port")
                return
            port = int(p)
        self._send((client[0], port), f"{PREFIX}/pong", [])
        self._ok()

    def _on_feedback(self, address: str, *args: Any) -> None:
        if self.feedback is not None:
            self.feedback.send_all()
        self._ok()

    # -- show mappings --
    def check_mappings(self, mappings: Sequence[Mapping]) -> None:
        """Raise OscError (or ControlError) for the first mapping this server could not serve; changes nothing."""
        for m in mappings:
            if m.target:
                self.state.check_target(m.target)
            elif m.action not in ACTIONS:
                raise OscError(f"mapping {m.address}: action {m.action!r}; expected one of {', '.join(ACTIONS)}")
            try:
                curve(m.curve, 0.0)
            except CurveError as e:
                raise OscError(f"mapping {m.address}: {e}") from None

    def set_mappings(self, mappings: Sequence[Mapping]) -> None:
        """Replace the show mappings (a hot reload); validates every target first, so a bad set changes nothing."""
        self.check_mappings(mappings)
        with self._map_lock:
            for old in self._mappings:
                with contextlib.suppress(ValueError):  # an address shared by two mappings was unmapped already
                    self.dispatcher.unmap(old.address, self._on_mapped, old.address)
            old_slewed = {m.target for m in self._mappings if m.target and m.smoothing > 0}
            self._mappings = tuple(mappings)
            seen: set[str] = set()
            for m in self._mappings:
                if m.address not in seen:  # one handler per address serves every mapping on it
                    seen.add(m.address)
                    self.dispatcher.map(m.address, self._on_mapped, m.address)
        # a mapping's smoothing is the slew of its target, whoever moves it (OSC, MIDI, a scene recall)
        new_slew = {m.target: m.smoothing for m in self._mappings if m.target and m.smoothing > 0}
        for t in old_slewed - set(new_slew):
            self.state.set_slew(t, 0.0)
        for t, sec in new_slew.items():
            self.state.set_slew(t, sec)
        if self.feedback is not None:
            self.feedback.set_mappings(self._mappings)

    @property
    def mappings(self) -> tuple[Mapping, ...]:
        return self._mappings

    def _on_mapped(self, pattern: str, fixed: list[str], *args: Any) -> None:
        address = fixed[0]  # the mapped address, also when the message came in as a pattern
        for m in self._mappings:
            if m.address != address:
                continue
            if m.target:
                x = coerce_number(args, m.index)
                if x is None:
                    self._bad(address, f"arguments {_types(args)}; expected a number at position {m.index}")
                    continue
                try:
                    v = map_value(m, x, self.state.check_target(m.target))
                    self.state.set(m.target, v, origin=f"osc:{address}")
                except (ControlError, OscError) as e:
                    self._bad(address, str(e))
                    continue
                self._ok()
            else:
                pressed = self._pressed(address, args[m.index : m.index + 1] if args else ())
                if pressed is None:
                    continue
                if m.action == "record" and m.arg is None:
                    self._post(address, "record", pressed if args else None)
                elif pressed:
                    self._post(address, m.action, m.arg)

    def _send(self, to: tuple[str, int], address: str, args: Sequence[Any]) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendto(build_msg(address, list(args)).dgram, to)
        except OSError as e:
            self._warn_once(f"<send {to}>", f"OSC: cannot reply to {to[0]}:{to[1]} ({e}); ignored")


def _types(args: Sequence[Any]) -> str:
    return "(" + ", ".join(type(a).__name__ for a in args) + ")" if args else "(none)"


# --- feedback --------------------------------------------------------------------------------------------------
class OscFeedback:
    """Sends control values to a controller (TouchOSC, Max) so its faders stay in sync, plus a periodic status.

    Changes are coalesced: the ControlState listener only marks targets dirty; a sender thread flushes at most
    once per `min_interval`, so a flood of input makes at most one message per control per interval, and the
    frame thread never touches a socket.
    """

    def __init__(
        self,
        state: ControlState,
        host: str,
        port: int,
        status_interval: float = 1.0,
        min_interval: float = 0.01,
        echo_builtin: bool = True,
    ) -> None:
        self.state, self.target = state, (_resolve(host), port)  # resolve a name once, not per message
        self.status_interval, self.min_interval, self.echo_builtin = status_interval, min_interval, echo_builtin
        self.sent = 0
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)  # a full buffer drops a message rather than stall anyone
        self._lock = threading.Lock()
        self._dirty: dict[str, str] = {}  # target -> origin of its last change
        self._all = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mappings: tuple[Mapping, ...] = ()
        self._status: tuple[float, str, str, int] = (0.0, "", "", 0)
        self._warned = False

    def set_mappings(self, mappings: Sequence[Mapping]) -> None:
        with self._lock:
            self._mappings = tuple(m for m in mappings if m.target)

    def start(self) -> None:
        if self._thread is None:
            self.state.add_listener(self._on_change)
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="osc-feedback", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self.state.remove_listener(self._on_change)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self._sock.close()

    def _on_change(self, target: str, value: float, origin: str) -> None:
        with self._lock:
            self._dirty[target] = origin
        self._wake.set()

    def send_all(self) -> None:
        """Re-send every mapped control (after a scene recall, or when asked with /livevae/feedback)."""
        with self._lock:
            self._all = True
        self._wake.set()

    def note_status(self, fps: float, source: str, scene: str, index: int) -> None:
        """Latest status values; called from the frame thread, sent from the feedback thread."""
        self._status = (float(fps), str(source), str(scene), int(index))

    def send(self, address: str, *args: Any) -> None:
        try:
            self._sock.sendto(build_msg(address, list(args)).dgram, self.target)
            self.sent += 1
        except OSError as e:  # nobody listening (ICMP refused) or buffer full: the show goes on
            if not self._warned:
                self._warned = True
                log.warning("OSC feedback to %s:%d failed (%s); will keep trying quietly", *self.target, e)

    def _run(self) -> None:
        next_status = time.monotonic()
        while not self._stop.is_set():
            timeout = max(0.0, next_status - time.monotonic()) if self.status_interval > 0 else None
            self._wake.wait(timeout)
            if self._stop.is_set():
                return
            if self._wake.is_set():
                self._wake.clear()
                self.flush()
                time.sleep(self.min_interval)  # coalesce a burst into the next flush
            if self.status_interval > 0 and time.monotonic() >= next_status:
                fps, source, scene, index = self._status
                self.send(f"{PREFIX}/status", fps, source, scene, index)
                next_status = time.monotonic() + self.status_interval

    def flush(self) -> None:
        """Send what changed since the last flush (or everything mapped after send_all)."""
        with self._lock:
            dirty, self._dirty = self._dirty, {}
            everything, self._all = self._all, False
            mappings = self._mappings
        snap = self.state.snapshot()
        if everything:
            for m in mappings:
                self._send_mapped(m, snap.get(m.target))
            if self.echo_builtin:
                for t in {m.target for m in mappings}:
                    self.send(f"{PREFIX}/{t}", snap.get(t))
        for t, origin in dirty.items():
            try:
                v = snap.get(t)
            except ControlError:
                continue
            if self.echo_builtin and origin != f"osc:{PREFIX}/{t}":
                self.send(f"{PREFIX}/{t}", v)
            if everything:
                continue
            for m in mappings:
                # the fader that made the change already sits there; echoing it back makes it jitter
                if m.target == t and origin != f"osc:{m.address}":
                    self._send_mapped(m, v)

    def _send_mapped(self, m: Mapping, v: float) -> None:
        try:
            rng = self.state.check_target(m.target)
        except ControlError:
            return
        self.send(m.address, unmap_value(m, v, rng))


def _resolve(host: str) -> str:
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0]  # type: ignore[return-value]
    except OSError as e:  # not resolvable now (the tablet is not on the network yet): sendto retries the name
        log.warning("OSC feedback host %r: cannot resolve (%s); will try by name", host, e)
        return host


# --- `livevae osc-map` -----------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("show", nargs="?", help="a show file: also print its mappings, for its model's sizes")
    p.add_argument("--zdim", type=int, default=200, help="latent size, when no show is given")
    p.add_argument("--pcs", type=int, default=16, help="principal directions, when no show is given")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    p.epilog = "examples:\n  livevae osc-map\n  livevae osc-map shows/demo.toml\n  livevae osc-map --markdown"


def run(args: argparse.Namespace) -> int:
    from livevae.control import ControlState

    zdim, pcs, n_lfos = args.zdim, args.pcs, ControlState(1).n_lfos
    mappings: Sequence[Mapping] = ()
    if args.show:
        from livevae.show import ShowError, load_show, model_sizes

        show = load_show(args.show)
        try:
            zdim, pcs = model_sizes(show)
        except ShowError as e:  # the map is still useful before the model is trained
            print(f"livevae osc-map: {e}; showing sizes --zdim {zdim} --pcs {pcs}", file=sys.stderr)
        mappings = show.osc_mappings()
        n_lfos = max(n_lfos, len(show.lfo))
    print(format_address_map(address_map(zdim, pcs, n_lfos), markdown=args.markdown))
    if mappings:
        print(f"\nmappings from {args.show}:")
        for m in mappings:
            what = m.target or f"{m.action} {m.arg if m.arg is not None else ''}".strip()
            extra = f" range {m.range[0]:g}..{m.range[1]:g}" if m.range else ""
            extra += f" curve {m.curve}" if m.curve != "linear" else ""
            extra += f" smoothing {m.smoothing:g}s" if m.smoothing else ""
            extra += f" (argument {m.index})" if m.index else ""
            print(f"  {m.address} -> {what}{extra}")
    return 0
