"""Adversarial films: rotation side data, thumbnail streams, audio-only files, truncation and resolution changes."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from livevae.media.preprocess import CropBox
from livevae.media.video import Scaler, VideoError, iter_frames, probe
from livevae.offline.prep import FRAMES_FILE, prep
from tests.conftest import pattern_frames


def _halves(w: int, h: int) -> np.ndarray:
    """Left half red, right half blue: which way a picture was turned is plain to see."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 230
    img[:, w // 2 :, 2] = 230
    return img


def _write(path: Path, streams: list[tuple[int, int]], n: int = 8, rotation: int = 0) -> Path:
    with av.open(str(path), "w") as c:
        vs = []
        for w, h in streams:
            s = c.add_stream("libx264", rate=10)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            if rotation:
                s.set_display_rotation(rotation)
            vs.append(s)
        for i in range(n):
            for s in vs:
                f = av.VideoFrame.from_ndarray(_halves(s.width, s.height), format="rgb24")
                f.pts = i
                f.time_base = Fraction(1, 10)
                for p in s.encode(f):
                    c.mux(p)
        for s in vs:
            for p in s.encode():
                c.mux(p)
    return path


def _silence(c: av.container.OutputContainer, samples: int) -> None:
    """Mux `samples` of mono AAC silence into an open output container."""
    a = c.add_stream("aac", rate=44100)
    a.layout = "mono"
    for k in range(0, samples, 1024):
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = 44100, k
        for p in a.encode(af):
            c.mux(p)
    for p in a.encode():
        c.mux(p)


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        _silence(c, 22050)
    return path


# --- class: rotated films shown sideways -------------------------------------------------------------------------


@pytest.mark.parametrize("rotation", [90, 270, 180])
def test_rotation_is_honoured_by_probe_frames_and_prep(tmp_path: Path, rotation: int) -> None:
    film = _write(tmp_path / "phone.mp4", [(64, 32)], rotation=rotation)
    info = probe(film)
    turned = rotation in (90, 270)
    assert info.rotation == rotation and (info.width, info.height) == ((32, 64) if turned else (64, 32))
    want = np.rot90(_halves(64, 32), rotation // 90)  # counter-clockwise, as the display matrix says
    img, _ = next(iter(iter_frames(film)))
    assert img.shape == want.shape
    assert np.abs(img.astype(int) - want).mean() < 12  # H.264 blurs the edge a little
    size = (16, 32) if turned else (32, 16)
    meta = prep(film, tmp_path / "ds", size=size, progress=False)
    frames = np.load(tmp_path / "ds" / FRAMES_FILE)
    assert frames.shape[1:3] == (size[1], size[0]) and meta["rotation"] == rotation
    small = want[:: want.shape[0] // size[1], :: want.shape[1] // size[0]][: size[1], : size[0]]
    assert np.abs(frames[0].astype(int) - small).mean() < 25  # prep's FFmpeg path turns the same way


# --- class: the wrong stream, the wrong words ---------------------------------------------------------------------


def test_the_main_video_stream_is_chosen_and_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    film = _write(tmp_path / "two.mkv", [(64, 36), (320, 180)])
    info = probe(film)
    assert (info.width, info.height, info.stream, info.video_streams) == (320, 180, 1, 2)
    img, _ = next(iter(iter_frames(film)))
    assert img.shape == (180, 320, 3)
    prep(film, tmp_path / "ds", size=(64, 36), progress=False)
    assert "2 video streams; used #1 (320x180" in capsys.readouterr().err


def test_no_video_stream_names_what_was_found(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"no video stream \(found 1 audio\)"):
        probe(_audio_only(tmp_path / "song.m4a"))


# --- class: silently short or wrongly cropped ---------------------------------------------------------------------


def test_a_truncated_film_is_warned_with_the_count_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    film = tmp_path / "whole.mp4"
    with av.open(str(film), "w", options={"movflags": "faststart"}) as c:  # the index first, as for streaming
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 160, 90, "yuv420p"
        for f in pattern_frames(60, 160, 90):
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    announced = probe(film).frames
    data = film.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])  # a copy that stopped a third of the way: the index still says 60
    meta = prep(cut, tmp_path / "ds", size=(64, 36), progress=False)
    err = capsys.readouterr().err
    assert meta["frames"] < announced
    assert f"kept {meta['frames']} of the {announced} frames" in err


def test_a_resolution_change_keeps_the_same_region(tmp_path: Path) -> None:
    def frame(w: int, h: int) -> av.VideoFrame:
        img = np.zeros((h, w, 3), np.uint8)
        img[:, w // 4 : w // 2] = 200  # a bar a quarter in: inside the crop at any resolution
        return av.VideoFrame.from_ndarray(img, format="rgb24")

    box = CropBox(0, 0, 160, 90)  # the left half of a 320x180 picture
    sc = Scaler(box, (32, 18))
    a = sc(frame(320, 180))
    b = sc(frame(640, 360))  # mid-stream: the stream now sends 640x360
    assert sc.resized == 1
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 5  # the same picture, not its top-left quarter
