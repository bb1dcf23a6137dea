"""NDI in: `ndi:NAME` as a source, received with cyndilib, with the capture's usual fallback and reconnects."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from livevae.media.source import Source, SourceError
from livevae.ndi_config import prepare

log = logging.getLogger(__name__)

MAX_PIXELS = 7680 * 4320  # a sender announcing more is refused, not allocated for


def ndi_name_matches(full: str, wanted: str) -> bool:
    """True when an NDI source's full name ("HOST (stream)") is the one asked for: the full name, or the
    stream name alone (what a sender calls itself), compared without case."""
    full_l, wanted_l = full.strip().lower(), wanted.strip().lower()
    if full_l == wanted_l:
        return True
    if full_l.endswith(")") and "(" in full_l:
        return full_l[full_l.index("(") + 1 : -1].strip() == wanted_l
    return False


def rgbx_to_rgb(buf: np.ndarray, width: int, height: int, stride: int) -> np.ndarray:
    """An NDI RGBX/RGBA frame (uint8, `stride` bytes a line) -> a new uint8 [height, width, 3] RGB array."""
    if stride < width * 4 or buf.size < stride * height:
        raise SourceError(f"NDI frame {width}x{height}: {buf.size} bytes with stride {stride}; expected RGBX")
    lines = buf[: stride * height].reshape(height, stride)
    return np.ascontiguousarray(lines[:, : width * 4].reshape(height, width, 4)[..., :3])


class NdiSource(Source):
    """Receives the NDI source called `ndi_name` (its stream name, e.g. "Resolume Arena", or the full
    "HOST (stream)"). open() looks for it for up to `find_timeout` seconds; read() waits for the next video
    frame and raises SourceError after `stall` seconds without one (sender gone), so the capture shows the
    fallback and reconnects as it does for an unplugged camera. Needs the `ndi` extra (cyndilib)."""

    paced = True  # read() waits for the sender

    def __init__(self, ndi_name: str, find_timeout: float = 3.0, stall: float = 2.0) -> None:
        if not ndi_name.strip():
            raise SourceError("source 'ndi:': no NDI name; expected ndi:NAME (the sender's name)")
        self.ndi_name = ndi_name.strip()
        self.name = f"ndi:{self.ndi_name}"
        self.find_timeout = find_timeout
        self.stall = stall
        self._fps = 30.0
        self._finder: Any = None
        self._receiver: Any = None
        self._frame: Any = None
        self._last_ts: float | None = None
        self._n = 0
        prepare()  # before this process's first finder: the NDI runtime reads its settings once, senders' too

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        self.close()
        try:
            from cyndilib.finder import Finder
            from cyndilib.receiver import Receiver
            from cyndilib.video_frame import VideoFrameSync
            from cyndilib.wrapper.ndi_recv import RecvBandwidth, RecvColorFormat
        except ImportError as e:
            raise SourceError(f"{self.name}: cyndilib is not installed ({e}); pip install 'livevae[ndi]'") from None
        finder = Finder()
        finder.open()
        self._finder = finder
        found = None
        deadline = time.monotonic() + self.find_timeout
        while found is None:
            for n in finder.get_source_names():
                if ndi_name_matches(n, self.ndi_name):
                    found = finder.get_source(n)
                    break
            left = deadline - time.monotonic()
            if found is None:
                if left <= 0:
                    seen = ", ".join(finder.get_source_names()) or "none"
                    self.close()
                    raise SourceError(
                        f"{self.name}: no NDI source of that name within {self.find_timeout:g} s (seen: {seen}); "
                        "expected a running sender on this network (see docs/rig.md for networks without mDNS)"
                    )
                finder.wait_for_sources(min(left, 0.25))
        receiver = Receiver(color_format=RecvColorFormat.RGBX_RGBA, bandwidth=RecvBandwidth.highest)
        # NDI's frame sync: capture_video() returns the newest frame at once (no queue to fall behind on, and
        # no blocking capture that would hold the GIL while it waits, stalling the frame loop)
        frame = VideoFrameSync()
        receiver.frame_sync.set_video_frame(frame)
        receiver.set_source(found)
        self._last_ts = None
        self._receiver, self._frame = receiver, frame
        self._n = 0
        log.info(f"{self.name}: receiving {found.name!r}")

    def read(self) -> np.ndarray:
        if self._receiver is None:
            raise SourceError(f"{self.name}: read before open")
        deadline = time.monotonic() + self.stall
        sync = self._receiver.frame_sync
        while True:
            sync.capture_video()
            f = self._frame
            ts = f.get_timestamp_posix()
            if f.xres > 0 and ts != self._last_ts:  # a frame not seen before
                self._last_ts = ts
                return self._take()
            if time.monotonic() > deadline:
                raise SourceError(f"{self.name}: no video for {self.stall:g} s; expected frames from the sender")
            time.sleep(0.002)  # poll at 500 Hz: a new frame waits at most 2 ms, the GIL is free meanwhile

    def _take(self) -> np.ndarray:
        f = self._frame
        w, h = f.get_resolution()
        if w <= 0 or h <= 0 or w * h > MAX_PIXELS:
            raise SourceError(f"{self.name}: frame {w}x{h}; expected 1x1 .. 7680x4320")
        rate = float(f.get_frame_rate())
        if 1 <= rate <= 1000:
            self._fps = rate
        buf = np.asarray(f.get_array(), np.uint8).reshape(-1)  # the frame sync's buffer: copied below
        self._n += 1
        return rgbx_to_rgb(buf, w, h, f.get_line_stride())

    def close(self) -> None:
        if self._receiver is not None:
            try:
                self._receiver.disconnect()
            except Exception as e:  # the sender is gone already
                log.debug(f"{self.name}: disconnect: {e}")
            self._receiver = self._frame = None
        if self._finder is not None:
            self._finder.close()
            self._finder = None

    @property
    def pts(self) -> float:
        return self._n / self._fps
