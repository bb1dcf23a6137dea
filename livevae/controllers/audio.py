"""Audio-reactive control: live input or a film's soundtrack -> per-frame level, bands, onsets -> controls and OSC."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from livevae.control.state import ControlError, ControlState, canonical
from livevae.controllers.midi import CURVES, scale, validation_message
from livevae.errors import LivevaeError

if TYPE_CHECKING:
    from livevae.handle import FrameInfo, LoopHandle

log = logging.getLogger("livevae.controllers.audio")

FEATURES = ("rms", "low", "mid", "high", "onset", "flux")
DEVICE_RETRY = 5.0  # s between attempts to open a missing/failed input device
EPS = 1e-12


class AudioError(LivevaeError):
    """An [audio] show section is malformed, or an audio file cannot be read."""


# --- features (pure) ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureConfig:
    """How features are measured. Times in seconds, levels in dB."""

    sample_rate: int = 44100
    n_fft: int = 2048  # analysis window: ~46 ms at 44.1 kHz, ~10 bins below 250 Hz
    low_mid: float = 250.0  # Hz: low band = 20..low_mid, mid = low_mid..mid_high, high = mid_high..Nyquist
    mid_high: float = 4000.0
    attack: float = 0.01  # smoothing when a feature rises
    release: float = 0.25  # and when it falls (onset pulses decay with this too)
    autogain: bool = True  # normalise to the recent peak, so quiet and loud rooms both use the full 0..1
    autogain_fall: float = 1.0  # dB/s the remembered peak sinks by, so the gain recovers after a loud passage
    range_db: float = 36.0  # dynamic range below the peak mapped onto 0..1
    gate_db: float = -70.0  # dBFS below which a feature is 0 (silence is not amplified into noise)
    onset_k: float = 1.5  # an onset is spectral flux above mean + k * std of the last onset_window seconds
    onset_window: float = 0.5
    onset_min_gap: float = 0.08  # s between onsets (refractory)


@dataclass
class Features:
    """One frame's features: normalised 0..1 values (what mappings and OSC see) and raw measurements."""

    values: dict[str, float]
    rms_db: float  # dBFS of the last frame period
    bands_db: tuple[float, float, float]  # low, mid, high band power in dB
    flux: float  # raw spectral flux
    onset: bool  # an onset fired this frame


class _Peak:
    """A peak follower in dB: jumps up, sinks at `fall` dB/s, never below floor."""

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self.db = floor

    def update(self, db: float, dt: float, fall: float) -> float:
        self.db = max(db, self.db - fall * dt, self.floor)
        return self.db


class FeatureExtractor:
    """Turns blocks of mono samples into features, once per video frame. Pure apart from its smoothing and
    auto-gain memory: the same blocks in the same order give the same features (offline renders repeat)."""

    def __init__(self, cfg: FeatureConfig | None = None) -> None:
        self.cfg = c = cfg or FeatureConfig()
        if c.n_fft < 64 or c.n_fft & (c.n_fft - 1):
            raise AudioError(f"FeatureConfig n_fft {c.n_fft}; expected a power of two >= 64")
        if not 20.0 < c.low_mid < c.mid_high < c.sample_rate / 2:
            raise AudioError(
                f"FeatureConfig bands {c.low_mid:g}/{c.mid_high:g} Hz; expected 20 < low_mid < mid_high < "
                f"{c.sample_rate / 2:g} (Nyquist)"
            )
        self.window = np.hanning(c.n_fft).astype(np.float32)  # [n_fft]
        freqs = np.fft.rfftfreq(c.n_fft, 1.0 / c.sample_rate)  # [n_fft // 2 + 1]
        self.bands = (
            (freqs >= 20.0) & (freqs < c.low_mid),
            (freqs >= c.low_mid) & (freqs < c.mid_high),
            freqs >= c.mid_high,
        )
        # Parseval: a band's summed power equals the mean square of its part of the signal, so band levels read
        # in dBFS like the RMS level (a sine of amplitude A gives A^2 / 2 in its band)
        self._pnorm = 2.0 / (c.n_fft * float(np.sum(self.window**2)))
        self._prev_mag: np.ndarray | None = None
        floor = c.gate_db + c.range_db  # auto-gain never amplifies a peak quieter than this
        self._peak_rms = _Peak(floor if c.autogain else 0.0)
        self._peak_band = _Peak(floor if c.autogain else 0.0)
        self._peak_flux = 0.0
        self._flux_hist: deque[float] = deque()
        self._since_onset = math.inf
        self.smoothed = dict.fromkeys(FEATURES, 0.0)

    def _norm(self, db: float, peak: float) -> float:
        if db <= self.cfg.gate_db:
            return 0.0
        return float(min(max((db - (peak - self.cfg.range_db)) / self.cfg.range_db, 0.0), 1.0))

    def _smooth(self, name: str, x: float, dt: float, attack: float | None = None) -> float:
        c = self.cfg
        y = self.smoothed[name]
        tau = (c.attack if attack is None else attack) if x > y else c.release
        a = 1.0 if tau <= 0 else 1.0 - math.exp(-dt / tau)
        y += a * (x - y)
        self.smoothed[name] = y
        return y

    def process(self, block: np.ndarray, dt: float) -> Features:
        """block: float32 [n] mono samples ending now (n_fft of them; fewer are zero-padded in front); dt: seconds
        since the previous call (one video frame). Returns this frame's features."""
        c = self.cfg
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        if x.size < c.n_fft:
            x = np.concatenate([np.zeros(c.n_fft - x.size, np.float32), x])
        x = x[-c.n_fft :]
        dt = max(float(dt), 1e-4)
        hop = int(min(max(dt * c.sample_rate, 64), c.n_fft))
        recent = x[-hop:]  # the frame period's samples, for the level
        rms_db = 10.0 * math.log10(float(np.mean(recent * recent)) + EPS)
        mag = np.abs(np.fft.rfft(x * self.window))  # [n_fft // 2 + 1]
        power = mag * mag * self._pnorm
        bands_db = tuple(10.0 * math.log10(float(np.sum(power[b])) + EPS) for b in self.bands)
        # spectral flux on log-compressed magnitudes: loudness-independent, so soft and loud hits both count
        logmag = np.log1p(100.0 * mag / (np.sum(self.window) / 2))
        flux = 0.0 if self._prev_mag is None else float(np.sum(np.maximum(logmag - self._prev_mag, 0.0)))
        self._prev_mag = logmag
        # adaptive threshold over the recent past (not including this frame)
        hist = self._flux_hist
        n_hist = max(3, round(c.onset_window / dt))
        mean = float(np.mean(hist)) if hist else 0.0
        std = float(np.std(hist)) if len(hist) > 1 else 0.0
        self._since_onset += dt
        onset = (
            len(hist) >= 2
            and flux > mean + c.onset_k * std
            and flux > 1.5 * mean + 1e-3
            and self._since_onset >= c.onset_min_gap
        )
        if onset:
            self._since_onset = 0.0
        hist.append(flux)
        while len(hist) > n_hist:
            hist.popleft()
        if c.autogain:
            pr = self._peak_rms.update(rms_db, dt, c.autogain_fall)
            pb = self._peak_band.update(max(bands_db), dt, c.autogain_fall)
        else:
            pr = pb = 0.0
        self._peak_flux = max(flux, self._peak_flux * math.exp(-dt * c.autogain_fall / 8.686))  # dB/s -> ln
        raw = {
            "rms": self._norm(rms_db, pr),
            "low": self._norm(bands_db[0], pb),
            "mid": self._norm(bands_db[1], pb),
            "high": self._norm(bands_db[2], pb),
            "flux": flux / self._peak_flux if self._peak_flux > 1e-6 else 0.0,
        }
        values = {k: self._smooth(k, v, dt) for k, v in raw.items()}
        values["onset"] = self._smooth("onset", 1.0 if onset else 0.0, dt, attack=0.0)  # instant rise, slow fall
        return Features(
            values={k: values[k] for k in FEATURES},
            rms_db=rms_db,
            bands_db=(bands_db[0], bands_db[1], bands_db[2]),
            flux=flux,
            onset=onset,
        )


# --- sources -----------------------------------------------------------------------------------------------------
class FileAudio:
    """An audio track (an audio file, or a video's soundtrack) decoded with PyAV to mono float32 at `rate`, read
    by position: window(t, n) is the n samples ending at t seconds. Decodes forward as t advances and seeks when it
    jumps (a loop, a cue), keeping only a few seconds in memory, so a feature film costs no more than a clip."""

    KEEP = 4.0  # seconds of decoded audio kept behind the read position

    def __init__(self, path: str | Path, rate: int = 44100, loop: bool = True) -> None:
        import av

        self.path, self.rate, self.loop = Path(path), int(rate), loop
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
        self._buf = np.zeros(0, np.float32)
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
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
        self._buf = np.zeros(0, np.float32)
        self._start = -1  # set by the first decoded frame
        self._eof = False

    def _decode_until(self, end: int) -> None:
        chunks = [self._buf]
        have = self._start + self._buf.size
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
                a = out.to_ndarray().reshape(-1).astype(np.float32)  # [samples] mono
                chunks.append(a)
                have += a.size
        self._buf = np.concatenate(chunks) if len(chunks) > 1 else self._buf
        keep = int(self.KEEP * self.rate)
        cut = max(0, self._buf.size - max(keep, end - self._start + keep))
        if cut:
            self._buf = self._buf[cut:]
            self._start += cut

    def window(self, t: float, n: int) -> np.ndarray:
        """float32 [n] mono samples ending at t seconds (wrapped into the track when looping; silence past the end
        or before the start)."""
        if self.loop and self.period > 0:
            t = t % self.period
        end = round(t * self.rate)
        begin = end - n
        if self._iter is None or begin < self._start or end > self._start + self._buf.size + 2 * self.rate:
            self._seek(max(0, begin - self.rate // 10))
        self._decode_until(end)
        if self._start < 0:
            return np.zeros(n, np.float32)
        out = np.zeros(n, np.float32)
        lo, hi = max(begin, self._start), min(end, self._start + self._buf.size)
        if hi > lo:
            out[lo - begin : hi - begin] = self._buf[lo - self._start : hi - self._start]
        return out


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


# --- mappings ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioMapping:
    """One feature (0..1) driving one control target through a curve onto a range (the target's own if None)."""

    feature: str
    target: str
    range: tuple[float, float] | None = None
    curve: str = "linear"


def map_features(
    values: dict[str, float], mappings: Sequence[AudioMapping], ranges: Callable[[str], tuple[float, float]]
) -> dict[str, float]:
    """Feature values -> {target: control value}; pure. A target driven by several features takes the last."""
    out: dict[str, float] = {}
    for m in mappings:
        rng = m.range if m.range is not None else ranges(m.target)
        out[m.target] = scale(values.get(m.feature, 0.0), m.curve, rng)
    return out


class AudioMapSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature: str
    target: str
    range: tuple[float, float] | None = None
    curve: str = "linear"

    @model_validator(mode="after")
    def _check(self) -> AudioMapSpec:
        if self.feature not in FEATURES:
            raise ValueError(f"feature {self.feature!r}; expected one of {', '.join(FEATURES)}")
        if self.curve not in CURVES:
            raise ValueError(f"curve {self.curve!r}; expected one of {', '.join(CURVES)}")
        return self


class AudioSection(BaseModel):
    """The [audio] section of a show file."""

    model_config = ConfigDict(extra="forbid")

    input: str = "device"  # "device" (live), "file" (the `file` below) or "source" (the playing video's own sound)
    device: str | int | None = None  # a name substring or PortAudio index; None = the default input
    channels: int | None = Field(None, ge=1, le=64)
    file: str = ""
    loop: bool = True
    offset: float = 0.0  # seconds added to the show clock when reading a file
    sample_rate: int = Field(44100, ge=8000, le=192000)
    n_fft: int = Field(2048, ge=64, le=32768)
    bands: tuple[float, float] = (250.0, 4000.0)
    attack: float = Field(0.01, ge=0, le=10)
    release: float = Field(0.25, ge=0, le=30)
    autogain: bool = True
    range_db: float = Field(36.0, gt=0, le=120)
    gate_db: float = Field(-70.0, le=0)
    onset_threshold: float = Field(1.5, gt=0, le=20)
    play: bool = False  # file/source input: also play the sound out of `output`, in step with the picture
    output: str | int | None = None  # playback device (name substring or index); None = the default output
    osc: str = ""  # "HOST:PORT" to send features to (Max, TouchDesigner)
    osc_prefix: str = "/livevae/audio"
    map: list[AudioMapSpec] = Field(default_factory=list)

    @field_validator("input")
    @classmethod
    def _input(cls, v: str) -> str:
        if v not in ("device", "file", "source"):
            raise ValueError(f"{v!r}; expected device, file or source")
        return v

    @field_validator("osc")
    @classmethod
    def _osc(cls, v: str) -> str:
        if v and not re.match(r"^[^:]+:\d{1,5}$", v.strip()):
            raise ValueError(f"{v!r}; expected HOST:PORT, e.g. 127.0.0.1:9001")
        return v.strip()

    @model_validator(mode="after")
    def _check(self) -> AudioSection:
        if self.input == "file" and not self.file:
            raise ValueError("input = 'file' needs file = 'path/to/sound' (relative to the show)")
        if self.play and self.input == "device":
            raise ValueError("play = true plays a file; expected input = 'file' or 'source' (live input is not echoed)")
        if self.n_fft & (self.n_fft - 1):
            raise ValueError(f"n_fft {self.n_fft}; expected a power of two")
        lo, hi = self.bands
        if not 20 < lo < hi < self.sample_rate / 2:
            raise ValueError(f"bands {list(self.bands)}; expected [low/mid Hz, mid/high Hz] with 20 < a < b < Nyquist")
        return self

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            low_mid=self.bands[0],
            mid_high=self.bands[1],
            attack=self.attack,
            release=self.release,
            autogain=self.autogain,
            range_db=self.range_db,
            gate_db=self.gate_db,
            onset_k=self.onset_threshold,
        )


# --- the controller ----------------------------------------------------------------------------------------------
@dataclass
class AudioStats:
    frames: int = 0  # feature frames computed
    onsets: int = 0
    sent: int = 0  # OSC messages sent
    device_failures: int = 0
    last: dict[str, float] = field(default_factory=dict)


class AudioController:
    """Computes features once per presented video frame on its own thread and writes mapped controls into the
    ControlState (origin "audio"), sending the features over OSC too. A missing device or file is one warning and
    the show goes on (a device is retried every few seconds). modulate() is the identity."""

    def __init__(
        self,
        state: ControlState,
        mappings: Sequence[AudioMapping] = (),
        features: FeatureConfig | None = None,
        input: str = "device",
        device: str | int | None = None,
        channels: int | None = None,
        file: str | Path = "",
        loop: bool = True,
        offset: float = 0.0,
        osc: str = "",
        osc_prefix: str = "/livevae/audio",
        play: bool = False,
        play_device: str | int | None = None,
    ) -> None:
        self.state, self.mappings = state, tuple(mappings)
        self.extractor = FeatureExtractor(features)
        self.cfg = self.extractor.cfg
        self.input, self.device, self.channels = input, device, channels
        self.file, self.loop, self.offset = (Path(file) if file else None), loop, offset
        self.osc_prefix = osc_prefix.rstrip("/")
        self.stats = AudioStats()
        self.ring = Ring(max(self.cfg.n_fft * 2, self.cfg.sample_rate))
        self.dev: DeviceInput | None = None
        self.reader: FileAudio | None = None
        self.play, self.play_device = play, play_device
        self.player: FilePlayer | None = None
        self._reader_path: Path | None = None
        self._osc: Any = None
        self._osc_target = osc
        self._osc_warned = False
        self._loop: LoopHandle | None = None
        self._slot: tuple[float, float, str] | None = None  # (t, fps, source) of the newest frame
        self._slot_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sync = False
        self._last_t: float | None = None
        self._t0: float | None = None  # show time at which the track started
        self._cur_source: str | None = None
        self._next_device_try = 0.0
        self._warned: set[str] = set()
        for m in self.mappings:
            state.check_target(m.target)

    # -- lifecycle --
    def start(self, loop: LoopHandle | None = None) -> None:
        if self._thread is not None:
            return
        self._loop = loop
        # an offline render (fixed-step clock) computes features in the frame loop's thread, frame by frame, so the
        # render repeats exactly; live, the audio thread takes the newest frame and never holds up the picture
        self.sync = loop is not None and loop.status().offline
        if self._osc_target:
            from pythonosc.udp_client import SimpleUDPClient

            host, port = self._osc_target.rsplit(":", 1)
            try:
                self._osc = SimpleUDPClient(host, int(port))
            except OSError as e:
                self._warn("osc", f"audio OSC out {self._osc_target}: {e}; features are not sent")
        if self.sync:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audio", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None
        if self.dev is not None:
            self.dev.close()
            self.dev = None
        self._close_file()

    def services(self) -> dict[str, object]:
        """ "audio.levels": the last feature frame (rms, low, mid, high, ... in 0..1), for /livevae/status."""
        return {"audio.levels": lambda: dict(self.stats.last)}

    def modulate(self, z: Any, t: float) -> Any:
        return z

    def handle_action(self, action: str, arg: object) -> bool:
        return False

    def on_frame(self, info: FrameInfo) -> None:
        """Hand the frame's time to the audio thread; never blocks. The source's own position (pts) is used when
        FrameInfo carries it, so the soundtrack follows the picture across loops and switches."""
        t = getattr(info, "pts", None)
        t = float(t) if isinstance(t, int | float) else float(info.t)
        if self.sync:
            self._step_safe(t, float(info.fps or 0.0), str(info.source))
            return
        with self._slot_lock:
            self._slot = (t, float(info.fps or 0.0), str(info.source))
        self._wake.set()

    # -- work --
    def _warn(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", text)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._slot_lock:
                slot, self._slot = self._slot, None
            if slot is None:
                continue
            self._step_safe(*slot)

    def _step_safe(self, t: float, fps: float, source: str) -> None:
        try:
            self.step(t, fps=fps, source=source)
        except Exception as e:  # a decoder or mapping bug must not kill the thread or the show; say it once
            self._warn(f"step {type(e).__name__}", f"audio: {type(e).__name__}: {e}; features paused this frame")

    def _block(self, t: float, source: str) -> np.ndarray | None:
        n = self.cfg.n_fft
        if self.input == "device":
            if self.dev is None or not self.dev.active:
                now = time.monotonic()
                if now < self._next_device_try:
                    return None
                self._next_device_try = now + DEVICE_RETRY
                if self.dev is not None:
                    self._warn("device lost", "audio input stopped (device unplugged?); will retry every 5 s")
                    self.dev.close()
                dev = DeviceInput(self.device, self.cfg.sample_rate, self.channels, self.ring)
                try:
                    dev.open()
                except AudioError as e:
                    self.stats.device_failures += 1
                    self._warn("device", f"{e}; the show goes on without audio, retrying every {DEVICE_RETRY:g} s")
                    return None
                self._warned.discard("device")
                self._warned.discard("device lost")
                self.dev = dev
            return self.ring.latest(n)
        path = self.file
        if self.input == "source":
            path = self._source_path(source)
            if source != self._cur_source:  # a (re)started video starts from its beginning, and so does its sound
                self._cur_source, self._t0 = source, t
        elif self._t0 is None:
            self._t0 = t  # the file starts with the show
        if path is None:
            self._warn(f"nofile {source}", f"audio: source {source!r} is not a file with sound; no audio features")
            return None
        if self.reader is None or self._reader_path != path:
            self._close_file()
            self._reader_path = path
            try:
                self.reader = FileAudio(path, self.cfg.sample_rate, self.loop)
            except AudioError as e:
                self._warn(f"file {path}", f"{e}; no audio features")
                return None
            if self.input == "source":
                self.reader.period = _video_period(path, self.reader.duration)
            if self.play and not self.sync:  # an offline render makes no sound
                player = FilePlayer(path, self.cfg.sample_rate, self.loop, self.play_device)
                player.reader.period = self.reader.period
                try:
                    player.open(self._pos(t))
                    self.player = player
                    log.info("audio: playing %s", path.name)
                except AudioError as e:
                    player.close()
                    self._warn("play", f"{e}; the show goes on silent (features still follow the file)")
        if self.reader is None:
            return None
        if self.player is not None:
            self.player.follow(self._pos(t))
        return self.reader.window(self._pos(t), n)

    def _pos(self, t: float) -> float:
        """Show clock -> position in the track: from when the file (or the video source) started, plus offset."""
        return t - (self._t0 or 0.0) + self.offset

    def _close_file(self) -> None:
        if self.player is not None:
            self.player.close()
            self.player = None
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def _source_path(self, source: str) -> Path | None:
        loop = self._loop
        if loop is not None:
            spec = loop.status().source_spec
            p = Path(spec) if spec else Path(source)
        else:
            p = Path(source)
        return p if p.is_file() else None

    def step(self, t: float, fps: float = 0.0, source: str = "") -> Features | None:
        """Compute one frame's features at show time t and apply them (controls, OSC). Returns None while there is
        no audio (no device yet, no file). Called by the audio thread; tests call it directly."""
        if self._last_t is None or not 0 < t - self._last_t < 1.0:
            dt = 1.0 / fps if fps > 0 else 1.0 / 25
        else:
            dt = t - self._last_t
        self._last_t = t
        block = self._block(t, source)
        if block is None:
            return None
        feats = self.extractor.process(block, dt)
        self.stats.frames += 1
        self.stats.onsets += int(feats.onset)
        self.stats.last = dict(feats.values)
        if self.mappings:
            try:
                self.state.set_many(map_features(feats.values, self.mappings, self.state.check_target), "audio")
            except ControlError as e:
                self._warn("map", f"audio mappings: {e}")
        if self._osc is not None:
            self._send(feats)
        return feats

    def _send(self, f: Features) -> None:
        try:
            for k in FEATURES:
                self._osc.send_message(f"{self.osc_prefix}/{k}", float(f.values[k]))
            self._osc.send_message(self.osc_prefix, [float(f.values[k]) for k in FEATURES])
            self.stats.sent += len(FEATURES) + 1
        except OSError as e:  # nobody listening, network down: the show goes on
            if not self._osc_warned:
                self._osc_warned = True
                log.warning("audio OSC out %s: %s; will keep trying quietly", self._osc_target, e)


def _video_period(path: Path, fallback: float) -> float:
    """How long a video source plays before it loops: its frame count / rate (the sound track may be a little
    longer or shorter, and wrapping at the sound's length would drift a little further every loop)."""
    from livevae.media.video import probe

    try:
        info = probe(path)
    except Exception:  # an audio-only file, or unreadable: wrap at the sound's own length
        return fallback
    if info.frames > 0 and info.fps > 0:
        return float(info.frames / info.fps)
    return info.duration or fallback


def from_show(section: dict[str, Any], state: ControlState, show_path: Path) -> AudioController:
    """An AudioController from a show's [audio] section; raises AudioError naming the key and what was expected.
    A relative `file` is relative to the show file."""
    try:
        cfg = AudioSection.model_validate(section)
    except ValidationError as e:
        raise AudioError(validation_message("[audio]", e)) from e
    mappings = []
    for i, m in enumerate(cfg.map):
        try:
            state.check_target(m.target)
        except ControlError as e:
            raise AudioError(f"[audio] map[{i}].target: {e}") from e
        mappings.append(AudioMapping(m.feature, canonical(m.target), m.range, m.curve))
    file: Path | str = ""
    if cfg.file:
        file = Path(cfg.file)
        if not file.is_absolute():
            file = Path(show_path).parent / file
        if not file.is_file():
            raise AudioError(f"[audio] file: {file} not found; expected an audio or video file")
    device: str | int | None = cfg.device
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    try:
        fc = cfg.feature_config()
        FeatureExtractor(fc)
    except AudioError as e:
        raise AudioError(f"[audio] {e}") from e
    return AudioController(
        state,
        mappings,
        fc,
        input=cfg.input,
        device=device,
        channels=cfg.channels,
        file=file,
        loop=cfg.loop,
        offset=cfg.offset,
        osc=cfg.osc,
        osc_prefix=cfg.osc_prefix,
        play=cfg.play,
        play_device=int(cfg.output) if isinstance(cfg.output, str) and cfg.output.isdigit() else cfg.output,
    )


__all__ = [
    "FEATURES",
    "AudioController",
    "AudioError",
    "AudioMapping",
    "FeatureConfig",
    "FeatureExtractor",
    "Features",
    "FileAudio",
    "FilePlayer",
    "from_show",
    "map_features",
]
