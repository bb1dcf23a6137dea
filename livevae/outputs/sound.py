"""Audio out: a film's soundtrack played in sync with the picture (sounddevice), following jumps and loops."""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from livevae.media.audio import AudioError, FileAudio

log = logging.getLogger("livevae.controllers.audio")  # one logger for all of audio, as users filter it


class FilePlayer:
    """Plays an audio track out of a sound device in step with the picture: a feeder thread decodes ahead into a
    FIFO (its own FileAudio, so playback never waits on feature reads), the PortAudio callback pulls from it, and
    follow(t) re-seeks when the heard position strays from the show clock by more than `tolerance` seconds (a
    loop of the film, a source switch, a dropped-frame stall). open() raises AudioError when there is no output."""

    AHEAD = 0.5  # seconds decoded ahead of the device

    def __init__(self, path: str | Path, rate: int = 44100, loop: bool = True, device: str | int | None = None) -> None:
        self.reader = FileAudio(path, rate, loop)
        self.rate, self.device = rate, device
        self.block = 1024
        self.tolerance = 0.1
        self._fifo: deque[np.ndarray] = deque()
        self._buffered = 0
        self._lock = threading.Lock()
        self._pos = 0.0  # track time (s) of the next sample the feeder decodes
        self._heard = 0.0  # track time (s) of the next sample the device plays
        self._stream: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.underruns = 0
        self.seeks = 0

    # -- the pure part: FIFO, positions, seeking (tested without a device) --
    def seek(self, t: float) -> None:
        with self._lock:
            self._fifo.clear()
            self._buffered = 0
            self._pos = self._heard = max(0.0, t)
            self.seeks += 1

    def feed_once(self) -> bool:
        """Decode one block into the FIFO if it holds less than AHEAD seconds; False when it is full."""
        with self._lock:
            if self._buffered >= self.AHEAD * self.rate:
                return False
            pos = self._pos
        block = self.reader.window(pos + self.block / self.rate, self.block)  # [block] float32
        with self._lock:
            if self._pos != pos:  # a seek happened meanwhile: this block is stale
                return True
            self._fifo.append(block)
            self._buffered += block.size
            self._pos = pos + block.size / self.rate
        return True

    def pull(self, n: int) -> np.ndarray:
        """The next n samples for the device (silence where the feeder fell behind)."""
        out = np.zeros(n, np.float32)
        got = 0
        with self._lock:
            while got < n and self._fifo:
                head = self._fifo[0]
                k = min(n - got, head.size)
                out[got : got + k] = head[:k]
                if k == head.size:
                    self._fifo.popleft()
                else:
                    self._fifo[0] = head[k:]
                self._buffered -= k
                got += k
            self._heard += n / self.rate
        if got < n:
            self.underruns += 1
        return out

    def follow(self, t: float) -> None:
        """Keep playback on the show clock t (track seconds, already wrapped or offset by the caller)."""
        period = self.reader.period
        if self.reader.loop and period > 0:
            t, heard = t % period, self._heard % period
        else:
            heard = self._heard
        if abs(heard - t) > self.tolerance:
            self.seek(t)

    @property
    def heard(self) -> float:
        return self._heard

    # -- the device --
    def open(self, t: float = 0.0) -> None:
        try:
            import sounddevice as sd
        except OSError as e:
            raise AudioError(f"audio playback: PortAudio unavailable ({e}); expected libportaudio2 installed") from e
        self.seek(t)

        def cb(outdata: np.ndarray, frames: int, when: Any, status: Any) -> None:
            outdata[:] = self.pull(frames)[:, None]

        try:
            stream = sd.OutputStream(
                device=self.device, channels=1, samplerate=self.rate, dtype="float32", callback=cb,
                blocksize=self.block,
            )  # fmt: skip
            stream.start()
        except Exception as e:  # sd.PortAudioError, ValueError: no output device
            raise AudioError(
                f"audio playback on {self.device if self.device is not None else '(default output)'}: {e}; "
                "expected an output device (list them with: python -m sounddevice)"
            ) from e
        self._stream = stream
        self._stop.clear()
        self._thread = threading.Thread(target=self._feed, name="audio-play", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        while not self._stop.is_set():
            if not self.feed_once():
                self._stop.wait(self.block / self.rate / 2)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception as e:  # the device is gone
                log.debug("audio playback close: %s", e)
            self._stream = None
        self.reader.close()
