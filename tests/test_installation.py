"""Installation mode: the [installation] section, the autopilot (pure), hand-back/resume, schedule, restarts."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livevae.control.state import ControlState
from livevae.installation.autopilot import autopilot_wanted, drift, lfo_offset, scene_at, step_weight
from livevae.installation.controller import InstallationController, from_show
from livevae.installation.section import AutopilotLfo, InstallationError, apply_display, parse_section
from livevae.installation.watchdog import GuardedBackend
from livevae.loop import Watcher
from livevae.model import preset
from tests.helpers.handle import RecordingHandle


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The conftest's tiny model, built once for this module (its tests only read it)."""

    from livevae.model import random_model, save_model

    m = random_model("tiny", seed=0)
    return save_model(m, tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


# --- the section ------------------------------------------------------------------------------------------


def test_defaults_are_valid_and_unattended() -> None:
    sec = parse_section({})
    assert sec.fullscreen and not sec.cursor and not sec.hud
    assert sec.autopilot.enabled and sec.watchdog.enabled
    assert sec.health.heartbeat == "state:heartbeat.json"  # runtime state is never written among the show files


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"autopilot": {"idle_timeout": -1}}, "installation.autopilot.idle_timeout: Input should be greater than 0"),
        ({"autopilot": {"idel_timeout": 5}}, "installation.autopilot.idel_timeout: Extra inputs are not permitted"),
        ({"schedule": {"closed_fps": "fast"}}, "installation.schedule.closed_fps: Input should be a valid number"),
        ({"schedule": {"closed": "grey"}}, "installation.schedule.closed: Input should be 'black' or 'still'"),
        ({"schedule": {"open": ["mon-fri 10-18"]}}, "installation.schedule.open[0]: 'mon-fri 10-18' is not"),
        ({"schedule": {"timezone": "Europe/Nowhere"}}, "installation.schedule.timezone: unknown time zone"),
        ({"schedule": {"nightly_restart": "25:00"}}, "installation.schedule.nightly_restart"),
        ({"schedule": {"closed": "still"}}, "installation.schedule.still: missing"),
        ({"autopilot": {"lfos": [{"target": "mix"}]}}, "installation.autopilot.lfos[0].target: target 'mix'"),
        ({"autopilot": {"scenes": ["a", " "]}}, "installation.autopilot.scenes[1]: empty name"),
        ({"display": 1.5}, "installation.display"),
        ({"watchdog": {"hang_exit": float("nan")}}, "installation.watchdog.hang_exit"),
        ({"health": []}, "installation.health: Input should be a valid dictionary"),
    ],
)
def test_bad_section_names_the_key(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(InstallationError) as e:
        parse_section(raw)
    assert needle in str(e.value), str(e.value)


def test_not_a_table() -> None:
    with pytest.raises(InstallationError, match="installation: a list; expected a table"):
        parse_section([1, 2])  # type: ignore[arg-type]


def test_apply_display() -> None:
    from livevae.loop import LiveConfig

    cfg = apply_display(LiveConfig(loop=False), parse_section({"display": 1, "cursor": False}))
    assert cfg.window.fullscreen and cfg.window.display == 1 and not cfg.window.cursor and not cfg.window.hud
    assert cfg.loop


# --- the autopilot, pure ----------------------------------------------------------------------------------


def test_drift_is_seeded_bounded_smooth_and_moving() -> None:
    a = drift(12.3, 200, 0.8, 20.0, seed=1)
    assert a.shape == (200,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, drift(12.3, 200, 0.8, 20.0, seed=1))  # pure: renders repeat
    assert not np.allclose(a, drift(12.3, 200, 0.8, 20.0, seed=2))
    ts = np.arange(0, 600, 0.04)  # 10 minutes at 25 fps
    path = np.stack([drift(t, 8, 0.8, 20.0) for t in ts[::25]])  # 1 Hz samples
    assert np.abs(path).max() <= 0.8 + 1e-6
    assert path.std(axis=0).min() > 0.05  # every dimension wanders
    # frame to frame it moves slowly: no jumps
    steps = np.abs(np.diff(np.stack([drift(t, 8, 0.8, 20.0) for t in ts[:500]]), axis=0))
    assert steps.max() < 0.01
    assert not drift(1.0, 4, 0.0, 20.0).any()


def test_weight_fades_in_and_releases() -> None:
    w = 0.0
    for _ in range(10):
        w = step_weight(w, True, 0.5, fade_in=10.0, release=0.5)
    assert w == pytest.approx(0.5)
    w = step_weight(w, False, 0.25, fade_in=10.0, release=0.5)
    assert w == pytest.approx(0.0)
    assert step_weight(0.3, True, 0.1, fade_in=0.0, release=0.5) == 1.0
    assert step_weight(0.3, False, 0.1, fade_in=1.0, release=0.0) == 0.0


def test_autopilot_wanted() -> None:
    assert autopilot_wanted(100.0, 0.0, 60)  # nobody played yet
    assert not autopilot_wanted(100.0, 90.0, 60)
    assert autopilot_wanted(150.0, 90.0, 60)


def test_scene_order() -> None:
    names = ["a", "b", "c", "d"]
    assert [scene_at(k, names) for k in range(6)] == ["a", "b", "c", "d", "a", "b"]
    seq = [scene_at(k, names, "shuffle", seed=3) for k in range(400)]
    assert seq == [scene_at(k, names, "shuffle", seed=3) for k in range(400)]
    for r in range(100):  # every round visits every scene once
        assert sorted(seq[4 * r : 4 * r + 4]) == names
    assert all(x != y for x, y in itertools.pairwise(seq))  # never the same twice in a row
    with pytest.raises(InstallationError, match="no scenes"):
        scene_at(0, [])


def test_autopilot_lfos() -> None:
    lfos = [AutopilotLfo(target="z/3", rate=0.25, depth=2.0), AutopilotLfo(target="z/99")]
    off = lfo_offset(lfos, 1.0, 16)  # a quarter cycle: the sine's peak; z/99 is past zdim and ignored
    assert off[3] == pytest.approx(2.0) and np.count_nonzero(off) == 1


# --- the controller, with a stand-in loop ------------------------------------------------------------------


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fake_loop() -> RecordingHandle:
    """The handle a live loop gives the controller: a 64x48 model playing clip.mp4."""
    return RecordingHandle(
        backend_spec="auto", backend="fake", size=(64, 48), sources=("clip.mp4",), source_name="clip.mp4",
        source_status="running",
    )  # fmt: skip


def info(i: int) -> Any:
    from livevae.loop import FrameInfo

    return FrameInfo(index=i, t=i / 25, fps=25.0, source="clip.mp4", dropped=0, latency_ms=12.0)


# a Tuesday noon in Berlin
NOON = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.timezone.utc).timestamp() - 3600


def make(tmp_path: Path, raw: dict[str, Any], scenes: tuple[str, ...] = ()) -> tuple[Any, ControlState, Clock, Clock]:
    raw = {"health": {"heartbeat": None}, "watchdog": {"enabled": False}, **raw}
    state = ControlState(16)
    mono, wall = Clock(), Clock(NOON)
    ctl = InstallationController(parse_section(raw), state, tmp_path, scenes, clock=mono, wallclock=wall)
    return ctl, state, mono, wall


def test_hand_back_at_first_input_and_resume_after_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctl, state, mono, _ = make(
        tmp_path, {"autopilot": {"idle_timeout": 30, "fade_in": 2, "release": 0.2, "scenes": ["dusk", "rain"]}}
    )
    import livevae.control.state

    monkeypatch.setattr(livevae.control.state.time, "monotonic", mono)  # ControlState stamps input with this clock
    from livevae.control.state import LfoSettings

    state.set("smooth", 0.3, origin="show")  # the show's starting values and LFOs
    state.set_lfo(0, LfoSettings(target="z/1", depth=1.0), origin="show")
    ctl.start(fake_loop())
    z = np.zeros((1, 16), np.float32)
    t = 0.0

    def frame() -> np.ndarray:
        nonlocal t
        out = ctl.modulate(z, t)
        ctl.on_frame(info(int(t * 25)))
        t += 0.04
        mono.t += 0.04
        return out

    moved = frame()
    assert np.abs(moved).max() > 0  # nobody played yet: the autopilot drives from the start
    assert ctl.driving and ctl.weight == 1.0
    assert state.drain_actions() == [("scene.recall", "dusk")]

    # a performer touches a fader over OSC: the autopilot lets go within `release` seconds
    state.set("mix", 0.5, origin="osc")
    state.set("smooth", 0.9, origin="osc")
    state.set_text("lfo/0/target", "", origin="osc")
    frame()
    assert not ctl.driving and ctl.handovers == 1
    for _ in range(5):
        frame()
    assert ctl.weight == 0.0
    np.testing.assert_array_equal(frame(), z)  # the performer's z, untouched
    assert state.get("mix") == 0.5

    # 30 s idle: it takes back, resets the performer's controls and recalls the next scene; fades in over 2 s
    mono.t += 30
    frame()
    assert ctl.driving and ctl.resumes == 1
    assert state.get("mix") == 0.0  # reset_on_resume: back to the show's starting values and LFOs
    assert state.get("smooth") == pytest.approx(0.3) and state.snapshot().lfos[0].target == "z/1"
    assert state.drain_actions()[-1] == ("scene.recall", "rain")
    assert 0 < ctl.weight < 0.1
    for _ in range(60):
        frame()
    assert ctl.weight == 1.0
    # MIDI counts as a performer too; the autopilot's own and the scenes' writes do not
    state.set("noise", 0.1, origin="autopilot")
    state.set("noise", 0.2, origin="scene")
    frame()
    assert ctl.driving
    state.set("z/3", 1.0, origin="midi:cc")
    frame()
    assert not ctl.driving and ctl.handovers == 2


def test_scene_cycling_period(tmp_path: Path) -> None:
    ctl, state, mono, _ = make(tmp_path, {"autopilot": {"scene_seconds": 10}}, scenes=("a", "b", "c"))
    ctl.start(fake_loop())
    posted = []
    for i in range(25 * 35):  # 35 s at 25 fps
        ctl.on_frame(info(i))
        posted += state.drain_actions()
        mono.t += 0.04
    assert posted == [("scene.recall", s) for s in ("a", "b", "c", "a")]


def test_schedule_closes_and_reopens(tmp_path: Path) -> None:
    ctl, _, mono, wall = make(
        tmp_path, {"schedule": {"open": ["mon-fri 10:00-18:00"], "timezone": "Europe/Berlin", "closed_fps": 2}}
    )
    loop = fake_loop()
    ctl.start(loop)
    assert ctl.is_open and loop.held is None
    wall.t = NOON + 6.5 * 3600  # 18:30 Berlin
    mono.t += 2
    ctl.on_frame(info(1))
    assert not ctl.is_open and loop.held is not None
    img, fps = loop.held
    assert fps == 2 and img.shape == (48, 64, 3) and not img.any()  # black at the model's size
    assert ctl.health_fields()["state"] == "closed"
    wall.t = NOON + 22 * 3600  # 10:00 next day
    mono.t += 2
    ctl.on_frame(info(2))
    assert ctl.is_open and loop.held is None


def test_closed_still_image(tmp_path: Path) -> None:
    import cv2

    still = np.full((30, 40, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "closed.png"), still)
    ctl, *_ = make(tmp_path, {"schedule": {"open": ["mon 00:00-00:01"], "closed": "still", "still": "closed.png"}})
    loop = fake_loop()
    ctl.start(loop)
    assert loop.held is not None and loop.held[0].shape == (30, 40, 3) and loop.held[0].min() == 200


def test_nightly_restart_requests_quit(tmp_path: Path) -> None:
    ctl, _, mono, wall = make(tmp_path, {"schedule": {"nightly_restart": "13:30", "timezone": "Europe/Berlin"}})
    loop = fake_loop()
    ctl.start(loop)
    ctl.on_frame(info(0))  # noon Berlin: the restart is 1.5 h away
    mono.t += 3600
    wall.t += 3600
    ctl.on_frame(info(1))
    assert not loop.quit
    mono.t += 1800
    wall.t += 1800
    ctl.on_frame(info(2))
    assert loop.quit and "nightly restart at 13:30" in ctl.restart_requested


def test_heartbeat_written_with_show_fields(tmp_path: Path) -> None:
    state = ControlState(16)
    ctl = InstallationController(
        parse_section({"health": {"heartbeat": "hb/heartbeat.json", "heartbeat_interval": 0.5}}), state, tmp_path
    )
    loop = fake_loop()
    ctl.start(loop)
    try:
        ctl.on_frame(info(41))
        hb = tmp_path / "hb" / "heartbeat.json"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and '"frames": 42' not in (hb.read_text() if hb.exists() else ""):
            time.sleep(0.01)
    finally:
        ctl.stop()
    data = json.loads((tmp_path / "hb" / "heartbeat.json").read_text())
    assert data["state"] == "stopped"  # the last word
    assert data["frames"] == 42 and data["fps"] == 25.0 and data["source"] == "clip.mp4"
    assert data["mode"] == "autopilot" and "rss_mb" in data and "uptime_s" in data
    assert "watchdog" in data and set(data["watchdog"]) == {"source", "loop"}


def test_watchdog_wraps_the_backend(tmp_path: Path, tiny_model_file: Path) -> None:
    from livevae.backends import create

    loop = fake_loop()
    loop.update(model=str(tiny_model_file), backend_spec="torch")
    loop.backend = create(str(tiny_model_file), "torch")
    ctl = InstallationController(parse_section({"health": {"heartbeat": None}}), ControlState(16), tmp_path)
    ctl.start(loop)
    try:
        assert isinstance(loop.backend, GuardedBackend)
        assert ctl.watchdog is not None and set(ctl.watchdog.status()) == {"backend", "source", "loop"}
    finally:
        ctl.stop()


def test_from_show_resolves_paths(tmp_path: Path) -> None:
    ctl = from_show({"health": {"log_file": "logs/show.log"}}, ControlState(16), tmp_path / "gallery.toml")
    assert ctl._path("logs/show.log") == tmp_path / "logs" / "show.log"
    (tmp_path / "adir").mkdir()
    with pytest.raises(InstallationError, match="a folder; expected a file path"):
        from_show({"health": {"log_file": "adir"}}, ControlState(16), tmp_path / "gallery.toml")


def test_closed_hours_hold_a_black_frame_without_the_model(tmp_path: Path, tiny_model_file: Path) -> None:
    """A real loop: while closed, the source is stopped, the backend is never called and frames come at
    closed_fps; at opening time the source restarts and the model runs again."""
    import threading

    from livevae.backends import create
    from livevae.loop import LiveConfig, LiveLoop

    wall = Clock(NOON + 6.5 * 3600)  # 18:30 Berlin on a Tuesday: closed
    sec = parse_section({"schedule": {"open": ["mon-fri 10:00-18:00"], "timezone": "Europe/Berlin", "closed_fps": 10},
                         "health": {"heartbeat": None}, "autopilot": {"enabled": False}})  # fmt: skip
    state = ControlState(16)
    ctl = InstallationController(sec, state, tmp_path, wallclock=wall)
    backend = create(str(tiny_model_file), "torch")
    calls = [0]
    real_decode = backend.decode

    def counting(z: np.ndarray) -> np.ndarray:
        calls[0] += 1
        return real_decode(z)

    backend.decode = counting  # type: ignore[method-assign]
    seen: list[tuple[float, bool]] = []

    class Watch(Watcher):
        def on_frame(self, info: Any) -> None:
            seen.append((float(info.output.mean()), loop.hold is not None))

    cfg = LiveConfig(model=str(tiny_model_file), backend="torch", sources=["testcard"], headless=True, realtime=True)
    loop = LiveLoop(cfg, backend, state, [ctl, Watch()])
    th = threading.Thread(target=loop.run, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 30
        while len(seen) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(seen) >= 8 and all(held for _, held in seen) and all(m == 0.0 for m, _ in seen)
        assert calls[0] <= 1  # at most the frame in flight when the doors closed
        assert loop.input is not None and loop.input.status == "stopped"
        wall.t = NOON + 22 * 3600  # 10:00 next morning
        while calls[0] < 3 and time.monotonic() < deadline + 30:
            time.sleep(0.05)
        assert calls[0] >= 3 and not seen[-1][1] and seen[-1][0] > 0  # the model's pictures again
        assert loop.input.status == "running"
    finally:
        loop.request_quit()
        th.join(30)
    assert not th.is_alive()


def test_restart_mode_exec_replaces_the_process(tmp_path: Path) -> None:
    """restart_mode = "exec": after the show has stopped, the process re-executes itself with the same argv."""
    import subprocess
    import sys

    script = tmp_path / "show.py"
    script.write_text(
        "import os, sys\n"
        "from pathlib import Path\n"
        "from livevae.installation.controller import InstallationController, parse_section\n"
        "n = int(os.environ.get('LIVEVAE_TEST_RUN', '0')) + 1\n"
        "os.environ['LIVEVAE_TEST_RUN'] = str(n)\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write(f'run {n} pid {os.getpid()} argv {sys.argv[1:]}\\n')\n"
        "if n < 2:\n"
        "    sec = parse_section({'health': {'heartbeat': None}, 'watchdog': {'enabled': False}})\n"
        "    c = InstallationController(sec, None, Path('.'))\n"
        "    c.request_restart('nightly restart (test)')\n"
        "    c.stop()\n"
    )
    out = tmp_path / "runs.txt"
    r = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert [ln.split()[1] for ln in lines] == ["1", "2"]
    assert lines[0].split("argv")[1] == lines[1].split("argv")[1]  # the same arguments
    assert lines[0].split()[3] == lines[1].split()[3]  # exec: the same pid, a fresh interpreter


def test_gallery_show_builds(tmp_path: Path) -> None:
    """shows/gallery_loop.toml, pointed at a tiny model with two principal directions, builds into an
    installation: fullscreen, no cursor, no HUD, the installation controller among the show's controllers."""
    import torch

    from livevae.model import VAE, save_model
    from livevae.show.showfile import build_show

    m = VAE(preset("tiny")).eval()
    m.set_pca(torch.zeros(16), torch.eye(16)[:2], torch.ones(2))
    model = save_model(m, tmp_path / "tiny_pca.safetensors")
    text = (Path(__file__).resolve().parents[1] / "shows" / "gallery_loop.toml").read_text()
    text = text.replace('model = "livevae:assets/demo.safetensors"', f'model = "{model}"')
    show = tmp_path / "gallery_loop.toml"
    show.write_text(text)
    cfg, _state, controllers = build_show(show, osc_port=0)
    try:
        inst = [c for c in controllers if isinstance(c, InstallationController)]
        assert len(inst) == 1
        assert cfg.window.fullscreen and not cfg.window.cursor and not cfg.window.hud and cfg.loop
        assert inst[0].scenes == ["dawn", "dusk", "storm"] and inst[0].restart_at == dt.time(4, 0)
        assert str(inst[0].schedule.tz) == "Europe/Berlin"
    finally:
        for c in controllers:
            c.stop()


# --- scene changes on the beat ---------------------------------------------------------------------------------
def synced(tmp_path: Path, autopilot: dict[str, Any], tempo: Any, scenes: tuple[str, ...] = ("a", "b", "c")) -> Any:
    ctl, state, mono, _ = make(tmp_path, {"autopilot": autopilot}, scenes=scenes)
    loop = fake_loop()
    if tempo is not None:
        loop.offered["tempo"] = tempo
    ctl.start(loop)
    return ctl, state, mono


def play(ctl: Any, state: ControlState, mono: Clock, seconds: float, fps: float = 25.0) -> list[float]:
    """Frames at `fps` on the fake clock from 0 s; the time each scene recall lands (the frame after its post)."""
    from livevae.loop import FrameInfo

    base, landed = mono.t, []
    for i in range(int(seconds * fps)):
        ctl.on_frame(FrameInfo(index=i, t=i / fps, fps=fps, source="clip.mp4", dropped=0, latency_ms=0.0))
        if [a for a in state.drain_actions() if a[0] == "scene.recall"]:
            landed.append(mono.t - base + 1 / fps)  # applied at the start of the next frame
        mono.t += 1 / fps
    return landed


def test_synced_scenes_land_on_the_bar_lines_of_tap_tempo(tmp_path: Path) -> None:
    from livevae.controllers.tempo import TempoController

    tempo = TempoController(ControlState(16))  # lead = "tap"
    ctl, state, mono = synced(tmp_path, {"sync": "bar", "scene_seconds": 5}, tempo)
    for k in range(4):  # four taps at 120 bpm just before the show: the first is the downbeat, a bar is 2 s
        tempo.tap(mono.t - 1.7 + 0.5 * k)
    landed = play(ctl, state, mono, 14.0)
    # bar lines at 0.3 + 2n; due at once, then 5 s after each change, each waits for the next line: 0.3, 6.3, 12.3
    assert landed == pytest.approx([0.3, 6.3, 12.3], abs=0.04 + 1e-9)  # within the one frame it lands on


def test_scene_bars_change_every_n_bars_on_n_bar_lines_and_sync_beat_on_beats(tmp_path: Path) -> None:
    from livevae.controllers.tempo import TempoController

    tempo = TempoController(ControlState(16))
    ctl, state, mono = synced(tmp_path, {"sync": "bar", "scene_bars": 2}, tempo)
    for k in range(4):
        tempo.tap(mono.t - 3.0 + 0.5 * k)  # beat 0 at -3 s; a 2-bar phrase is 4 s: lines at 1, 5, 9, 13
    assert play(ctl, state, mono, 14.0) == pytest.approx([1.0, 5.0, 9.0, 13.0], abs=0.04 + 1e-9)

    tempo = TempoController(ControlState(16))
    ctl, state, mono = synced(tmp_path, {"sync": "beat", "scene_seconds": 3}, tempo)
    for k in range(4):
        tempo.tap(mono.t - 1.5 + 0.4 * k)  # 150 bpm: beats at 0.1 + 0.4 n
    # due at once, then 3 s after each change; each waits for the next beat: 0.1, 3.3 (not 3.1), 6.5
    assert play(ctl, state, mono, 7.0) == pytest.approx([0.1, 3.3, 6.5], abs=0.04 + 1e-9)


def test_without_a_beat_the_seconds_rule_runs_and_says_why_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from livevae.controllers.tempo import TempoController, TempoSection

    tempo = TempoController(ControlState(16), TempoSection(lead="midi", midi_port="tcp:127.0.0.1:9"))  # no clock
    ctl, state, mono = synced(tmp_path, {"sync": "bar", "scene_seconds": 2}, tempo)
    with caplog.at_level("WARNING", logger="livevae.installation.controller"):
        landed = play(ctl, state, mono, 5.0)
    assert landed == pytest.approx([0.04, 2.04, 4.04], abs=1e-6)  # a clock that is not there never holds a scene
    said = [r.getMessage() for r in caplog.records if "sync" in r.getMessage()]
    assert said == ["autopilot: sync = 'bar' but no beat from the tempo lead yet; changing scenes on scene_seconds"]


def test_sync_keys_are_checked_with_one_line_errors(tmp_path: Path, tiny_model_file: Path) -> None:
    from livevae.show.schema import ShowError
    from livevae.show.showfile import build_show

    with pytest.raises(InstallationError, match=r'autopilot.scene_bars: counts bars; expected sync = "bar" beside'):
        parse_section({"autopilot": {"scene_bars": 8}})
    with pytest.raises(InstallationError, match=r"autopilot.sync: Input should be 'off', 'beat' or 'bar'"):
        parse_section({"autopilot": {"sync": "bars"}})
    show = tmp_path / "show.toml"
    show.write_text(f'model = "{tiny_model_file}"\n[installation.autopilot]\nsync = "bar"\n')
    with pytest.raises(ShowError, match=r"show.toml: installation.autopilot.sync = 'bar' follows the tempo lead; "):
        build_show(show)


def test_a_midi_clock_through_a_mido_socket_port_lands_scene_changes_on_its_bars(tmp_path: Path) -> None:
    """Real time: a 128 bpm clock (with Start) over a mido socket, the tempo controller reading it, frames at
    30 fps; each scene change lands on the frame nearest a bar line (a bar is 96 ticks, 1.875 s)."""
    import threading

    from mido import Message

    from livevae.controllers.tempo import TempoController, TempoSection
    from livevae.loop import FrameInfo
    from tests.helpers.midi import connect_when_listening, free_port

    port = free_port()
    tstate = ControlState(16)
    tempo = TempoController(tstate, TempoSection(lead="midi", midi_port=f"listen:127.0.0.1:{port}"))
    tempo.start(None)
    raw = {"health": {"heartbeat": None}, "watchdog": {"enabled": False},
           "autopilot": {"sync": "bar", "scene_bars": 1}}  # fmt: skip
    state = ControlState(16)
    ctl = InstallationController(parse_section(raw), state, tmp_path, ("a", "b"))
    loop = fake_loop()
    loop.offered["tempo"] = tempo
    ctl.start(loop)
    period = 60.0 / (128 * 24)  # 19.53 ms a tick
    bars: list[float] = []  # when each bar's first tick went out (tick 0, 96, 192 ...)
    stop = threading.Event()

    def clock() -> None:
        out = connect_when_listening(port)
        out.send(Message("start"))
        t0 = time.monotonic() + 0.1
        k = 0
        while not stop.is_set():
            while time.monotonic() < t0 + k * period:
                time.sleep(0.0005)
            out.send(Message("clock"))
            if k % 96 == 0:
                bars.append(time.monotonic())
            k += 1
        out.close()

    th = threading.Thread(target=clock, daemon=True)
    th.start()
    fps, landed = 30.0, []
    start = time.monotonic()
    try:
        for i in range(int(4.3 * fps)):  # 4.3 s: the bar lines at ~1.9 and ~3.8 s after the first tick
            while time.monotonic() < start + i / fps:
                time.sleep(0.001)
            if landed and landed[-1] < 0:  # the recall posted last frame is applied now, at this frame's start
                landed[-1] = time.monotonic()
            ctl.on_frame(FrameInfo(index=i, t=i / fps, fps=fps, source="clip.mp4", dropped=0, latency_ms=0.0))
            if [a for a in state.drain_actions() if a[0] == "scene.recall"]:
                landed.append(-1.0)
    finally:
        stop.set()
        th.join(2)
        tempo.stop()
    assert tempo.ticks > 96 * 2 and len(bars) >= 3, (tempo.ticks, bars)
    landed = [t for t in landed if t > 0]
    # the first scene goes on at once, before the clock is heard (nothing waits on a clock not there yet); then
    # one change a bar, on bar 1 and bar 2
    assert len(landed) == 3 and landed[0] < bars[0], (landed, bars)
    for n, t in enumerate(landed[1:], start=1):
        off = t - bars[n]
        assert -1 / fps - 0.005 <= off <= 1 / fps + 0.015, f"change {n} {off * 1000:+.0f} ms from its bar line"
