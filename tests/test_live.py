"""The live loop, headless on video files: frame counts, loops, repeatable renders, fallback, controllers, actions."""

from __future__ import annotations

import argparse
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from livevae.backends import create
from livevae.cli.live import add_arguments, apply_flags, run
from livevae.handle import LoopHandle
from livevae.loop import FrameInfo, LiveConfig, LiveError, LiveLoop
from livevae.media.source import Source, SourceError
from tests.helpers.media import pattern_frames, write_video
from tests.helpers.sources import FlakySource


def count_frames(path: Path) -> tuple[int, Fraction]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return sum(1 for _ in c.decode(v)), Fraction(v.average_rate)


class Spy:
    """A controller that records what the loop gives it; optionally replaces z."""

    def __init__(self, z: np.ndarray | None = None, post: dict[int, tuple[str, object]] | None = None) -> None:
        self.z = z
        self.post = post or {}
        self.infos: list[FrameInfo] = []
        self.outputs: list[np.ndarray] = []
        self.actions: list[tuple[str, object]] = []
        self.ts: list[float] = []
        self.started = self.stopped = False
        self.loop: LoopHandle | None = None

    def start(self, loop: LoopHandle | None) -> None:
        self.started, self.loop = True, loop

    def modulate(self, z: np.ndarray, t: float) -> np.ndarray:
        self.ts.append(t)
        return z if self.z is None else np.broadcast_to(self.z, z.shape).copy()

    def handle_action(self, action: str, arg: object) -> bool:
        self.actions.append((action, arg))
        return action == "scene.recall"

    def on_frame(self, info: FrameInfo) -> None:
        self.infos.append(info)
        assert info.output is not None
        self.outputs.append(info.output.copy())
        if info.index in self.post and self.loop is not None:
            self.loop.post(*self.post[info.index])

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def backend(tiny_model_file: Path):  # type: ignore[no-untyped-def]
    return create(str(tiny_model_file), "torch")


def headless(model: Path, sources: list[str], **kw: object) -> LiveConfig:
    return LiveConfig(model=str(model), sources=sources, headless=True, **kw)  # type: ignore[arg-type]


def test_n_frames_in_n_frames_out_at_the_source_rate(tmp_path: Path, tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    clip = write_video(tmp_path / "in.mp4", pattern_frames(12, 96, 72), fps=Fraction(25, 2))
    out = tmp_path / "out.mp4"
    stats = LiveLoop(headless(tiny_model_file, [str(clip)], out=str(out), frames=12), backend).run()
    assert stats.frames == 12 and stats.outputs == [str(out)]
    n, rate = count_frames(out)
    assert n == 12
    assert rate == Fraction(25, 2)  # the source's rate, not a fixed 30
    assert stats.dropped == 0 and stats.fallback_frames == 0
    assert set(stats.stages) == {"input", "preprocess", "encode", "modulate", "decode", "output"}
    assert stats.latency_ms["p99"] >= stats.latency_ms["p50"] > 0


def test_a_short_clip_loops_past_its_end_and_renders_repeat(tmp_path: Path, tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    clip = write_video(tmp_path / "in.mp4", pattern_frames(4, 96, 72), fps=10)
    runs = []
    for _ in range(2):
        spy = Spy()
        stats = LiveLoop(headless(tiny_model_file, [str(clip)], frames=10), backend, controllers=[spy]).run()
        assert stats.frames == 10 and stats.fallback_frames == 0
        runs.append(spy)
    a, b = runs
    assert [i.index for i in a.infos] == list(range(10))
    assert a.ts == pytest.approx([i / 10 for i in range(10)])  # fixed-step show clock
    for i in range(6):  # period 4: the loop continues through the clip again, frame for frame
        assert np.array_equal(a.outputs[i], a.outputs[i + 4])
    assert not np.array_equal(a.outputs[0], a.outputs[1])
    for x, y in zip(a.outputs, b.outputs, strict=True):  # an offline render repeats exactly
        assert np.array_equal(x, y)


def test_seconds_in_an_offline_render_is_show_time(tmp_path: Path, tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    clip = write_video(tmp_path / "in.mp4", pattern_frames(3, 64, 48), fps=20)
    stats = LiveLoop(headless(tiny_model_file, [str(clip)], seconds=0.5), backend).run()
    assert stats.frames == 10


def test_a_source_that_fails_mid_run_falls_back_then_recovers(tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    black_out = backend.decode(backend.encode(np.zeros((1, 48, 64, 3), np.uint8)))[0]
    flaky = FlakySource(fail_reads={4}, fail_opens={2}, fps=20)  # read 4 raises; the first reopen fails too
    spy = Spy()
    cfg = headless(tiny_model_file, ["flaky"], frames=30, fallback="black")
    stats = LiveLoop(cfg, backend, controllers=[spy], make_source=lambda spec: flaky).run()
    fell = [i.fallback for i in spy.infos]
    assert fell[:3] == [False] * 3 and fell[3] is True  # the failing read shows the fallback at once
    assert fell[-1] is False  # ... and the source came back by itself
    first_back = fell.index(False, 3)
    assert all(fell[3:first_back])
    # Backoff in show time (retry 0.25 s after the failure at 0.15 s, then 0.5 s later, at 20 fps): frame 18.
    assert first_back == 18
    assert stats.fallback_frames == first_back - 3 and stats.reconnects == 1 and stats.source_failures == 1
    assert np.array_equal(spy.outputs[10], black_out)  # 'black' fallback through the model


def test_realtime_capture_falls_back_then_recovers(tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    flaky = FlakySource(set(), fps=50)
    broken = {"now": False}

    def read() -> np.ndarray:  # fails (and reopening fails) while the test says the cable is out
        if broken["now"]:
            raise SourceError("flaky: unplugged")
        return np.full((24, 32, 3), 99, np.uint8)

    def reopen() -> None:
        if broken["now"]:
            raise SourceError("flaky: still unplugged")

    flaky.read, flaky.open = read, reopen  # type: ignore[method-assign]

    class Unplug(Spy):
        def on_frame(self, info: FrameInfo) -> None:
            super().on_frame(info)
            fell = [i.fallback for i in self.infos]
            if info.index == 3:
                broken["now"] = True
            if sum(fell) >= 3:
                broken["now"] = False  # plugged back in: the capture thread must find it by itself
            if True in fell and not fell[-1] and self.loop is not None:
                self.loop.request_quit()  # seen the fallback and the recovery: done

    spy = Unplug()
    cfg = headless(tiny_model_file, ["flaky"], realtime=True, seconds=30, fallback="testcard")
    stats = LiveLoop(cfg, backend, controllers=[spy], make_source=lambda spec: flaky).run()
    fell = [i.fallback for i in spy.infos]
    assert True in fell and fell[-1] is False
    assert stats.reconnects == 1 and stats.source_failures == 1 and stats.mode == "realtime"
    assert stats.seconds < 25  # recovered by itself, well before the safety limit


def test_controller_modulates_and_sees_every_frame(tmp_path: Path, tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    clip = write_video(tmp_path / "in.mp4", pattern_frames(5, 96, 72), fps=25)
    zero = np.zeros((1, 16), np.float32)
    spy = Spy(z=zero)
    LiveLoop(headless(tiny_model_file, [str(clip)], frames=5), backend, controllers=[spy]).run()
    assert spy.started and spy.stopped
    assert [i.index for i in spy.infos] == [0, 1, 2, 3, 4]
    expected = backend.decode(zero)[0]
    assert all(np.array_equal(o, expected) for o in spy.outputs)  # modulate's z is what was decoded
    assert all(i.z is not None and not i.z.any() for i in spy.infos)


def test_actions_record_screenshot_and_quit(tmp_path: Path, tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    from livevae.control.state import ControlState

    clip = write_video(tmp_path / "in.mp4", pattern_frames(6, 96, 72), fps=15)
    state = ControlState(zdim=16)
    rec = tmp_path / "rec" / "take.mp4"
    spy = Spy(
        post={
            1: ("record", str(rec)),
            2: ("screenshot", str(tmp_path / "shot.png")),
            3: ("scene.recall", "a"),
            6: ("record", None),  # toggle off
            8: ("quit", None),
        }
    )
    cfg = headless(tiny_model_file, [str(clip)], frames=50, screenshot_dir=str(tmp_path / "shots"))
    stats = LiveLoop(cfg, backend, state, [spy]).run()
    assert stats.frames == 10  # actions posted after frame i run after frame i + 1 is presented
    assert ("scene.recall", "a") in spy.actions  # not the loop's own: offered to the controllers
    n, rate = count_frames(rec)
    assert n == 5 and rate == 15  # frames 3..7, at the source's rate
    assert str(rec) in stats.outputs
    shot = cv2.imread(str(tmp_path / "shot.png"))
    assert shot is not None and shot.shape == (48, 64, 3) and shot.std() > 0
    assert stats.screenshots == [str(tmp_path / "shot.png")]


def test_freeze_holds_the_latent_without_a_control_state(tmp_path: Path, tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    clip = write_video(tmp_path / "in.mp4", pattern_frames(8, 96, 72), fps=25)
    spy = Spy()
    loop = LiveLoop(headless(tiny_model_file, [str(clip)], frames=8), backend, controllers=[spy])

    class Freezer(Spy):
        def on_frame(self, info: FrameInfo) -> None:
            if info.index == 2:
                loop.handle("freeze", None)
            if info.index == 5:
                loop.handle("freeze", None)

    loop.controllers.append(Freezer())
    loop.run()
    o = spy.outputs
    assert np.array_equal(o[3], o[4]) and np.array_equal(o[4], o[5])  # held
    assert not np.array_equal(o[1], o[2]) and not np.array_equal(o[6], o[7])  # moving before and after


def test_a_failing_controller_is_reported_not_fatal(tmp_path: Path, tiny_model_file: Path, backend, capsys) -> None:  # type: ignore[no-untyped-def]
    class Broken(Spy):
        def modulate(self, z: np.ndarray, t: float) -> np.ndarray:
            raise RuntimeError("boom")

    stats = LiveLoop(headless(tiny_model_file, ["testcard"], frames=3), backend, controllers=[Broken()]).run()
    assert stats.frames == 3 and stats.controller_errors == 3
    assert capsys.readouterr().err.count("Broken.modulate raised RuntimeError: boom") == 1


def test_a_failed_recording_does_not_stop_the_show(tmp_path: Path, tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "file").write_text("a file where a folder should be")
    cfg = headless(tiny_model_file, ["testcard"], frames=6, record=str(tmp_path / "file" / "x.mp4"))
    stats = LiveLoop(cfg, backend).run()
    assert stats.frames == 6 and stats.outputs == []


def test_config_checks_and_flags(tiny_model_file: Path) -> None:
    with pytest.raises(LiveError, match="fallback 'grey'"):
        LiveConfig(fallback="grey")
    with pytest.raises(LiveError, match="source 2 out of range"):
        LiveConfig(sources=["testcard"], source=2)
    p = argparse.ArgumentParser()
    add_arguments(p)
    base = LiveConfig(model="m.safetensors", sources=["a.mp4", "b.mp4"], source=1, fps=24)
    args = p.parse_args(["--size", "800x600", "--no-hud", "--frames", "9"])
    cfg = apply_flags(base, args)  # only flags actually given override the show
    assert cfg.window.size == (800, 600) and cfg.window.hud is False and cfg.frames == 9
    assert cfg.sources == ["a.mp4", "b.mp4"] and cfg.source == 1 and cfg.fps == 24
    assert cfg.window.filter == "smooth"
    cfg = apply_flags(base, p.parse_args(["--source", "0"]))
    assert cfg.sources == ["0"] and cfg.source == 0


def test_live_command_renders_headless(tmp_path: Path, tiny_model_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    clip = write_video(tmp_path / "in.mp4", pattern_frames(4, 96, 72), fps=24)
    p = argparse.ArgumentParser()
    add_arguments(p)
    out = tmp_path / "o.mp4"
    argv = ["--model", str(tiny_model_file), "--backend", "torch", "--source", str(clip), "--headless"]
    argv += ["--out", str(out), "--frames", "6"]
    assert run(p.parse_args(argv)) == 0
    assert count_frames(out) == (6, 24)
    printed = capsys.readouterr().out
    assert "6 frames" in printed and "latency capture->present" in printed


def test_source_action_switches_and_rejects_bad_specs(tmp_path: Path, tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    from livevae.control.state import ControlState

    a = write_video(tmp_path / "a.mp4", pattern_frames(3, 96, 72), fps=25)
    state = ControlState(zdim=16)
    spy = Spy(post={1: ("source", 1), 3: ("source", str(tmp_path / "missing.mp4")), 4: ("source", 7)})
    made: list[Source] = []

    def make(spec: str) -> Source:
        from livevae.media.source import open_source

        made.append(open_source(spec))
        return made[-1]

    cfg = headless(tiny_model_file, [str(a), "testcard"], frames=7)
    LiveLoop(cfg, backend, state, [spy], make_source=make).run()
    names = [i.source for i in spy.infos]
    assert names[:3] == ["a.mp4"] * 3 and names[3:] == ["testcard"] * 4  # bad spec and index: stayed


def test_an_offline_render_without_looping_ends_with_the_file(tmp_path: Path, tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    clip = write_video(tmp_path / "in.mp4", pattern_frames(7, 96, 72), fps=24)
    out = tmp_path / "once.mp4"
    stats = LiveLoop(headless(tiny_model_file, [str(clip)], out=str(out), loop=False), backend).run()
    assert stats.frames == 7 and count_frames(out) == (7, 24)


def test_show_fps_overrides_the_source_rate(tmp_path: Path, tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    clip = write_video(tmp_path / "in.mp4", pattern_frames(4, 96, 72), fps=25)
    out = tmp_path / "o.mp4"
    LiveLoop(headless(tiny_model_file, [str(clip)], out=str(out), frames=6, fps=30), backend).run()
    assert count_frames(out) == (6, 30)


def test_virtual_camera_is_skipped_cleanly_when_absent(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import sys

    from livevae.outputs.virtualcam import open_virtualcam

    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # import fails as when the extra is not installed
    assert open_virtualcam((640, 360), 30) is None
    assert "pyvirtualcam is not installed" in capsys.readouterr().err


def test_virtual_camera_sends_the_newest_frame_scaled() -> None:
    import time

    from livevae.outputs.virtualcam import VirtualCam

    class Device:  # stands in for pyvirtualcam.Camera: records what it is sent
        def __init__(self) -> None:
            self.sent: list[np.ndarray] = []
            self.closed = False

        def send(self, rgb: np.ndarray) -> None:
            self.sent.append(rgb)

        def close(self) -> None:
            self.closed = True

    dev = Device()
    cam = VirtualCam(dev, (128, 72))
    cam.send(np.full((36, 64, 3), 200, np.uint8))
    deadline = time.monotonic() + 5
    while not dev.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    cam.close()
    assert dev.closed and dev.sent[0].shape == (72, 128, 3) and (dev.sent[0] == 200).all()


def test_device_preprocessing_matches_the_cpu_path(backend) -> None:  # type: ignore[no-untyped-def]
    # The GPU path for torch-cuda backends; torch runs the same code on the CPU here (no GPU on CI).
    import torch

    from livevae.media.preprocess import DevicePreprocessor, Preprocessor

    for w, h in ((640, 480), (50, 30)):  # shrink (area) and enlarge (bicubic)
        frame = pattern_frames(1, w, h)[0]
        pre = Preprocessor((64, 48))
        want = pre(frame)  # uint8 [48, 64, 3]
        got = DevicePreprocessor(pre, torch.device("cpu"))(frame)  # float [1, 3, 48, 64] in [-1, 1]
        assert tuple(got.shape) == (1, 3, 48, 64)
        levels = ((got[0].permute(1, 2, 0) + 1) * 127.5).round().numpy().astype(int)
        diff = np.abs(levels - want.astype(int))
        assert diff.max() <= 1  # same box, same filters: at most a rounding level apart
        z_dev, z_cpu = backend.encode(got), backend.encode(want[None])  # the backend takes either form
        assert np.abs(z_dev - z_cpu).max() < 0.05


def test_controllers_get_a_handle_not_the_loop(tmp_path: Path, tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    from livevae.handle import LoopStatus

    clip = write_video(tmp_path / "in.mp4", pattern_frames(4, 96, 72), fps=25)
    seen: list[LoopStatus] = []

    class Probe(Spy):
        def on_frame(self, info: FrameInfo) -> None:
            super().on_frame(info)
            assert self.loop is not None
            seen.append(self.loop.status())

    spy = Probe()
    LiveLoop(headless(tiny_model_file, [str(clip)], frames=3), backend, controllers=[spy]).run()
    assert isinstance(spy.loop, LoopHandle) and not isinstance(spy.loop, LiveLoop)
    assert not hasattr(spy.loop, "controllers") and not hasattr(spy.loop, "backend")
    assert [s.index for s in seen] == [0, 1, 2]  # the frame being reported (counted after on_frame)
    assert seen[0].offline and seen[0].size == (64, 48) and seen[0].source_spec == str(clip)
    assert seen[0].backend == backend.name


class GatedSource(Source):
    """A source whose open() waits on an Event the test controls (a camera taking its time), or fails."""

    def __init__(self, name: str, value: int, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.name, self.value, self.gate, self.fail = name, value, gate, fail
        self.open_threads: list[int] = []

    @property
    def fps(self) -> float:
        return 50.0

    def open(self) -> None:
        self.open_threads.append(threading.get_ident())
        if self.gate is not None:
            self.gate.wait(20)  # bounded: a broken test must not hang the suite
        if self.fail:
            raise SourceError(f"{self.name}: no such device")

    def read(self) -> np.ndarray:
        return np.full((24, 32, 3), self.value, np.uint8)


class Switcher(Spy):
    """Asks for source 1 at frame 3; counts the frames shown while the new one opens; quits when it plays."""

    def __init__(self, gate: threading.Event | None, quit_after: int = 15) -> None:
        super().__init__()
        self.gate, self.quit_after = gate, quit_after
        self.loop_thread = 0
        self.during: list[FrameInfo] = []

    def start(self, loop: LiveLoop) -> None:
        super().start(loop)
        self.loop_thread = threading.get_ident()

    def on_frame(self, info: FrameInfo) -> None:
        super().on_frame(info)
        assert self.loop is not None
        if info.index == 3:
            self.loop.post("source", 1)  # through the handle, as any controller asks
        elif info.index > 3 and (self.gate is None or not self.gate.is_set()):
            self.during.append(info)
            if len(self.during) >= self.quit_after:
                if self.gate is None:
                    self.loop.request_quit()
                else:
                    self.gate.set()  # the slow open finishes now
        elif self.gate is not None and self.gate.is_set() and info.source == "slow":
            self.loop.request_quit()


def test_a_slow_source_open_never_stops_the_show(tiny_model_file: Path, backend) -> None:  # type: ignore[no-untyped-def]
    from livevae.control.state import ControlState

    gate = threading.Event()
    first, slow = GatedSource("first", 10), GatedSource("slow", 200, gate)
    built: list[int] = []

    def make(spec: str) -> Source:
        built.append(threading.get_ident())
        return {"first": first, "slow": slow}[spec]

    spy = Switcher(gate)
    cfg = headless(tiny_model_file, ["first", "slow"], realtime=True, seconds=30, fallback="black")
    LiveLoop(cfg, backend, ControlState(zdim=16), [spy], make_source=make).run()
    # While the new source's open blocked, the old one kept playing: real frames, not the fallback.
    assert len(spy.during) >= 15 and all(i.source == "first" and not i.fallback for i in spy.during)
    assert spy.infos[-1].source == "slow" and not spy.infos[-1].fallback  # swapped in at its first frame
    # The frame thread never built or opened the source switched to.
    assert slow.open_threads and spy.loop_thread not in slow.open_threads
    assert len(built) == 2 and built[1] != spy.loop_thread


def test_a_failed_switch_is_one_line_and_the_old_source_stays(tiny_model_file: Path, backend, capsys) -> None:  # type: ignore[no-untyped-def]
    from livevae.control.state import ControlState

    first, broken = GatedSource("first", 10), GatedSource("broken", 200, fail=True)
    spy = Switcher(None, quit_after=25)
    cfg = headless(tiny_model_file, ["first", "broken"], realtime=True, seconds=30, fallback="black")
    sources: dict[str, Source] = {"first": first, "broken": broken}
    loop = LiveLoop(cfg, backend, ControlState(zdim=16), [spy], make_source=lambda spec: sources[spec])
    stats = loop.run()
    assert all(i.source == "first" and not i.fallback for i in spy.infos)
    assert len(broken.open_threads) == 1  # no reconnect loop for a source never shown
    assert loop.source_index == 0 and stats.fallback_frames == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "broken" in ln]
    assert lines == ["livevae source: broken: broken: no such device; staying on the current source"]
