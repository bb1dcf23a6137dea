"""OSC out: control feedback to a tablet or patch (coalesced, never blocking a writer) and a periodic status."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from pythonosc.osc_message_builder import build_msg

from livevae.control.state import ControlError, ControlState
from livevae.controllers.osc_mapping import PREFIX, Mapping, unmap_value

log = logging.getLogger("livevae.controllers.osc")  # one logger for OSC: users see "livevae osc: ..."


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
        self._extra: dict[str, tuple[Any, ...]] = {}  # address -> args, sent with every status (the mirror's)
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

    def note_extra(self, address: str, *args: Any) -> None:
        """Another status message (e.g. /livevae/mirror/status), latest args kept, sent with every status."""
        self._extra = {**self._extra, address: tuple(args)}  # one reference swap: the sender sees old or new

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
                for address, args in self._extra.items():
                    self.send(address, *args)
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
