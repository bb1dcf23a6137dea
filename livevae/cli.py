"""The one `livevae` entry point: subcommands, each imported only when it is run."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Each module defines `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "prep": ("livevae.prep", "decode a film into a frame dataset (memory-mapped uint8 array + JSON)"),
    "train": ("livevae.train.cli", "train a VAE-GAN on a frame dataset from a recipe"),
    "reconstruct": ("livevae.reconstruct", "pass a whole film through a model into a new video, with its audio"),
    "export": ("livevae.export", "export a model to ONNX and build TensorRT engines ahead of a show"),
    "bench": ("livevae.bench", "measure every backend x preset against torch eager"),
    "live": ("livevae.live", "run a show: camera/video in, reconstruction out, OSC/MIDI/audio control"),
    "check-show": ("livevae.show", "validate a show file without playing it"),
    "osc-map": ("livevae.osc", "print the OSC address map"),
    "demo": ("livevae.demo", "run the bundled demo show (window if there is a display, else a file)"),
}

EPILOG = """examples:
  livevae prep blade_runner.mkv -o data/br --crop auto
  livevae train --recipe train/recipes/blade_runner.toml --data data/br --out runs/br
  livevae reconstruct runs/br/model.safetensors other_film.mp4 -o out.mp4 --side-by-side
  livevae export runs/br/model.safetensors --backend tensorrt
  livevae live shows/demo.toml
  livevae live --model runs/br/model.safetensors --source 0
"""


class CLIError(Exception):
    """A command-line argument is malformed."""


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
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("livevae: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the edge of every command: known errors become one clear line
        if type(e).__name__.endswith("Error") and type(e).__module__.startswith(("livevae", "train")):
            print(f"livevae {name}: error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
