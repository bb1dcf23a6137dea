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
from livevae.outputs.layout import letterbox

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


CLOCKS = ("frames", "wall")
# A frame's sound: (the soundtrack it came from, or None for silence; its position there in seconds)
Heard = tuple[Path | None, float]


class Recorder(Output):
    """Writes frames to an H.264 MP4 from its own thread, with the sound of what was shown (AAC) when asked.

    clock "frames" (offline renders): frame i lasts 1 / fps, so N frames make N / fps seconds. clock "wall" (live
    recordings): each frame is stamped with the moment it was handed over, i.e. when it was shown, in a variable
    frame rate file, and the last frame lasts until stop(): a show running below the source rate still makes a
    file exactly as long as the time recorded, in step with anything recorded beside it.

    write() hands a frame to a bounded queue. Live (block=False) a full queue drops the frame and counts it, so a
    slow disk never stalls the show (in wall time the previous frame then stays on longer); offline renders
    (block=True) wait, so N frames in give N frames out. A failure (full disk, unwritable path) prints one message;
    the show goes on.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        size: tuple[int, int] | None = None,
        queue_size: int = 64,
        block: bool = False,
        crf: int = 18,
        clock: str = "frames",
        audio: bool = False,
    ) -> None:
        if clock not in CLOCKS:
            raise RecordError(f"{path}: recording clock {clock!r}; expected one of {', '.join(CLOCKS)}")
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(100000) if not isinstance(fps, Fraction) else fps
        self.size = size  # output (w, h), the picture letterboxed into it; None = the frames' own size
        self.block = block
        self.crf = crf
        self.clock = clock
        self.audio = audio
        self._q: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self.frames = 0  # written
        self.dropped = 0  # queue full (live only)
        self.failed = False
        self.error = ""
        self.started = time.monotonic()
        self._t0: float | None = None  # wall clock: monotonic time of the first frame
        self._end: float | None = None  # wall clock: monotonic time the recording was ended (end())
        self._last_t = 0.0

    @property
    def seconds(self) -> float:
        """Length of the recording so far, in its own time."""
        if self.clock == "wall":
            return 0.0 if self._t0 is None else time.monotonic() - self._t0
        return self.frames / float(self.fps)

    def start(self) -> Recorder:
        self._thread = threading.Thread(target=self._run, name=f"recorder {self.path.name}", daemon=True)
        self._thread.start()
        return self

    def write(self, rgb: np.ndarray, captured: float | None = None, heard: Heard | None = None) -> bool:
        """Queue RGB uint8 [H, W, 3] (and where its sound comes from); False when dropped or failed."""
        if self.failed or self._end is not None:
            return False
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        item = (rgb, now - self._t0, heard)
        if self.block:
            while not self.failed:
                try:
                    self._q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False
        try:
            self._q.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def _run(self) -> None:
        from livevae.media.video import VideoWriter
        from livevae.outputs.heard import HeardAudio

        writer: VideoWriter | None = None
        sound: HeardAudio | None = None
        wall = self.clock == "wall"
        last: np.ndarray | None = None  # wall clock: the frame not written yet, shown since last_t
        last_t = 0.0
        end: float | None = None
        try:
            while True:
                item = self._q.get()
                if isinstance(item, _Stop):
                    end = item.at
                    break
                assert isinstance(item, tuple)
                img, stamp, heard = item
                if self.size is not None:
                    img = letterbox(img, self.size)
                if writer is None:
                    # wall clock: millisecond timestamps; frames: one tick per frame, as before
                    tb = Fraction(1, 1000) if wall else None
                    # no B-frames in wall time: without reordering every frame keeps its own time and duration
                    opts = {"bf": "0"} if wall else None
                    writer = VideoWriter(
                        self.path, self.fps, (img.shape[1], img.shape[0]), crf=self.crf, time_base=tb, options=opts
                    )
                    if self.audio:
                        sound = HeardAudio(writer.container)
                t = stamp if wall else self.frames / float(self.fps)
                if sound is not None:
                    sound.add(t, *(heard if heard is not None else (None, 0.0)))
                if wall:
                    # written when the next one comes: the last frame lasts until the stop, not a frame period
                    if last is not None:
                        writer.write(last, last_t)
                    last, last_t = img, t
                else:
                    writer.write(img)
                self.frames += 1
            if writer is not None:
                length = self.frames / float(self.fps)
                if wall and last is not None:
                    stop_at = end if end is not None and end > last_t else last_t + 1.0 / float(self.fps)
                    writer.write(last, last_t, duration=stop_at - last_t)
                    length = stop_at
                if sound is not None:
                    sound.finish(length)
                writer.close()
        except Exception as e:  # full disk, bad path, encoder error: one message, then the show goes on
            self.failed = True
            self.error = f"{self.path}: recording failed ({e.__class__.__name__}: {e}); the show goes on"
            log.warning(self.error)
            if sound is not None:
                sound.close()
            if writer is not None:
                writer.abort()
            while True:  # keep draining so a blocked writer() returns and stop() finds its sentinel
                if isinstance(self._q.get(), _Stop):
                    break

    def close(self) -> None:
        self.stop()

    def end(self) -> None:
        """The recording ends now (in wall time the file lasts until this moment); stop() may finish it later,
        from another thread, without the file growing by the time that takes."""
        if self._end is None:
            self._end = time.monotonic()

    def stop(self, timeout: float = 30.0) -> Path | None:
        """Finish the file (in wall time it ends now, or at end()); returns its path, or None when it failed or
        got no frames."""
        if self._thread is None:
            return None
        self.end()
        assert self._end is not None
        stop = _Stop(self._end - self._t0 if self._t0 is not None else 0.0)
        while True:
            try:
                self._q.put(stop, timeout=0.1)
                break
            except queue.Full:
                if not self._thread.is_alive():
                    break
        self._thread.join(timeout)
        self._thread = None
        if self.failed or self.frames == 0:
            return None
        return self.path


class _Stop:
    """The end of a recording, at `at` seconds of its wall clock."""

    def __init__(self, at: float) -> None:
        self.at = at


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
