"""Recording the show to MP4 on a writer thread (bounded queue, never blocks the frame loop) and screenshots."""

from __future__ import annotations

import logging
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from livevae.errors import LivevaeError
from livevae.outputs.base import Output

log = logging.getLogger(__name__)


class RecordError(LivevaeError):
    """A recording or screenshot cannot be written (full disk, unwritable folder, bad size)."""


_issued: set[Path] = set()  # names handed out but perhaps not written yet (writes happen on threads)
_issued_lock = threading.Lock()


def stamped_path(folder: str | Path, prefix: str, suffix: str) -> Path:
    """folder/prefix-YYYYmmdd-HHMMSS[-n]suffix that neither exists nor was handed out before."""
    folder = Path(folder)
    base = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    with _issued_lock:
        p = folder / f"{base}{suffix}"
        n = 1
        while p.exists() or p in _issued:
            p = folder / f"{base}-{n}{suffix}"
            n += 1
        _issued.add(p)
    return p


_STOP = object()


class Recorder(Output):
    """Writes frames to an H.264 MP4 at the source's frame rate from its own thread.

    write() hands a frame to a bounded queue. Live (block=False) a full queue drops the frame and counts
    it, so a slow disk never stalls the show; offline renders (block=True) wait, so N frames in give
    N frames out. A failure (full disk, unwritable path) prints one message; the show goes on.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        size: tuple[int, int] | None = None,
        queue_size: int = 64,
        block: bool = False,
        crf: int = 18,
    ) -> None:
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(100000) if not isinstance(fps, Fraction) else fps
        self.size = size  # output (w, h); None = the frames' own size
        self.block = block
        self.crf = crf
        self._q: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self.frames = 0  # written
        self.dropped = 0  # queue full (live only)
        self.failed = False
        self.error = ""
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        """Length of the recording so far, in its own time."""
        return self.frames / float(self.fps)

    def start(self) -> Recorder:
        self._thread = threading.Thread(target=self._run, name=f"recorder {self.path.name}", daemon=True)
        self._thread.start()
        return self

    def write(self, rgb: np.ndarray, captured: float | None = None) -> bool:
        """Queue RGB uint8 [H, W, 3]; False when dropped (queue full) or the recording has failed."""
        if self.failed:
            return False
        if self.block:
            while not self.failed:
                try:
                    self._q.put(rgb, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False
        try:
            self._q.put_nowait(rgb)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def _run(self) -> None:
        from livevae.media.video import VideoWriter

        writer: VideoWriter | None = None
        try:
            while True:
                item = self._q.get()
                if item is _STOP:
                    break
                assert isinstance(item, np.ndarray)
                img = item
                if self.size is not None and (img.shape[1], img.shape[0]) != self.size:
                    img = cv2.resize(img, self.size, interpolation=cv2.INTER_LINEAR)
                if writer is None:
                    writer = VideoWriter(self.path, self.fps, (img.shape[1], img.shape[0]), crf=self.crf)
                writer.write(img)
                self.frames += 1
            if writer is not None:
                writer.close()
        except Exception as e:  # full disk, bad path, encoder error: one message, then the show goes on
            self.failed = True
            self.error = f"{self.path}: recording failed ({e.__class__.__name__}: {e}); the show goes on"
            log.warning(self.error)
            if writer is not None:
                writer.abort()
            while True:  # keep draining so a blocked writer() returns and stop() finds its sentinel
                if self._q.get() is _STOP:
                    break

    def close(self) -> None:
        self.stop()

    def stop(self, timeout: float = 30.0) -> Path | None:
        """Finish the file; returns its path, or None when the recording failed or got no frames."""
        if self._thread is None:
            return None
        while True:
            try:
                self._q.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                if not self._thread.is_alive():
                    break
        self._thread.join(timeout)
        self._thread = None
        if self.failed or self.frames == 0:
            return None
        return self.path


class Screenshots:
    """PNG screenshots written on background threads (a PNG of a 1080p frame takes tens of ms)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._threads: list[threading.Thread] = []
        self.saved: list[Path] = []
        self.errors: list[str] = []

    def save(self, rgb: np.ndarray, path: str | Path | None = None) -> Path:
        """Write RGB uint8 [H, W, 3] to `path` (default: a stamped name in the folder); returns the path."""
        p = Path(path) if path is not None else stamped_path(self.folder, "livevae", ".png")
        img = np.ascontiguousarray(rgb).copy()
        t = threading.Thread(target=self._write, args=(p, img), name="screenshot", daemon=True)
        t.start()
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        return p

    def _write(self, p: Path, rgb: np.ndarray) -> None:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
                raise RecordError("OpenCV could not encode the PNG")
            self.saved.append(p)
            log.info(f"screenshot {p}")
        except Exception as e:  # a failed screenshot is reported, never fatal to the show
            msg = f"{p}: screenshot failed ({e})"
            self.errors.append(msg)
            log.warning(msg)

    def wait(self, timeout: float = 10.0) -> None:
        for t in self._threads:
            t.join(timeout)
        self._threads = []
