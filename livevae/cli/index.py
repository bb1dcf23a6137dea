"""`livevae index MODEL DATASET`: the latent index of the training film, for the film mirror and resequence."""

from __future__ import annotations

import argparse

from livevae.cli.main import ExamplesFormatter
from livevae.mirror.index import index_model, index_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = "example:\n  livevae index runs/br/model.safetensors data/br\n"
    p.formatter_class = ExamplesFormatter
    p.add_argument("model", help="model file (.safetensors)")
    p.add_argument("dataset", help="the dataset folder it was trained on (from livevae prep)")
    p.add_argument("-o", "--out", help="index file to write (default: beside the model, <stem>.index.safetensors)")
    p.add_argument("--batch", type=int, default=32, help="frames per encoder batch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    path, idx = index_model(args.model, args.dataset, args.out or index_path(args.model), args.batch,
                            not args.no_progress)  # fmt: skip
    mb = path.stat().st_size / 1e6
    print(
        f"wrote {path}: {idx.n} frames x {idx.zdim} latents (fp16, {mb:.1f} MB), model sha256 {idx.model_sha256[:12]}"
    )
    return 0
