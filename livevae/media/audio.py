"""Audio in: a film's soundtrack decoded with PyAV (seekable, bounded memory) and a live input device."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from livevae.errors import LivevaeError

log = logging.getLogger("livevae.controllers.audio")  # one logger for all of audio, as users filter it

DEVICE_RETRY = 5.0  # s between attempts to open a missing/failed input device


class AudioError(LivevaeError):
    """An [audio] show section is malformed, or an audio file cannot be read."""


# --- sources -----------------------------------------------------------------------------------------------------
class FileAudio:
    """An audio track (an audio file, or a video's soundtrack) decoded with PyAV to float32 at `rate` (mono, or
    stereo with channels=2), read by position: window(t, n) is the n samples ending at t seconds. Decodes forward
    as t advances and seeks when it jumps (a loop, a cue), keeping only a few seconds in memory, so a feature film
    costs no more than a clip."""

    KEEP = 4.0  # seconds of decoded audio kept behind the read position

    def __init__(self, path: str | Path, rate: int = 44100, loop: bool = True, channels: int = 1) -> None:
        import av

        self.path, self.rate, self.loop = Path(path), int(rate), loop
        self.channels = 2 if channels == 2 else 1
        try:
            self._c = av.open(str(self.path))
        except Exception as e:  # FileNotFoundError, av.error.InvalidDataError
            raise AudioError(f"audio file {self.path}: cannot open ({e}); expected an audio or video file") from e
        if not self._c.streams.audio:
            self._c.close()
            raise AudioError(f"audio file {self.path}: no audio stream; expected a file with sound")
        self._s = self._c.streams.audio[0]
        if self._s.duration is not None and self._s.time_base is not None:
            self.duration = float(self._s.duration * self._s.time_base)
        elif self._c.duration:
            self.duration = self._c.duration / 1_000_000
        else:
            self.duration = 0.0
        self.period = self.duration  # loop length; a video source loops at its frame count / fps instead
        self._buf = np.zeros((0, self.channels), np.float32)  # [samples, channels]
        self._start = 0  # sample index of _buf[0]
        self._iter: Any = None
        self._resampler: Any = None
        self._eof = False

    def close(self) -> None:
        self._c.close()

    def _seek(self, sample: int) -> None:
        import av

        sec = max(0.0, sample / self.rate)
        tb = self._s.time_base
        self._c.seek(int(sec / tb) if tb else int(sec * 1_000_000), stream=self._s, any_frame=False, backward=True)
        self._iter = self._c.decode(self._s)
        layout = "stereo" if self.channels == 2 else "mono"
        self._resampler = av.AudioResampler(format="flt", layout=layout, rate=self.rate)
        self._buf = np.zeros((0, self.channels), np.float32)
        self._start = -1  # set by the first decoded frame
        self._eof = False

    def _decode_until(self, end: int) -> None:
        chunks = [self._buf]
        have = self._start + self._buf.shape[0]
        while have < end and not self._eof:
            try:
                frame = next(self._iter)
            except StopIteration:
                self._eof = True
                break
            except Exception as e:  # a corrupt packet: skip it, the next keyframe recovers
                log.debug("audio %s: decode error %s", self.path, e)
                continue
            if self._start < 0:
                t0 = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
                self._start = max(0, round(t0 * self.rate))
                have = self._start
            for out in self._resampler.resample(frame):
                a = out.to_ndarray().reshape(-1, self.channels).astype(np.float32)  # [samples, channels], packed
                chunks.append(a)
                have += a.shape[0]
        self._buf = np.concatenate(chunks) if len(chunks) > 1 else self._buf
        keep = int(self.KEEP * self.rate)
        cut = max(0, self._buf.shape[0] - max(keep, end - self._start + keep))
        if cut:
            self._buf = self._buf[cut:]
            self._start += cut

    def window(self, t: float, n: int) -> np.ndarray:
        """float32 [n] (mono) or [n, 2] (stereo) samples ending at t seconds (wrapped into the track when looping;
        silence past the end or before the start)."""
        if self.loop and self.period > 0:
            t = t % self.period
        end = round(t * self.rate)
        begin = end - n
        if self._iter is None or begin < self._start or end > self._start + self._buf.shape[0] + 2 * self.rate:
            self._seek(max(0, begin - self.rate // 10))
        self._decode_until(end)
        out = np.zeros((n, self.channels), np.float32)
        if self._start >= 0:
            lo, hi = max(begin, self._start), min(end, self._start + self._buf.shape[0])
            if hi > lo:
                out[lo - begin : hi - begin] = self._buf[lo - self._start : hi - self._start]
        return out[:, 0] if self.channels == 1 else out


class Ring:
    """The most recent samples of a live input, written by the audio callback and read once per frame."""

    def __init__(self, size: int) -> None:
        self._a = np.zeros(size, np.float32)
        self._pos = 0
        self._lock = threading.Lock()
        self.written = 0

    def write(self, x: np.ndarray) -> None:
        x = x[-self._a.size :]
        n = x.size
        with self._lock:
            end = self._pos + n
            if end <= self._a.size:
                self._a[self._pos : end] = x
            else:
                k = self._a.size - self._pos
                self._a[self._pos :] = x[:k]
                self._a[: n - k] = x[k:]
            self._pos = end % self._a.size
            self.written += n

    def latest(self, n: int) -> np.ndarray:
        with self._lock:
            return np.roll(self._a, -self._pos)[-n:].copy()


class DeviceInput:
    """Live input from a sounddevice (PortAudio) device, mixed to mono into a Ring. open() raises AudioError."""

    def __init__(self, device: str | int | None, rate: int, channels: int | None, ring: Ring) -> None:
        self.device, self.rate, self.channels, self.ring = device, rate, channels, ring
        self._stream: Any = None
        self.status_flags = 0  # overflows reported by PortAudio

    def open(self) -> None:
        try:
            import sounddevice as sd
        except OSError as e:  # PortAudio library missing
            raise AudioError(f"audio input: PortAudio unavailable ({e}); expected libportaudio2 installed") from e
        try:
            dev = sd.query_devices(self.device, "input")
            ch = self.channels or max(1, min(2, int(dev["max_input_channels"])))

            def cb(indata: np.ndarray, frames: int, when: Any, status: Any) -> None:
                if status:
                    self.status_flags += 1
                self.ring.write(indata.mean(axis=1) if indata.shape[1] > 1 else indata[:, 0])

            stream = sd.InputStream(device=self.device, channels=ch, samplerate=self.rate, dtype="float32", callback=cb)
            stream.start()
        except Exception as e:  # sd.PortAudioError, ValueError (no such device / no default input)
            raise AudioError(
                f"audio input {self.device if self.device is not None else '(default)'}: {e}; expected an input "
                f"device (list them with: python -m sounddevice)"
            ) from e
        self._stream = stream
        log.info("audio in: %s, %d ch at %d Hz", dev.get("name", self.device), ch, self.rate)

    @property
    def active(self) -> bool:
        s = self._stream
        return s is not None and bool(getattr(s, "active", False))

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception as e:  # the device is already gone
                log.debug("audio close: %s", e)
            self._stream = None
