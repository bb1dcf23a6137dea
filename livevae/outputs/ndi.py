"""NDI out: a named cyndilib sender at its own size and rate, sending I420 made on its own thread; extra `ndi`."""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from typing import Any

import numpy as np

from livevae.ndi_config import prepare
from livevae.outputs.threaded import NewestFrameOutput
from livevae.outputs.yuv import I420Scaler

log = logging.getLogger(__name__)

NDI_HINT = "pip install 'livevae[ndi]' (cyndilib bundles the NDI runtime for Linux, macOS and Windows)"


def ndi_available() -> str:
    """ "" when cyndilib imports, else one line saying why (for logs and test skips)."""
    try:
        import cyndilib  # noqa: F401
    except ImportError as e:
        return f"cyndilib is not installed ({e}); {NDI_HINT}"
    return ""


class NdiOutput(NewestFrameOutput):
    """Sends the show as an NDI source named `name` (receivers see "HOST (name)"), at `size` and `fps`.

    The sender runs on this output's thread: the frame loop only swaps a reference, and a slow or stalled
    receiver holds back at most this thread (its frames are dropped newest-wins, counted in `dropped`), never the
    show. It takes the model-size picture and makes the I420 frame itself, on this thread (yuv.I420Scaler: the
    colour conversion at the model's size, then each plane scaled into the send buffer): the NDI SDK compresses
    YUV, so sending RGBA made it convert 4 bytes a pixel first; it compresses the I420 as SpeedHQ 4:2:0 as it is
    (livevae.ndi_config). Measured in bench/bench_rig.py.

    Each frame gets the NDI timecode the SDK synthesizes from the frame rate (100 ns units, rising by one
    frame period per frame) and carries the show's own clock as per-frame metadata:
    <livevae frame="N" captured="monotonic seconds"/> (N counts the frames offered to this output)."""

    kind = "ndi"
    takes_model_size = True  # scaled here, in YUV planes, not by the frame loop in RGB
    FOURCC = "I420"  # the send format (a test checks it: RGBA cost 1.5 ms more a 720p frame)

    def __init__(self, name: str, size: tuple[int, int], fps: float, filter: str = "bilinear") -> None:
        super().__init__(name, size, filter)
        prepare()  # before any sender, on the caller's thread: the NDI runtime reads its settings once
        self.fps = float(fps)
        self._yuv = I420Scaler(size, filter)  # raises ScaleError for an odd size, before any thread starts
        self._sender: Any = None
        self._frame_buf: Any = None

    @property
    def source_name(self) -> str:
        """The full NDI name receivers look for ("HOST (name)"); "" until the sender is open."""
        s = self._sender
        return str(s.name) if s is not None else ""

    def connections(self) -> int:
        """Receivers connected right now (0 before the sender opens)."""
        s = self._sender
        return int(s.get_num_connections(0.0)) if s is not None else 0

    def _detail(self) -> str:
        n = self.connections()
        return f", {n} receiver{'s' if n != 1 else ''}"

    def _open(self) -> None:
        from cyndilib.sender import Sender
        from cyndilib.video_frame import VideoSendFrame
        from cyndilib.wrapper.ndi_structs import FourCC

        vf = VideoSendFrame()
        vf.set_resolution(*self.size)
        vf.set_frame_rate(Fraction(self.fps).limit_denominator(1001))
        vf.set_fourcc(getattr(FourCC, self.FOURCC))
        # clock_video=False: the show paces the frames; a clocked sender would sleep this thread to the rate
        sender = Sender(self.name, clock_video=False)
        sender.set_video_frame(vf)
        sender.open()
        self._sender, self._frame_buf = sender, vf
        log.info(f"NDI: sending {sender.name!r} at {self.size[0]}x{self.size[1]} {self.fps:g} fps")

    def _picture(self, rgb: np.ndarray) -> np.ndarray:
        """The send buffer for one picture: uint8 [w*h*3/2] I420 at self.size, from the model-size picture."""
        return self._yuv.convert(rgb)

    def _send(self, rgb: np.ndarray, captured: float | None) -> None:
        frame = self._picture(rgb)
        cap = captured if captured is not None else time.monotonic()
        self._frame_buf.set_metadata(f'<livevae frame="{self.current}" captured="{cap:.6f}"/>'.encode())
        if not self._sender.write_video(frame):
            raise RuntimeError("the NDI sender refused a frame")

    def _release(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None
