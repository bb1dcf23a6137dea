"""`livevae prep`: decode a film into a frame dataset: one memory-mappable uint8 array plus a JSON sidecar."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from livevae.errors import LivevaeError
from livevae.media.preprocess import CropBox, centre_crop, detect_bars, parse_crop
from livevae.media.video import DecodeStats, Scaler, iter_av_frames, iter_frames, prefetch, probe
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
    film: Path, crop: str, size: tuple[int, int], start: float | None, end: float | None, samples: int = 24
) -> CropBox:
    """'centre' | 'auto' | 'x,y,w,h' -> a CropBox in source pixels with the target aspect (except by hand)."""
    info = probe(film)
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
) -> Iterator[tuple[np.ndarray, float]]:
    """Like video.iter_frames, but crop + scale + RGB conversion run inside FFmpeg's filter graph.

    Converting a full 1280x720 frame to RGB and then shrinking it costs more than decoding it; FFmpeg's
    area scaler does both on the YUV planes in one pass, so prep runs at close to pure decoding speed.
    Yields (RGB uint8 [h, w, 3], seconds).
    """
    scale = Scaler(box, size)
    # Decoding runs one thread ahead of the scaling: together they keep both cores busy.
    for frame, t in prefetch(iter_av_frames(film, start=start, end=end, every=every, stats=stats)):
        yield scale(frame), t


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
) -> dict[str, Any]:
    """Write `out`/frames.npy and `out`/meta.json from `film`; returns the metadata.

    Frames go to a temporary folder renamed into place at the end, so a crash never leaves a dataset
    that looks whole; a re-run simply starts again (and removes the stale temporary folder).
    """
    film = Path(film)
    if every < 1:
        raise PrepError(f"--every {every}: expected a positive integer")
    try:  # before decoding anything: a folder of the user's is never replaced, an unwritable one fails now
        out = check_dataset_out(out, "livevae-frames", DATASET_FILES)
    except OutputError as e:
        raise PrepError(str(e)) from None
    if out == film.resolve() or out in film.resolve().parents:
        raise PrepError(f"output {out}: holds the film {film}; expected a folder of its own")
    info = probe(film)
    box = resolve_crop(film, crop, size, start, end)
    w, h = size
    # Upper bound on frames for the memmap; trimmed to the true count at the end.
    dur = (min(end, info.duration) if end else info.duration) - (start or 0.0)
    est = info.frames or int(dur * float(info.fps)) + 1
    if start or end:
        est = int(max(dur, 0) * float(info.fps)) + 2
    cap = max(1, est // every + 2)
    if max_frames:
        cap = min(cap, max_frames)
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        arr = np.lib.format.open_memmap(tmp / FRAMES_FILE, mode="w+", dtype=np.uint8, shape=(cap, h, w, 3))
        stats = DecodeStats()
        times: list[float] = []
        n = 0
        t_start = time.perf_counter()
        bar = tqdm(total=cap, unit="frame", desc=f"prep {film.name}", disable=not progress, dynamic_ncols=True)
        for img, t in iter_scaled(film, box, size, start=start, end=end, every=every, stats=stats):
            if n >= cap:
                if max_frames and n >= max_frames:
                    break
                # The header under-counted: grow the memmap (rare; VFR files).
                arr.flush()
                del arr
                cap = cap * 2
                arr = _grow(tmp / FRAMES_FILE, n, cap, (h, w))
            arr[n] = img
            times.append(t)
            n += 1
            bar.update(1)
        bar.close()
        elapsed = time.perf_counter() - t_start
        if n == 0:
            raise PrepError(f"{film}: decoded 0 frames (decode errors: {stats.errors}); expected at least one frame")
        arr.flush()
        del arr
        if n != cap:
            _trim(tmp / FRAMES_FILE, n, (h, w))
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
            "first_time": times[0],
            "last_time": times[-1],
            "seconds": round(elapsed, 3),
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


def _grow(path: Path, n: int, cap: int, hw: tuple[int, int]) -> np.memmap:
    old = np.load(path, mmap_mode="r")[:n].copy()
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(cap, *hw, 3))
    arr[:n] = old
    return arr


def _trim(path: Path, n: int, hw: tuple[int, int]) -> None:
    """Shrink the .npy to n frames in place: rewrite the header and truncate, no copy of the data."""
    with open(path, "r+b") as f:
        fmt = np.lib.format
        version = fmt.read_magic(f)
        (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
        offset = f.tell()
        header = {"descr": "|u1", "fortran_order": False, "shape": (n, *hw, 3)}
        f.seek(0)
        (fmt.write_array_header_1_0 if version == (1, 0) else fmt.write_array_header_2_0)(f, header)
        if f.tell() != offset:  # header length changed (can't happen for same-width ints, but be safe)
            raise PrepError(f"{path}: could not rewrite the array header")
        f.truncate(offset + n * hw[0] * hw[1] * 3)
