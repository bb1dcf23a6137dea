"""The live loop's configuration: LiveConfig (everything a show needs besides its controllers) and LiveError."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from livevae.errors import LivevaeError
from livevae.media.capture import FALLBACKS
from livevae.outputs.scaling import SCALE_FILTERS
from livevae.outputs.sinks import OutputSpec
from livevae.outputs.window import WindowConfig


class LiveError(LivevaeError):
    """The live loop cannot start or was configured inconsistently (no source, bad count, no display)."""


@dataclass
class LiveConfig:
    """Everything a show needs besides its controllers; built from flags or a show file, resolved once."""

    model: str = ""
    backend: str = "auto"
    # Inputs: specs as open_source() takes them; `source` picks the one to start with, the "source" action
    # (OSC/MIDI/keys) switches between them.
    sources: list[str] = field(default_factory=lambda: ["testcard"])
    source: int = 0
    source_size: tuple[int, int] | None = None  # camera: requested capture size
    source_fps: float | None = None  # camera: requested rate; image folder / test card: their rate
    hold: float = 0.0  # image folder: seconds per image (0 = an image sequence); playlist stills (0 = 5 s)
    loop: bool = True  # video files, folders and playlists loop
    fallback: str = "hold"  # while a source is down: hold | black | testcard
    crop: str = "centre"  # or "x,y,w,h" in source pixels
    fps: float | None = None  # show rate; default: the source's own
    # Outputs.
    window: WindowConfig = field(default_factory=WindowConfig)
    headless: bool = False  # no window; with realtime=False a fixed-step offline render
    realtime: bool = False  # headless but paced live (latest-frame capture, wall clock): servers, benchmarks
    out: str | None = None  # headless: the MP4 to render into
    frames: int | None = None  # stop after this many frames
    seconds: float | None = None  # or after this many seconds of show time
    record: str | None = None  # start recording to this MP4 at launch
    record_dir: str = "recordings"  # where the record action/key puts new recordings
    record_size: tuple[int, int] | None = None  # recordings letterboxed to this (w, h); None = window's, or 1280x720
    record_audio: bool = True  # recordings and renders carry the sound of what was shown (the films' soundtracks)
    screenshot_dir: str = "screenshots"
    virtualcam: bool = False  # also send to a virtual camera (pyvirtualcam), skipped when unavailable
    virtualcam_size: tuple[int, int] = (1280, 720)
    # NDI / Syphon / Spout / virtual camera outputs, each at its own size, all fed from one decoded frame
    outputs: list[OutputSpec] = field(default_factory=list)
    scale_filter: str = "bilinear"  # model pixels -> output size: nearest | bilinear | bicubic | sharp
    threads: int | None = None  # CPU threads for inference (torch / ONNX Runtime)
    # Pipeline: the next frame's encode beside this one's decode, the threads shared out between them (ONNX
    # Runtime on CPU, 2+ threads): more frames a second from a model too slow for the source, at a little more
    # latency per frame; a source slower than the model is not held back. Off: one net after the other.
    pipeline: bool = True
    stats_json: str | None = None  # write the exit stats here as JSON

    def __post_init__(self) -> None:
        if not self.sources:
            raise LiveError("LiveConfig: no sources; expected at least one (a camera index, file, folder, testcard)")
        if not 0 <= self.source < len(self.sources):
            raise LiveError(f"LiveConfig: source {self.source} out of range; expected 0..{len(self.sources) - 1}")
        if self.fallback not in FALLBACKS:
            raise LiveError(f"LiveConfig: fallback {self.fallback!r}; expected one of {', '.join(FALLBACKS)}")
        if self.frames is not None and self.frames <= 0:
            raise LiveError(f"LiveConfig: frames {self.frames}; expected a positive count")
        if self.seconds is not None and self.seconds <= 0:
            raise LiveError(f"LiveConfig: seconds {self.seconds}; expected a positive duration")
        if self.fps is not None and not (0 < self.fps <= 1000):
            raise LiveError(f"LiveConfig: fps {self.fps}; expected 0 < fps <= 1000")

        if self.scale_filter not in SCALE_FILTERS:
            choices = ", ".join(SCALE_FILTERS)
            raise LiveError(f"LiveConfig: scale_filter {self.scale_filter!r}; expected one of {choices}")

    def sinks(self) -> list[OutputSpec]:
        """Every extra output: `outputs`, plus the virtual camera when the older `virtualcam` flag asks for one."""
        vcam = [OutputSpec("virtualcam", "camera", self.virtualcam_size)] if self.virtualcam else []
        return [*self.outputs, *vcam]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
