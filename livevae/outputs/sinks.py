"""The show's extra outputs (NDI, Syphon, Spout, virtual camera): one spec each, opened by kind, each its own size."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from livevae.errors import LivevaeError
from livevae.outputs.threaded import NewestFrameOutput

log = logging.getLogger(__name__)

SINK_KINDS = ("ndi", "syphon", "spout", "virtualcam")


class SinkError(LivevaeError):
    """An output spec names an unknown kind or a bad size or rate."""


@dataclass(frozen=True)
class OutputSpec:
    """One output besides the window and recordings: kind, name receivers see, (w, h) sent, and rate
    (None: the show's)."""

    kind: str
    name: str = "livevae"
    size: tuple[int, int] = (1280, 720)
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in SINK_KINDS:
            raise SinkError(f"output kind {self.kind!r}: unknown; expected one of {', '.join(SINK_KINDS)}")
        w, h = self.size
        if not (16 <= w <= 7680 and 16 <= h <= 4320):
            raise SinkError(f"output {self.kind}:{self.name} size {w}x{h}; expected 16x16 .. 7680x4320")
        if self.kind == "ndi" and (w % 2 or h % 2):  # sent as I420: 4:2:0 chroma, one sample per 2x2 pixels
            raise SinkError(f"output ndi:{self.name} size {w}x{h}; expected an even width and height (4:2:0)")
        if self.fps is not None and not 0 < self.fps <= 240:
            raise SinkError(f"output {self.kind}:{self.name} fps {self.fps}; expected 0 < fps <= 240")


def parse_output(text: str, size: tuple[int, int] = (1280, 720)) -> OutputSpec:
    """ "ndi", "ndi:NAME", "ndi:NAME@1920x1080" (and syphon/spout/virtualcam) -> OutputSpec; raises SinkError."""
    kind, _, rest = text.strip().partition(":")
    name, _, sz = rest.partition("@")
    if sz:
        from livevae.media.preprocess import PreprocessError, parse_size

        try:
            size = parse_size(sz)
        except PreprocessError as e:
            raise SinkError(f"output {text!r}: {e}") from None
    return OutputSpec(kind.lower(), name or "livevae", size)


def open_output(spec: OutputSpec, fps: float, filter: str = "bilinear") -> NewestFrameOutput | None:
    """A started output for the spec, or None with one logged reason when its extra or device is missing (an
    output that cannot open never stops the show). A device that fails later sets the output's `failed`."""
    rate = spec.fps or fps
    if spec.kind == "virtualcam":
        from livevae.outputs.virtualcam import open_virtualcam

        return open_virtualcam(spec.size, rate, filter)
    if spec.kind == "ndi":
        from livevae.outputs.ndi import NdiOutput, ndi_available

        why = ndi_available()
        out: NewestFrameOutput = NdiOutput(spec.name, spec.size, rate, filter)
    elif spec.kind == "syphon":
        from livevae.outputs.syphon import SyphonOutput, syphon_available

        why = syphon_available()
        out = SyphonOutput(spec.name, spec.size, filter)
    else:
        from livevae.outputs.spout import SpoutOutput, spout_available

        why = spout_available()
        out = SpoutOutput(spec.name, spec.size, filter)
    if why:
        log.warning(f"output {spec.kind}:{spec.name}: {why}; skipping it, the show goes on")
        return None
    return out.start()
