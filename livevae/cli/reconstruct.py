"""`livevae reconstruct`: the command line of reconstruct (a whole film through models, shards, joining)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from livevae.cli.main import ExamplesFormatter
from livevae.errors import LivevaeError
from livevae.media.preprocess import PreprocessError, parse_size
from livevae.media.video import (
    AUDIO_MODES,
)
from livevae.offline.layout import FILTERS
from livevae.offline.reconstruct import (
    Options,
    ReconstructError,
    concat_shards,
    parse_shard,
    parse_time,
    reconstruct,
    shard_path,
    torchrun_shard,
    wait_for,
)

EXAMPLES = """examples:
  livevae reconstruct runs/br/model.safetensors film.mp4 -o out.mp4
  livevae reconstruct br.safetensors film.mp4 -o cmp.mp4 --side-by-side --size 1280x720
  livevae reconstruct br.safetensors film.mp4 -o grid.mp4 --also darkly.safetensors --side-by-side --grid --labels
  livevae reconstruct br.safetensors film.mkv -o clip.mp4 --start 1:00 --end 1:30 --crf 14
  livevae reconstruct br.safetensors film.mp4 -o out.mp4 --shard 0/2   # then --shard 1/2, then:
  livevae reconstruct --concat -o out.mp4
  torchrun --nproc-per-node 8 -m livevae reconstruct br.safetensors film.mp4 -o out.mp4
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    p.formatter_class = ExamplesFormatter
    p.add_argument("model", nargs="?", metavar="MODEL", help="model file (.safetensors from `livevae train`)")
    p.add_argument("input", nargs="?", metavar="INPUT", help="any film FFmpeg reads")
    p.add_argument("-o", "--out", required=True, help="output video (.mp4, .mkv, .mov)")
    g = p.add_argument_group("layout")
    g.add_argument("--also", action="append", default=[], metavar="MODEL", help="another model beside the first")
    g.add_argument("--side-by-side", action="store_true", help="original | reconstruction")
    g.add_argument("--grid", action="store_true", help="arrange 3+ tiles in a square-ish grid, not a row")
    g.add_argument("--labels", action="store_true", help="write each tile's model name on it")
    g.add_argument("--size", default=None, help="tile size WIDTHxHEIGHT; None: the first model's size")
    g.add_argument("--filter", default="lanczos", choices=list(FILTERS), help="upscaling filter for --size")
    g.add_argument(
        "--crop",
        default="train",
        help="'train' (prep's crop when INPUT is the model's training film, else centre), 'centre', "
        "'auto' (find black bars) or x,y,w,h, as in prep",
    )
    e = p.add_argument_group("encoding")
    e.add_argument("--codec", default="libx264", help="video codec (libx264, libx265, ...)")
    e.add_argument("--crf", type=int, default=18, help="quality for x264/x265 (lower is better)")
    e.add_argument("--preset", default="veryfast", help="x264/x265 speed preset")
    e.add_argument("--pix-fmt", default="yuv420p", help="pixel format; yuv420p opens in every player")
    e.add_argument("--audio", default="auto", choices=[*AUDIO_MODES, "none"], help="auto: copy if possible else AAC")
    e.add_argument("--no-audio", action="store_true", help="drop the audio (same as --audio none)")
    r = p.add_argument_group("range and speed")
    r.add_argument("--start", type=parse_time, default=None, help="start time (seconds or [HH:]MM:SS)")
    r.add_argument("--end", type=parse_time, default=None, help="end time (seconds or [HH:]MM:SS)")
    r.add_argument("--batch", type=int, default=0, help="frames per inference batch; 0: 256 on a GPU, 16 on CPU")
    r.add_argument(
        "--backend",
        default="auto",
        help="auto picks the fastest that runs: tensorrt, torch-cuda, onnxruntime, torch-cpu",
    )
    r.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16", "int8"],
        help="auto: fp16 on GPUs; on CPU int8 or fp32 ONNX Runtime, whichever measured faster on this CPU",
    )
    r.add_argument("--threads", type=int, default=None, help="CPU inference threads in all, every backend (default 2)")
    r.add_argument(
        "--workers",
        type=int,
        default=0,
        help="inference threads running whole batches, sharing --threads (0: 2 on CPU, 1 on a GPU)",
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    s = p.add_argument_group("long films on several GPUs")
    s.add_argument("--shard", default=None, help="process part INDEX/COUNT only, written to OUT.shard-I-of-N.mp4")
    s.add_argument("--concat", nargs="*", default=None, metavar="SHARD", help="join shard files into OUT losslessly")
    s.add_argument("--keep-shards", action="store_true", help="keep shard files after joining")


def options_from_args(args: argparse.Namespace) -> Options:
    if not args.model or not args.input:
        raise ReconstructError("expected MODEL and INPUT (or --concat to join shards)")
    try:
        size = parse_size(args.size) if args.size else None
    except PreprocessError as e:
        raise ReconstructError(str(e)) from e
    return Options(
        models=[args.model, *args.also],
        input=args.input,
        out=args.out,
        side_by_side=args.side_by_side,
        grid=args.grid,
        labels=args.labels,
        size=size,
        filter=args.filter,
        crop=args.crop,
        codec=args.codec,
        crf=args.crf,
        preset=args.preset,
        pix_fmt=args.pix_fmt,
        start=args.start,
        end=args.end,
        batch=args.batch,
        backend=args.backend,
        precision=args.precision,
        threads=args.threads,
        workers=args.workers,
        audio="none" if args.no_audio else args.audio,
        shard=parse_shard(args.shard) if args.shard else None,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    try:
        if args.concat is not None:
            # Shard files may also land in the MODEL/INPUT slots (`--concat -o OUT a.mp4 b.mp4`).
            named = [Path(p) for p in [*args.concat, args.model, args.input] if p]
            res = concat_shards(Path(args.out), named or None, keep=args.keep_shards)
            print(f"joined {len(res['parts'])} shards into {res['output']}")
            return 0
        opts = options_from_args(args)
        dist = torchrun_shard() if opts.shard is None else None
        if dist is not None:
            rank, world, local = dist
            opts.shard = (rank, world)
            opts.progress = opts.progress and rank == 0
            with contextlib.suppress(Exception):  # no CUDA: every rank runs on the CPU
                import torch

                if torch.cuda.is_available():
                    torch.cuda.set_device(local % torch.cuda.device_count())  # "cuda" is now this rank's GPU
        summary = reconstruct(opts)
        print(
            f"wrote {summary['frames']} frames {summary['size'][0]}x{summary['size'][1]} to {summary['output']} "
            f"({summary['fps']:.1f} frames/s, {', '.join(summary['backends'])}"
            f"{', audio ' + '+'.join(summary['audio']) if summary['audio'] else ''})"
        )
        if summary["decode_errors"]:
            print(
                f"livevae reconstruct: {opts.input}: {summary['decode_errors']} corrupt packet(s) skipped "
                f"({'; '.join(summary['decode_messages'])})",
                file=sys.stderr,
            )
        if dist is not None and dist[0] == 0:
            parts = [shard_path(Path(opts.out), i, dist[1]) for i in range(dist[1])]
            print(f"rank 0: waiting for {dist[1]} shards to join", file=sys.stderr)
            for _ in wait_for(parts):
                pass
            concat_shards(Path(opts.out), parts, keep=args.keep_shards)
            print(f"joined {dist[1]} shards into {opts.out}")
    except LivevaeError as e:  # ReconstructError, ModelError, VideoError, PreprocessError, EngineError
        print(f"livevae reconstruct: error: {e}", file=sys.stderr)
        return 1
    return 0
