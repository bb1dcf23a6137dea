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
