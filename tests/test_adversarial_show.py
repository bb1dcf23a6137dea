"""Adversarial show files: hot reload is a transaction whose watcher survives any save, and check-show refuses
what live would refuse or fail on when used (NaN, deep nesting, missing scenes, unreadable films, bad outputs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from pythonosc.osc_message_builder import build_msg

from livevae.show.controller import ShowController
from livevae.show.schema import MAX_DEPTH, ShowError, load_show
from livevae.show.showfile import build_show, check_show
from tests.test_midi import wait_for
from tests.test_show import BASE as SHOW_BASE

# the shared show of test_show.py, with two more mappings (one recalls a scene) and a second scene
BASE = (
    SHOW_BASE
    + """[[mapping]]
address = "/1/fader2"
target = "mix"
[[mapping]]
address = "/1/push1"
action = "scene.recall"
arg = "a"
[scenes.b]
controls = {{ noise = 0.5 }}
"""
)


@pytest.fixture(scope="module")
def pca_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from livevae.model import random_model, save_model

    m = random_model("tiny", seed=0)
    m.set_pca(torch.zeros(m.cfg.zdim), torch.eye(6, m.cfg.zdim), torch.ones(6))
    return save_model(m, tmp_path_factory.mktemp("model") / "pca.safetensors")


def _show(tmp_path: Path, model: Path, edit: Callable[[str], str] = lambda s: s) -> Path:
    p = tmp_path / "show.toml"
    p.write_text(edit(BASE.format(model=model)))
    return p


DEEP = "x = " + "[" * 3000 + "]" * 3000 + "\n"  # past tomllib's recursion limit
NESTED = "x = " + "[" * (MAX_DEPTH + 4) + "1" + "]" * (MAX_DEPTH + 4) + "\n"  # parses, but no show nests that deep


# --- class: a broken save kills the watcher or half-applies ------------------------------------------------------


@pytest.mark.parametrize(
    "edit,why",
    [
        (lambda s: s.replace("smooth = 0.25", "smooth = nan"), "controls.smooth: nan; expected a finite number"),
        (lambda s: s.replace("depth = 0.5", "depth = inf"), "lfo[0].depth: inf; expected a finite number"),
        (lambda s: DEEP + s, "nested too deep"),
        (lambda s: NESTED + s, "nested more than"),
        (lambda s: s.replace("range = [-2.0, 2.0]", "range = [-2.0, nan]"), "mapping[0].range[1]: nan"),
    ],
)
def test_broken_saves_fail_the_reload_in_one_line_and_change_nothing(
    tmp_path: Path, pca_model: Path, edit: Callable[[str], str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    p = _show(tmp_path, pca_model)
    _, state, (ctrl,) = build_show(p)
    assert isinstance(ctrl, ShowController) and ctrl.server is not None
    # the save also moves a mapping: it must not be swapped in when the rest of the file is refused
    p.write_text(edit(BASE.format(model=pca_model).replace("/1/fader1", "/2/moved")))
    assert ctrl.reload() is False
    err = [ln for ln in capsys.readouterr().err.splitlines() if "reload failed" in ln]
    assert len(err) == 1 and why in err[0], err
    ctrl.server.handle_datagram(build_msg("/1/fader1", [1.0]).dgram)
    assert state.snapshot().pc[0] == 2.0  # the old mapping still plays
    assert state.snapshot().smooth == 0.25 and ctrl.show.mapping[0].address == "/1/fader1"


def test_the_watcher_survives_any_save_and_hears_the_next_one(tmp_path: Path, pca_model: Path) -> None:
    p = _show(tmp_path, pca_model)
    _, state, (ctrl,) = build_show(p)
    assert isinstance(ctrl, ShowController)
    ctrl.start(None)
    try:
        for bad in (DEEP, "smooth = nan\n", "\x00\xff garbage", NESTED):
            n = ctrl.reload_errors
            p.write_text(bad + BASE.format(model=pca_model))
            assert wait_for(lambda n=n: ctrl.reload_errors > n), bad[:20]  # type: ignore[misc]
        assert ctrl._watch is not None and ctrl._watch.is_alive()
        p.write_text(BASE.format(model=pca_model).replace("depth = 0.5", "depth = 0.75"))
        assert wait_for(lambda: state.snapshot().lfos[0].depth == 0.75)
        assert ctrl.reloads == 1
    finally:
        ctrl.stop()


def test_a_reload_that_raises_anything_leaves_the_watcher_running(
    tmp_path: Path, pca_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _show(tmp_path, pca_model)
    _, _, (ctrl,) = build_show(p)
    assert isinstance(ctrl, ShowController)
    calls: list[int] = []

    def boom() -> bool:
        calls.append(1)
        raise MemoryError("a bug we did not foresee")

    monkeypatch.setattr(ctrl, "reload", boom)
    ctrl.start(None)
    try:
        for k in range(2):
            p.write_text(BASE.format(model=pca_model) + f"# edit {k}\n")
            assert wait_for(lambda k=k: len(calls) > k)  # type: ignore[misc]
        assert ctrl._watch is not None and ctrl._watch.is_alive() and ctrl.reload_errors == 2
    finally:
        ctrl.stop()


def test_a_truncated_but_valid_save_is_applied_and_said_loudly(
    tmp_path: Path, pca_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = _show(tmp_path, pca_model)
    _, _, (ctrl,) = build_show(p)
    assert isinstance(ctrl, ShowController)
    full = BASE.format(model=pca_model)
    p.write_text(full[: full.index("[[mapping]]")])  # an editor that crashed mid-save: still valid TOML
    assert ctrl.reload()
    out = capsys.readouterr().err
    assert "lost most of the show (3 -> 0 mappings, 2 -> 0 scenes, 1 -> 0 LFOs)" in out
    p.write_text(full)
    assert ctrl.reload() and "lost most" not in capsys.readouterr().err


# --- class: check-show says ok to what live refuses or fails on ---------------------------------------------------


@pytest.mark.parametrize(
    "edit,key",
    [
        (lambda s: s.replace("smooth = 0.25", "smooth = nan"), "controls.smooth"),
        (lambda s: s.replace('arg = "a"', 'arg = "nowhere"'), "mapping[2].arg: scene 'nowhere' does not exist"),
        (lambda s: s + '[scenes.c]\nframes = { video = "junk.mp4" }\n', "scenes.c.frames.video"),
        (lambda s: s + '[output]\nout = "a_file/render.mp4"\n', "output.out"),
        (lambda s: s + '[output]\nrecord = "take.xyz"\n', "output.record"),
        (lambda s: s + '[output]\nscreenshot_dir = "a_file"\n', "output.screenshot_dir"),
        (lambda s: DEEP + s, "nested too deep"),
    ],
)
def test_check_show_refuses_what_live_would_refuse_or_fail_on(
    tmp_path: Path, pca_model: Path, edit: Callable[[str], str], key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from livevae.cli.main import main

    (tmp_path / "a_file").write_text("mine")
    (tmp_path / "junk.mp4").write_bytes(b"not a film at all" * 50)
    good = _show(tmp_path, pca_model)
    assert main(["check-show", str(good)]) == 0
    capsys.readouterr()
    bad = _show(tmp_path, pca_model, edit)
    assert main(["check-show", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0], err
    assert (tmp_path / "a_file").read_text() == "mine"


def test_a_huge_show_file_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    p = tmp_path / "big.toml"
    with p.open("w") as f:
        f.write('model = "m"\n')
        f.write("# " + "x" * (5 << 20) + "\n")
    with pytest.raises(ShowError, match="more than 4 MB"):
        load_show(p)


def test_live_saved_scenes_count_for_check_show(tmp_path: Path, pca_model: Path) -> None:
    import json

    p = _show(tmp_path, pca_model, lambda s: s.replace('arg = "a"', 'arg = "saved-live"'))
    with pytest.raises(ShowError, match="saved-live"):
        check_show(p)
    (tmp_path / "show.scenes.json").write_text(json.dumps({"scenes": [{"name": "saved-live", "anchor": None}]}))
    assert check_show(p).mapping[2].arg == "saved-live"
