"""Scenes: capture and recall reproduce the picture's latent, recall resets what it does not name, the sidecar
persists live saves, anchors computed from film frames, and scene actions through the show controller."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from livevae.control.modulate import Modulator
from livevae.control.scenes import Scene, SceneBank, SceneError, anchor_from_frames, capture, recall_values
from livevae.control.state import ControlState, LfoSettings


def test_capture_then_recall_reproduces_the_latent() -> None:
    rng = np.random.default_rng(0)
    s = ControlState(zdim=8)
    m = Modulator(8)
    s.set("z/2", 1.5)
    s.set("gain/0", 2.0)
    s.set("bpm", 100)
    z = rng.standard_normal((1, 8)).astype(np.float32)
    shown = m(z, s.snapshot(), 0.0)
    scene = capture("x", shown, s.snapshot().values())
    assert scene.controls == {"bpm": 100.0, "mix": 1.0}
    bank = SceneBank(8)
    bank.put(scene)
    s.set_vector("z", [0.0] * 8)
    s.set("gain/0", 1.0)
    bank.recall("x", s)
    other = rng.standard_normal((1, 8)).astype(np.float32)  # whatever the camera sees now
    np.testing.assert_allclose(m(other, s.snapshot(), 0.04), shown, atol=1e-6)
    assert bank.current == "x"


def test_recall_resets_unnamed_controls_but_keeps_tempo_smoothing_and_lfos() -> None:
    s = ControlState(zdim=4, n_pcs=2, n_lfos=1)
    s.set_many({"noise": 0.5, "pc/1": 2.0, "smooth": 0.4, "bpm": 140, "freeze": 1})
    s.set_lfo(0, LfoSettings(rate=1, depth=1, target="mix"))
    bank = SceneBank(4)
    bank.set_show_scenes([Scene("calm", None, {"pc/0": -1.0})])
    seen: list[str] = []
    s.add_listener(lambda t, v, o: seen.append(f"{t}={v}@{o}"))
    bank.recall("calm", s)
    snap = s.snapshot()
    assert snap.values() == {"pc/0": -1.0, "smooth": 0.4, "bpm": 140.0, "lfo/0/rate": 1.0, "lfo/0/depth": 1.0}
    assert snap.lfos[0].target == "mix"
    assert sorted(seen) == sorted(["noise=0.0@scene", "pc/1=0.0@scene", "freeze=0.0@scene", "pc/0=-1.0@scene"])
    with_anchor = Scene("far", np.ones(4, np.float32), {})
    assert recall_values(with_anchor, s)["mix"] == 1.0  # a latent without a mix means "show me that latent"


def test_unknown_scene_and_bad_controls() -> None:
    s = ControlState(zdim=4)
    bank = SceneBank(4)
    bank.set_show_scenes([Scene("a"), Scene("b", None, {"warp": 1.0})])
    with pytest.raises(SceneError, match="'zz': unknown; expected one of a, b"):
        bank.recall("zz", s)
    with pytest.raises(SceneError, match="scene 'b': control 'warp'"):
        bank.recall("b", s)
    with pytest.raises(SceneError, match="expected 4"):
        bank.set_show_scenes([Scene("c", np.zeros(3, np.float32))])


def test_live_saves_persist_to_the_sidecar(tmp_path: Path) -> None:
    store = tmp_path / "show.scenes.json"
    bank = SceneBank(4, store)
    done: list[Path | None] = []
    bank.save(Scene("dusk", np.arange(4, dtype=np.float32), {"mix": 1.0}, 1.5, source="live"), done.append)
    end = time.monotonic() + 5
    while not done and time.monotonic() < end:
        time.sleep(0.01)
    assert done == [store]
    assert json.loads(store.read_text())["scenes"][0]["name"] == "dusk"
    again = SceneBank(4, store)
    s = again.get("dusk")
    assert s.anchor is not None and s.anchor.tolist() == [0, 1, 2, 3] and s.fade == 1.5
    # live saves win over a show scene of the same name, and survive a reload of the show's scenes
    again.set_show_scenes([Scene("dusk", None, {"noise": 1.0})])
    assert again.get("dusk").source == "live"
    store.write_text("{not json")
    assert SceneBank(4, store).names() == []  # a corrupt sidecar is reported, the show starts without it


def test_anchor_from_frames_is_the_mean_latent(make_video: Callable[..., Path], tiny_model_file: Path) -> None:
    from livevae.backends import create
    from livevae.media.preprocess import Preprocessor
    from livevae.media.video import iter_frames

    video = make_video("film.mp4", n=20, fps=10)
    b = create(str(tiny_model_file), "torch")
    a = anchor_from_frames(video, b.encode, (64, 48), start=0.5, end=1.5)
    pre = Preprocessor((64, 48))
    frames = np.stack([pre(f) for f, _ in iter_frames(video, start=0.5, end=1.5)])
    assert len(frames) == 10
    np.testing.assert_allclose(a, b.encode(frames).mean(axis=0), atol=1e-5)
    with pytest.raises(SceneError, match=r"no frames between 5\.0 and 6\.0"):
        anchor_from_frames(video, b.encode, (64, 48), start=5.0, end=6.0)


def test_show_controller_scene_actions_and_frame_scenes(
    tmp_path: Path, tiny_model_file: Path, make_video: Callable[..., Path]
) -> None:
    from livevae.show.controller import ShowController
    from livevae.show.showfile import build_show

    make_video("film.mp4", n=10, fps=10)
    show = tmp_path / "s.toml"
    show.write_text(
        f'model = "{tiny_model_file}"\nhot_reload = false\n[osc]\nenabled = false\n'
        '[scenes.film]\nframes = { video = "film.mp4", start = 0.0, end = 0.5 }\nfade = 1.0\n'
        "[scenes.plain]\ncontrols = { noise = 0.5 }\n"
    )
    _, state, (ctrl,) = build_show(show)
    assert isinstance(ctrl, ShowController)
    assert ctrl.scenes.names() == ["film", "plain"]
    film = ctrl.scenes.get("film")
    assert film.anchor is not None and film.anchor.shape == (16,) and film.source == "frames"
    z = np.zeros((1, 16), np.float32)
    ctrl.modulate(z, 0.0)
    assert ctrl.handle_action("scene.recall", "film")
    assert state.snapshot().mix == 1.0
    # the fade glides: a second after the recall the latent is most of the way (1 - exp(-3) = 95 %)
    first = ctrl.modulate(z, 0.04)
    later = ctrl.modulate(z, 1.04)
    d0 = np.abs(first - film.anchor).max()
    d1 = np.abs(later - film.anchor).max()
    assert d1 < 0.1 * d0
    assert ctrl.handle_action("scene.save", "mine")
    assert ctrl.scenes.get("mine").anchor is not None and ctrl.scenes.current == "mine"
    assert not ctrl.handle_action("screenshot", None)
    assert "scene mine" in ctrl.hud_lines()
