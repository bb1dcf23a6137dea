"""Recordings keep wall-clock time and carry the sound of what was shown; offline renders keep the source's
audio in sync; recordings are letterboxed to a chosen size (default the window's, or 1280x720 headless)."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from livevae.backends import create
from livevae.handle import FrameInfo, LoopHandle, Watcher
from livevae.loop import LiveConfig, LiveLoop
from livevae.outputs.layout import letterbox
from livevae.outputs.recorder import Recorder
from tests.helpers.media import pattern_frames, write_video


def streams(path: Path) -> tuple[float, float | None, tuple[int, int]]:
    """(video seconds, audio seconds or None, (w, h)): each stream's length as the MP4 states it (what players
    show; it includes the last frame's duration)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        secs = float(v.duration * v.time_base)
        audio = float(a.duration * a.time_base) if a is not None and a.duration else None
        return secs, audio, (v.codec_context.width, v.codec_context.height)


class SlowShow(Watcher):
    """Makes the show run well below its source's 25 fps (as fullscreen 1080p on 2 cores does), starts recording
    on its first frame and stops it `length` seconds later by its own clock."""

    def __init__(self, path: Path, length: float, delay: float = 0.07) -> None:
        self.path, self.length, self.delay = path, length, delay
        self.loop: LoopHandle | None = None
        self.armed = False
        self.first: float | None = None  # when the first recorded frame was seen
        self.stopped: float | None = None  # when it asked to stop
        self.ended: float | None = None  # when the first frame after the stop was seen
        self.frames = 0

    def start(self, loop: LoopHandle | None) -> None:
        self.loop = loop
        assert loop is not None
        loop.post("record", str(self.path))

    def modulate(self, z: np.ndarray, t: float) -> np.ndarray:
        time.sleep(self.delay)
        return z

    def on_frame(self, info: FrameInfo) -> None:
        assert self.loop is not None
        now = time.monotonic()
        if info.recording:
            self.frames += 1
            if not self.armed:
                self.armed = True  # recording began after this frame was presented: it is not in the file
            elif self.first is None:
                self.first = now  # this one is: it was written just before this call
            elif now - self.first >= self.length and self.stopped is None:
                self.stopped = now
                self.loop.post("record", False)
        elif self.first is not None and self.stopped is not None and self.ended is None:
            self.ended = now
            self.loop.request_quit()


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s, 25 fps, 96x72 clip with a 440 Hz soundtrack (it loops during the recording)."""
    return write_video(tmp_path_factory.mktemp("film") / "film.mp4", pattern_frames(75, 96, 72), 25, audio_seconds=3.0)


def test_a_slow_show_records_8_seconds_of_wall_clock_with_sound(
    tmp_path: Path, tiny_model_file: Path, film: Path
) -> None:
    out = tmp_path / "rec" / "show.mp4"
    slow = SlowShow(out, 8.0)
    cfg = LiveConfig(model=str(tiny_model_file), backend="torch", sources=[str(film)], headless=True, realtime=True,
                     seconds=20.0, record_dir=str(tmp_path / "rec"), record_size=(320, 180))  # fmt: skip
    loop = LiveLoop(cfg, create(str(tiny_model_file), "torch"), None, [slow])
    stats = loop.run()
    assert slow.first is not None and slow.stopped is not None and slow.ended is not None
    recorded = slow.ended - slow.first  # from the first frame recorded to the stop, by the show's own clock
    shown_fps = slow.frames / recorded
    assert shown_fps < 20, f"the show was meant to be slow; it ran at {shown_fps:.1f} fps"
    video, audio, size = streams(out)
    frame = 1 / 25
    # the stop lands on a later slow frame (on a 2-core machine shared with other jobs a frame may stall ~1 s)
    assert 8.0 <= recorded <= 10.0, recorded
    assert abs(video - recorded) <= frame, (video, recorded, stats.outputs)  # the time recorded, +- one frame
    assert audio is not None and abs(audio - video) <= frame, (audio, video)
    assert size == (320, 180)


def test_recorder_wall_clock_file_lasts_as_long_as_recorded(tmp_path: Path, film: Path) -> None:
    rec = Recorder(tmp_path / "r.mp4", 25, (160, 90), clock="wall", audio=True).start()
    img = np.full((48, 64, 3), 128, np.uint8)
    t0 = time.monotonic()
    for i in range(12):  # 12 frames over 1.2 s: 10 fps shown from a 25 fps film
        rec.write(img, None, (film, i * 0.1))
        time.sleep(0.1)
    p = rec.stop()
    held = time.monotonic() - t0
    assert p is not None
    video, audio, size = streams(p)
    assert abs(video - held) <= 1 / 25 + 0.02 and audio is not None and abs(audio - video) <= 1 / 25
    assert size == (160, 90)


def test_the_recorded_sound_is_the_films_sound_where_it_was_shown(tmp_path: Path, film: Path) -> None:
    rec = Recorder(tmp_path / "r.mp4", 25, None, clock="frames", audio=True, block=True).start()
    img = np.zeros((48, 64, 3), np.uint8)
    for i in range(25):  # 1 s: the first half from the film (440 Hz), the second from a camera (silence)
        rec.write(img, None, (film, i / 25) if i < 12 else None)
    p = rec.stop()
    assert p is not None
    with av.open(str(p)) as c:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]).astype(np.float32)
        rate = c.streams.audio[0].rate
    # fltp stereo: frames of [2, 1024] flattened; per-channel order is fine for an RMS
    half = len(pcm) // 2
    loud, quiet = float(np.sqrt(np.mean(pcm[: half // 2] ** 2))), float(np.sqrt(np.mean(pcm[-half // 2 :] ** 2)))
    assert rate == 48000 and loud > 0.05 and quiet < 0.01, (loud, quiet)


def test_an_offline_render_keeps_the_sources_audio_in_sync(tmp_path: Path, tiny_model_file: Path, film: Path) -> None:
    out = tmp_path / "render.mp4"
    cfg = LiveConfig(model=str(tiny_model_file), backend="torch", sources=[str(film)], headless=True, out=str(out),
                     frames=50, record_size=(96, 72))  # fmt: skip
    LiveLoop(cfg, create(str(tiny_model_file), "torch")).run()
    video, audio, _ = streams(out)
    assert video == pytest.approx(2.0, abs=1e-3) and audio is not None and abs(audio - 2.0) <= 1 / 25


def test_default_recording_size_is_1280x720_headless_and_letterboxed(tiny_model_file: Path) -> None:
    cfg = LiveConfig(model=str(tiny_model_file), backend="torch", headless=True, frames=1)
    loop = LiveLoop(cfg, create(str(tiny_model_file), "torch"))
    assert loop.record_size() == (1280, 720)
    box = letterbox(np.full((48, 64, 3), 200, np.uint8), (1280, 720))  # 4:3 model into 16:9
    assert box.shape == (720, 1280, 3) and box[:, :100].max() == 0 and box[:, 640].min() == 200
