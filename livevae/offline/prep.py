"""`livevae prep`: decode a film into a frame dataset: one memory-mappable uint8 array plus a JSON sidecar."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np
from tqdm import tqdm

from livevae.errors import LivevaeError
from livevae.media import spans
from livevae.media.preprocess import CropBox, centre_crop, detect_bars, parse_crop
from livevae.media.video import DecodeStats, Scaler, VideoInfo, iter_frames, probe
from livevae.safeout import OutputError, check_dataset_out, replace_dir

FRAMES_FILE = "frames.npy"  # uint8 [N, H, W, 3], RGB; np.load(..., mmap_mode="r") reads it lazily
META_FILE = "meta.json"
DATASET_FILES = (FRAMES_FILE, META_FILE, "times.npy")  # everything prep writes into a dataset folder


class PrepError(LivevaeError):
    """prep cannot produce a dataset from this input."""


def file_hash(path: Path, limit: int = 64 << 20) -> str:
    """sha256 of the first `limit` bytes plus the size: identifies a film without reading 20 GB."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(limit))
    h.update(str(path.stat().st_size).encode())
    return h.hexdigest()


def resolve_crop(
    film: Path,
    crop: str,
    size: tuple[int, int],
    start: float | None,
    end: float | None,
    samples: int = 24,
    info: VideoInfo | None = None,
) -> CropBox:
    """'centre' | 'auto' | 'x,y,w,h' -> a CropBox in source pixels with the target aspect (except by hand).

    info: the film's probe, when the caller has it (a probe opens the film and decodes a frame: ~19 ms of 720p).
    """
    info = info if info is not None else probe(film)
    aspect = size[0] / size[1]
    if crop in ("centre", "center"):
        return centre_crop(info.width, info.height, aspect)
    if crop == "auto":
        # Sample frames spread over the range; bars are constant while content changes.
        dur = info.duration or 1.0
        t0, t1 = start or 0.0, min(end or dur, dur)
        picks: list[np.ndarray] = []
        step = max((t1 - t0) / samples, 1e-3)
        for k in range(samples):
            for img, _ in iter_frames(film, start=t0 + k * step, end=t0 + k * step + 1.0):
                picks.append(img)
                break
        if not picks:
            picks = [img for img, _ in iter_frames(film, start=start, end=end)][:samples]
        content = detect_bars(picks)
        return centre_crop(info.width, info.height, aspect, within=content)
    return parse_crop(crop).check(info.width, info.height)


def iter_scaled(
    film: Path,
    box: CropBox,
    size: tuple[int, int],
    start: float | None = None,
    end: float | None = None,
    every: int = 1,
    stats: DecodeStats | None = None,
    threads: int | None = None,
    ref: tuple[int, int] | None = None,
) -> Iterator[tuple[np.ndarray, float]]:
    """Like video.iter_frames, but crop + scale + RGB conversion run inside FFmpeg's filter graph.

    Converting a full 1280x720 frame to RGB and then shrinking it costs more than decoding it; FFmpeg's
    area scaler does both on the YUV planes in one pass. A film with an index of keyframes is cut into spans
    that `threads` single-threaded decoders decode and scale side by side (media.spans; default: one per core);
    others decode on FFmpeg's frame threads, one thread ahead of the scaling. Either way the same frames, in
    order. ref: the shown size `box` was chosen for (the film's; default: its first frame's).
    Yields (RGB uint8 [h, w, 3], seconds).
    """

    def scaler() -> Callable[[av.VideoFrame], np.ndarray]:
        # swscale on the decoding (or consuming) thread, not in the graph's own pool: 0.40 against 0.42 CPU ms a
        # 720p frame, and no second pool of workers competing with the decoders for the cores
        return Scaler(box, size, threads=1, ref=ref)

    ahead = max(64, spans.AHEAD_BYTES // (size[0] * size[1] * 3))
    yield from spans.iter_mapped(film, scaler, start, end, every, stats, workers=threads, ahead=ahead)


def prep(
    film: str | os.PathLike[str],
    out: str | os.PathLike[str],
    size: tuple[int, int] = (256, 144),
    crop: str = "centre",
    every: int = 1,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Write `out`/frames.npy and `out`/meta.json from `film`; returns the metadata.

    Frames go to a temporary folder renamed into place at the end, so a crash never leaves a dataset
    that looks whole; a re-run simply starts again (and removes the stale temporary folder).
    threads: decoders working side by side on a film with a keyframe index (default: one per core; 1: one
    decoder on FFmpeg's frame threads). The frames are the same either way.
    """
    film = Path(film)
    if every < 1:
        raise PrepError(f"--every {every}: expected a positive integer")
    if threads is not None and threads < 1:
        raise PrepError(f"--threads {threads}: expected a positive integer")
    try:  # before decoding anything: a folder of the user's is never replaced, an unwritable one fails now
        out = check_dataset_out(out, "livevae-frames", DATASET_FILES)
    except OutputError as e:
        raise PrepError(str(e)) from None
    if out == film.resolve() or out in film.resolve().parents:
        raise PrepError(f"output {out}: holds the film {film}; expected a folder of its own")
    info = probe(film)
    box = resolve_crop(film, crop, size, start, end, info=info)  # one probe, not two
    w, h = size
    # The progress bar's total: the frames the header announces in the range asked (an estimate for VFR files).
    dur = (min(end, info.duration) if end else info.duration) - (start or 0.0)
    est = info.frames or int(dur * float(info.fps)) + 1
    if start or end:
        est = int(max(dur, 0) * float(info.fps)) + 2
    total = max(1, est // every + 2)
    if max_frames:
        total = min(total, max_frames)
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        stats = DecodeStats()
        times: list[float] = []
        n = 0
        first = 0.0  # seconds from the loop's start to the first frame written: its fixed cost (open, pipeline fill)
        t_start, cpu_start = time.perf_counter(), time.process_time()
        bar = tqdm(total=total, unit="frame", desc=f"prep {film.name}", disable=not progress, dynamic_ncols=True)
        # Frames are appended to the .npy with plain sequential writes behind a header sized for any count:
        # no memory map to fault in page by page (0.08 CPU ms per 256x144 frame less), nothing to grow or
        # copy when a variable-frame-rate header under-counts, and the header is rewritten once at the end.
        with open(tmp / FRAMES_FILE, "wb") as f:
            _write_header(f, 0, (h, w))
            for img, t in iter_scaled(
                film, box, size, start, end, every, stats, threads=threads, ref=(info.width, info.height)
            ):
                if max_frames and n >= max_frames:
                    break
                f.write(np.ascontiguousarray(img).data)  # uint8 [h, w, 3], frame n
                times.append(t)
                if n == 0:
                    first = time.perf_counter() - t_start
                n += 1
                bar.update(1)
            elapsed, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
            bar.close()
            if n == 0:
                raise PrepError(
                    f"{film}: decoded 0 frames (decode errors: {stats.errors}); expected at least one frame"
                )
            f.seek(0)
            _write_header(f, n, (h, w))
        meta = {
            "format": "livevae-frames",
            "version": 1,
            "source": str(film.resolve()),
            "source_sha256": file_hash(film),
            "fps": float(info.fps),
            "fps_fraction": [info.fps.numerator, info.fps.denominator],
            "time_base": [info.time_base.numerator, info.time_base.denominator],
            "frames": n,
            "width": w,
            "height": h,
            "crop": box.as_list(),
            "source_size": [info.width, info.height],
            "has_audio": info.has_audio,
            "rotation": info.rotation,
            "video_stream": info.stream,
            "every": every,
            "start": start,
            "end": end,
            "decode_errors": stats.errors,
            "decoding": stats.mode,
            "first_time": times[0],
            "last_time": times[-1],
            "seconds": round(elapsed, 3),  # the frame loop's wall time
            "first_frame_seconds": round(first, 4),  # of which before the first frame (the rest is per frame)
            "cpu_seconds": round(cpu, 3),  # and its CPU time, all threads (decoding, scaling, writing)
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        np.save(tmp / "times.npy", np.asarray(times, np.float64))
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if info.video_streams > 1:
        print(f"prep: {film}: {info.video_streams} video streams; used #{info.stream} ({info.width}x{info.height}, "
              "the largest picture)", file=sys.stderr)  # fmt: skip
    expected = info.frames // every if info.frames and not (start or end or max_frames) else 0
    if expected and n < expected * 0.97:
        print(f"prep: {film}: warning: kept {n} of the {expected} frames its header announces; the file may be "
              "truncated", file=sys.stderr)  # fmt: skip
    if stats.errors:
        print(
            f"prep: {film}: {stats.errors} corrupt packet(s) skipped; kept {n} good frames "
            f"({'; '.join(stats.messages[:3])})",
            file=sys.stderr,
        )
    return meta


# .npy version 1.0 preamble + header, padded with spaces to a fixed size (a multiple of 64, as np.save aligns
# it) that holds the header of any frame count, so the count can be written last without moving the frames.
HEADER_BYTES = 128


def _write_header(f: BinaryIO, n: int, hw: tuple[int, int]) -> None:
    """Write the .npy header of a uint8 [n, h, w, 3] array, HEADER_BYTES long, at f's position."""
    text = repr({"descr": "|u1", "fortran_order": False, "shape": (n, *hw, 3)})
    body_len = HEADER_BYTES - 10  # magic (6) + version (2) + header length (2)
    body = text.ljust(body_len - 1).encode("latin1") + b"\n"
    if len(body) != body_len:  # only for absurd sizes: 13-digit frame counts and wider
        raise PrepError(f"{f.name}: header for shape {(n, *hw, 3)} does not fit in {HEADER_BYTES} bytes")
    f.write(b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + body)
