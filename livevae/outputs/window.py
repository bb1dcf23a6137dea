"""The show window (pygame): display choice, fullscreen/borderless, aspect-correct scaling, keys, HUD."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from livevae.errors import LivevaeError
from livevae.outputs.base import Output
from livevae.outputs.hud import draw_hud
from livevae.outputs.layout import fit_rect
from livevae.outputs.monitor import Monitor

log = logging.getLogger(__name__)

FILTERS = ("smooth", "pixelated")

# key name -> action the loop handles (see LiveLoop): the performer's keyboard.
KEYS = {
    "f": "fullscreen",
    "h": "hud",
    "space": "freeze",
    "r": "record",
    "s": "screenshot",
    "l": "midi.learn",  # arm MIDI learn for the control last moved; the next CC/note binds to it
    "escape": "quit",
    "q": "quit",
}


class WindowError(LivevaeError):
    """The window cannot be opened (no display, bad display index, bad option)."""


@dataclass
class WindowConfig:
    """How the picture is shown. size is the windowed size; fullscreen uses the display's own size."""

    display: int = 0
    size: tuple[int, int] = (1280, 720)
    fullscreen: bool = False
    borderless: bool = False
    vsync: bool = True
    filter: str = "smooth"  # smooth (bilinear) | pixelated (nearest: the model's pixels stay crisp)
    hud: bool = True
    cursor: bool = False  # hidden by default: nobody wants a pointer on the projection
    title: str = "livevae"
    # Installation mode: a display that is missing at start (the projector boots later) is watched for, and the
    # window moves onto it when it appears.
    follow_display: bool = False
    # A second window for the performer with the picture and the HUD; the output window then shows no HUD.
    monitor: bool = False
    monitor_size: tuple[int, int] = (640, 360)
    # Present on a display thread so the vsync wait overlaps inference; off on macOS, where SDL windows
    # must live on the main thread.
    threaded: bool = sys.platform != "darwin"

    def __post_init__(self) -> None:
        if self.filter not in FILTERS:
            raise WindowError(f"window filter {self.filter!r}: unknown; expected one of {', '.join(FILTERS)}")
        if self.size[0] <= 0 or self.size[1] <= 0:
            raise WindowError(f"window size {self.size}: expected positive width and height")


def display_available() -> bool:
    """True when a real window can be opened: X11/Wayland reachable, or SDL told to use a dummy driver."""
    if os.environ.get("SDL_VIDEODRIVER") == "dummy":
        return True
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        import pygame

        pygame.display.init()
        ok = pygame.display.get_num_displays() > 0
        pygame.display.quit()
        return ok
    except Exception:  # any SDL failure means no usable display
        return False


class Window(Output):
    """A pygame window that scales each frame into itself with the aspect kept, and reports key actions."""

    def __init__(self, cfg: WindowConfig) -> None:
        self.cfg = cfg
        self.fullscreen = cfg.fullscreen
        self.show_hud = cfg.hud
        self.vsync = False
        self.display = cfg.display  # where the window is: cfg.display, or 0 while that one is missing
        self._screen: object | None = None
        self._font: object | None = None
        self._last_size: tuple[int, int] | None = None
        self._next_display_check = 0.0
        self.monitor: Monitor | None = None

    def open(self) -> Window:
        """Open the window; raises WindowError when SDL cannot. A display that is not connected is not an error:
        the window opens on the primary display with a warning (an installation that boots before its projector
        must still play), and with follow_display moves to it when it appears."""
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        try:
            pygame.display.init()
            pygame.font.init()
        except pygame.error as e:
            raise WindowError(f"cannot start the display ({e}); set DISPLAY, or use --headless") from e
        n = pygame.display.get_num_displays()
        self.display = self.cfg.display
        if not 0 <= self.display < n:
            then = f"; moving to display {self.cfg.display} when it appears" if self.cfg.follow_display else ""
            log.warning(
                f"display {self.cfg.display}: not connected (found {n}: 0..{n - 1}); showing on display 0 instead"
                + then
            )
            self.display = 0
        self._set_mode()
        self._font = pygame.font.Font(None, 22)  # pygame's bundled font: nothing to install
        self._open_monitor()
        return self

    def _open_monitor(self) -> None:
        if self.cfg.monitor:
            self.monitor = Monitor(self.cfg.monitor_size, f"{self.cfg.title} monitor").open()

    def _reopen(self) -> None:
        """A fresh window: SDL places a new window centred on its display, so one the display's size lands at the
        display's origin. Changing the mode of a live window keeps its old position, which without a window
        manager (kiosk boxes) left a fullscreen picture offset and running off the screen."""
        import pygame

        if self.monitor is not None:
            self.monitor.close()  # its window goes with the video subsystem; opened again below
        pygame.display.quit()
        # A busy X server may refuse the new connection for a moment ("x11 not available"): retry for 2 s
        # rather than end the show on a fullscreen toggle.
        for attempt in range(20):
            try:
                pygame.display.init()
                break
            except pygame.error as e:
                if attempt == 19:
                    raise WindowError(f"display {self.display}: cannot reopen the window ({e})") from e
                time.sleep(0.1)
        self._set_mode()
        self._open_monitor()

    def check_display(self) -> bool:
        """With follow_display: move onto cfg.display once it is connected (polled every 2 s from poll());
        True when the window moved."""
        if not self.cfg.follow_display or self.display == self.cfg.display:
            return False
        now = time.monotonic()
        if now < self._next_display_check:
            return False
        self._next_display_check = now + 2.0
        import pygame

        if self.cfg.display >= pygame.display.get_num_displays():
            return False
        log.info(f"display {self.cfg.display} connected: moving the window onto it")
        self.display = self.cfg.display
        self._reopen()
        self._last_size = None
        return True

    def _set_mode(self) -> None:
        import pygame

        pygame.display.set_caption(self.cfg.title)
        flags = 0
        if self.fullscreen:
            # Borderless, the display's own size, at its origin (a fresh window, see _reopen): the same picture
            # with and without a window manager; exclusive fullscreen is left to SDL's mode switching, which a
            # kiosk box without a window manager does not do reliably.
            flags |= pygame.NOFRAME
            size = pygame.display.get_desktop_sizes()[self.display]
        else:
            size = self.cfg.size
            flags |= pygame.NOFRAME if self.cfg.borderless else pygame.RESIZABLE
        self.vsync = False
        if self.cfg.vsync:
            # SDL only syncs to the display through its renderer, which pygame enables with SCALED;
            # the logical size equals the window size, so SDL does no scaling of its own.
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    self._screen = pygame.display.set_mode(size, flags | pygame.SCALED, display=self.display, vsync=1)
                self.vsync = True
                for w in caught:  # e.g. "no fast renderer available": SDL fell back to software
                    log.warning(f"{w.message}")
                pygame.mouse.set_visible(self.cfg.cursor)
                return
            except pygame.error as e:
                log.warning(f"vsync unavailable ({e}); running without it")
        try:
            self._screen = pygame.display.set_mode(size, flags, display=self.display)
        except pygame.error as e:
            raise WindowError(f"display {self.display}: cannot open a {size[0]}x{size[1]} window ({e})") from e
        pygame.mouse.set_visible(self.cfg.cursor)

    @property
    def size(self) -> tuple[int, int]:
        import pygame

        s = pygame.display.get_surface()
        return (s.get_width(), s.get_height()) if s is not None else self.cfg.size

    def toggle_fullscreen(self) -> None:
        self.fullscreen = not self.fullscreen
        self._reopen()
        self._last_size = None

    def write(self, rgb: np.ndarray, captured: float | None = None) -> bool:
        """The Output face of present(): the picture without a HUD."""
        self.present(rgb, None, captured)
        return True

    def present(self, rgb: np.ndarray, hud: list[str] | None = None, captured: float | None = None) -> None:
        """Scale RGB uint8 [H, W, 3] into the window (aspect kept, bars black), draw the HUD, flip."""
        import pygame

        screen = pygame.display.get_surface()
        if screen is None:
            raise WindowError("present() before open()")
        sw, sh = screen.get_width(), screen.get_height()
        x, y, w, h = fit_rect(rgb.shape[1], rgb.shape[0], sw, sh)
        interp = cv2.INTER_NEAREST if self.cfg.filter == "pixelated" else cv2.INTER_LINEAR
        # cv2 scales on all cores and far faster than pygame.transform.smoothscale at 1080p.
        scaled = rgb if (w, h) == (rgb.shape[1], rgb.shape[0]) else cv2.resize(rgb, (w, h), interpolation=interp)
        if self._last_size != (sw, sh):
            screen.fill((0, 0, 0))  # bars only need clearing when the layout changes
            self._last_size = (sw, sh)
        screen.blit(pygame.image.frombuffer(np.ascontiguousarray(scaled).data, (w, h), "RGB"), (x, y))
        if self.monitor is not None:  # the HUD goes to the performer's monitor; the audience sees the picture
            pygame.display.flip()
            self.monitor.present(rgb, hud if self.show_hud else None, self._font)
            return
        if hud and self.show_hud:
            self._draw_hud(screen, hud)
            self._last_size = None  # the HUD box covers picture and bars: clear next time
        pygame.display.flip()

    def _draw_hud(self, screen: Any, lines: list[str]) -> None:
        draw_hud(screen, lines, self._font)

    def poll(self) -> list[tuple[str, object]]:
        """Pending window events as loop actions: keys (see KEYS), the close button, resizes."""
        import pygame

        actions: list[tuple[str, object]] = []
        self.check_display()
        for ev in pygame.event.get():
            if ev.type == pygame.QUIT:
                actions.append(("quit", None))
            elif ev.type == pygame.KEYDOWN:
                action = KEYS.get(pygame.key.name(ev.key))
                if action:
                    actions.append((action, None))
            elif ev.type in (pygame.VIDEORESIZE, pygame.WINDOWSIZECHANGED):
                self._last_size = None
        return actions

    def grab(self) -> np.ndarray:
        """What the window shows now, RGB uint8 [H, W, 3] (for screenshots and tests)."""
        import pygame

        screen = pygame.display.get_surface()
        if screen is None:
            raise WindowError("grab() before open()")
        return np.ascontiguousarray(pygame.surfarray.array3d(screen).transpose(1, 0, 2))

    def close(self) -> None:
        import pygame

        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        if pygame.display.get_init():
            pygame.display.quit()


class DisplayThread(Output):
    """The window on a thread of its own: present() hands over the newest frame and returns at once.

    Scaling, the HUD and the (vsync-blocking) flip run here, in parallel with the model, so a 16 ms wait for
    the display's refresh never stalls inference. Every SDL call happens on this one thread (SDL wants
    windowing and events on the thread that made the window); the loop reads key actions from poll().
    A frame not yet shown when the next arrives is dropped (counted): the display shows the newest.
    """

    def __init__(self, cfg: WindowConfig) -> None:
        self.cfg = cfg
        self.window = Window(cfg)
        self._cond = threading.Condition()
        self._frame: tuple[np.ndarray, list[str] | None, float | None] | None = None
        self._actions: list[tuple[str, object]] = []
        self._requests: list[str] = []
        self._grabbed: np.ndarray | None = None
        self._grab_done = threading.Event()
        self._stop = False
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.latencies: deque[float] = deque(maxlen=20000)  # ms, capture -> flip done
        self.present_ms: deque[float] = deque(maxlen=20000)  # scale + HUD + flip
        self.shown = 0
        self.dropped = 0

    # the Window API, as the loop uses it
    @property
    def show_hud(self) -> bool:
        return self.window.show_hud

    @show_hud.setter
    def show_hud(self, on: bool) -> None:
        self.window.show_hud = on

    @property
    def vsync(self) -> bool:
        return self.window.vsync

    @property
    def size(self) -> tuple[int, int]:
        """The window's size now (the display's in fullscreen)."""
        return self.window.size

    def open(self) -> DisplayThread:
        """Start the thread and open the window on it; raises WindowError from there."""
        self._thread = threading.Thread(target=self._run, name="display", daemon=True)
        self._thread.start()
        self._opened.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def write(self, rgb: np.ndarray, captured: float | None = None) -> bool:
        """The Output face of present(): the picture without a HUD."""
        self.present(rgb, None, captured)
        return True

    def present(self, rgb: np.ndarray, hud: list[str] | None = None, captured: float | None = None) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = (rgb, hud, captured)
            self._cond.notify()

    def poll(self) -> list[tuple[str, object]]:
        with self._cond:
            out, self._actions = self._actions, []
        return out

    def toggle_fullscreen(self) -> None:
        with self._cond:
            self._requests.append("fullscreen")
            self._cond.notify()

    def grab(self, timeout: float = 5.0) -> np.ndarray:
        """What the window shows now, RGB uint8 [H, W, 3], read on the display thread."""
        self._grab_done.clear()
        with self._cond:
            self._requests.append("grab")
            self._cond.notify()
        if not self._grab_done.wait(timeout) or self._grabbed is None:
            raise WindowError("grab(): the display thread did not answer")
        return self._grabbed

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        try:
            self.window.open()
        except BaseException as e:  # handed to open() in the loop's thread
            self._error = e
            self._opened.set()
            return
        self._opened.set()
        try:
            while True:
                with self._cond:
                    if not (self._frame or self._requests or self._stop):
                        self._cond.wait(0.02)  # wake anyway: keys must be read while nothing is shown
                    frame, self._frame = self._frame, None
                    requests, self._requests = self._requests, []
                    stop = self._stop
                if stop:
                    return
                for r in requests:
                    if r == "fullscreen":
                        self.window.toggle_fullscreen()
                    elif r == "grab":
                        self._grabbed = self.window.grab()
                        self._grab_done.set()
                if frame is not None:
                    t0 = time.perf_counter()
                    self.window.present(frame[0], frame[1])
                    done = time.monotonic()
                    self.present_ms.append((time.perf_counter() - t0) * 1000)
                    if frame[2] is not None:
                        self.latencies.append((done - frame[2]) * 1000)
                    self.shown += 1
                actions = self.window.poll()
                if actions:
                    with self._cond:
                        self._actions += actions
        except Exception as e:  # the display died (X server gone): the loop is told to quit
            log.warning(f"display failed ({e.__class__.__name__}: {e}); quitting")
            with self._cond:
                self._actions.append(("quit", None))
        finally:
            self.window.close()
