"""OSC feedback: one coalesced stream of control values, show state and status to every controller that listens."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pythonosc.osc_message_builder import build_msg

from livevae.control.state import ControlError, ControlSnapshot, ControlState
from livevae.controllers.osc_mapping import PREFIX, Mapping, unmap_value

log = logging.getLogger("livevae.controllers.osc")  # one logger for OSC: users see "livevae osc: ..."

MAX_CLIENTS = 16  # registered controllers kept; the one heard from longest ago goes first
FRAME_WAIT_S = 0.25  # while frames arrive faster than this, feedback flushes on frame boundaries
# Show state that is not a numeric control but is fed back like one: key -> address
STATE_ADDRESSES = {"record": f"{PREFIX}/record", "source": f"{PREFIX}/source", "scene": f"{PREFIX}/scene"}

Target = tuple[str, int]


@dataclass(frozen=True)
class Status:
    """What /livevae/status carries (f s s i i f): fps, source, scene, frame index, recording 0/1, audio level
    (0..1, 0 without an audio controller)."""

    fps: float = 0.0
    source: str = ""
    scene: str = ""
    index: int = 0
    recording: bool = False
    audio: float = 0.0

    def args(self) -> list[Any]:
        return [float(self.fps), self.source, self.scene, int(self.index), int(self.recording), float(self.audio)]


def group_mappings(mappings: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    """Mappings by address, each address's in argument order: an XY pad's /2/xy (index 0 and 1) is one entry,
    so its feedback is one two-argument message and the puck never jumps between x and y."""
    out: dict[str, list[Mapping]] = {}
    for m in mappings:
        out.setdefault(m.address, []).append(m)
    for ms in out.values():
        ms.sort(key=lambda m: m.index)
    return out


def mapped_args(ms: Sequence[Mapping], state: ControlState, snap: ControlSnapshot, record: bool) -> list[float] | None:
    """One message's arguments for the mappings on one address: argument i is where the controller's control
    for index i should sit (0.0 where no mapping reads that index). None when nothing on it can be fed back."""
    n = max(m.index for m in ms) + 1
    args = [0.0] * n
    any_value = False
    for m in ms:
        if m.target:
            try:
                args[m.index] = unmap_value(m, snap.get(m.target), state.check_target(m.target))
            except ControlError:
                continue
            any_value = True
        elif m.action == "record" and m.arg is None:  # a record toggle follows the key, OSC and MIDI alike
            args[m.index] = 1.0 if record else 0.0
            any_value = True
    return args if any_value else None


class OscFeedback:
    """Keeps every controller in sync: the fixed feedback target (`[osc] feedback`, `--osc-feedback`) and every
    controller that registered with /livevae/hello (see OscServer).

    Every change, whatever made it (OSC, MIDI, keys, scenes, reset, LFO-free autopilot), only marks its target
    dirty; a sender thread flushes, on the live loop's frame boundary while frames are being shown (else after
    `min_interval`), one message per address: a burst of input or a scene recall that sets a control twice
    sends it once, and the frame thread never touches a socket. The controller whose fader made a change does
    not get it echoed back (it would jitter); every other controller does.
    """

    def __init__(
        self,
        state: ControlState,
        host: str | None = None,
        port: int = 0,
        status_interval: float = 1.0,
        min_interval: float = 0.01,
        echo_builtin: bool = True,
    ) -> None:
        self.state = state
        self.target: Target | None = (_resolve(host), int(port)) if host else None  # resolved once
        self.status_interval, self.min_interval, self.echo_builtin = status_interval, min_interval, echo_builtin
        self.sent = 0
        self._socks: dict[int, socket.socket] = {}
        self._lock = threading.Lock()
        self._dirty: dict[str, str] = {}  # control target -> origin of its last change
        self._state: dict[str, Any] = {"record": False, "source": "", "scene": ""}
        self._state_dirty: set[str] = set()
        self._all: set[Target | None] = set()  # full resyncs due: None = every target
        self._clients: OrderedDict[Target, float] = OrderedDict()  # registered -> monotonic of the hello
        self._from: dict[str, Target] = {}  # controller address -> who moved it last (not echoed to them)
        self._wake = threading.Event()
        self._tick = threading.Event()
        self._last_tick = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._groups: dict[str, list[Mapping]] = {}
        self._status = Status()
        self._extra: dict[str, tuple[Any, ...]] = {}  # address -> args, sent with every status (the mirror's)
        self._warned: set[Target] = set()

    # -- configuration --
    def set_mappings(self, mappings: Sequence[Mapping]) -> None:
        with self._lock:
            self._groups = group_mappings([m for m in mappings if m.target or (m.action == "record" and m.arg is None)])

    def register(self, client: Target, resync: bool = True) -> bool:
        """Add a controller to the feedback targets (a /livevae/hello) and resync it (with resync=False only a
        new one, for reply-to-sender, which registers on every datagram); True when it is new."""
        with self._lock:
            new = client not in self._clients and client != self.target
            if not new and not resync:
                if client in self._clients:
                    self._clients.move_to_end(client)
                return False
            if client != self.target:
                self._clients[client] = time.monotonic()
                self._clients.move_to_end(client)
                while len(self._clients) > MAX_CLIENTS:
                    gone, _ = self._clients.popitem(last=False)
                    log.info("OSC feedback: more than %d controllers; %s:%d no longer fed back", MAX_CLIENTS, *gone)
            self._all.add(client)
        if new:
            log.info("OSC feedback: %s:%d registered", *client)
        self._wake.set()
        return new

    def unregister(self, client: Target) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def targets(self) -> list[Target]:
        with self._lock:
            return ([self.target] if self.target else []) + list(self._clients)

    def moved_by(self, address: str, client: Target) -> None:
        """The OSC server tells who sent a controller address, so that controller is not echoed its own move."""
        with self._lock:
            if len(self._from) < 4096 or address in self._from:
                self._from[address] = client

    # -- lifecycle --
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
        self._tick.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        for s in self._socks.values():
            s.close()
        self._socks.clear()

    # -- what changes --
    def _on_change(self, target: str, value: float, origin: str) -> None:
        with self._lock:
            self._dirty[target] = origin
        self._wake.set()

    def send_all(self, to: Target | None = None) -> None:
        """Re-send every mapped control and the show state (after a scene recall, /livevae/feedback, a hello)."""
        with self._lock:
            self._all.add(to)
        self._wake.set()

    def set_state(self, key: str, value: Any) -> None:
        """Show state fed back on change: "record" (bool), "source" (str), "scene" (str)."""
        if key not in STATE_ADDRESSES:
            raise KeyError(key)
        with self._lock:
            if self._state.get(key) == value:
                return
            self._state[key] = value
            self._state_dirty.add(key)
        self._wake.set()

    def frame(self, status: Status) -> None:
        """Called once per presented frame (from the frame thread): the status, and a flush boundary."""
        self._status = status
        self.set_state("record", bool(status.recording))
        self.set_state("source", status.source)
        self.set_state("scene", status.scene)
        self._last_tick = time.monotonic()
        self._tick.set()

    def note_status(self, fps: float, source: str, scene: str, index: int) -> None:
        """The status without a frame boundary (kept for embedders that have no FrameInfo)."""
        self._status = Status(fps, source, scene, index, self._status.recording, self._status.audio)

    def note_extra(self, address: str, *args: Any) -> None:
        """Another status message (e.g. /livevae/mirror/status), latest args kept, sent with every status."""
        self._extra = {**self._extra, address: tuple(args)}  # one reference swap: the sender sees old or new

    # -- sending --
    def _sock_for(self, to: Target) -> socket.socket:
        fam = socket.AF_INET6 if ":" in to[0] else socket.AF_INET
        s = self._socks.get(fam)
        if s is None:
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setblocking(False)  # a full buffer drops a message rather than stall anyone
            self._socks[fam] = s
        return s

    def send(self, address: str, *args: Any, to: Sequence[Target] | None = None) -> None:
        """One message to the given targets (default: every target)."""
        dgram = build_msg(address, list(args)).dgram
        for t in self.targets() if to is None else to:
            try:
                self._sock_for(t).sendto(dgram, t)
                self.sent += 1
            except OSError as e:  # nobody listening (ICMP refused) or buffer full: the show goes on
                if t not in self._warned and len(self._warned) < MAX_CLIENTS * 4:
                    self._warned.add(t)
                    log.warning("OSC feedback to %s:%d failed (%s); will keep trying quietly", t[0], t[1], e)

    def _run(self) -> None:
        next_status = time.monotonic()
        while not self._stop.is_set():
            timeout = max(0.0, next_status - time.monotonic()) if self.status_interval > 0 else None
            self._wake.wait(timeout)
            if self._stop.is_set():
                return
            if self._wake.is_set():
                self._wake.clear()
                if time.monotonic() - self._last_tick < FRAME_WAIT_S:
                    # frames are being shown: flush on the next one, so an address goes out at most once a frame
                    self._tick.clear()
                    self._tick.wait(FRAME_WAIT_S)
                else:
                    time.sleep(self.min_interval)  # coalesce a burst into one flush
                self.flush()
            if self.status_interval > 0 and time.monotonic() >= next_status:
                self.send(f"{PREFIX}/status", *self._status.args())
                for address, args in self._extra.items():
                    self.send(address, *args)
                next_status = time.monotonic() + self.status_interval

    def pending(self) -> dict[Target, OrderedDict[str, list[Any]]]:
        """Take what is due: per target the messages, one per address, in order."""
        with self._lock:
            dirty, self._dirty = self._dirty, {}
            sdirty, self._state_dirty = self._state_dirty, set()
            resync, self._all = self._all, set()
            groups, frm, show_state = self._groups, dict(self._from), dict(self._state)
            everyone = ([self.target] if self.target else []) + list(self._clients)
        snap = self.state.snapshot()
        record = bool(show_state["record"])

        def all_messages() -> OrderedDict[str, list[Any]]:
            out: OrderedDict[str, list[Any]] = OrderedDict()
            for addr, ms in groups.items():
                args = mapped_args(ms, self.state, snap, record)
                if args is not None:
                    out[addr] = args
            if self.echo_builtin:
                for m in (m for ms in groups.values() for m in ms if m.target):
                    out[f"{PREFIX}/{m.target}"] = [snap.get(m.target)]
            for key, address in STATE_ADDRESSES.items():
                out[address] = [_state_arg(key, show_state[key])]
            return out

        # changes: what every target gets, and per address who must not get it back
        common: OrderedDict[str, list[Any]] = OrderedDict()
        skip: dict[str, Target] = {}
        for t, origin in dirty.items():
            try:
                v = snap.get(t)
            except ControlError:
                continue
            if self.echo_builtin:
                common[f"{PREFIX}/{t}"] = [v]
                if origin == f"osc:{PREFIX}/{t}" and f"{PREFIX}/{t}" in frm:
                    skip[f"{PREFIX}/{t}"] = frm[f"{PREFIX}/{t}"]
            for addr, ms in groups.items():
                if any(m.target == t for m in ms):
                    args = mapped_args(ms, self.state, snap, record)
                    if args is not None:
                        common[addr] = args
                        if origin == f"osc:{addr}" and addr in frm:
                            skip[addr] = frm[addr]
                        elif origin == f"osc:{addr}":
                            skip[addr] = ("*", 0)  # the sender is unknown: echo to nobody, as before
        for key in sdirty:
            common[STATE_ADDRESSES[key]] = [_state_arg(key, show_state[key])]
            if key == "record":
                for addr, ms in groups.items():
                    if any(m.action == "record" for m in ms):
                        args = mapped_args(ms, self.state, snap, record)
                        if args is not None:
                            common[addr] = args
        out: dict[Target, OrderedDict[str, list[Any]]] = {}
        full = all_messages() if resync else OrderedDict()
        for dest in everyone:
            msgs: OrderedDict[str, list[Any]] = OrderedDict()
            for addr, args in common.items():
                who = skip.get(addr)
                # the sender's own control already sits there; a controller sends from another port than it
                # listens on, so a target on the sender's host counts as the sender
                if who is not None and (who[0] == "*" or who[0] == dest[0]):
                    continue
                msgs[addr] = args
            if None in resync or dest in resync:
                for addr, args in full.items():
                    msgs[addr] = args  # the resync is the newer value of the same address: one message
            if msgs:
                out[dest] = msgs
        return out

    def flush(self) -> None:
        """Send what changed since the last flush (and full resyncs due): one message per address per target."""
        for t, msgs in self.pending().items():
            for addr, args in msgs.items():
                self.send(addr, *args, to=[t])


def _state_arg(key: str, value: Any) -> Any:
    return int(bool(value)) if key == "record" else str(value)


def _resolve(host: str) -> str:
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0]  # type: ignore[return-value]
    except OSError as e:  # not resolvable now (the tablet is not on the network yet): sendto retries the name
        log.warning("OSC feedback host %r: cannot resolve (%s); will try by name", host, e)
        return host
