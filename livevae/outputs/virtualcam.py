"""Optional virtual-camera output (pyvirtualcam -> v4l2loopback or OBS) for OBS, Resolume, TouchDesigner."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import cv2
import numpy as np

from livevae.outputs.base import Output

log = logging.getLogger(__name__)


class VirtualCam(Output):
    """Sends the newest frame to a pyvirtualcam camera from its own thread (the device never stalls the show)."""

    def __init__(self, cam: Any, size: tuple[int, int]) -> None:
        self.cam = cam
        self.size = size
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._stop = False
        self.sent = 0
        self.failed = False
        self._thread = threading.Thread(target=self._run, name="virtualcam", daemon=True)
        self._thread.start()

    def write(self, rgb: np.ndarray, captured: float | None = None) -> bool:
        """Offer RGB uint8 [H, W, 3]; a frame not yet sent is replaced (newest wins)."""
        if self.failed:
            return False
        with self._cond:
            self._frame = rgb
            self._cond.notify()
        return True

    def send(self, rgb: np.ndarray) -> None:
        self.write(rgb)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._frame is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                rgb, self._frame = self._frame, None
            assert rgb is not None
            try:
                if (rgb.shape[1], rgb.shape[0]) != self.size:
                    rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_LINEAR)
                self.cam.send(np.ascontiguousarray(rgb))
                self.sent += 1
            except Exception as e:  # the device went away: say so once, the show goes on
                self.failed = True
                log.warning(f"sending failed ({e}); virtual camera output stopped, the show goes on")
                return

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(2.0)
        with contextlib.suppress(Exception):  # already gone
            self.cam.close()


def open_virtualcam(size: tuple[int, int], fps: float) -> VirtualCam | None:
    """A running virtual camera, or None (with one logged reason) when pyvirtualcam or a device is missing."""
    try:
        import pyvirtualcam
    except ImportError:
        log.warning("pyvirtualcam is not installed (pip install 'livevae[virtualcam]'); skipping the virtual camera")
        return None
    try:
        cam = pyvirtualcam.Camera(width=size[0], height=size[1], fps=fps)
    except Exception as e:  # no v4l2loopback / OBS virtual camera: a missing extra, not a failed show
        log.warning(f"no virtual camera device ({e}); skipping the virtual camera")
        return None
    log.info(f"sending to {cam.device} at {size[0]}x{size[1]}")
    return VirtualCam(cam, size)
