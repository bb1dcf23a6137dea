"""`livevae prep`: the command line of prep (decode a film into a frame dataset)."""

from __future__ import annotations

import argparse
import sys

from livevae.media.preprocess import PreprocessError, parse_size
from livevae.media.video import VideoError
from livevae.model import preset_sizes
from livevae.offline.prep import PrepError, prep


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("film", help="any film FFmpeg reads")
    p.add_argument("-o", "--out", required=True, help="dataset folder to write (frames.npy + meta.json)")
    p.add_argument("--size", default="256x144", help=f"model size WIDTHxHEIGHT, the preset's: {preset_sizes()}")
    p.add_argument("--crop", default="centre", help="'centre', 'auto' (find black bars) or x,y,w,h in source px")
    p.add_argument("--every", type=int, default=1, help="keep every N-th frame")
    p.add_argument("--start", type=float, default=None, help="start time in seconds")
    p.add_argument("--end", type=float, default=None, help="end time in seconds")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="decoders side by side on a film (MP4, MOV, MKV, WebM) cut at its keyframes (default: one a core; "
        "1: FFmpeg's frame threads on one decoder); the frames are the same",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        size = parse_size(args.size)
        meta = prep(
            args.film,
            args.out,
            size=size,
            crop=args.crop,
            every=args.every,
            start=args.start,
            end=args.end,
            max_frames=args.max_frames,
            progress=not args.no_progress,
            threads=args.threads,
        )
    except (PrepError, VideoError, PreprocessError) as e:
        print(f"livevae prep: error: {e}", file=sys.stderr)
        return 1
    print(
        f"wrote {meta['frames']} frames {meta['width']}x{meta['height']} to {args.out} "
        f"(crop {meta['crop']}, {meta['frames'] / max(meta['seconds'], 1e-9):.0f} frames/s, {meta['decoding']})"
    )
    return 0
