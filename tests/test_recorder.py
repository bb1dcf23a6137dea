"""Recording: frames at the given rate on a writer thread, scaling, failure without a crash, screenshots."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from livevae.outputs.recorder import Recorder, Screenshots, stamped_path
from tests.helpers.media import pattern_frames


def test_recorder_writes_every_frame_at_its_rate(tmp_path: Path) -> None:
    out = tmp_path / "r.mp4"
    rec = Recorder(out, Fraction(30000, 1001), size=(128, 96), block=True).start()
    for f in pattern_frames(20, 64, 48):
        assert rec.write(f)
    assert rec.stop() == out and rec.frames == 20 and rec.dropped == 0
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        frames = [fr.to_ndarray(format="rgb24") for fr in c.decode(v)]
        assert Fraction(v.average_rate) == Fraction(30000, 1001)
    assert len(frames) == 20 and frames[0].shape == (96, 128, 3)  # scaled on the writer thread


def test_live_recorder_drops_instead_of_blocking(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "r.mp4", 25, queue_size=2)  # not started: nothing drains the queue
    results = [rec.write(np.zeros((48, 64, 3), np.uint8)) for _ in range(5)]
    assert results == [True, True, False, False, False] and rec.dropped == 3


def test_a_failed_recording_reports_once_and_refuses_frames(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f").write_text("not a folder")
    rec = Recorder(tmp_path / "f" / "r.mp4", 25, block=True).start()
    for f in pattern_frames(5, 64, 48):
        rec.write(f)  # never raises, never hangs
    assert rec.stop() is None and rec.failed
    assert not rec.write(pattern_frames(1, 64, 48)[0])
    err = capsys.readouterr().err
    assert err.count("recording failed") == 1 and "the show goes on" in err


def test_screenshots_are_written_in_the_background(tmp_path: Path) -> None:
    shots = Screenshots(tmp_path / "shots")
    img = pattern_frames(1, 64, 48)[0]
    p = shots.save(img)
    q = shots.save(img)
    shots.wait()
    assert p != q and p.parent == tmp_path / "shots" and p.suffix == ".png"
    back = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, img)  # PNG: lossless
    assert sorted(shots.saved) == sorted([p, q])


def test_stamped_path_never_overwrites(tmp_path: Path) -> None:
    a = stamped_path(tmp_path, "x", ".mp4")
    a.write_text("")
    assert stamped_path(tmp_path, "x", ".mp4") != a


def test_outputs_share_the_output_base_and_a_failed_one_refuses_frames() -> None:
    import time

    from livevae.outputs.base import Output
    from livevae.outputs.virtualcam import VirtualCam
    from livevae.outputs.window import DisplayThread, Window

    assert all(issubclass(k, Output) for k in (Recorder, VirtualCam, Window, DisplayThread))

    class GoneCam:  # a v4l2loopback device unplugged mid-show
        def send(self, frame: np.ndarray) -> None:
            raise OSError("No such device")

        def close(self) -> None:
            pass

    cam = VirtualCam(GoneCam(), (32, 24))
    try:
        assert cam.write(np.zeros((24, 32, 3), np.uint8)) is True  # taken: the thread finds out
        deadline = time.monotonic() + 5
        while not cam.failed and time.monotonic() < deadline:
            time.sleep(0.005)
        assert cam.failed and cam.write(np.zeros((24, 32, 3), np.uint8)) is False
    finally:
        cam.close()
