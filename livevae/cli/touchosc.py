"""`livevae touchosc`: write a TouchOSC layout (.tosc) of a show's mappings and main controls."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from livevae.control.state import ControlState
from livevae.controllers.touchosc import controls_for, layout
from livevae.errors import LivevaeError
from livevae.show.resolve import model_sizes
from livevae.show.schema import ShowError, load_show

log = logging.getLogger(__name__)


class TouchOscError(LivevaeError):
    """The layout cannot be written."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("show", help="the show file (.toml)")
    p.add_argument("-o", "--out", required=True, help="the layout to write (.tosc)")
    p.add_argument("--zdim", type=int, default=200, help="latent size, when the show's model is not there yet")
    p.add_argument("--pcs", type=int, default=16, help="principal directions, when the show's model is not there yet")
    p.epilog = "examples:\n  livevae touchosc shows/demo.toml -o demo.tosc"


def run(args: argparse.Namespace) -> int:
    show = load_show(args.show)
    zdim, pcs = args.zdim, args.pcs
    try:
        zdim, pcs = model_sizes(show)
    except ShowError as e:  # the layout is still useful before the model is trained
        log.warning(f"{e}; laying out for --zdim {zdim} --pcs {pcs}")
    state = ControlState(zdim, pcs, n_lfos=max(8, len(show.lfo)))
    controls = controls_for(state, show.osc_mappings(), list(show.scenes))
    data = layout(controls, show.name or Path(args.show).stem)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    try:  # atomic: a half-written layout never replaces a good one
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise TouchOscError(f"{out}: cannot write the layout ({e.strerror or e}); expected a writable path") from None
    print(f"wrote {out}: {len(controls)} controls for OSC port {show.osc.port}")
    return 0
