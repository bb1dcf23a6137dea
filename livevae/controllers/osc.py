"""OSC in and out: the /livevae address space and show mappings into the control state, feedback, ping, status.

Over 600 lines on purpose: it is one class, OscServer (its socket thread, flood throttle, caps and dispatch);
matching, mapping and feedback live in osc_match.py, osc_mapping.py and osc_feedback.py.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pythonosc.dispatcher import Dispatcher, Handler
from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_packet import OscPacket

from livevae.control.curves import CurveError, curve
from livevae.control.state import ACTIONS, LFO_PARAMS, SCALARS, ControlError, ControlState
from livevae.controllers.osc_feedback import OscFeedback
from livevae.controllers.osc_mapping import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_WARNED,
    PREFIX,
    Mapping,
    OscError,
    coerce_number,
    map_value,
)
from livevae.controllers.osc_match import MAX_PATTERN, AddressTree, PatternError, is_pattern
from livevae.controllers.osc_match import match as match_pattern

log = logging.getLogger("livevae.controllers.osc")


class _QuietPythonOsc(logging.Filter):
    """python-osc warns on the root logger for every datagram with an unknown type tag; a flood of garbage
    would then flood the show's log. OscServer already counts bad input and warns once per address."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.WARNING and "pythonosc" in record.pathname)


_QUIET = _QuietPythonOsc()
_quiet_users = 0  # running servers that need _QUIET on the root logger; the last one to stop removes it
_quiet_lock = threading.Lock()


def _quiet(on: bool) -> None:
    global _quiet_users
    with _quiet_lock:
        _quiet_users = max(0, _quiet_users + (1 if on else -1))
        root = logging.getLogger()
        if _quiet_users and _QUIET not in root.filters:
            root.addFilter(_QUIET)
        elif not _quiet_users:
            root.removeFilter(_QUIET)


_PATTERN_CHARS = set("*?[]{}")
# Handler calls per datagram: /livevae/z/* reaches zdim (200 for the presets); /livevae/*/* (~600) or a bundle of
# wildcards is cut here, so one datagram costs the server thread a few ms at most.
MAX_FANOUT = 256
# The server thread's share of the GIL: a token bucket of busy time. A burst (a page of faders) goes through at
# once; a sustained flood is slowed to BUSY_SHARE of one core, so the frame thread always gets the GIL.
BUSY_SHARE = 0.05
BUSY_BURST_S = 0.02
KEEP_NEWEST = 16  # datagrams kept from what queued during a throttled pause
# The longest one pause may be; debt beyond it is forgiven. Only a single busy spell longer than
# MAX_PAUSE_S * BUSY_SHARE (12.5 ms, far over any datagram's MAX_FANOUT handlers) can hit it, and the fader's last
# position is then late by at most this, never by seconds.
MAX_PAUSE_S = 0.25
# Busy time is the server thread's own CPU time. Wall time also charged it for waiting on the GIL and for being off
# a core on a loaded machine: one such 10 ms wait at a share of 0.001 bought a 10 s pause, with the last fader
# position read and held unhandled all that time. (Windows' thread clock ticks at 15.6 ms: wall time there.)
_busy_clock = time.perf_counter if sys.platform == "win32" else time.thread_time
# Actions that open a source or write a file, per second (with a burst of as many): beyond, the latest waits
HEAVY_ACTIONS = {"source": 4.0, "scene.save": 4.0}


# --- the server ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """One address the server answers: built in, or added by another controller (MIDI learn)."""

    address: str
    args: str = ""  # as in the address map: "f", "[i]", "s | i"
    doc: str = ""
    builtin: bool = True


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
    stale: int = 0  # datagrams read during a flood and dropped unhandled (older than the newest KEEP_NEWEST)
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

    def unmap_all(self, address: str) -> None:
        """Forget every handler of one exact address."""
        self._wild = None
        self._map.pop(address, None)

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
        reply_to_sender: bool = False,
        busy_share: float = BUSY_SHARE,
    ) -> None:
        """reply_to_sender: every controller that sends a message is fed back at the address it sent from,
        as if it had said /livevae/hello (for controllers that reply on their sending port, e.g. TouchOSC).
        busy_share: the most of one core the server thread may use under a sustained flood (1.0: no limit, for
        fuzzing the parser itself)."""
        self.state, self.host, self.port = state, host, port
        self.busy_share = busy_share
        self.feedback = feedback
        self.reply_to_sender = reply_to_sender
        self.stats = OscStats()
        self._warned: set[str] = set()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._bucket, self._bucket_t = BUSY_BURST_S, time.monotonic()
        self._newest: deque[tuple[bytes, Any]] = deque(maxlen=KEEP_NEWEST)  # read during a flood, not yet handled
        self._pending: dict[str, tuple[str, object]] = {}  # heavy action -> (address, arg), the latest asked for
        self._heavy = {a: (float(r), time.monotonic()) for a, r in HEAVY_ACTIONS.items()}  # (tokens, when)
        self._mappings: tuple[Mapping, ...] = ()
        self._map_lock = threading.Lock()  # hot reload remaps while the server thread dispatches
        self._routes: dict[str, Route] = {}  # the registry: every address mapped by _map, in order
        self.dispatcher = _FastDispatcher(strict_timing=False)  # never sleep on a future timetag
        self._install_builtin()
        self.dispatcher.set_default_handler(self._on_unknown)
        self.set_mappings(mappings)

    # -- lifecycle --
    def start(self) -> None:
        """Bind and serve on a daemon thread; raises OscError naming host:port when it cannot bind."""
        if self._thread is not None:
            return
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
        _quiet(True)
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
            _quiet(False)

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
            t0 = _busy_clock()
            self.handle_datagram(data, addr)
            if self._throttle(_busy_clock() - t0, sock):
                self._serve_newest(sock)

    def _throttle(self, busy: float, sock: socket.socket | None = None) -> bool:
        """Spend `busy` seconds from the bucket; when it is empty, pause until it refills (which hands the GIL
        to the frame thread) and return True: a flood is on.

        With `sock`, the pause goes on reading what arrives into the ring of the newest KEEP_NEWEST datagrams.
        Reading one costs microseconds where handling one can cost milliseconds, and a kernel buffer left to
        fill drops what comes last: the newest datagram of a flood, the one that says where the fader is now."""
        now = time.monotonic()
        self._bucket = min(BUSY_BURST_S, self._bucket + (now - self._bucket_t) * self.busy_share) - busy
        self._bucket_t = now
        if self._bucket >= 0:
            return False
        self.stats.throttled += 1
        pause = -self._bucket / self.busy_share
        if pause > MAX_PAUSE_S:
            pause, self._bucket = MAX_PAUSE_S, -MAX_PAUSE_S * self.busy_share
        if sock is None:
            time.sleep(pause)
        else:
            self._read_newest(sock, now + pause)
        return True

    def _read_newest(self, sock: socket.socket, until: float | None) -> None:
        """Read datagrams into the ring of the newest until `until` (time.monotonic()), or with None until the
        socket's buffer is empty; what falls out of the ring unhandled is counted stale."""
        try:
            if until is None:
                sock.setblocking(False)
            for _ in range(1 << 16):  # a bound all the same (the buffer holds far fewer)
                if until is not None:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    sock.settimeout(left)
                try:
                    got = sock.recvfrom(65536)
                except (BlockingIOError, InterruptedError, TimeoutError):
                    break
                except OSError:
                    break
                if len(self._newest) == KEEP_NEWEST:
                    self.stats.stale += 1
                self._newest.append(got)
        finally:
            sock.settimeout(0.2)

    def _serve_newest(self, sock: socket.socket) -> None:
        """After a throttled pause, what queued meanwhile is stale: keep the newest KEEP_NEWEST datagrams (the
        latest fader positions, the last press) and drop the rest, so a flood never leaves seconds of backlog.
        Each handled one spends from the bucket, and its pauses read on into the ring: under a flood the
        newest keep replacing the oldest until the flood ends and the ring runs dry."""
        t0 = _busy_clock()
        self._read_newest(sock, None)
        self._throttle(_busy_clock() - t0, sock)
        while self._newest and not self._stop.is_set():
            data, addr = self._newest.popleft()
            t0 = _busy_clock()
            self.handle_datagram(data, addr)
            self._throttle(_busy_clock() - t0, sock)

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
        fb = self.feedback
        if fb is not None and self.reply_to_sender and messages:
            fb.register(client, resync=False)
        calls = 0
        for msg in messages:
            self.stats.messages += 1
            if fb is not None:
                fb.moved_by(msg.address, client)
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
    # -- the route registry --
    def add_route(self, address: str, handler: Callable[..., None], args: str = "", doc: str = "") -> None:
        """Answer `address` with handler(address, *args) from now on (thread-safe while serving). Raises OscError
        when the address is taken or is not under /."""
        if not address.startswith("/") or any(c in address for c in " #*?,[]{}"):
            raise OscError(f"OSC route {address!r}: expected a plain address such as /livevae/midi/learn")
        with self._map_lock:
            if address in self._routes:
                raise OscError(f"OSC route {address}: already taken; expected a new address")
            self._map(address, handler)
            self._routes[address] = Route(address, args, doc, builtin=False)

    def remove_route(self, address: str) -> None:
        """Stop answering a route added with add_route (built-in routes stay)."""
        with self._map_lock:
            r = self._routes.get(address)
            if r is None or r.builtin:
                return
            del self._routes[address]
            self.dispatcher.unmap_all(address)  # every handler of this exact address: all are the route's

    def routes(self) -> list[Route]:
        """Every registered route, built-in ones first."""
        with self._map_lock:
            return list(self._routes.values())

    def _map(self, address: str, cb: Callable[..., None], needs_reply: bool = False) -> None:
        self._routes.setdefault(address, Route(address))

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
        self._map(f"{PREFIX}/tap", self._on_trigger)
        self._map(f"{PREFIX}/reset", self._on_reset)
        self._map(f"{PREFIX}/zero", self._on_reset)
        self._map(f"{PREFIX}/hello", self._on_hello, needs_reply=True)
        self._map(f"{PREFIX}/bye", self._on_hello, needs_reply=True)
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
            if address.endswith("/zero"):
                self.state.zero(origin=f"osc:{address}")
            else:
                self.state.reset(origin=f"osc:{address}")
            self._ok()

    def _on_hello(self, client: tuple[str, int], address: str, *args: Any) -> None:
        port = client[1]
        if args:
            p = coerce_number(args)
            if p is None or not 0 < p < 65536 or len(args) != 1:
                self._bad(address, f"arguments {_types(args)}; expected nothing or one reply port (1..65535)")
                return
            port = int(p)
        if self.feedback is None:
            self._warn_once(address, f"OSC {address}: feedback is off ([osc] enabled = false); ignored")
            return
        if address.endswith("/bye"):
            self.feedback.unregister((client[0], port))
        else:
            self.feedback.register((client[0], port))
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
