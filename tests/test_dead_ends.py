"""Quiet, helpful failure: every dead end a performer can reach names its fix, in one line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from livevae.backends import create
from livevae.cli.live import add_arguments, build
from livevae.controllers.midi import MidiController
from livevae.loop import LiveConfig, LiveLoop


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_midi_learn_without_midi_names_the_fix(tiny_model_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    loop = LiveLoop(
        LiveConfig(model=str(tiny_model_file), headless=True, frames=1), create(str(tiny_model_file), "torch")
    )
    with caplog.at_level("WARNING"):
        loop.handle("midi.learn", None)
    line = next(r.getMessage() for r in caplog.records if "midi.learn" in r.getMessage())
    assert "nothing handles it" in line and "[midi]" in line and "--midi-port" in line


def test_live_midi_port_flag_adds_midi_with_or_without_a_show(tiny_model_file: Path, tmp_path: Path) -> None:
    show = tmp_path / "show.toml"
    show.write_text(f'model = "{tiny_model_file}"\nhot_reload = false\n[osc]\nenabled = false\n')
    _, _, _, ctrls = build(_args(str(show), "--midi-port", "listen:127.0.0.1:59871"))
    (midi,) = [c for c in ctrls if isinstance(c, MidiController)]
    assert [s.kind for s in midi.specs] == ["listen"]
    _, _, _, ctrls = build(_args("--model", str(tiny_model_file), "--midi-port", "nanoKONTROL2", "--osc-port", "0"))
    assert any(isinstance(c, MidiController) for c in ctrls)


def test_model_files_and_exports_are_readable_by_other_users_whatever_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    from livevae.backends.cache import _replace_atomically
    from livevae.model import random_model, save_model

    old = os.umask(0o077)  # a training run under a strict umask (systemd UMask=0077)
    try:
        p = save_model(random_model("tiny"), tmp_path / "model.safetensors")
        _replace_atomically(tmp_path / "model.onnx", b"onnx")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == 0o644


def test_the_training_bar_leaves_out_terms_whose_weight_is_zero() -> None:
    from train.config import TrainConfig
    from train.loop import bar_losses

    stats = {"loss/pixel_l1": 0.0, "loss/similarity": 0.0123, "loss/kl": 41.5}
    assert bar_losses(stats, TrainConfig()) == {"sim": "0.012", "kl": "41.500"}  # Larsen: no pixel term
    assert "l1" in bar_losses({**stats, "loss/pixel_l1": 0.2}, TrainConfig(pixel_weight=1.0))


def test_presets_say_their_frame_size() -> None:
    from livevae.model import preset_sizes

    assert preset_sizes() == "broad2016 256x144, live 256x144, tiny 64x48"


def test_hud_shows_a_reload_error_whole(tmp_path: Path, tiny_model_file: Path) -> None:
    from livevae.show.showfile import build_show

    show = tmp_path / "show.toml"
    show.write_text(f'model = "{tiny_model_file}"\nhot_reload = false\n[osc]\nenabled = false\n')
    _, _, (ctrl, *_) = build_show(show)
    err = f"{show}: mapping[12].target: control 'pc/40': index 40 out of range; expected 0..15"
    ctrl.last_error = err  # type: ignore[attr-defined]
    lines = ctrl.hud_lines()  # type: ignore[attr-defined]
    assert " ".join(ln.strip() for ln in lines) == f"show: {err}"  # every word, in order, none cut
    assert len(lines) > 1 and all(len(ln) <= 72 or " " not in ln.strip() for ln in lines)
