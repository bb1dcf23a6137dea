"""The live loop's pipeline: the next frame's encode beside this one's decode, same frames, slow sources not held."""

from __future__ import annotations

import argparse
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livevae.backends import create, overlaps
from livevae.backends.onnxruntime_backend import OnnxRuntimeBackend
from livevae.cli import live as live_cli
from livevae.handle import FrameInfo, LoopHandle
from livevae.installation.watchdog import GuardedBackend, Watchdog
from livevae.loop import LiveConfig, LiveLoop
from livevae.model import ModelConfig, preset
from tests.helpers.media import pattern_frames, write_video
from tests.helpers.models import shared_tiny
from tests.helpers.sources import FlakySource


class Recording:
    """A deterministic backend that says it overlaps, and records every call: (op, frame number, thread, start,
    end). Its z is the input's mean colour and the frame's number, so the order of frames shows in the pictures."""

    name = "recording"

    def __init__(self, cfg: ModelConfig, delay: float = 0.0, overlap: bool = True) -> None:
        self.cfg = cfg
        self.delay = delay
        self.overlaps = overlap
        self.calls: list[tuple[str, float, str, float, float]] = []
        self._lock = threading.Lock()

    def _log(self, op: str, key: float, t0: float) -> None:
        with self._lock:
            self.calls.append((op, key, threading.current_thread().name, t0, time.monotonic()))

    def encode(self, frames: np.ndarray) -> np.ndarray:
        t0 = time.monotonic()
        time.sleep(self.delay)
        z = np.zeros((len(frames), self.cfg.zdim), np.float32)
        z[:, :3] = frames.reshape(len(frames), -1, 3).mean(axis=1) / 255
        self._log("encode", float(z[0, 0]), t0)
        return z

    def decode(self, z: np.ndarray) -> np.ndarray:
        t0 = time.monotonic()
        time.sleep(self.delay)
        out = np.zeros((len(z), self.cfg.height, self.cfg.width, 3), np.uint8)
        out[..., :] = np.clip(z[:, None, None, :3] * 255, 0, 255).astype(np.uint8)
        out[:, 0, 0, 0] = np.clip(z[:, 3] * 10, 0, 255).astype(np.uint8)  # what the controller wrote
        self._log("decode", float(z[0, 0]), t0)
        return out


class Stamp:
    """A controller: writes the show time into z (so a frame decoded with another frame's time would show),
    and records each frame presented and when."""

    def __init__(self) -> None:
        self.infos: list[FrameInfo] = []
        self.seen_at: list[float] = []

    def start(self, loop: LoopHandle | None) -> None:
        pass

    def modulate(self, z: np.ndarray, t: float) -> np.ndarray:
        z = z.copy()
        z[:, 3] = t
        return z

    def handle_action(self, action: str, arg: object) -> bool:
        return False

    def on_frame(self, info: FrameInfo) -> None:
        self.infos.append(info)
        self.seen_at.append(time.monotonic())

    def stop(self) -> None:
        pass


def render(clip: Path, pipeline: bool, delay: float = 0.0, frames: int = 16) -> tuple[Recording, Stamp]:
    be = Recording(preset("tiny"), delay=delay)
    stamp = Stamp()
    cfg = LiveConfig(sources=[str(clip)], headless=True, frames=frames, pipeline=pipeline)
    stats = LiveLoop(cfg, be, controllers=[stamp]).run()  # type: ignore[arg-type]
    assert stats.frames == frames
    # offline the next frame is always there: every frame after the first is encoded beside a decode
    assert stats.pipelined_frames == (frames - 1 if pipeline else 0)
    assert ("pipelined" in stats.summary()) is pipeline
    return be, stamp


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_video(tmp_path / "in.mp4", pattern_frames(24, 96, 72), fps=Fraction(25, 1))


def test_a_pipelined_render_is_the_render_without_it_frame_for_frame(clip: Path) -> None:
    plain_be, plain = render(clip, pipeline=False, delay=0.01)
    piped_be, piped = render(clip, pipeline=True, delay=0.01)
    assert [i.t for i in piped.infos] == [i.t for i in plain.infos] == [k / 25 for k in range(16)]
    for a, b in zip(plain.infos, piped.infos, strict=True):
        assert a.output is not None and b.output is not None
        np.testing.assert_array_equal(a.output, b.output)  # the same frame, with its own show time
    # Without the pipeline everything ran on the loop's thread, one call after the other; with it the encodes
    # ran on the encode thread, each frame's (after the first) beside the previous frame's decode.
    assert {c[2] for c in plain_be.calls} == {threading.current_thread().name}
    enc = [c for c in piped_be.calls if c[0] == "encode"]
    dec = [c for c in piped_be.calls if c[0] == "decode"]
    assert {c[2] for c in enc} == {"livevae encode_0"} and len(enc) == len(dec) == 16
    beside = sum(1 for e, d in zip(enc[1:], dec[:-1], strict=True) if e[3] < d[4] and d[3] < e[4])
    assert beside >= 12, f"only {beside} of 15 encodes overlapped the previous decode"
    # and every frame was encoded before it was decoded, in order
    assert [c[1] for c in enc] == [c[1] for c in dec]
    assert all(e[4] <= d[3] for e, d in zip(enc, dec, strict=True))


def test_a_backend_that_does_not_overlap_runs_as_before(clip: Path) -> None:
    be = Recording(preset("tiny"), delay=0.0, overlap=False)
    LiveLoop(LiveConfig(sources=[str(clip)], headless=True, frames=6), be).run()  # type: ignore[arg-type]
    assert {c[2] for c in be.calls} == {threading.current_thread().name}


def live_run(source: FlakySource, pipeline: bool, seconds: float, delay: float = 0.01) -> tuple[Stamp, int]:
    """(what the controller saw, frames pipelined)."""
    stamp = Stamp()
    cfg = LiveConfig(sources=["flaky"], headless=True, realtime=True, seconds=seconds, pipeline=pipeline)
    be = Recording(preset("tiny"), delay=delay)
    stats = LiveLoop(cfg, be, controllers=[stamp], make_source=lambda spec: source).run()  # type: ignore[arg-type]
    return stamp, stats.pipelined_frames


def test_a_source_slower_than_the_model_is_not_held_back_for_the_next_frame() -> None:
    # 10 fps in, 20 ms of model: each frame must be out before the next one is captured. A pipeline that
    # waited for the next frame before decoding this one would present every frame a whole period late.
    stamp, piped = live_run(FlakySource(set(), fps=10.0), pipeline=True, seconds=2.0)
    assert len(stamp.infos) >= 8
    # Some slack for a loaded machine (a frame that took longer than a period finds the next one waiting);
    # held back for the next frame, every frame would fail each of these.
    assert piped <= 3, f"{piped} of {len(stamp.infos)} frames found the next one waiting"
    captured = [at - i.latency_ms / 1000 for at, i in zip(stamp.seen_at, stamp.infos, strict=True)]
    late = [k for k in range(1, len(captured) - 1) if stamp.seen_at[k] > captured[k + 1]]
    assert len(late) <= 2, f"frames {late} were presented after the next frame came in"
    assert np.median([i.latency_ms for i in stamp.infos]) < 60  # 20 ms of model, not a 100 ms period more


def test_a_source_that_is_down_is_paced_with_the_pipeline_on() -> None:
    # Reads fail from the 3rd on: the fallback picture at the waits' pace (1.5 periods of 50 ms), not as
    # fast as the model goes (a 1 ms model would give hundreds a second).
    stamp, _ = live_run(FlakySource(set(range(3, 10_000)), fps=20.0), pipeline=True, seconds=1.5, delay=0.0005)
    fell = [i for i in stamp.infos if i.fallback]
    assert fell, "the source never went down"
    span = stamp.seen_at[-1] - stamp.seen_at[len(stamp.infos) - len(fell)]
    assert len(fell) <= 1 + span / 0.07, f"{len(fell)} fallback frames in {span:.2f} s"


def frozen_frames(clip: Path, pipeline: bool) -> list[int]:
    """Frames whose z equals the one before, with freeze posted after frame 3 and lifted after frame 9."""
    stamp = Stamp()

    class Freezer(Stamp):
        def start(self, loop: LoopHandle | None) -> None:
            self.loop = loop

        def on_frame(self, info: FrameInfo) -> None:
            if info.index in (3, 9):
                self.loop.post("freeze", info.index == 3)  # type: ignore[union-attr]

    cfg = LiveConfig(sources=[str(clip)], headless=True, frames=14, pipeline=pipeline)
    LiveLoop(cfg, Recording(preset("tiny")), controllers=[stamp, Freezer()]).run()  # type: ignore[arg-type]
    z = [i.z[0, :3].copy() for i in stamp.infos]  # type: ignore[index]
    return [k for k in range(1, 14) if np.array_equal(z[k], z[k - 1])]


def test_freeze_holds_one_z_with_the_pipeline_on(clip: Path) -> None:
    plain, piped = frozen_frames(clip, False), frozen_frames(clip, True)
    # each action is served after the next frame is presented: frames 5-10 show frame 5's z
    assert plain == [6, 7, 8, 9, 10]
    # pipelined, frame 5 was already taken and encoding when the freeze came: the hold starts one frame later;
    # a frozen frame needs no encode, so none is in flight when the hold is lifted: it ends on the same frame
    assert piped == [7, 8, 9, 10], piped


def test_onnxruntime_shares_its_threads_between_encoder_and_decoder(tmp_path_factory: pytest.TempPathFactory) -> None:
    path, cache = shared_tiny(tmp_path_factory.getbasetemp())
    two = OnnxRuntimeBackend.from_file(path, precision="fp32", cache_dir=cache, threads=2, overlap=True)
    opts = [s.get_session_options().intra_op_num_threads for s in (two._enc, two._dec)]
    assert overlaps(two) and (two.enc_threads, two.dec_threads) == (1, 1) and opts == [1, 1]
    assert "1+1 threads, encode beside decode" in two.describe()
    three = OnnxRuntimeBackend.from_file(path, precision="fp32", cache_dir=cache, threads=3, overlap=True)
    assert (three.enc_threads, three.dec_threads) == (1, 2)  # the decoder is the heavier net
    one = OnnxRuntimeBackend.from_file(path, precision="fp32", cache_dir=cache, threads=1, overlap=True)
    assert not overlaps(one) and one.dec_threads == 1  # one core: nothing to share
    plain = OnnxRuntimeBackend.from_file(path, precision="fp32", cache_dir=cache, threads=2)
    assert not overlaps(plain) and [s.get_session_options().intra_op_num_threads for s in (plain._enc, plain._dec)] == [
        2,
        2,
    ]
    torch_b = create(path, "torch-cpu", overlap=True)
    assert not overlaps(torch_b)  # torch's one thread pool is the process's: it runs one call after the other


def test_real_onnxruntime_pipelined_gives_the_same_render(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> None:
    path, cache = shared_tiny(tmp_path_factory.getbasetemp())
    outs = []
    for pipeline in (False, True):
        b = OnnxRuntimeBackend.from_file(path, precision="fp32", cache_dir=cache, threads=2, overlap=pipeline)
        assert overlaps(b) is pipeline
        stamp = Stamp()
        LiveLoop(LiveConfig(sources=[str(clip)], headless=True, frames=10, pipeline=pipeline), b,
                 controllers=[stamp]).run()  # fmt: skip
        outs.append(np.stack([np.asarray(i.output) for i in stamp.infos]))
    assert outs[0].shape == (10, 48, 64, 3)
    assert np.abs(outs[0].astype(int) - outs[1].astype(int)).max() <= 2  # fp32 sums in another order at most


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    live_cli.add_arguments(p)
    return p.parse_args(argv)


@pytest.mark.parametrize(("argv", "show_line", "want"), [
    ([], "", True), (["--no-pipeline"], "", False), ([], "pipeline = false\n", False),
])  # fmt: skip
def test_the_pipeline_setting_reaches_the_backend(
    tmp_path: Path, tiny_model_file: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], show_line: str, want: bool
) -> None:
    import livevae.backends

    seen: dict[str, Any] = {}

    def fake_create(model: str, backend: str, **kw: Any) -> Recording:
        seen.update(kw)
        return Recording(preset("tiny"))

    monkeypatch.setattr(livevae.backends, "create", fake_create)
    show = tmp_path / "show.toml"
    show.write_text(f'model = "{tiny_model_file}"\n{show_line}[osc]\nenabled = false\n')
    cfg, _, _, _ = live_cli.build(parse([str(show), *argv]))
    assert cfg.pipeline is want and seen["overlap"] is want


def test_a_guarded_backend_overlaps_as_its_inner_one_does() -> None:
    cfg = preset("tiny")
    gate = threading.Barrier(2, timeout=5)

    class Meeting(Recording):
        def encode(self, frames: np.ndarray) -> np.ndarray:
            gate.wait()  # returns only when a decode is running at the same time
            return super().encode(frames)

        def decode(self, z: np.ndarray) -> np.ndarray:
            gate.wait()
            return super().decode(z)

    gb = GuardedBackend(lambda: Meeting(cfg), Watchdog(), call_timeout=10.0)
    try:
        assert overlaps(gb)
        got: dict[str, Any] = {}
        t = threading.Thread(target=lambda: got.setdefault("z", gb.encode(np.zeros((1, 48, 64, 3), np.uint8))))
        t.start()
        out = gb.decode(np.zeros((1, cfg.zdim), np.float32))
        t.join(10)
        assert gb.failures == 0 and out.shape == (1, 48, 64, 3) and got["z"].shape == (1, cfg.zdim)
    finally:
        gb.close()
    assert not overlaps(GuardedBackend(lambda: Recording(cfg, overlap=False)))


def _overlap_fields(model: Path) -> dict[str, Any]:
    from livevae.backends import cpuchoice
    from livevae.backends.cache import file_sha256

    fields = cpuchoice.choice_fields(file_sha256(model), 1, 2, cpuchoice.read_cpu())
    return {**fields, "overlap": ["fp32", None]}


def test_create_pipelines_only_where_the_pipeline_measured_faster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from livevae.backends import cpuchoice
    from livevae.model import save_model
    from livevae.offline.bench import random_model

    model = save_model(random_model("tiny"), tmp_path / "m.safetensors")
    timed: list[int] = []
    ms = {"a": [10.0, 8.0], "b": [10.0, 9.8]}  # (one net after the other, pipelined) ms a frame

    def fake_time_calls(calls: list[Any], seconds: float = 0) -> list[float]:
        timed.append(len(calls))
        for c in calls:
            c()  # both really run: the pipelined call on its encode thread
        return ms["a"] if model.name == "m.safetensors" else ms["b"]

    monkeypatch.setattr(cpuchoice, "time_calls", fake_time_calls)
    kw: dict[str, Any] = {"cache_dir": tmp_path / "cache", "threads": 2, "logger": lambda s: None}
    b = create(model, "onnxruntime+fp32", overlap=True, **kw)
    assert overlaps(b) and "1+1 threads" in b.describe() and timed == [2]  # type: ignore[attr-defined]
    assert overlaps(create(model, "onnxruntime+fp32", overlap=True, **kw)) and timed == [2]  # cached: not timed again
    hit = cpuchoice.choose_overlap(model, "fp32", None, 1, tmp_path / "cache", 2)
    assert hit.cached and hit.overlap and hit.sequential_ms == 10.0 and hit.pipelined_ms == 8.0
    assert not overlaps(create(model, "onnxruntime+fp32", **kw)) and timed == [2]  # not asked: not measured
    path = cpuchoice.choice_path(_overlap_fields(model), tmp_path / "cache")
    assert path.is_file()
    for n, junk in enumerate(("[1, 2]", "{not json", '{"fields": 3}')):  # damaged: measured again, never a crash
        path.write_text(junk)
        again = cpuchoice.choose_overlap(model, "fp32", None, 1, tmp_path / "cache", 2)
        assert not again.cached and again.overlap and len(timed) == 2 + n
    # x1.02 is within the margin: one net after the other, at full threads
    other = save_model(random_model("tiny", seed=1), tmp_path / "n.safetensors")
    model = other
    before = len(timed)
    b = create(other, "onnxruntime+fp32", overlap=True, **kw)
    assert not overlaps(b) and "2 threads" in b.describe() and len(timed) == before + 1  # type: ignore[attr-defined]
    assert "only x1.02" in cpuchoice.choose_overlap(other, "fp32", None, 1, tmp_path / "cache", 2).reason
    one = create(other, "onnxruntime+fp32", overlap=True, **{**kw, "threads": 1})
    assert not overlaps(one) and len(timed) == before + 1  # one thread: nothing to share, nothing measured


def test_a_pipelined_show_switches_source_holds_and_resumes() -> None:
    """The frame in flight across a source switch and a closed-hours hold: shown once, in order, nothing lost."""
    black = np.zeros((48, 64, 3), np.uint8)

    class Named(FlakySource):
        def __init__(self, name: str) -> None:
            super().__init__(set(), fps=40.0)
            self.name = name

    class Director(Stamp):
        held = 0

        def start(self, loop: LoopHandle | None) -> None:
            self.loop = loop

        def on_frame(self, info: FrameInfo) -> None:
            super().on_frame(info)
            assert self.loop is not None
            if info.index == 3:
                self.loop.post("source", 1)
            if info.index == 12:
                self.loop.hold(black, 50.0)
            if self.loop.status().index > 12 and info.output is not None and not info.output.any():
                self.held += 1
                if self.held == 3:
                    self.loop.resume()
            if len(self.infos) >= 30:
                self.loop.request_quit()

    be = Recording(preset("tiny"), delay=0.02)  # 40 ms of model against a 25 ms period: the pipeline runs
    d = Director()
    cfg = LiveConfig(sources=["a", "b"], headless=True, realtime=True, seconds=20.0, pipeline=True)
    stats = LiveLoop(cfg, be, controllers=[d], make_source=lambda spec: Named(spec)).run()  # type: ignore[arg-type]
    assert stats.frames == len(d.infos) >= 30 and stats.pipelined_frames > 0
    names = [i.source for i in d.infos]
    assert names[:4] == ["a"] * 4 and "b" in names  # switched after frame 3 (the frame in flight from a is shown)
    first_b = names.index("b")
    assert set(names[first_b:]) == {"b"}  # and never back
    assert [i.index for i in d.infos] == list(range(len(d.infos)))  # every frame once, in order
    assert d.held == 3 and d.infos[-1].output is not None and d.infos[-1].output.any()  # the model again
