"""OSC test helpers: read what a UDP socket received for a while."""

from __future__ import annotations

import socket
import time

from pythonosc.osc_message import OscMessage


def recv_all(sock: socket.socket, until: float) -> list[tuple[str, list[object]]]:
    """Every OSC message `sock` receives within `until` seconds, as (address, arguments)."""
    out = []
    end = time.monotonic() + until
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            m = OscMessage(sock.recv(65536))
        except TimeoutError:
            break
        out.append((m.address, list(m.params)))
    return out
