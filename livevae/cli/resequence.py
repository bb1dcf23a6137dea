"""`livevae resequence MODEL INPUT -o OUT`: another video remade from the training film's nearest frames."""

from __future__ import annotations

import argparse

from livevae.cli.main import ExamplesFormatter
from livevae.mirror.resequence import SHOW, Options, check_out, resequence


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "examples:\n"
        "  livevae resequence runs/br/model.safetensors webcam.mp4 -o br_webcam.mp4\n"
        "  livevae resequence runs/br/model.safetensors other.mp4 -o out.mp4 --show reconstruction --jump 3\n"
    )
    p.formatter_class = ExamplesFormatter
    d = Options("", "", "")
    p.add_argument("model", help="model file (.safetensors) with its latent index beside it (livevae index)")
    p.add_argument("input", help="the video to resequence (another film, a webcam recording)")
    p.add_argument("-o", "--out", required=True, help="video to write (.mp4, .mkv, .mov)")
    p.add_argument("--index", default="", help="latent index (default: beside the model)")
    p.add_argument("--dataset", default="", help="the training dataset (default: the one the index names)")
    p.add_argument("--show", choices=SHOW, default=d.show, help="film frames or their reconstructions")
    p.add_argument("-k", type=int, default=d.k, help="nearest candidates per frame")
    p.add_argument("--jump", type=float, default=d.jump,
                   help="cost of a cut in median nearest distances: higher plays longer stretches of the film, 0 "
                   "takes the nearest frame each time")  # fmt: skip
    p.add_argument("--repeats", action="store_true", help="allow the same film frame twice in a row")
    p.add_argument("--audio", choices=("auto", "copy", "aac", "none"), default=d.audio,
                   help="the input's audio")  # fmt: skip
    p.add_argument("--backend", default=d.backend, help="inference backend")
    p.add_argument("--crop", default=d.crop, help="'centre' or x,y,w,h of the input in source pixels")
    p.add_argument("--batch", type=int, default=d.batch, help="frames per batch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    check_out(args.out)
    opts = Options(
        model=args.model,
        input=args.input,
        out=args.out,
        index=args.index,
        dataset=args.dataset,
        show=args.show,
        k=args.k,
        jump=args.jump,
        repeats=args.repeats,
        audio=args.audio,
        backend=args.backend,
        batch=args.batch,
        crop=args.crop,
        progress=not args.no_progress,
    )
    r = resequence(opts)
    print(
        f"wrote {r['out']}: {int(r['frames'])} frames at {r['fps']:.3f} fps from {int(r['unique'])} film frames, "
        f"{int(r['cuts'])} cuts" + (", with the input's audio" if r["has_audio"] else "")
    )
    return 0
