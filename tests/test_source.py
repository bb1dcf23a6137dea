"""Sources: spec parsing, seamless file loops, playlists, folders, the latest-frame slot, failure and recovery."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from livevae.media.capture import Backoff, Capture, Fallback, OrderedReader
from livevae.media.source import (
    CameraSource,
    ImageFolderSource,
    PlaylistSource,
    SourceError,
    TestCardSource,
    VideoFileSource,
    open_source,
    parse_playlist,
    test_card,
)
from tests.helpers.media import pattern_frames, write_video
from tests.helpers.sources import FlakySource


def test_test_card_moves_and_has_the_asked_size() -> None:
    a, b = test_card(320, 240, 0.0), test_card(320, 240, 0.5)
    assert a.shape == (240, 320, 3) and a.dtype == np.uint8
    assert (a != b).any()  # the sweep and the clock hand move
    assert a.std() > 30  # bars, not a flat picture


def test_open_source_parses_specs(tmp_path: Path) -> None:
    assert isinstance(open_source("testcard"), TestCardSource)
    card = open_source("testcard:320x200", fps=12)
    assert isinstance(card, TestCardSource) and card.size == (320, 200) and card.fps == 12
    cam = open_source("2", size=(640, 480), fps=60)
    assert isinstance(cam, CameraSource) and cam.device == 2 and cam.size == (640, 480)
    assert isinstance(open_source("/dev/video7"), CameraSource)
    (tmp_path / "imgs").mkdir()
    assert isinstance(open_source(str(tmp_path / "imgs")), ImageFolderSource)
    clip = write_video(tmp_path / "a.mp4", pattern_frames(3, 64, 48))
    assert isinstance(open_source(str(clip)), VideoFileSource)
    (tmp_path / "list.txt").write_text("a.mp4\n")
    assert isinstance(open_source(str(tmp_path / "list.txt")), PlaylistSource)
    with pytest.raises(SourceError, match=r"nope\.mp4.*no such file"):
        open_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(SourceError, match="testcard:abc"):
        open_source("testcard:abc")


def test_missing_camera_fails_with_its_name() -> None:
    with pytest.raises(SourceError, match="/dev/video99"):
        CameraSource("/dev/video99").open()


def test_video_file_plays_at_its_rate_and_loops_seamlessly(tmp_path: Path) -> None:
    frames = pattern_frames(5, 64, 48)
    src = VideoFileSource(write_video(tmp_path / "c.mp4", frames, fps=12))
    src.open()
    assert src.fps == pytest.approx(12)
    got, pts = [], []
    for _ in range(13):
        got.append(src.read())
        pts.append(src.pts)
    assert src.loops == 2
    # The clock runs on across the loop: evenly spaced, 1/12 s apart, no repeat and no gap at the seam.
    assert np.allclose(np.diff(pts), 1 / 12, atol=1e-3)
    for i in range(13):  # frame i is the clip's frame i % 5 (H.264 is lossy, so compare loosely)
        assert np.abs(got[i].astype(int) - frames[i % 5]).mean() < 6
    src.close()


def test_video_file_without_loop_ends_with_an_error(tmp_path: Path) -> None:
    src = VideoFileSource(write_video(tmp_path / "c.mp4", pattern_frames(2, 64, 48)), loop=False)
    src.open()
    src.read(), src.read()
    with pytest.raises(SourceError, match="reached the end"):
        src.read()


def test_image_folder_sequence_and_slideshow(tmp_path: Path) -> None:
    for i, f in enumerate(pattern_frames(3, 40, 30)):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    seq = ImageFolderSource(tmp_path, fps=10)
    seq.open()
    imgs = [seq.read() for _ in range(4)]
    assert imgs[3].tobytes() == imgs[0].tobytes() and imgs[1].tobytes() != imgs[0].tobytes()
    show = ImageFolderSource(tmp_path, fps=10, hold=0.2)  # 2 frames per image
    show.open()
    imgs = [show.read() for _ in range(3)]
    assert imgs[0] is imgs[1] and imgs[2].tobytes() != imgs[0].tobytes()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path / "empty").open()


def test_playlist_plays_items_in_turn_and_loops(tmp_path: Path) -> None:
    write_video(tmp_path / "a.mp4", pattern_frames(2, 64, 48, seed=0), fps=10)
    write_video(tmp_path / "b.mp4", pattern_frames(3, 32, 24, seed=3), fps=20)
    (tmp_path / "list.txt").write_text("# a comment\na.mp4\n\nb.mp4\n")
    src = PlaylistSource(tmp_path / "list.txt")
    src.open()
    shapes, rates = [], []
    for _ in range(7):
        shapes.append(src.read().shape[:2])
        rates.append(src.fps)
    assert shapes == [(48, 64)] * 2 + [(24, 32)] * 3 + [(48, 64)] * 2
    assert rates == [10, 10, 20, 20, 20, 10, 10]  # each item at its own rate
    (tmp_path / "bad.txt").write_text("a.mp4\nmissing.mp4\n")
    with pytest.raises(SourceError, match=r"bad\.txt:2: 'missing\.mp4' not found"):
        parse_playlist(tmp_path / "bad.txt")


def test_capture_keeps_only_the_newest_frame() -> None:
    cap = Capture(TestCardSource((64, 48), fps=200)).start()
    try:
        first = cap.take(2.0)
        assert first is not None and first.image.shape == (48, 64, 3)
        time.sleep(0.15)  # ~30 frames arrive; only the last is kept
        newest = cap.take(1.0)
        assert newest is not None and newest.seq > first.seq + 5
        assert cap.dropped >= newest.seq - first.seq - 2  # the ones in between were dropped, not queued
        assert newest.captured <= time.monotonic()
    finally:
        cap.stop()
    assert cap.status == "stopped"


def test_capture_paces_a_file_at_its_frame_rate(tmp_path: Path) -> None:
    cap = Capture(VideoFileSource(write_video(tmp_path / "c.mp4", pattern_frames(4, 64, 48), fps=20))).start()
    try:
        frames = [cap.take(2.0) for _ in range(10)]
    finally:
        cap.stop()
    times = [f.captured for f in frames if f is not None]
    assert len(times) == 10
    # 10 frames at 20 fps span 0.45 s: not decoded as fast as possible (a busy machine can only be slower, so
    # there is no upper bound on the span), and looping after frame 4 and 8 did not stall it (no gap near 2 s).
    assert times[-1] - times[0] > 0.35
    assert max(b - a for a, b in itertools.pairwise(times)) < 1.0


def test_capture_falls_back_and_reconnects() -> None:
    src = FlakySource(fail_reads={5}, fail_opens={2, 3})
    cap = Capture(src, Backoff(0.01, 0.05)).start()
    statuses = set()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and cap.reconnects == 0:
            cap.take(0.05)
            statuses.add(cap.status)
        got = cap.take(1.0)
    finally:
        cap.stop()
    assert cap.failures == 1 and cap.reconnects == 1 and src.opens == 4
    assert "failed" in statuses
    assert got is not None  # frames flow again after the reconnect


def test_ordered_reader_recovers_from_a_deleted_file(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.mp4", pattern_frames(3, 64, 48), fps=10)
    keep = tmp_path / "keep.mp4"
    shutil.copy(clip, keep)
    r = OrderedReader(VideoFileSource(clip), Backoff(0.5, 1.0))
    assert r.read(0.0) is not None
    clip.unlink()  # the open container still reads; the rewind at the end finds no file
    out = [r.read(i / 10) for i in range(1, 8)]
    assert [f is None for f in out[:2]] == [False, False]
    assert out[2] is None and r.status == "failed"  # frame 3 needs a reopen: fallback from here
    shutil.copy(keep, clip)
    later = [r.read(1.0 + i / 10) for i in range(3)]
    assert all(f is not None for f in later) and r.reconnects == 1


def test_fallback_modes() -> None:
    last = np.full((30, 40, 3), 77, np.uint8)
    hold = Fallback("hold")
    assert hold.image(0.0).shape == (480, 640, 3)  # nothing seen yet: black at the default size
    hold.remember(last)
    assert hold.image(1.0) is last
    black = Fallback("black")
    black.remember(last)
    assert black.image(0.0).shape == (30, 40, 3) and not black.image(0.0).any()
    card = Fallback("testcard")
    card.remember(last)
    assert card.image(0.0).shape == (30, 40, 3) and card.image(0.0).std() > 10
    with pytest.raises(SourceError, match="fallback 'grey'"):
        Fallback("grey")


def test_capture_of_a_finished_file_ends_without_reconnecting(tmp_path: Path) -> None:
    src = VideoFileSource(write_video(tmp_path / "c.mp4", pattern_frames(2, 64, 48), fps=50), loop=False)
    cap = Capture(src, Backoff(0.01, 0.02)).start()
    try:
        got = [cap.take(1.0) for _ in range(3)]
    finally:
        cap.stop()
    assert [g is not None for g in got] == [True, True, False]
    assert cap.failures == 0 and cap.reconnects == 0


def test_camera_capture_path_reads_rgb_through_opencv(tmp_path: Path) -> None:
    # No camera on this machine: OpenCV's VideoCapture opens a file through the same calls, which checks the
    # BGR -> RGB conversion, the requested-size path and the failure at the end of the stream.
    frames = pattern_frames(3, 64, 48)
    cam = CameraSource(str(write_video(tmp_path / "cam.mp4", frames, fps=15)), size=(64, 48), fps=15)
    cam.open()
    try:
        assert cam.fps == pytest.approx(15)
        got = [cam.read() for _ in range(3)]
        assert all(np.abs(g.astype(int) - f).mean() < 6 for g, f in zip(got, frames, strict=True))
        with pytest.raises(SourceError, match="read failed"):
            cam.read()
    finally:
        cam.close()


def test_a_missing_camera_is_one_line_without_opencv_noise(tmp_path: Path) -> None:
    """What a show prints in 3 s with no camera at /dev/video0 (this machine has none; skipped where one is)."""
    import subprocess
    import sys

    if Path("/dev/video0").exists():
        pytest.skip("a camera is connected here")
    from livevae.model import random_model, save_model

    model = save_model(random_model("tiny"), tmp_path / "m.safetensors")
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    r = subprocess.run(
        [sys.executable, "-m", "livevae", "live", "--model", str(model), "--backend", "torch", "--source", "0",
         "--headless", "--realtime", "--seconds", "3", "--osc-port", "0"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    camera = [ln for ln in r.stderr.splitlines() if "camera" in ln]
    assert len(camera) == 1, r.stderr
    assert camera[0].startswith("livevae source: camera 0: cannot open") and "camera 0: camera 0" not in camera[0]
    assert "--source" in camera[0]  # the dead end names the fix
    assert not [ln for ln in r.stderr.splitlines() if "WARN" in ln or "OpenCV" in ln or ln.startswith(">")], r.stderr
