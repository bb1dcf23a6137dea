"""The Output base: what the window, recorder, virtual camera and later outputs share with the frame loop."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Output(ABC):
    """A place decoded frames go. write() is called from the frame loop and must never block it on a device,
    a socket or the disk (a thread and a bounded queue or a newest-wins slot do the slow part); close() finishes
    and releases. A failure sets `failed` (and `error`, one line naming the output) and the show goes on."""

    failed: bool = False
    error: str = ""

    @abstractmethod
    def write(self, rgb: np.ndarray, captured: float | None = None) -> bool:
        """Offer one frame, uint8 [H, W, 3] RGB; `captured` is its capture time (time.monotonic()) for latency.
        Returns False when the frame was not taken (dropped, or the output has failed)."""

    @abstractmethod
    def close(self) -> None: ...
