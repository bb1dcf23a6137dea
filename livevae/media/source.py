"""Frame sources (camera, video file, playlist, image folder, test card) and their capture threads."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from livevae.errors import LivevaeError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
PLAYLIST_SUFFIXES = (".txt", ".m3u", ".m3u8")
MAX_CARD = (3840, 2160)  # a test card bigger than 4K only costs memory: the model sees 256x144
MAX_SPEC = 4096  # characters of a source spec (PATH_MAX)


class SourceError(LivevaeError):
    """A source cannot be opened or read (missing file, unplugged camera, bad playlist, decode failure)."""


class SourceEnded(SourceError):
    """A source with looping off has played to its end: not a failure, nothing to reconnect."""


@dataclass(frozen=True)
class Frame:
    """One captured picture and when it arrived."""

    image: np.ndarray  # RGB uint8 [H, W, 3]
    captured: float  # time.monotonic() when the frame was published: the start of its end-to-end latency
    seq: int  # running count of frames published by this capture (gaps = frames dropped as stale)
    pts: float  # position in the source in seconds (keeps growing across loops)
    source: str
    fallback: bool = False  # True when this is the fallback picture, not the source's


class Source(ABC):
    """One kind of input. read() returns the next picture in order; the capture thread decides when."""

    name: str = "source"
    # True when read() itself waits for the device (cameras); False when it returns as fast as it can
    # decode (files, test card), so the capture thread paces it at `fps`.
    paced: bool = False

    @property
    @abstractmethod
    def fps(self) -> float:
        """Nominal frame rate of what read() will return next (a playlist's changes per item)."""

    @abstractmethod
    def open(self) -> None:
        """Open (or reopen after a failure); raises SourceError naming the device or file."""

    @abstractmethod
    def read(self) -> np.ndarray:
        """The next RGB uint8 [H, W, 3] frame; raises SourceError when the source fails."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device or file; safe to call twice or before open()."""

    @property
    def pts(self) -> float:
        """Media time of the last frame read, in seconds."""
        return 0.0


# ---------------------------------------------------------------------------------------------- test card


def test_card(width: int = 640, height: int = 480, t: float = 0.0, label: str = "livevae") -> np.ndarray:
    """A generated test card: colour bars, a grey ramp, a circle and a sweep that moves with `t` (seconds).

    RGB uint8 [height, width, 3]. Moving parts show at a glance that the show is alive.
    """
    img = np.zeros((height, width, 3), np.uint8)
    bars = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0), (0, 0, 192)]
    top = int(height * 0.62)
    for i, c in enumerate(bars):
        x0, x1 = i * width // len(bars), (i + 1) * width // len(bars)
        img[:top, x0:x1] = c
    ramp = np.linspace(0, 255, width, dtype=np.float32).astype(np.uint8)
    img[top : int(height * 0.8)] = ramp[None, :, None]
    # Bottom band: a bright bar sweeping once every 2 s.
    x = int((t % 2.0) / 2.0 * width)
    img[int(height * 0.8) :, max(0, x - width // 40) : x + width // 40] = (255, 255, 255)
    cx, cy, r = width // 2, top // 2, max(4, min(width, height) // 5)
    cv2.circle(img, (cx, cy), r, (255, 255, 255), max(1, r // 12), lineType=cv2.LINE_AA)
    a = 2 * math.pi * (t % 1.0)
    cv2.line(img, (cx, cy), (int(cx + r * math.cos(a)), int(cy + r * math.sin(a))), (255, 255, 255), max(1, r // 16))
    scale = max(0.35, width / 900)
    cv2.putText(
        img, f"{label}  {t:7.2f}s", (width // 40, height - height // 40), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
        max(1, int(scale * 2)), cv2.LINE_AA,
    )  # fmt: skip
    return img


test_card.__test__ = False  # type: ignore[attr-defined]  # a generator, not a pytest test


class TestCardSource(Source):
    """A generated test card at a fixed size and frame rate; never fails."""

    __test__ = False  # not a pytest class

    def __init__(self, size: tuple[int, int] = (640, 480), fps: float = 30.0) -> None:
        self.size = size
        self._fps = float(fps)
        self.name = "testcard"
        self._n = 0

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        self._n = 0

    def read(self) -> np.ndarray:
        img = test_card(self.size[0], self.size[1], self._n / self._fps)
        self._n += 1
        return img

    @property
    def pts(self) -> float:
        return max(0, self._n - 1) / self._fps


# ---------------------------------------------------------------------------------------------- camera


def _quiet_opencv() -> None:
    """OpenCV prints a dozen lines of its own per failed camera open (every backend it tries), on every retry;
    the capture already says it in one line. OPENCV_LOG_LEVEL set by the user (to debug a camera) wins."""
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


class CameraSource(Source):
    """An OpenCV camera by index (0, 1, ...) or device path (/dev/video2), at a requested size and fps."""

    paced = True

    def __init__(self, device: int | str, size: tuple[int, int] | None = None, fps: float | None = None) -> None:
        self.device = device
        self.size = size
        self.requested_fps = fps
        self.name = f"camera {device}"
        self._cap: cv2.VideoCapture | None = None
        self._fps = float(fps or 30.0)
        self._n = 0

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        self.close()
        _quiet_opencv()
        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"{self.name}: cannot open (unplugged, busy or no such device); expected a camera: plug it in "
                "(it is retried), or choose another with --source (`ls /dev/video*` lists them)"
            )
        if self.size:
            if self.size[0] * self.size[1] >= 1280 * 720:
                # Most USB webcams deliver HD at 30-60 fps only as MJPG (raw YUYV tops out near 10 fps);
                # drivers without MJPG ignore the request.
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        if self.requested_fps:
            cap.set(cv2.CAP_PROP_FPS, self.requested_fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's own queue adds latency; keep one frame
        got = cap.get(cv2.CAP_PROP_FPS)
        if got and 1 <= got <= 1000:
            self._fps = float(got)
        self._cap = cap
        self._n = 0

    def read(self) -> np.ndarray:
        if self._cap is None:
            raise SourceError(f"{self.name}: read before open")
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise SourceError(f"{self.name}: read failed (unplugged?); expected a frame")
        self._n += 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def pts(self) -> float:
        return self._n / self._fps


# ---------------------------------------------------------------------------------------------- video file


class VideoFileSource(Source):
    """A video file played at its own frame rate; loops seamlessly (the decoder rewinds, the clock runs on)."""

    def __init__(self, path: str | Path, loop: bool = True) -> None:
        self.path = Path(path)
        self.loop = loop
        self.name = self.path.name
        self._fps = 25.0
        self._container: object | None = None
        self._frames: Iterator[np.ndarray] | None = None
        self._pts = 0.0
        self._offset = 0.0  # media time of the current pass's start (grows by the clip's length each loop)
        self._last_local = 0.0
        self._frame_dur = 1 / 25
        self.loops = 0

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def pts(self) -> float:
        return self._pts

    def open(self) -> None:
        import av

        from livevae.media.video import VideoError, main_stream, open_container, to_rgb

        self.close()
        try:
            c = open_container(self.path)
        except VideoError as e:
            raise SourceError(str(e)) from e
        v = main_stream(c)  # the film, not a thumbnail stream before it
        if v.codec_context.width * v.codec_context.height > 1280 * 720:
            v.thread_type = "AUTO"  # big frames: frame threads keep up with the rate
        else:
            # Up to 720p one thread decodes in a few ms; frame threading would cost ~60% more CPU in sync,
            # taken from the cores that run the model.
            v.thread_count = 1
        rate = v.average_rate or v.guessed_rate or v.base_rate
        self._fps = float(Fraction(rate)) if rate else 25.0
        self._frame_dur = 1 / self._fps
        self._container = c
        tb = float(v.time_base or Fraction(1, 1000))

        def frames() -> Iterator[np.ndarray]:
            n = 0
            for frame in c.decode(v):
                self._last_local = float(frame.pts * tb) if frame.pts is not None else n * self._frame_dur
                n += 1
                yield to_rgb(frame)  # display rotation applied
            if n == 0:
                raise SourceError(f"{self.path}: no decodable frames; expected a video")

        self._frames = frames()
        self._av_error = av.error.FFmpegError
        self._offset = self._pts = 0.0

    def _rewind(self) -> None:
        # Reopening costs a few ms on small clips and is robust to streams that do not seek to 0 cleanly;
        # the capture thread decodes one frame ahead of its deadline, so the rewind hides inside a frame.
        offset = self._offset + self._last_local + self._frame_dur
        loops = self.loops + 1
        self.open()
        self._offset, self.loops = offset, loops

    def read(self) -> np.ndarray:
        if self._frames is None:
            raise SourceError(f"{self.path}: read before open")
        for attempt in range(2):
            try:
                img = next(self._frames)
                self._pts = self._offset + self._last_local
                return img
            except StopIteration:
                if not self.loop:
                    raise SourceEnded(f"{self.path}: reached the end (looping off)") from None
                if attempt:
                    break
                self._rewind()
            except SourceError:
                raise
            except (self._av_error, OSError, ValueError) as e:
                raise SourceError(f"{self.path}: read failed ({e.__class__.__name__}: {e})") from e
        raise SourceError(f"{self.path}: no frames after rewinding; expected a video")

    def close(self) -> None:
        c, self._container, self._frames = self._container, None, None
        if c is not None:
            with contextlib.suppress(Exception):  # a half-broken container may fail to close; dropped anyway
                c.close()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- image folder


class ImageFolderSource(Source):
    """The images of a folder in name order: an image sequence at `fps`, or a slideshow (`hold` s each)."""

    def __init__(self, folder: str | Path, fps: float = 25.0, hold: float = 0.0, loop: bool = True) -> None:
        self.folder = Path(folder)
        self._fps = float(fps)
        self.hold = hold
        self.loop = loop
        self.name = self.folder.name + "/"
        self.files: list[Path] = []
        self._n = 0
        self._cache: tuple[int, np.ndarray] | None = None

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: folder not found; expected a folder of images")
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"{self.folder}: no images ({', '.join(IMAGE_SUFFIXES)}); expected at least one")
        self._n = 0
        self._cache = None

    def read(self) -> np.ndarray:
        if not self.files:
            raise SourceError(f"{self.folder}: read before open")
        per = max(1, round(self.hold * self._fps)) if self.hold > 0 else 1
        i = self._n // per
        if i >= len(self.files) and not self.loop:
            raise SourceEnded(f"{self.folder}: reached the last image (looping off)")
        i %= len(self.files)
        self._n += 1
        if self._cache is not None and self._cache[0] == i:
            return self._cache[1]
        img = read_image(self.files[i])
        self._cache = (i, img)
        return img

    @property
    def pts(self) -> float:
        return max(0, self._n - 1) / self._fps


def read_image(path: Path) -> np.ndarray:
    """An image file as RGB uint8 [H, W, 3]; SourceError names the file."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f"{path}: not a readable image; expected one of {', '.join(IMAGE_SUFFIXES)}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------------------------------------- playlist


def parse_playlist(path: Path) -> list[Path]:
    """Entries of a playlist file: one video file, image or folder per line, relative to the playlist;
    blank lines and lines starting with '#' are skipped. Raises SourceError naming the file and line."""
    try:
        text = path.read_text()
    except OSError as e:
        raise SourceError(f"{path}: cannot read playlist ({e})") from e
    items = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        p = p if p.is_absolute() else path.parent / p
        if not p.exists():
            raise SourceError(f"{path}:{n}: {line!r} not found; expected a video file, image or folder")
        items.append(p)
    if not items:
        raise SourceError(f"{path}: playlist is empty; expected one video path per line")
    return items


class PlaylistSource(Source):
    """The items of a playlist file one after another (each video once, each image for `hold` s), looping."""

    def __init__(self, path: str | Path, fps: float = 25.0, hold: float = 5.0, loop: bool = True) -> None:
        self.path = Path(path)
        self.default_fps = float(fps)
        self.hold = hold
        self.loop = loop
        self.name = self.path.name
        self.items: list[Path] = []
        self.index = 0
        self._cur: Source | None = None
        self._left = 0  # frames left to show for a still image
        self._offset = 0.0

    @property
    def fps(self) -> float:
        return self._cur.fps if self._cur is not None else self.default_fps

    @property
    def pts(self) -> float:
        return self._offset + (self._cur.pts if self._cur is not None else 0.0)

    def _start(self, i: int) -> None:
        if self._cur is not None:
            self._offset += self._cur.pts + 1 / self._cur.fps
            self._cur.close()
        self.index = i
        p = self.items[i]
        if p.is_dir():
            self._cur = ImageFolderSource(p, fps=self.default_fps, loop=False)
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            self._cur = _StillSource(p, self.default_fps)
            self._left = max(1, round(self.hold * self.default_fps))
        else:
            self._cur = VideoFileSource(p, loop=False)
        self._cur.open()
        self.name = f"{self.path.name}[{i}] {p.name}"

    def open(self) -> None:
        self.close()
        self.items = parse_playlist(self.path)
        self._offset = 0.0
        self._start(0)

    def read(self) -> np.ndarray:
        for _ in range(len(self.items) + 1):
            cur = self._cur
            if cur is None:
                raise SourceError(f"{self.path}: read before open")
            if isinstance(cur, _StillSource):
                if self._left > 0:
                    self._left -= 1
                    return cur.read()
            else:
                try:
                    return cur.read()
                except SourceEnded:
                    pass
            nxt = self.index + 1
            if nxt >= len(self.items):
                if not self.loop:
                    raise SourceEnded(f"{self.path}: reached the end of the playlist (looping off)")
                nxt = 0
            self._start(nxt)
        raise SourceError(f"{self.path}: no item produced a frame; expected playable entries")

    def close(self) -> None:
        if self._cur is not None:
            self._cur.close()
            self._cur = None


class _StillSource(Source):
    """One image file (a playlist entry): the same picture on every read."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self._fps, self.name = path, fps, path.name
        self._img: np.ndarray | None = None
        self._n = 0

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        self._img = read_image(self.path)
        self._n = 0

    def read(self) -> np.ndarray:
        if self._img is None:
            raise SourceError(f"{self.path}: read before open")
        self._n += 1
        return self._img

    @property
    def pts(self) -> float:
        return max(0, self._n - 1) / self._fps


# ---------------------------------------------------------------------------------------------- spec parsing


def open_source(
    spec: str | int,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    hold: float = 0.0,
    loop: bool = True,
) -> Source:
    """Build the source a spec names (nothing is opened yet):

    - ``testcard`` (or ``testcard:640x480``): the generated test card, at `fps` (default 30);
    - an integer (``0``) or a device path (``/dev/video2``): a camera, at the requested `size` and `fps`;
    - a folder: its images in name order (an image sequence at `fps`, default 25; `hold` > 0 makes a slideshow);
    - a ``.txt``/``.m3u`` file: a playlist, one path per line;
    - anything else: a video file played at its own frame rate.

    Raises SourceError naming the spec when a file or folder does not exist.
    """
    if isinstance(spec, int):
        return CameraSource(spec, size, fps)
    if len(spec) > MAX_SPEC:  # from OSC anyone on the LAN may send one; a path is never this long
        raise SourceError(f"source spec of {len(spec)} characters ({spec[:40]!r}...); expected at most {MAX_SPEC}")
    s = spec.strip()
    if s.lower().startswith("testcard"):
        card_size = size or (640, 480)
        if ":" in s:
            from livevae.media.preprocess import PreprocessError, parse_size

            try:
                card_size = parse_size(s.split(":", 1)[1])
            except PreprocessError as e:
                raise SourceError(f"source {spec[:80]!r}: {e}") from None
            if card_size[0] > MAX_CARD[0] or card_size[1] > MAX_CARD[1]:
                raise SourceError(
                    f"source {spec[:80]!r}: {card_size[0]}x{card_size[1]}; expected at most {MAX_CARD[0]}x{MAX_CARD[1]}"
                )
        return TestCardSource(card_size, fps or 30.0)
    if s.isdigit():
        return CameraSource(int(s), size, fps)
    if s.startswith("/dev/video"):
        return CameraSource(s, size, fps)
    p = Path(s).expanduser()
    if p.is_dir():
        return ImageFolderSource(p, fps=fps or 25.0, hold=hold, loop=loop)
    if not p.exists():
        raise SourceError(
            f"source {spec!r}: no such file or folder; expected a camera index, /dev/videoN, a video file, "
            "a folder of images, a playlist .txt or 'testcard'"
        )
    if p.suffix.lower() in PLAYLIST_SUFFIXES:
        return PlaylistSource(p, fps=fps or 25.0, hold=hold or 5.0, loop=loop)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return _StillSource(p, fps or 25.0)
    return VideoFileSource(p, loop=loop)
