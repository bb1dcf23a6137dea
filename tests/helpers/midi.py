"""mido socket ports for tests: a free TCP port on 127.0.0.1, and a client that connects once the server listens."""

from __future__ import annotations

import socket
import time
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connect_when_listening(port: int, timeout: float = 5.0) -> Any:
    """A mido socket client to 127.0.0.1:port, retried until the server under test listens; AssertionError after
    `timeout` s."""
    from mido import sockets

    deadline = time.monotonic() + timeout
    while True:
        try:
            return sockets.connect("127.0.0.1", port)
        except OSError:
            assert time.monotonic() < deadline, f"nothing listened on 127.0.0.1:{port} within {timeout:g} s"
            time.sleep(0.02)
