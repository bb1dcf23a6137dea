"""The monitor: a second window for the performer with the picture and the HUD, so the output window stays clean."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import cv2
import numpy as np

from livevae.outputs.hud import draw_hud
from livevae.outputs.layout import fit_rect

log = logging.getLogger("livevae.outputs.window")


def compose(rgb: np.ndarray, size: tuple[int, int], hud: list[str] | None, font: Any) -> Any:
    """A pygame Surface of `size`: the picture (uint8 [H, W, 3]) fitted with its aspect kept, the HUD over it."""
    import pygame

    w, h = size
    surf = pygame.Surface((w, h))
    x, y, fw, fh = fit_rect(rgb.shape[1], rgb.shape[0], w, h)
    small = cv2.resize(rgb, (fw, fh), interpolation=cv2.INTER_AREA)
    surf.blit(pygame.image.frombuffer(np.ascontiguousarray(small).data, (fw, fh), "RGB"), (x, y))
    if hud:
        draw_hud(surf, hud, font)
    return surf


class Monitor:
    """A second SDL window (pygame's SDL2 video API) on the same thread as the output window. Presenting it
    never touches the output window; a failure (no second window on this driver) closes the monitor with one
    warning and the show goes on."""

    def __init__(self, size: tuple[int, int], title: str, display: int = 0) -> None:
        self.size, self.title, self.display = size, title, display
        self._win: Any = None
        self._renderer: Any = None
        self.last: Any = None  # the last composed Surface (for screenshots and tests)
        self.failed = False

    def open(self) -> Monitor:
        from pygame._sdl2.video import Renderer, Window

        try:
            self._win = Window(self.title, size=self.size)
            self._renderer = Renderer(self._win)
        except Exception as e:
            self.failed = True
            log.warning(f"monitor window: cannot open ({e}); playing without it")
        return self

    def present(self, rgb: np.ndarray, hud: list[str] | None, font: Any) -> None:
        if self.failed or self._renderer is None:
            return
        from pygame._sdl2.video import Texture

        try:
            self.last = compose(rgb, self.size, hud, font)
            tex = Texture.from_surface(self._renderer, self.last)
            self._renderer.clear()
            tex.draw()
            self._renderer.present()
        except Exception as e:
            self.failed = True
            log.warning(f"monitor window failed ({e}); closing it, the output plays on")
            self.close()

    def close(self) -> None:
        if self._win is not None:
            with contextlib.suppress(Exception):  # the video subsystem may be gone already
                self._win.destroy()
        self._win = self._renderer = None
