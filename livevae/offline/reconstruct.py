"""`livevae reconstruct`: a whole film through one or more models into a new video, in sync with its audio."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from livevae.errors import LivevaeError
from livevae.media.preprocess import CropBox
from livevae.media.video import (
    AUDIO_MODES,
    AudioMux,
    DecodeStats,
    Scaler,
    VideoError,
    VideoInfo,
    VideoWriter,
    concat,
    iter_av_frames,
    probe,
    read_comment,
)
from livevae.model import ModelError
from livevae.offline.layout import FILTERS, SWS_FLAGS, Layout, resize_to
from livevae.offline.runners import Runner, load_backend, make_runner


class ReconstructError(LivevaeError):
    """The reconstruction cannot run with these arguments, models or files."""


SHARD_TAG = "livevae-reconstruct"
# Automatic --batch: big batches keep a GPU busy; on a CPU, past ~16 frames the activations leave the
# cache and frames/s stops rising (bench/bench_reconstruct.py).
GPU_BATCH = 256
CPU_BATCH = 16
# Automatic --workers on CPU: the inference threads split into this many workers of one batch each, instead
# of one pool sharing every op. An intra-op pool waits at each op for its slowest thread, and on 2 cores
# one of them is always preempted by the decode or encode thread; whole batches on separate threads never wait
# for each other (ONNX Runtime sessions and torch modules take concurrent calls).
CPU_WORKERS = 2


# ---------------------------------------------------------------- small parsers


def parse_time(text: str) -> float:
    """'90', '90.5', '1:30', '01:02:03.5' -> seconds; raises ReconstructError otherwise."""
    try:
        parts = [float(p) for p in text.strip().split(":")]
    except ValueError:
        raise ReconstructError(f"time {text!r}: expected seconds (90.5) or [HH:]MM:SS(.ms)") from None
    if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts):
        raise ReconstructError(f"time {text!r}: expected seconds (90.5) or [HH:]MM:SS(.ms), not negative")
    secs = 0.0
    for p in parts:
        secs = secs * 60 + p
    return secs


def parse_shard(text: str) -> tuple[int, int]:
    """'0/4' -> (0, 4): shard 0 of 4; raises ReconstructError unless 0 <= i < n."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ReconstructError(f"--shard {text!r}: expected INDEX/COUNT, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ReconstructError(f"--shard {text!r}: expected 0 <= INDEX < COUNT, e.g. 0/4")
    return i, n


def shard_path(out: Path, i: int, n: int) -> Path:
    """Where shard i of n of `out` is written: out.shard-i-of-n.mp4, next to it."""
    return out.with_name(f"{out.stem}.shard-{i}-of-{n}{out.suffix or '.mp4'}")


def torchrun_shard() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when started by torchrun with more than one process, else None."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return None
    return (rank, world, local) if world > 1 else None


# ---------------------------------------------------------------- the pipeline


@dataclass
class Options:
    models: list[str]
    input: str
    out: str
    side_by_side: bool = False
    grid: bool = False
    labels: bool = False
    size: tuple[int, int] | None = None  # tile size; default the first model's
    filter: str = "lanczos"
    crop: str = "train"  # the training film's own crop when INPUT is that film, else centre
    codec: str = "libx264"
    crf: int = 18
    preset: str = "veryfast"
    pix_fmt: str = "yuv420p"
    start: float | None = None
    end: float | None = None
    batch: int = 0  # 0: by device (GPU_BATCH on CUDA/TensorRT, CPU_BATCH otherwise)
    backend: str = "auto"
    precision: str = "auto"
    threads: int | None = None  # CPU inference threads in all, every backend; None = the backends' defaults
    workers: int = 0  # inference threads, each running whole batches; 0: CPU_WORKERS on CPU, 1 on a GPU
    audio: str = "auto"  # auto | copy | aac | none
    shard: tuple[int, int] | None = None
    progress: bool = True
    queue: int = 4  # batches in flight between decode -> inference -> encode


@dataclass
class _Batch:
    times: list[float]
    inputs: list[np.ndarray]  # per model: uint8 [n, h, w, 3]
    originals: np.ndarray | None  # uint8 [n, th, tw, 3] for --side-by-side
    outputs: list[np.ndarray] = field(default_factory=list)
    index: int = 0  # the batch's place in the film, set as it is sent


class _Stop(Exception):
    """Another stage of the pipeline stopped (error or Ctrl-C)."""


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def shard_bounds(
    input_path: str, start: float | None, end: float | None, shard: tuple[int, int]
) -> tuple[float | None, float | None, float]:
    """Source-time range [lo, hi) of shard i of n and its origin (output time 0).

    Boundaries fall on frame times (k * range * fps / n, rounded to a frame), so every frame belongs to
    exactly one shard by its timestamp, whatever the container's frame count says. The first shard is
    open below and the last open above, like a single run.
    """
    i, n = shard
    info = probe(input_path)
    t0 = start or 0.0
    t1 = end if end is not None else info.duration
    if not t1:
        raise ReconstructError(f"{input_path}: duration unknown; pass --end to shard it")
    t1 = min(t1, info.duration) if info.duration else t1
    frames = max(1, round((t1 - t0) * float(info.fps)))

    def b(k: int) -> float:
        return t0 + round(k * frames / n) / float(info.fps)

    lo = start if i == 0 else b(i)
    hi = end if i == n - 1 else b(i + 1)
    return lo, hi, (start or 0.0) if i == 0 else b(i)


def reconstruct(opts: Options) -> dict[str, Any]:
    """Run the whole pipeline; returns a summary. Raises ReconstructError, ModelError, VideoError."""
    if opts.batch < 0:
        raise ReconstructError(f"--batch {opts.batch}: expected a positive integer (or 0 for automatic)")
    if opts.workers < 0:
        raise ReconstructError(f"--workers {opts.workers}: expected a positive integer (or 0 for automatic)")
    if opts.filter not in FILTERS:
        raise ReconstructError(f"--filter {opts.filter!r}: expected one of {', '.join(FILTERS)}")
    if opts.audio not in (*AUDIO_MODES, "none"):
        raise ReconstructError(f"--audio {opts.audio!r}: expected one of {', '.join(AUDIO_MODES)}, none")
    if opts.start is not None and opts.end is not None and opts.end <= opts.start:
        raise ReconstructError(f"--end {opts.end} is not after --start {opts.start}")
    info = probe(opts.input)  # VideoError: missing file, not a video, no video stream
    if opts.start is not None and info.duration and opts.start >= info.duration:
        raise ReconstructError(f"--start {opts.start:g}: after the end of {opts.input} ({info.duration:.3f} s)")
    out = Path(opts.out)
    if out.resolve() == Path(opts.input).resolve():
        raise ReconstructError(f"{out}: output is the input film; expected a new file")
    _check_writable(out)

    lo, hi, origin = opts.start, opts.end, opts.start or 0.0
    meta: dict[str, Any] = {"tool": SHARD_TAG, "source": Path(opts.input).name, "models": opts.models}
    if opts.shard is not None:
        lo, hi, origin = shard_bounds(opts.input, opts.start, opts.end, opts.shard)
        meta.update(shard=list(opts.shard), origin=origin, origin0=opts.start or 0.0)
        out = shard_path(out, *opts.shard)

    workers, per_worker = inference_workers(opts)
    opts = dataclasses.replace(opts, workers=workers)
    backends = [load_backend(m, opts.backend, opts.precision, per_worker) for m in opts.models]
    runners = [make_runner(b, opts.precision) for b in backends]
    on_gpu = any(k in str(getattr(b, "name", "")) for b in backends for k in ("cuda", "tensorrt"))
    if opts.batch == 0:
        opts = dataclasses.replace(opts, batch=GPU_BATCH if on_gpu else CPU_BATCH)
    from livevae.backends.onnxruntime_backend import default_threads

    decode_threads = decoder_threads(on_gpu, workers * (per_worker or default_threads()))
    sizes = [(int(b.cfg.width), int(b.cfg.height)) for b in backends]
    tile = opts.size or sizes[0]
    boxes: dict[tuple[int, int], CropBox] = {}
    for m, s in zip(opts.models, sizes, strict=True):
        if s in boxes:
            continue
        box = training_crop(m, opts.input, s) if opts.crop == "train" else None
        boxes[s] = box or _crop_box(
            opts.input, "centre" if opts.crop == "train" else opts.crop, s, opts.start, opts.end, info
        )
    tile_box = boxes[sizes[0]]  # the original is shown with the first model's crop, so tiles line up
    labels: tuple[str, ...] = ()
    if opts.labels:
        labels = (("original",) if opts.side_by_side else ()) + tuple(Path(m).stem for m in opts.models)
    layout = Layout.for_tiles(len(runners) + int(opts.side_by_side), tile, opts.grid, labels)

    writer = VideoWriter(
        out,
        info.fps,
        layout.size,
        codec=opts.codec,
        crf=opts.crf,
        preset=opts.preset,
        pix_fmt=opts.pix_fmt,
        time_base=info.time_base,
        metadata={"comment": json.dumps(meta)},
    )
    audio: AudioMux | None = None
    try:
        if opts.audio != "none" and info.has_audio:
            audio = AudioMux(opts.input, writer.container, start=lo, end=hi, origin=origin, mode=opts.audio)
        summary = _run_pipeline(
            opts, info, lo, hi, origin, runners, sizes, boxes, tile_box, layout, writer, audio, decode_threads
        )
    except BaseException:
        if audio is not None:
            audio.close()
        writer.abort()
        raise
    summary.update(
        output=str(out),
        backends=[getattr(b, "name", type(b).__name__) for b in backends],
        size=list(layout.size),
        audio=audio.kinds if audio else [],
        shard=list(opts.shard) if opts.shard else None,
        decode_threads=decode_threads or "auto",
    )
    return summary


def inference_workers(opts: Options) -> tuple[int, int | None]:
    """(inference workers, threads for each backend): --threads split between the workers on CPU.

    A GPU backend (or `auto` where CUDA exists) gets one worker, since the CUDA runner owns one stream and
    its pinned buffers. On CPU, `workers` 0 means CPU_WORKERS where there are threads for them.
    """
    import torch

    from livevae.backends.onnxruntime_backend import default_threads

    name = opts.backend.lower()
    gpu = any(k in name for k in ("cuda", "tensorrt")) or (name == "auto" and torch.cuda.is_available())
    if gpu:
        return 1, opts.threads
    total = opts.threads or default_threads()
    workers = opts.workers or max(1, min(CPU_WORKERS, total))
    if workers == 1:
        return 1, opts.threads
    return workers, max(1, total // workers)


def decoder_threads(on_gpu: bool, inference_threads: int, cores: int | None = None) -> int | None:
    """The film decoder's thread count: 1 when inference runs on the CPU and its threads leave no core spare,
    else None (FFmpeg's frame threads). Frame threads cost CPU to coordinate (bigbuckbunny 720p: 1.45 CPU ms a
    frame against 1.26 on one thread) and pay only where a core would otherwise idle: while a GPU infers, or on
    a CPU with cores beyond the inference threads. One decoder thread gives ~790 frames/s of 720p H.264 here,
    twice what the whole pipeline does on 2 cores."""
    cores = cores or os.cpu_count() or 1
    return None if on_gpu or cores - inference_threads >= 2 else 1


def _check_writable(out: Path) -> None:
    """Fail before loading models (which may mean an ONNX export or an engine build) when the output
    cannot be written: create the folder and a probe file where VideoWriter will put its temp file."""
    from livevae.safeout import VIDEO_SUFFIXES, OutputError, check_output_file

    try:
        check_output_file(out, VIDEO_SUFFIXES, what="-o")
    except OutputError as e:
        raise VideoError(str(e)) from None
    probe_file = out.with_name(f".{out.stem}.partial{out.suffix or '.mp4'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        existed = probe_file.exists()
        probe_file.open("ab").close()
        if not existed:
            probe_file.unlink()
    except OSError as e:
        raise VideoError(f"{out}: cannot write output ({e.strerror or e}); expected a writable path") from e


def _crop_box(
    film: str, crop: str, size: tuple[int, int], start: float | None, end: float | None, info: VideoInfo
) -> CropBox:
    from livevae.offline.prep import resolve_crop

    return resolve_crop(Path(film), crop, size, start, end, info=info)  # the probe reconstruct made: not a second


def training_crop(model_path: str, film: str, size: tuple[int, int]) -> CropBox | None:
    """The crop box prep used for this model's training film, when `film` is that film (same resolved
    path) and the dataset's meta.json is still there at the size asked; else None."""
    from livevae.model import read_model_header

    try:
        _, meta = read_model_header(model_path)
        ds = meta.get("dataset") or {}
        side = json.loads((Path(ds["path"]) / "meta.json").read_text())
        same = Path(side["source"]).resolve() == Path(film).resolve()
        if same and (side["width"], side["height"]) == size:
            return CropBox(*(int(v) for v in side["crop"]))
    except (KeyError, OSError, ValueError, TypeError, ModelError):
        pass  # no record of the training crop: the caller falls back to centre
    return None


def _run_pipeline(
    opts: Options,
    info: Any,
    lo: float | None,
    hi: float | None,
    origin: float,
    runners: list[Runner],
    sizes: list[tuple[int, int]],
    boxes: dict[tuple[int, int], CropBox],
    tile_box: CropBox,
    layout: Layout,
    writer: VideoWriter,
    audio: AudioMux | None,
    decode_threads: int | None = None,
) -> dict[str, Any]:
    """Decode thread -> inference (this thread, and opts.workers - 1 more) -> encode thread, joined by bounded
    queues. Batches carry their index; the encode thread writes them in order whichever worker finished first."""
    stop = threading.Event()
    errors: list[BaseException] = []
    to_infer: queue.Queue[_Batch | None] = queue.Queue(maxsize=opts.queue)
    to_write: queue.Queue[_Batch | None] = queue.Queue(maxsize=opts.queue)
    workers = max(1, opts.workers)
    # Batches between decode and encode, at most: the queues' and one in each worker; this also bounds the
    # encode thread's reordering buffer when one worker is slow and another runs ahead.
    in_flight = threading.BoundedSemaphore(2 * opts.queue + workers)
    tile = layout.tile
    span = (hi if hi is not None else info.duration) - (lo or 0.0)
    estimate = max(1, round(span * float(info.fps))) if span > 0 else (info.frames or None)
    bar = tqdm(
        total=estimate,
        unit="frame",
        desc=f"reconstruct {Path(opts.input).name}",
        disable=not opts.progress,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    decoded = [0]
    written = [0]
    stats = DecodeStats()  # corrupt packets are skipped and counted, as in prep

    sent = [0]

    def send(batch: _Batch) -> None:
        while not in_flight.acquire(timeout=0.1):
            if stop.is_set():
                raise _Stop
        batch.index = sent[0]
        sent[0] += 1
        _put(to_infer, batch, stop)

    def decode() -> None:
        try:
            b = opts.batch
            bufs: list[np.ndarray] = []
            orig: np.ndarray | None = None
            times: list[float] = []

            def fresh() -> None:
                nonlocal bufs, orig, times
                bufs = [np.empty((b, s[1], s[0], 3), np.uint8) for s in sizes]
                orig = np.empty((b, tile[1], tile[0], 3), np.uint8) if opts.side_by_side else None
                times = []

            fresh()
            # swscale on this thread (threads=1): less CPU than its own pool, and the CPU goes to inference
            scalers = {s: Scaler(boxes[s], s, threads=1) for s in set(sizes)}  # one per distinct model size
            tile_scaler = Scaler(tile_box, tile, SWS_FLAGS[opts.filter])
            for frame, t in iter_av_frames(opts.input, start=lo, end=hi, stats=stats, thread_count=decode_threads):
                k = len(times)
                scaled = {s: sc(frame) for s, sc in scalers.items()}  # [h, w, 3] exactly as prep makes it
                for m, s in enumerate(sizes):
                    bufs[m][k] = scaled[s]
                if orig is not None:
                    orig[k] = tile_scaler(frame)  # straight from the source, not upscaled from model size
                times.append(t)
                decoded[0] += 1
                if len(times) == b:
                    send(_Batch(times, bufs, orig))
                    fresh()
            if times:  # the last partial batch is never dropped
                n = len(times)
                send(_Batch(times, [x[:n] for x in bufs], None if orig is None else orig[:n]))
            for _ in range(workers):  # one end mark for each inference worker
                _put(to_infer, None, stop)
        except _Stop:
            pass
        except BaseException as e:
            errors.append(e)
            stop.set()

    def encode() -> None:
        try:
            pending: dict[int, _Batch] = {}  # finished out of order, waiting for an earlier batch
            ended, nxt = 0, 0
            while ended < workers:
                got = _get(to_write, stop)
                if got is None:
                    ended += 1
                    continue
                pending[got.index] = got
                while nxt in pending:
                    write(pending.pop(nxt))
                    nxt += 1
            if pending:  # cannot happen unless a worker lost a batch: never ship such a file
                raise ReconstructError(f"{opts.out}: batches {sorted(pending)} finished but batch {nxt} never did")
            if audio is not None:
                audio.finish()
        except _Stop:
            pass
        except BaseException as e:
            errors.append(e)
            stop.set()

    def write(batch: _Batch) -> None:
        for i, t in enumerate(batch.times):
            tiles = [] if batch.originals is None else [batch.originals[i]]
            tiles += [resize_to(y[i], tile, opts.filter) for y in batch.outputs]
            writer.write(layout.compose(tiles), t - origin)
            if audio is not None:
                audio.feed(t)
            written[0] += 1
        bar.update(len(batch.times))
        in_flight.release()

    def infer() -> None:
        """One inference worker: batches until its end mark, which it passes on to the encode thread."""
        while True:
            batch = _get(to_infer, stop)
            if batch is None:
                _put(to_write, None, stop)
                return
            batch.outputs = [run(x) for run, x in zip(runners, batch.inputs, strict=True)]
            _put(to_write, batch, stop)

    def worker() -> None:
        try:
            infer()
        except _Stop:
            pass
        except BaseException as e:
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=decode, name="decode", daemon=True)]
    threads.append(threading.Thread(target=encode, name="encode", daemon=True))
    threads += [threading.Thread(target=worker, name=f"infer-{k}", daemon=True) for k in range(1, workers)]
    t_start = time.perf_counter()
    for th in threads:
        th.start()
    try:
        infer()  # this thread is inference worker 0
        for th in threads:
            while th.is_alive():
                th.join(0.1)  # short joins keep Ctrl-C deliverable to this thread
    except _Stop:
        pass
    except BaseException:
        stop.set()
        for th in threads:
            th.join(5)
        bar.close()
        raise
    bar.close()
    if errors:
        for th in threads:
            th.join(5)
        raise errors[0]
    elapsed = time.perf_counter() - t_start
    if decoded[0] == 0:
        where = "" if lo is None and hi is None else f" in [{lo or 0:.3f}, {hi if hi is not None else 'end'}) s"
        raise ReconstructError(f"{opts.input}: decoded 0 frames{where}; expected at least one frame")
    if written[0] != decoded[0]:  # cannot happen unless a stage lost a batch: never ship such a file
        raise ReconstructError(f"{opts.out}: wrote {written[0]} frames of {decoded[0]} decoded")
    writer.close()
    return {
        "frames": written[0],
        "seconds": round(elapsed, 3),
        "fps": round(written[0] / max(elapsed, 1e-9), 2),
        "decode_errors": stats.errors,
        "decode_messages": stats.messages[:3],
    }


# ---------------------------------------------------------------- shards


def find_shards(out: Path) -> list[Path]:
    """The shard files of `out` (out.shard-I-of-N.mp4), sorted by index."""
    found = sorted(out.parent.glob(f"{out.stem}.shard-*-of-*{out.suffix or '.mp4'}"))

    def key(p: Path) -> tuple[int, int]:
        i, _, n = p.stem.rsplit(".shard-", 1)[1].partition("-of-")
        return int(n), int(i)

    try:
        return sorted(found, key=key)
    except ValueError as e:
        raise ReconstructError(f"{out.parent}: a shard file name is malformed ({e})") from e


def concat_shards(out: Path, parts: list[Path] | None = None, keep: bool = False) -> dict[str, Any]:
    """Join shard files losslessly (packet copy) into `out`, each at its source time; checks all are there."""
    parts = parts or find_shards(out)
    if not parts:
        raise ReconstructError(f"{out}: no shard files {out.stem}.shard-I-of-N{out.suffix} found to join")
    metas: list[dict[str, Any]] = []
    for p in parts:
        try:
            m = json.loads(read_comment(p) or "{}")
        except ValueError:
            m = {}
        if m.get("tool") != SHARD_TAG or "shard" not in m:
            raise ReconstructError(f"{p}: not a reconstruct shard (no shard metadata); expected a --shard output")
        metas.append(m)
    order = sorted(range(len(parts)), key=lambda k: metas[k]["shard"][0])
    parts, metas = [parts[k] for k in order], [metas[k] for k in order]
    n = metas[0]["shard"][1]
    got = [m["shard"][0] for m in metas]
    if got != list(range(n)) or any(m["shard"][1] != n for m in metas):
        raise ReconstructError(f"{out}: shards {got} of {n}; expected each of 0..{n - 1} exactly once")
    if len({m["source"] for m in metas}) != 1:
        raise ReconstructError(f"{out}: shards come from different films {sorted({m['source'] for m in metas})}")
    offsets = [float(m["origin"]) - float(m["origin0"]) for m in metas]
    meta = {k: v for k, v in metas[0].items() if k not in ("shard", "origin", "origin0")}
    concat(parts, out, offsets, metadata={"comment": json.dumps(meta)})
    if not keep:
        for p in parts:
            p.unlink(missing_ok=True)
    return {"output": str(out), "parts": [str(p) for p in parts]}


def wait_for(paths: list[Path], poll: float = 1.0) -> Iterator[None]:
    """Yield every `poll` seconds until all `paths` exist (rank 0 waiting for the other shards)."""
    while not all(p.exists() for p in paths):
        yield None
        time.sleep(poll)
