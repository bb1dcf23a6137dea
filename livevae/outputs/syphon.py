"""Syphon out (macOS): the show as a Metal texture that Resolume, MadMapper, TouchDesigner read; extra `syphon`."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from livevae.outputs.threaded import RgbaOutput, unavailable

log = logging.getLogger(__name__)


def syphon_available() -> str:
    """ "" when a Syphon server can be made here, else one line saying why (for logs and test skips)."""
    return unavailable("darwin", "Syphon", "syphon", "syphon")


class SyphonOutput(RgbaOutput):
    """A syphon-python SyphonMetalServer named `name`: each frame is copied into one reused MTLTexture
    (RGBA, `size`) and published. Metal needs no GL context, so the server lives on this output's thread."""

    kind = "syphon"

    def __init__(self, name: str, size: tuple[int, int], filter: str = "bilinear") -> None:
        super().__init__(name, size, filter)
        self._server: Any = None
        self._texture: Any = None
        self._copy: Any = None

    def _open(self) -> None:
        why = syphon_available()
        if why:
            raise RuntimeError(why)
        import syphon
        from syphon.utils.numpy import copy_image_to_mtl_texture
        from syphon.utils.raw import create_mtl_texture

        self._server = syphon.SyphonMetalServer(self.name)
        self._texture = create_mtl_texture(self._server.device, self.size[0], self.size[1])
        self._copy = copy_image_to_mtl_texture
        log.info(f"Syphon: serving {self.name!r} at {self.size[0]}x{self.size[1]}")

    def _send(self, rgb: np.ndarray, captured: float | None) -> None:
        rgba = self._to_rgba(rgb)  # uint8 [h, w, 4]
        self._copy(rgba, self._texture)
        self._server.publish_frame_texture(self._texture)

    def _release(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
