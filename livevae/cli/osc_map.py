"""`livevae osc-map`: print the OSC address map (plain or Markdown), and a show file's own mappings."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from livevae.control.state import ControlState
from livevae.controllers.osc_mapping import Mapping, address_map, format_address_map
from livevae.show.resolve import model_sizes
from livevae.show.schema import ShowError, load_show

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("show", nargs="?", help="a show file: also print its mappings, for its model's sizes")
    p.add_argument("--zdim", type=int, default=200, help="latent size, when no show is given")
    p.add_argument("--pcs", type=int, default=16, help="principal directions, when no show is given")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    p.epilog = "examples:\n  livevae osc-map\n  livevae osc-map shows/demo.toml\n  livevae osc-map --markdown"


def run(args: argparse.Namespace) -> int:
    zdim, pcs, n_lfos = args.zdim, args.pcs, ControlState(1).n_lfos
    mappings: Sequence[Mapping] = ()
    if args.show:
        show = load_show(args.show)
        try:
            zdim, pcs = model_sizes(show)
        except ShowError as e:  # the map is still useful before the model is trained
            log.warning(f"{e}; showing sizes --zdim {zdim} --pcs {pcs}")
        mappings = show.osc_mappings()
        n_lfos = max(n_lfos, len(show.lfo))
    print(format_address_map(address_map(zdim, pcs, n_lfos), markdown=args.markdown))
    if mappings:
        print(f"\nmappings from {args.show}:")
        for m in mappings:
            what = m.target or f"{m.action} {m.arg if m.arg is not None else ''}".strip()
            extra = f" range {m.range[0]:g}..{m.range[1]:g}" if m.range else ""
            extra += f" curve {m.curve}" if m.curve != "linear" else ""
            extra += f" smoothing {m.smoothing:g}s" if m.smoothing else ""
            extra += f" (argument {m.index})" if m.index else ""
            print(f"  {m.address} -> {what}{extra}")
    return 0
