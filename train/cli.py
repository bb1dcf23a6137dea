"""`livevae train`: train a VAE-GAN (or the pixel-VAE baseline) on a frame dataset from a recipe."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from livevae.model import preset_sizes

from .config import TrainConfig, load_recipe

EXAMPLES = """examples:
  livevae prep film.mkv -o data/br --crop auto
  livevae train --recipe train/recipes/blade_runner.toml --data data/br --out runs/br
  livevae train --resume runs/br                      # continue step count and data order
  livevae train --recipe train/recipes/bbb.toml --data data/bbb --out runs/bbb --time-budget 3600
  livevae train --recipe train/recipes/bbb.toml --data data/bbb --out runs/bbb-pix --pixel-vae
  torchrun --nproc_per_node 8 -m livevae train --recipe train/recipes/blade_runner.toml --data data/br --out runs/br
  torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m livevae train ...
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--recipe", type=Path, help="recipe TOML (train/recipes/*.toml); defaults to TrainConfig()")
    p.add_argument("--data", type=Path, help="dataset folder from `livevae prep` (default: the checkpoint's)")
    p.add_argument("--out", type=Path, help="run folder (default with --resume: the checkpoint's run folder)")
    p.add_argument("--resume", type=Path, help="a run folder or a checkpoint file: continue exactly")
    p.add_argument("--epochs", type=int, help="stop after this many epochs (total, counted from step 0)")
    p.add_argument("--max-steps", type=int, help="stop at this step (total)")
    p.add_argument("--time-budget", type=float, help="stop after this many seconds of this invocation")
    p.add_argument(
        "--preset",
        help=f"model preset and the frame size its dataset needs (`livevae prep --size`): {preset_sizes()} "
        "(overrides the recipe)",
    )
    p.add_argument("--pixel-vae", action="store_true", help="baseline: pixel loss + KL only, no discriminator")
    p.add_argument("--batch", type=int, help="batch size per rank")
    p.add_argument("--lr", type=float, help="learning rate of encoder and decoder")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--augment", action="store_true", help="device-side translation/flip/colour jitter")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default auto)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (+ validation)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any TrainConfig key (TOML value)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parse_sets(items: list[str]) -> dict[str, Any]:
    import tomllib

    from .config import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set kl_weight=1e-4")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = tomllib.loads(f"v = {v}")["v"]
        except tomllib.TOMLDecodeError:
            out[k.strip()] = v  # a bare word is a string
        except RecursionError:
            raise ConfigError(f"--set {item[:40]!r}...: nested too deep; expected KEY=VALUE") from None
    return out


def run(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint, resolve_resume
    from .config import ConfigError
    from .loop import train

    info: dict[str, Any] = {}
    resume = resolve_resume(args.resume) if args.resume else None
    if args.recipe is not None:
        cfg, info = load_recipe(args.recipe)
        info["recipe"] = str(args.recipe)
    else:
        cfg = TrainConfig()
    overrides: dict[str, Any] = {
        "preset": args.preset,
        "pixel_vae": True if args.pixel_vae else None,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "threads": args.threads,
        "compile": True if args.compile else None,
        "augment": True if args.augment else None,
        "device": args.device,
        "checkpoint_every": args.checkpoint_every,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "time_budget": args.time_budget,
    }
    overrides.update(_parse_sets(args.set))
    if resume is not None:  # the run's config wins; say every setting that differs, refuse what cannot change
        from .resume_check import differing_flags

        _, rstate = load_checkpoint(resume)
        asked = dict(overrides)
        if args.recipe is not None:
            asked = {**cfg.to_dict(), **{k: v for k, v in asked.items() if v is not None}}
        refused, allowed = differing_flags(asked, rstate["config"])
        if refused:
            raise ConfigError(
                f"--resume {resume}: these settings differ from the run and cannot change on resume: "
                f"{'; '.join(refused)}; drop them (or start a new run with another --out)"
            )
        for line in allowed:
            print(f"livevae train: resume: {line}; applied", file=sys.stderr)
    if overrides.get("pixel_vae") and cfg.pixel_weight == 0 and "pixel_weight" not in overrides:
        overrides["pixel_weight"] = 1.0  # the baseline needs a pixel term; Larsen recipes have none
    try:
        cfg = cfg.replace(**overrides)
    except TypeError as e:
        raise ConfigError(f"command line: {e}") from e
    data, out = args.data, args.out
    if resume is not None:
        _, state = load_checkpoint(resume)
        data = data or Path(state["dataset"]["path"])
        out = out or resume.parent.parent
    if data is None or out is None:
        raise ConfigError("--data and --out are required (unless --resume names a run folder)")
    r = train(cfg, data, out, resume=resume, progress=not args.no_progress, info=info)
    v = r.val
    vs = f"; held-out PSNR {v['psnr']:.2f} dB, SSIM {v['ssim']:.3f}, sharpness {v['sharpness']:.2f}" if v else ""
    print(
        f"trained to step {r.step} (epoch {r.epoch}) in {r.seconds:.0f} s, {r.images_per_s:.1f} img/s, "
        f"stopped by {r.stopped_by or 'nothing (already done)'}{vs}; model: {r.model}"
    )
    return 0
