"""NewestFrameOutput: an Output whose device work runs on its own thread, fed through a newest-wins slot."""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections import deque

import cv2
import numpy as np

from livevae.outputs.base import Output
from livevae.outputs.scaling import interpolation

log = logging.getLogger(__name__)


def unavailable(platform: str, what: str, module: str, extra: str) -> str:
    """ "" when `module` imports on `platform` (a sys.platform value), else one line saying why, for logs and
    test skips: the platform, or the package and the extra that installs it."""
    import importlib
    import sys

    if sys.platform != platform:
        return f"{what} is {ONLY[platform]} only (this is {sys.platform}); use NDI here"
    try:
        importlib.import_module(module)
    except ImportError as e:
        return f"{module} is not installed ({e}); pip install 'livevae[{extra}]'"
    return ""


ONLY = {"darwin": "macOS", "win32": "Windows", "linux": "Linux"}


class NewestFrameOutput(Output):
    """write() only swaps one reference (the frame loop never waits on the device); the output's thread sends
    the newest frame, and a frame replaced before it was sent counts as dropped. A device that raises stops
    this output alone: `failed` and `error` say why, once, and the show goes on.

    Subclasses implement _send(rgb, captured) (uint8 [h, w, 3] at `size`, on the output's thread) and may override
    _open() (called on that thread first, for APIs that want their context there) and _release()."""

    kind = "output"
    # True: write() takes the model-size picture and _send scales it (NDI, in YUV planes); False: the frame loop
    # hands over the picture already at `size`, one scale per size per frame shared by every output of that size
    takes_model_size = False

    def __init__(self, name: str, size: tuple[int, int], filter: str = "bilinear") -> None:
        self.name = name
        self.size = size  # (w, h) sent; frames of another size are scaled on the output's thread
        self.filter = filter
        self.sent = 0
        self.dropped = 0
        self.offered = 0  # write() calls taken; each frame's number in this output
        self.sent_log: deque[int] = deque(maxlen=4096)  # numbers of the frames that went out, newest last
        self.current = -1  # the number of the frame being sent (read by _send, on the output's thread)
        self.failed = False
        self.error = ""
        self._cond = threading.Condition()
        self._frame: tuple[np.ndarray, float | None, int] | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"{self.kind} {name}", daemon=True)

    def start(self) -> NewestFrameOutput:
        self._thread.start()
        return self

    def write(self, rgb: np.ndarray, captured: float | None = None) -> bool:
        """Offer RGB uint8 [H, W, 3]; a frame not yet sent is replaced (newest wins, counted as dropped)."""
        if self.failed:
            return False
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = (rgb, captured, self.offered)
            self.offered += 1
            self._cond.notify()
        return True

    def describe(self) -> str:
        """One line for the HUD and status: kind, name, size, frames sent and dropped, or why it failed."""
        w, h = self.size
        head = f"{self.kind} {self.name} {w}x{h}"
        if self.failed:
            return f"{head} FAILED: {self.error}"
        return f"{head} sent {self.sent} dropped {self.dropped}{self._detail()}"

    def _detail(self) -> str:
        """More for describe() (", 2 receivers"); "" by default."""
        return ""

    def _fail(self, e: BaseException) -> None:
        self.failed = True
        self.error = f"{self.kind} output {self.name!r}: {e.__class__.__name__}: {e}"
        log.warning(f"{self.error}; this output stopped, the show goes on")

    def _run(self) -> None:
        try:
            self._open()
        except Exception as e:  # no device / no runtime: this output is off, the show goes on
            self._fail(e)
            return
        try:
            while True:
                with self._cond:
                    while self._frame is None and not self._stop:
                        self._cond.wait()
                    if self._frame is None:  # stopped, and the last frame offered has gone out
                        return
                    item, self._frame = self._frame, None
                assert item is not None
                rgb, captured, self.current = item
                if not self.takes_model_size and (rgb.shape[1], rgb.shape[0]) != self.size:
                    rgb = cv2.resize(rgb, self.size, interpolation=interpolation(self.filter))
                self._send(np.ascontiguousarray(rgb), captured)
                self.sent += 1
                self.sent_log.append(self.current)
        except Exception as e:  # the device went away mid-show
            self._fail(e)
        finally:
            try:
                self._release()
            except Exception as e:  # already gone; nothing more to free
                log.debug(f"{self.kind} {self.name}: release: {e}")

    def _open(self) -> None:
        """Open the device on the output's thread (GL contexts, NDI senders); raise to fail this output."""

    @abstractmethod
    def _send(self, rgb: np.ndarray, captured: float | None) -> None:
        """Send one frame, uint8 [h, w, 3] RGB, C-contiguous, at self.size (at the model's size when
        takes_model_size); `captured` is its capture time."""

    def _release(self) -> None:
        """Free the device; called once on the output's thread when it ends."""

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(5.0)


class RgbaOutput(NewestFrameOutput):
    """A NewestFrameOutput for APIs that take RGBA (NDI, Syphon, Spout): one reused [h, w, 4] buffer, alpha 255."""

    def __init__(self, name: str, size: tuple[int, int], filter: str = "bilinear") -> None:
        super().__init__(name, size, filter)
        self._rgba = np.empty((size[1], size[0], 4), np.uint8)  # reused: no allocation per frame

    def _to_rgba(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 [h, w, 3] RGB -> the reused uint8 [h, w, 4] RGBA buffer (alpha 255)."""
        cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA, dst=self._rgba)
        return self._rgba
