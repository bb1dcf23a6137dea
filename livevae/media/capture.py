"""Capture: a source read on its thread (newest frame wins) or in order (offline), with backoff and a fallback."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from livevae.media.source import Frame, Source, SourceEnded, SourceError, test_card

log = logging.getLogger("livevae.media.source")  # users know these lines as "livevae source: ..."

FALLBACKS = ("hold", "black", "testcard")


# ---------------------------------------------------------------------------------------------- fallback


class Fallback:
    """What the show shows while its source is down: 'hold' the last frame, 'black', or the 'testcard'."""

    def __init__(self, mode: str = "hold", size: tuple[int, int] = (640, 480)) -> None:
        if mode not in FALLBACKS:
            raise SourceError(f"fallback {mode!r}: unknown; expected one of {', '.join(FALLBACKS)}")
        self.mode = mode
        self.size = size
        self.last: np.ndarray | None = None

    def remember(self, img: np.ndarray) -> None:
        self.last = img

    def image(self, t: float) -> np.ndarray:
        """RGB uint8 [H, W, 3] to show at show time `t` (the card moves, so a dead source is obvious)."""
        if self.mode == "hold" and self.last is not None:
            return self.last
        w, h = (self.last.shape[1], self.last.shape[0]) if self.last is not None else self.size
        if self.mode == "testcard":
            return test_card(w, h, t, label="NO SIGNAL")
        return np.zeros((h, w, 3), np.uint8)


class Backoff:
    """Reconnect delays: first, first*2, ... up to `most` seconds; reset after a success."""

    def __init__(self, first: float = 0.25, most: float = 4.0) -> None:
        self.first, self.most = first, most
        self.next = first

    def step(self) -> float:
        d = self.next
        self.next = min(self.most, self.next * 2)
        return d

    def reset(self) -> None:
        self.next = self.first


# ---------------------------------------------------------------------------------------------- capture


class Capture:
    """Reads a source on its own thread into a latest-frame slot.

    The slot holds one frame: a frame not taken before the next arrives is dropped (counted), never
    queued, so the show always works on the newest picture. On a failure the thread logs one line,
    closes the source and reopens it with backoff; the reader sees `failed` and shows its fallback.
    """

    def __init__(
        self,
        source: Source,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        fps: float | None = None,
        trial: bool = False,
    ) -> None:
        """trial: a source being switched to while another plays; a failed open ends it (one line, no retry)."""
        self.source = source
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.fps_override = fps
        self.trial = trial
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._seq = 0
        self._taken_seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = "starting"  # starting | running | failed | ended | stopped
        self.dropped = 0  # frames published but overwritten before the loop took them
        self.published = 0
        self.failures = 0
        self.reconnects = 0
        self.last_error = ""

    @property
    def fps(self) -> float:
        return float(self.fps_override or self.source.fps)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def ready(self) -> bool:
        """The first frame is in the slot: a source switched to may replace the one playing."""
        return self._slot is not None

    def start(self) -> Capture:
        self._thread = threading.Thread(target=self._run, name=f"capture {self.source.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: bool = True, timeout: float = 2.0) -> None:
        """Stop capturing; the thread closes the source itself. wait=False returns at once (source switches
        in the frame loop: releasing a camera can take a while)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if wait and self._thread is not None:
            self._thread.join(timeout)
        self.status = "stopped"

    def _publish(self, img: np.ndarray) -> None:
        with self._cond:
            if self._slot is not None and self._slot.seq > self._taken_seq:
                self.dropped += 1  # stale: the loop never took it
            self._seq += 1
            self.published += 1
            self._slot = Frame(img, self.clock(), self._seq, self.source.pts, self.source.name)
            self._cond.notify_all()

    def _fail(self, e: BaseException) -> None:
        self.failures += 1
        with self._cond:
            self.status = "failed"
            self._cond.notify_all()
        self.last_error = str(e)
        log.warning(f"{_named(self.source.name, e)}; showing the fallback and reconnecting")
        self.source.close()

    def _run(self) -> None:
        try:
            self._capture()
        finally:
            self.source.close()

    def _capture(self) -> None:
        opened_once = False
        while not self._stop.is_set():
            try:
                self.source.open()
            except Exception as e:  # any open failure: keep the show up and retry with backoff
                # a switch that failed: the playing source stays, so no fallback and no retry
                if self.trial and not opened_once:
                    self.failures += 1
                    self.last_error = str(e)
                    self.status = "failed"
                    log.warning(f"{self.source.name}: {e}; staying on the current source")
                    return
                if self.status != "failed":
                    self._fail(e)
                self._stop.wait(self.backoff.step())
                continue
            if opened_once:
                self.reconnects += 1
                log.info(f"{self.source.name}: reconnected")
            opened_once = True
            self.status = "running"
            self.backoff.reset()
            deadline = self.clock()
            try:
                while not self._stop.is_set():
                    img = self.source.read()
                    if not self.source.paced:
                        # Files and the test card: publish frame k at start + sum of frame periods, so a
                        # file plays at its own rate. When decoding falls behind by more than a frame,
                        # restart the timeline instead of bursting to catch up.
                        now = self.clock()
                        if deadline > now:
                            self._stop.wait(deadline - now)
                        elif now - deadline > 1 / self.fps:
                            deadline = now
                        deadline += 1 / self.fps
                    self._publish(img)
            except SourceEnded as e:
                self.status = "ended"
                log.warning(f"{e}")
                return
            except Exception as e:  # read errors of any kind: fallback + reconnect, never a dead show
                self._fail(e)
                self._stop.wait(self.backoff.step())

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the first frame is in the slot (without taking it) or the source failed; True if a frame."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._slot is None and self.status != "failed" and not self._stop.is_set():
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._slot is not None

    def take(self, timeout: float) -> Frame | None:
        """The newest frame not yet taken, waiting up to `timeout` s for one; None if none arrived."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._slot is None or self._slot.seq <= self._taken_seq:
                left = end - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(left)
            self._taken_seq = self._slot.seq
            return self._slot


class OrderedReader:
    """Reads a source in order on the caller's thread, for headless renders that must repeat exactly.

    Failures give the fallback picture; reopening is retried on a backoff measured in show time,
    so a render with a flaky source still repeats.
    """

    def __init__(self, source: Source, backoff: Backoff | None = None, fps: float | None = None) -> None:
        self.source = source
        self.backoff = backoff or Backoff()
        self.fps_override = fps
        self.status = "starting"
        self.failures = 0
        self.reconnects = 0
        self.last_error = ""
        self._retry_at: float | None = 0.0
        self._opened_once = False
        self._seq = 0
        self.dropped = 0

    @property
    def fps(self) -> float:
        return float(self.fps_override or self.source.fps)

    @property
    def name(self) -> str:
        return self.source.name

    def _fail(self, e: BaseException, t: float) -> None:
        if self.status != "failed":
            self.failures += 1
            log.warning(f"{_named(self.source.name, e)}; showing the fallback and reconnecting")
        self.status = "failed"
        self.last_error = str(e)
        self.source.close()
        self._retry_at = t + self.backoff.step()

    def read(self, t: float) -> Frame | None:
        """The next frame at show time `t`, or None while the source is down or has ended."""
        if self.status == "ended":
            return None
        if self.status != "running":
            if self._retry_at is None or t < self._retry_at:
                return None
            try:
                self.source.open()
            except Exception as e:  # any open failure: fallback and retry later
                self._fail(e, t)
                return None
            if self._opened_once:
                self.reconnects += 1
                log.info(f"{self.source.name}: reconnected")
            self._opened_once = True
            self.status = "running"
            self.backoff.reset()
        try:
            img = self.source.read()
        except SourceEnded:
            self.status = "ended"
            return None
        except Exception as e:  # any read error: fallback + reconnect
            self._fail(e, t)
            return None
        self._seq += 1
        return Frame(img, time.monotonic(), self._seq, self.source.pts, self.source.name)

    def stop(self) -> None:
        self.source.close()
        self.status = "stopped"


def _named(name: str, e: BaseException) -> str:
    """The error as one line that names the source once ("camera 0: cannot open", not "camera 0: camera 0: ...")."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if text.startswith(name) else f"{name}: {text}"
