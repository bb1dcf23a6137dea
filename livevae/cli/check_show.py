"""`livevae check-show`: validate show files without playing them; exit 1 when any is bad."""

from __future__ import annotations

import argparse
import logging

from livevae.show.schema import ShowError
from livevae.show.showfile import check_show

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("show", nargs="+", help="show file(s) to check")
    p.add_argument("--no-model", action="store_true", help="check the file's structure only (no model needed)")
    p.epilog = "examples:\n  livevae check-show shows/demo.toml\n  livevae check-show shows/*.toml --no-model"
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def run(args: argparse.Namespace) -> int:
    bad = 0
    for p in args.show:
        try:
            show = check_show(p, with_model=not args.no_model)
        except ShowError as e:
            log.error(str(e))
            bad += 1
            continue
        print(
            f"{p}: ok ({len(show.mapping)} mappings, {len(show.scenes)} scenes, {len(show.lfo)} LFOs, "
            f"OSC {'off' if not show.osc.enabled else f'{show.osc.host}:{show.osc.port}'})"
        )
    return 1 if bad else 0
