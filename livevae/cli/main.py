"""The one `livevae` entry point: subcommands, each imported only when it is run."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from livevae import logs
from livevae.errors import LivevaeError

# name -> (module, one-line help). Each module defines `add_arguments(parser)` and `run(args) -> int`: one file per
# command here (training's own lives in train/cli.py, beside what only training needs), the jobs in offline/.
COMMANDS: dict[str, tuple[str, str]] = {
    "prep": ("livevae.cli.prep", "decode a film into a frame dataset (memory-mapped uint8 array + JSON)"),
    "train": ("livevae.train.cli", "train a VAE-GAN on a frame dataset from a recipe"),
    "reconstruct": (
        "livevae.cli.reconstruct",
        "pass a whole film through a model into a new video, with its audio",
    ),
    "index": ("livevae.cli.index", "build a model's latent index of its training film (the film mirror)"),
    "resequence": (
        "livevae.cli.resequence",
        "remake a video out of the training film's nearest frames (originals or reconstructions), with its audio",
    ),
    "export": ("livevae.cli.export", "export a model to ONNX and build TensorRT engines ahead of a show"),
    "bench": ("livevae.cli.bench", "measure every backend x preset against torch eager"),
    "live": ("livevae.cli.live", "run a show: camera/video in, reconstruction out, OSC/MIDI/audio control"),
    "check-show": ("livevae.cli.check_show", "validate a show file without playing it"),
    "osc-map": ("livevae.cli.osc_map", "print the OSC address map"),
    "touchosc": ("livevae.cli.touchosc", "write a TouchOSC layout (.tosc) of a show's mappings and main controls"),
    "demo": ("livevae.cli.demo", "run the bundled demo show (window if there is a display, else a file)"),
}

EPILOG = """examples:
  livevae prep blade_runner.mkv -o data/br --crop auto
  livevae train --recipe train/recipes/blade_runner.toml --data data/br --out runs/br
  livevae reconstruct runs/br/model.safetensors other_film.mp4 -o out.mp4 --side-by-side
  livevae index runs/br/model.safetensors data/br
  livevae resequence runs/br/model.safetensors webcam.mp4 -o resequenced.mp4
  livevae export runs/br/model.safetensors --backend tensorrt
  livevae live shows/demo.toml
  livevae live --model runs/br/model.safetensors --source 0
"""


class ExamplesFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, examples kept as written."""


class CLIError(LivevaeError):
    """A command-line argument is malformed."""


def add_logging_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("logging")
    g.add_argument("-v", "--verbose", action="count", default=0, help="more detail (debug messages)")
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    g.add_argument("--log-file", metavar="PATH", help="also append every message to this file")


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="livevae",
        description="livevae: a live video instrument built on a VAE-GAN.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__import__('livevae').__version__}")
    p.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="; ".join(COMMANDS))
    return p


def _module_name(name: str) -> str:
    """The module of a subcommand. Training lives in the repo's top-level train/ folder, installed as
    livevae.train: in a checkout it is imported as `train` (one module identity with the tests and tools that
    import it so), in a wheel as livevae.train; never a foreign top-level `train` from site-packages."""
    module_name = COMMANDS[name][0]
    if module_name.startswith("livevae.train."):
        import importlib.util
        from pathlib import Path

        checkout = Path(__file__).resolve().parent.parent / "train"
        spec = importlib.util.find_spec("train") if (checkout / "cli.py").is_file() else None
        if spec is not None and spec.origin and Path(spec.origin).resolve().parent == checkout:
            return module_name.removeprefix("livevae.")
    return module_name


def build_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one subcommand, with the module's own arguments added."""
    _, help_text = COMMANDS[name]
    module = importlib.import_module(_module_name(name))
    p = argparse.ArgumentParser(
        prog=f"livevae {name}",
        description=help_text,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    module.add_arguments(p)
    add_logging_arguments(p)
    p.set_defaults(_run=module.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        top = _top_parser()
        if not argv:
            top.print_help()
            print("\ncommands:")
            for n, (_, h) in COMMANDS.items():
                print(f"  {n:12s} {h}")
            return 0
        top.parse_args(argv)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"livevae: unknown command {name!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    args = build_parser(name).parse_args(argv[1:])
    try:
        logs.configure(-1 if args.quiet else args.verbose, args.log_file)
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("livevae: interrupted", file=sys.stderr)
        return 130
    except LivevaeError as e:  # the edge of every command: livevae's own errors become one clear line
        print(f"livevae {name}: error: {' | '.join(str(e).splitlines())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
