"""Spout out (Windows): the show as a shared GPU texture that Resolume, TouchDesigner, OBS read; extra `spout`."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from livevae.outputs.threaded import RgbaOutput, unavailable

log = logging.getLogger(__name__)

GL_RGBA = 0x1908  # OpenGL's enum, so PyOpenGL is not needed just for one constant


def spout_available() -> str:
    """ "" when a Spout sender can be made here, else one line saying why (for logs and test skips)."""
    return unavailable("win32", "Spout", "SpoutGL", "spout")


class SpoutOutput(RgbaOutput):
    """A SpoutGL.SpoutSender named `name`, sending RGBA pixels with sendImage(buffer, w, h, GL_RGBA, invert,
    host FBO 0). Spout shares the texture through the sender's own OpenGL context, made on this output's thread
    (the thread that sends), so the show's window and its context are never touched."""

    kind = "spout"

    def __init__(self, name: str, size: tuple[int, int], filter: str = "bilinear") -> None:
        super().__init__(name, size, filter)
        self._sender: Any = None

    def _open(self) -> None:
        why = spout_available()
        if why:
            raise RuntimeError(why)
        import SpoutGL

        sender = SpoutGL.SpoutSender()
        sender.setSenderName(self.name)
        self._sender = sender
        log.info(f"Spout: sending {self.name!r} at {self.size[0]}x{self.size[1]}")

    def _send(self, rgb: np.ndarray, captured: float | None) -> None:
        rgba = self._to_rgba(rgb)  # uint8 [h, w, 4]
        if not self._sender.sendImage(rgba, self.size[0], self.size[1], GL_RGBA, False, 0):
            raise RuntimeError("SpoutGL sendImage returned False (no OpenGL context or the sender was released)")

    def _release(self) -> None:
        if self._sender is not None:
            self._sender.releaseSender()
            self._sender = None
