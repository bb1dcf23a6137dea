"""A realtime headless show for the OSC benchmarks: an untrained preset model (or a given file), the test card."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from livevae.model import VAE, preset, save_model
from livevae.show.controller import ShowController
from livevae.show.showfile import build_show


def realtime_show(
    model: str | None, preset_name: str, fps: float, seconds: float, source: str, prefix: str
) -> tuple[Any, Any, ShowController, str]:
    """(LiveConfig, ControlState, the show's controller, model path) of a show with OSC on a free port; the
    model is an untrained `preset_name` (seed 0) unless a file is given."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    if model is None:
        torch.manual_seed(0)
        model = str(save_model(VAE(preset(preset_name)).eval(), tmp / "model.safetensors"))
    show = tmp / "bench.toml"
    show.write_text(
        f'model = "{model}"\nbackend = "torch"\nhot_reload = false\n[input]\nsources = ["{source}"]\n'
        f"source_fps = {fps}\n[output]\nheadless = true\nrealtime = true\nseconds = {seconds}\n[osc]\nport = 0\n"
    )
    cfg, state, controllers = build_show(show)
    ctrl = controllers[0]
    assert isinstance(ctrl, ShowController) and ctrl.server is not None
    return cfg, state, ctrl, model
