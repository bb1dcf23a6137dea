"""`livevae live`: a show file and/or flags into a live loop, run until quit; prints the exit stats."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields, replace
from pathlib import Path

from livevae.backends import Backend
from livevae.control.state import ControlState
from livevae.handle import Controller
from livevae.loop import LiveConfig, LiveError, LiveLoop
from livevae.media.capture import FALLBACKS
from livevae.outputs.scaling import SCALE_FILTERS
from livevae.outputs.sinks import OutputSpec, SinkError, parse_output
from livevae.outputs.window import FILTERS, WindowConfig, display_available
from livevae.show.showfile import build_show, default_controllers

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "examples:\n"
        "  livevae live shows/demo.toml\n"
        "  livevae live --model runs/br/model.safetensors --source 0 --fullscreen --display 1\n"
        "  livevae live --model m.safetensors --source film.mp4 --source 0 --source testcard\n"
        "  livevae live shows/demo.toml --headless --out render.mp4 --seconds 20\n"
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    d = LiveConfig()
    w = WindowConfig()
    p.add_argument("show", nargs="?", help="show file (.toml); flags given as well override it")
    g = p.add_argument_group("model")
    g.add_argument("--model", help="model file (.safetensors)")
    g.add_argument(
        "--backend",
        help="inference backend: auto, torch, onnxruntime, tensorrt ..., optionally with a precision, e.g. "
        f"onnxruntime+fp32 (default {d.backend})",
    )
    g.add_argument(
        "--threads",
        type=int,
        help="CPU threads for inference, every backend (ONNX Runtime and torch); default: the show's, else 2",
    )
    g.add_argument(
        "--no-pipeline",
        dest="pipeline",
        action="store_const",
        const=False,
        help="decode each frame before the next is encoded (default: the next frame's encode runs beside this "
        "one's decode on CPU, 2+ threads: more fps, a little more latency)",
    )
    g = p.add_argument_group("input")
    g.add_argument("--source", action="append", dest="sources", metavar="SPEC",
                   help="camera index or /dev/videoN, video file, image folder, playlist .txt, or testcard; "
                   "repeat to list several (switch with the 'source' action)")  # fmt: skip
    g.add_argument("--source-size", type=_size, metavar="WxH", help="camera: requested capture size")
    g.add_argument("--source-fps", type=float, help="camera: requested rate; image folder / test card: their rate")
    g.add_argument("--hold", type=float, help="image folder: seconds per image (0 = image sequence)")
    g.add_argument("--no-loop", dest="loop", action="store_const", const=False, help="do not loop files")
    g.add_argument("--fallback", choices=FALLBACKS, help=f"shown while a source is down (default {d.fallback})")
    g.add_argument("--crop", help=f"'centre' or x,y,w,h in source pixels (default {d.crop})")
    g.add_argument("--fps", type=float, help="show rate (default: the source's own)")
    g = p.add_argument_group("window")
    g.add_argument("--display", type=int, help=f"display index (default {w.display})")
    g.add_argument("--size", type=_size, metavar="WxH", help="window size (default 1280x720)")
    g.add_argument("--fullscreen", action="store_const", const=True)
    g.add_argument("--borderless", action="store_const", const=True)
    g.add_argument("--no-vsync", dest="vsync", action="store_const", const=False)
    g.add_argument("--filter", choices=FILTERS, help=f"scaling filter (default {w.filter})")
    g.add_argument("--no-hud", dest="hud", action="store_const", const=False)
    g.add_argument("--cursor", action="store_const", const=True, help="show the mouse cursor")
    g.add_argument(
        "--monitor",
        action="store_const",
        const=True,
        help="a second window with the picture and the HUD for the performer; the output window stays clean",
    )
    g = p.add_argument_group("output")
    g.add_argument("--headless", action="store_const", const=True, help="no window")
    g.add_argument(
        "--realtime",
        action="store_const",
        const=True,
        help="headless but paced live (latest frame, wall clock), not a repeatable offline render",
    )
    g.add_argument("--out", help="headless: render into this MP4 (at the source's frame rate)")
    g.add_argument("--frames", type=int, help="stop after N frames")
    g.add_argument("--seconds", type=float, help="stop after S seconds of show time")
    g.add_argument("--record", help="record to this MP4 from the start (key r toggles recording)")
    g.add_argument("--record-dir", help=f"where key r puts recordings (default {d.record_dir})")
    g.add_argument("--record-size", type=_size, metavar="WxH", help="scale recordings to this size")
    g.add_argument("--screenshot-dir", help=f"where key s puts PNGs (default {d.screenshot_dir})")
    g.add_argument("--virtualcam", action="store_const", const=True, help="also send to a virtual camera")
    g.add_argument("--send", action="append", dest="outputs", type=_output, metavar="KIND[:NAME][@WxH]",
                   help="also send to ndi, syphon, spout or virtualcam, e.g. ndi:livevae@1920x1080 "
                   "(default size 1280x720); repeat for several at once")  # fmt: skip
    g.add_argument("--scale-filter", choices=SCALE_FILTERS,
                   help=f"model pixels -> each output's size (default {d.scale_filter})")  # fmt: skip
    g.add_argument("--stats-json", help="write the exit stats here as JSON")
    g = p.add_argument_group("OSC")
    g.add_argument("--osc-host", help="OSC listen address (default 127.0.0.1; 0.0.0.0 listens on the LAN)")
    g.add_argument("--osc-port", type=int, help="OSC listen port (default 9000)")
    g.add_argument("--osc-feedback", metavar="HOST:PORT", help="send control feedback and status here")
    g = p.add_argument_group("MIDI")
    g.add_argument(
        "--midi-port",
        action="append",
        metavar="NAME",
        help="MIDI input: a port-name prefix ('*' = every port), tcp:HOST:PORT or listen:HOST:PORT; repeat for "
        "several. Replaces the show's [midi] inputs; without a [midi] section, MIDI learn binds controls "
        "(`python -m livevae.controllers.midi` lists the ports)",
    )
    g = p.add_argument_group("remote (OSCQuery and the browser control surface; docs/remote.md)")
    g.add_argument("--remote", action="store_const", const=True, help="serve them (default on 127.0.0.1:8080)")
    g.add_argument("--remote-host", help="listen address (0.0.0.0 = the LAN, with a PIN printed at start)")
    g.add_argument("--remote-port", type=int, help="HTTP/WebSocket port (default 8080; 0 = any free port)")
    g.add_argument("--remote-pin", help="the PIN pages must give (default on the LAN: a random one)")


def _size(text: str) -> tuple[int, int]:
    from livevae.media.preprocess import PreprocessError, parse_size

    try:
        return parse_size(text)
    except PreprocessError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _output(text: str) -> OutputSpec:
    try:
        return parse_output(text)
    except SinkError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


WINDOW_FLAGS = {"display", "size", "fullscreen", "borderless", "vsync", "filter", "hud", "cursor", "monitor"}


def apply_flags(cfg: LiveConfig, args: argparse.Namespace) -> LiveConfig:
    """cfg with every flag the user actually gave (not None) written over it."""
    top = {f.name for f in fields(LiveConfig)} - {"window"}
    over = {k: v for k, v in vars(args).items() if k in top and v is not None}
    win = {k: v for k, v in vars(args).items() if k in WINDOW_FLAGS and v is not None}
    if "sources" in over and "source" not in over:
        over["source"] = 0
    return replace(cfg, **over, window=replace(cfg.window, **win))


def pca_count(model_path: str) -> int:
    """Number of principal directions stored in a model file (0 when none), read from its header only."""
    try:
        from safetensors import safe_open

        with safe_open(model_path, framework="pt") as f:
            if "pca_components" in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                return int(f.get_slice("pca_components").get_shape()[0])
    except Exception:  # the backend reports a bad model file properly; this is only a hint
        return 0
    return 0


def build(args: argparse.Namespace) -> tuple[LiveConfig, Backend, ControlState | None, list[Controller]]:
    """Resolve a show file and/or flags into (config, backend, state, controllers)."""
    state: ControlState | None = None
    controllers: list[Controller] = []
    if args.show:
        osc = {k: getattr(args, k, None) for k in ("osc_host", "osc_port", "osc_feedback")}
        from livevae.resources import show_file

        cfg, state, controllers = build_show(show_file(args.show), **osc, midi_ports=getattr(args, "midi_port", None))
        cfg = apply_flags(cfg, args)
    else:
        if not args.model:
            raise LiveError("no model: give a show file, or --model MODEL.safetensors")
        cfg = apply_flags(LiveConfig(), args)
    if cfg.headless and cfg.out is None and cfg.frames is None and cfg.seconds is None and not cfg.realtime:
        log.info("headless with no --out, --frames or --seconds: running until Ctrl-C")
    if cfg.out:  # before the model loads (an export may take minutes): a render into nothing fails now
        from livevae.safeout import VIDEO_SUFFIXES, OutputError, check_output_file

        try:
            check_output_file(cfg.out, VIDEO_SUFFIXES, what="--out")
        except OutputError as e:
            raise LiveError(str(e)) from None
    from livevae.backends import create  # looked up at call time: one place to stand in for the backend

    backend = create(cfg.model, cfg.backend, threads=cfg.threads, overlap=cfg.pipeline)
    if not args.show:
        state = ControlState(backend.cfg.zdim, pca_count(cfg.model))
        osc = {k: getattr(args, k, None) for k in ("osc_host", "osc_port", "osc_feedback")}
        controllers = list(default_controllers(cfg, state, **osc))
        if getattr(args, "midi_port", None):
            from livevae.controllers.midi import from_show as midi_from_show

            # no show file: MIDI learn writes ./livevae.midi-learn.toml, read back at the next start
            controllers.append(midi_from_show({"inputs": list(args.midi_port)}, state, Path.cwd() / "livevae.toml"))
    assert state is not None
    return cfg, backend, state, with_remote(args, state, controllers)


def with_remote(args: argparse.Namespace, state: ControlState, controllers: list[Controller]) -> list[Controller]:
    """The controllers with a RemoteServer made from the --remote* flags (over the show's [remote], if any)."""
    flags = {k: getattr(args, f"remote_{k}", None) for k in ("host", "port", "pin")}
    if not getattr(args, "remote", None) and all(v is None for v in flags.values()):
        return controllers
    from livevae.controllers.remote import RemoteServer, remote_section

    old = next((c for c in controllers if isinstance(c, RemoteServer)), None)
    base = old.cfg.model_dump() if old is not None else {}
    cfg = remote_section({**base, **{k: v for k, v in flags.items() if v is not None}}, "--remote-* flags")
    return [c for c in controllers if c is not old] + [RemoteServer(state, cfg)]


def run(args: argparse.Namespace) -> int:
    cfg, backend, state, controllers = build(args)
    if not cfg.headless and not display_available():
        raise LiveError("no display (DISPLAY/WAYLAND_DISPLAY unset): use --headless --out FILE")
    stats = LiveLoop(cfg, backend, state, controllers).run()
    print(stats.summary())
    if cfg.out and not any(Path(p) == Path(cfg.out) for p in stats.outputs):
        print(f"livevae live: error: --out {cfg.out}: the render was not written (see above)", file=sys.stderr)
        return 1
    return 0
