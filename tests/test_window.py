"""The window under SDL's dummy driver: scaling with the aspect kept, keys, HUD, a live loop showing frames."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from livevae.loop import Watcher
from livevae.outputs.hud import HudInfo, hud_lines
from livevae.outputs.window import DisplayThread, Window, WindowConfig, WindowError, fit_rect

pygame = pytest.importorskip("pygame")


@pytest.fixture(autouse=True)
def dummy_video(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", os.environ.get("SDL_VIDEODRIVER", "dummy"))


def test_fit_rect_keeps_the_aspect() -> None:
    assert fit_rect(256, 144, 1920, 1080) == (0, 0, 1920, 1080)
    assert fit_rect(256, 144, 1024, 768) == (0, 96, 1024, 576)  # letterbox
    assert fit_rect(64, 48, 1280, 720) == (160, 0, 960, 720)  # pillarbox


def test_window_shows_the_frame_scaled_with_bars() -> None:
    w = Window(WindowConfig(size=(320, 240), hud=False)).open()
    try:
        frame = np.zeros((36, 64, 3), np.uint8)
        frame[..., 0] = 200  # red
        w.present(frame)
        shot = w.grab()
        assert shot.shape == (240, 320, 3)
        assert shot.any()  # pixels are not empty
        assert (shot[120, 160] == (200, 0, 0)).all()  # picture in the middle
        assert not shot[10, 160].any()  # black letterbox bar above (320x180 picture in 320x240)
        w.cfg.filter = "pixelated"
        w.present(frame, ["30.0 fps"])  # HUD on top: drawn only when show_hud
        assert (w.grab()[200, 300] == (200, 0, 0)).all()
    finally:
        w.close()


def test_hud_draws_text_over_the_picture() -> None:
    w = Window(WindowConfig(size=(320, 240), hud=True)).open()
    try:
        frame = np.zeros((240, 320, 3), np.uint8)
        w.present(frame, hud_lines(HudInfo(fps=29.9, target_fps=30, backend="torch-cpu")))
        assert w.grab()[8:40, 8:200].max() == 255  # white HUD text on black
        w.show_hud = False
        w.present(frame, ["x"])
        assert not w.grab().any()
    finally:
        w.close()


def test_keys_become_actions() -> None:
    w = Window(WindowConfig(size=(160, 120))).open()
    try:
        keys = (pygame.K_f, pygame.K_h, pygame.K_SPACE, pygame.K_r, pygame.K_s, pygame.K_l, pygame.K_ESCAPE, pygame.K_x)
        for key in keys:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
        pygame.event.post(pygame.event.Event(pygame.QUIT))
        got = [a for a, _ in w.poll()]
        assert got == ["fullscreen", "hud", "freeze", "record", "screenshot", "midi.learn", "quit", "quit"]
    finally:
        w.close()


def test_a_missing_display_falls_back_to_the_primary_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        w = Window(WindowConfig(display=1, size=(320, 180))).open()  # the projector is not plugged in
    try:
        assert w.display == 0 and w.size == (320, 180)
        assert "display 1: not connected (found 1: 0..0); showing on display 0 instead" in caplog.text
        w.present(np.zeros((48, 64, 3), np.uint8))
    finally:
        w.close()
    with pytest.raises(WindowError, match="filter 'blurry'"):
        WindowConfig(filter="blurry")


def test_installation_mode_moves_to_the_projector_when_it_appears(monkeypatch: pytest.MonkeyPatch) -> None:
    w = Window(WindowConfig(display=1, size=(320, 180), follow_display=True)).open()
    try:
        assert w.display == 0 and not w.check_display()
        real = pygame.display.get_num_displays
        # the dummy driver has one display: a second one "appears" for the check, then opens as display 0's twin
        monkeypatch.setattr(pygame.display, "get_num_displays", lambda: 2)
        w._next_display_check = 0.0
        monkeypatch.setattr(pygame.display, "get_desktop_sizes", lambda: [(640, 480), (640, 480)])
        opened: list[int] = []
        monkeypatch.setattr(w, "_reopen", lambda: opened.append(w.display))
        assert w.check_display() and w.display == 1 and opened == [1]
        monkeypatch.setattr(pygame.display, "get_num_displays", real)
    finally:
        w.close()


def test_hud_lines_name_what_a_performer_needs() -> None:
    info = HudInfo(
        fps=29.5,
        target_fps=30,
        stage_ms={"preprocess": 1.0, "encode": 8.2, "decode": 9.1},
        backend="onnxruntime-cpu",
        source="0: film.mp4",
        source_status="failed",
        dropped=3,
        latency_ms=41,
        recording=75.0,
        osc_port=9000,
    )
    text = "\n".join(hud_lines(info))
    for part in ("29.5/30 fps", "onnxruntime-cpu", "OSC :9000", "enc  8.2", "[FAILED]", "dropped 3", "REC 01:15"):
        assert part in text


def test_display_thread_presents_without_blocking_and_reads_keys() -> None:
    d = DisplayThread(WindowConfig(size=(320, 180), hud=False)).open()
    try:
        frame = np.zeros((36, 64, 3), np.uint8)
        frame[..., 1] = 180
        d.present(frame, None, captured=time.monotonic())
        deadline = time.monotonic() + 5
        while d.shown == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (d.grab()[90, 160] == (0, 180, 0)).all()
        assert len(d.latencies) == 1 and d.latencies[0] >= 0
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_q, mod=0, unicode="", scancode=0))
        got: list[tuple[str, object]] = []
        while not got and time.monotonic() < deadline:
            got = d.poll()
            time.sleep(0.01)
        assert got == [("quit", None)]
    finally:
        d.close()


@pytest.mark.parametrize("threaded", [True, False])
def test_live_loop_in_a_window_with_keys(tmp_path: Path, tiny_model_file: Path, threaded: bool) -> None:
    from livevae.backends import create
    from livevae.loop import LiveConfig, LiveLoop

    shots = tmp_path / "shots"
    cfg = LiveConfig(
        model=str(tiny_model_file),
        sources=["testcard:160x120"],
        source_fps=60,
        frames=12,
        screenshot_dir=str(shots),
        record_dir=str(tmp_path / "rec"),
        window=WindowConfig(size=(320, 180), threaded=threaded),
    )
    loop = LiveLoop(cfg, create(str(tiny_model_file), "torch"))

    class Keys(Watcher):
        grabbed: np.ndarray | None = None

        def on_frame(self, info: object) -> None:
            i = loop.index
            key = {1: pygame.K_r, 3: pygame.K_s, 8: pygame.K_r, 9: pygame.K_h}.get(i)
            if key is not None:
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
            if i == 5 and loop.window is not None:
                Keys.grabbed = loop.window.grab()

    loop.controllers.append(Keys())
    stats = loop.run()
    assert stats.frames == 12 and stats.mode == "live"
    assert Keys.grabbed is not None and Keys.grabbed.shape == (180, 320, 3) and Keys.grabbed.std() > 1
    assert len(stats.screenshots) == 1 and Path(stats.screenshots[0]).is_file()
    assert len(stats.outputs) == 1 and Path(stats.outputs[0]).parent == tmp_path / "rec"


def test_monitor_window_gets_the_hud_and_the_output_stays_clean() -> None:
    w = Window(WindowConfig(size=(320, 180), vsync=False, monitor=True, monitor_size=(320, 180))).open()
    try:
        assert w.monitor is not None and not w.monitor.failed
        frame = np.full((144, 256, 3), 40, np.uint8)
        w.present(frame, ["29.5/30 fps", "REC 00:03"])
        out = w.grab()
        mon = pygame.surfarray.array3d(w.monitor.last).transpose(1, 0, 2)
        assert out.shape == mon.shape == (180, 320, 3)
        assert out.max() <= 41  # the audience's picture: no HUD text anywhere
        assert mon[8:40, 8:120].max() > 200  # the performer's copy: white HUD text at the top left
        w.toggle_fullscreen()  # reopening the output reopens the monitor
        assert w.monitor is not None and not w.monitor.failed
    finally:
        w.close()
