"""Virtual-camera output (pyvirtualcam: v4l2loopback on Linux, OBS's camera on Windows/macOS); extra `virtualcam`."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from livevae.outputs.threaded import NewestFrameOutput

log = logging.getLogger(__name__)


class VirtualCam(NewestFrameOutput):
    """Sends the newest frame to a pyvirtualcam camera from its own thread (the device never stalls the show)."""

    kind = "virtualcam"

    def __init__(self, cam: Any, size: tuple[int, int], filter: str = "bilinear") -> None:
        super().__init__(str(getattr(cam, "device", "camera")), size, filter)
        self.cam = cam
        self.start()

    def send(self, rgb: np.ndarray) -> None:
        self.write(rgb)

    def _send(self, rgb: np.ndarray, captured: float | None) -> None:
        self.cam.send(rgb)

    def _release(self) -> None:
        self.cam.close()


def open_virtualcam(size: tuple[int, int], fps: float, filter: str = "bilinear") -> VirtualCam | None:
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
    return VirtualCam(cam, size, filter)
