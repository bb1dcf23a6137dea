"""Audio-reactive control: live input or a film's soundtrack -> per-frame level, bands, onsets -> controls and OSC."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from livevae.control.curves import CURVES, scale
from livevae.control.state import ControlError, ControlState, canonical
from livevae.controllers.audio_features import FEATURES, FeatureConfig, FeatureExtractor, Features
from livevae.controllers.midi_section import validation_message
from livevae.media.audio import DEVICE_RETRY, AudioError, DeviceInput, FileAudio, Ring
from livevae.outputs.sound import FilePlayer

if TYPE_CHECKING:
    from livevae.handle import FrameInfo, LoopHandle

log = logging.getLogger("livevae.controllers.audio")


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
