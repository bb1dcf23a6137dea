"""MIDI ports: what to open (name prefixes, virtual, network sockets), open ports and their counters."""

from __future__ import annotations

import logging
import re
import socket
from dataclasses import dataclass
from typing import Any, Literal

from livevae.controllers.midi_mapping import (
    CONNECT_TIMEOUT,
    MidiError,
)

log = logging.getLogger("livevae.controllers.midi")

# --- ports -------------------------------------------------------------------------------------------------------
_SOCKET_RE = re.compile(r"^(tcp|listen):(.+):(\d+)$")


@dataclass(frozen=True)
class PortSpec:
    """What to open: "*" (every port), a name prefix (case-insensitive; ALSA numbers change between boots),
    "tcp:HOST:PORT" (connect to a mido socket-port server, e.g. a network MIDI bridge) or "listen:HOST:PORT"
    (serve one: other programs connect and send)."""

    text: str
    kind: Literal["all", "prefix", "tcp", "listen"]
    host: str = ""
    portno: int = 0

    @classmethod
    def parse(cls, text: str) -> PortSpec:
        t = text.strip()
        m = _SOCKET_RE.match(t)
        if m:
            port = int(m.group(3))
            if not 0 < port < 65536:
                raise MidiError(f"MIDI port {text!r}: port {port} out of range; expected 1..65535")
            return cls(t, m.group(1), m.group(2), port)  # type: ignore[arg-type]
        if t.startswith(("tcp:", "listen:")):
            raise MidiError(f"MIDI port {text!r}: expected tcp:HOST:PORT or listen:HOST:PORT")
        if t in ("", "*", "all"):
            return cls(t, "all")
        return cls(t, "prefix")

    def matches(self, name: str) -> bool:
        if self.kind == "all":
            return True
        return self.kind == "prefix" and name.lower().startswith(self.text.lower())


class Warner:
    """Warnings said once per key until that key recovers: a port that keeps failing must not flood the log."""

    def __init__(self) -> None:
        self._said: set[str] = set()

    def warn(self, key: str, text: str, *args: object) -> None:
        if key not in self._said:
            self._said.add(key)
            log.warning(text, *args)

    def ok(self, key: str) -> None:
        self._said.discard(key)


@dataclass
class MidiStats:
    """Counters for tests and the status line."""

    messages: int = 0
    handled: int = 0
    opened: int = 0
    vanished: int = 0
    errors: int = 0
    learned: int = 0
    sent: int = 0


@dataclass
class OpenPort:
    """An input the controller has open, and how it is read."""

    name: str
    port: Any  # a mido input port (rtmidi, socket or socket server)
    spec: PortSpec
    polled: bool  # True: read by the MIDI thread; False: rtmidi delivers by callback
    server: bool = False  # a listening socket port (accepts senders)
    client: bool = False  # a sender connected to our listening port


def connect(host: str, portno: int) -> Any:
    """mido.sockets.connect with a connect timeout (mido's own blocks for the OS's, minutes on a LAN)."""
    from mido import sockets

    sock = socket.create_connection((host, portno), timeout=CONNECT_TIMEOUT)
    sock.settimeout(None)  # mido reads only what select() says is there
    return sockets.SocketPort(host, portno, conn=sock)
