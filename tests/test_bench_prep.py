"""bench/bench_prep.py: both timed spans split at their first frame, into a fixed cost and a per-frame rate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import pytest

from bench import bench_prep as bp
from livevae.media import spans
from livevae.offline.prep import prep
from tests.helpers.media import pattern_frames, write_video


def test_after_first_is_the_rate_without_the_fixed_cost() -> None:
    # 132 frames in 140 ms, 20 of them before the first frame: 131 frames in the other 120 ms
    assert bp.after_first(132, 0.140, 0.020) == pytest.approx(131 / 0.120)
    assert bp.after_first(1, 0.5, 0.1) == 0.0  # one frame has no rate after it
    assert bp.after_first(5, 0.1, 0.1) == 0.0  # nor a run that ended at its first frame


def test_decode_only_and_prep_time_their_first_frame(tmp_path: Path) -> None:
    film = write_video(tmp_path / "in.mp4", pattern_frames(12, 320, 180))
    n, first = bp.decode_only(film)
    assert n == 12 and first > 0.0
    meta = prep(film, tmp_path / "ds", progress=False)
    assert 0.0 < meta["first_frame_seconds"] <= meta["seconds"]
    side = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert side["first_frame_seconds"] == meta["first_frame_seconds"]


def test_the_bench_reports_both_spans_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    film = write_video(tmp_path / "in.mp4", pattern_frames(12, 320, 180))
    out = tmp_path / "prep.json"
    monkeypatch.setattr(sys, "argv", ["bench_prep.py", "--repeats", "1", "--film", str(film), "--json", str(out)])
    bp.main()
    res = json.loads(out.read_text())
    assert res["frames"] == 12
    for key in ("decode", "loop"):
        assert res["first_frame_ms"][key] > 0.0 and res["after_first_fps"][key] > 0.0
    assert res["after_first_ratio"] == pytest.approx(
        res["after_first_fps"]["loop"] / res["after_first_fps"]["decode"], rel=0.01
    )


def test_the_bench_times_prep_on_spans_and_on_one_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_video(tmp_path / "src.mp4", pattern_frames(30, 160, 96))
    film = bp.gop_film(src, tmp_path / "gop.mp4", loops=2, keyint=10)
    with av.open(str(film)) as c:
        keys = [p.is_keyframe for p in c.demux(video=0) if p.size]
    assert len(keys) == 60 and [i for i, k in enumerate(keys) if k][:3] == [0, 10, 20]
    assert bp.gop_film(src, film) == film  # built once
    out = tmp_path / "prep.json"
    argv = ["bench_prep.py", "--repeats", "1", "--film", str(film), "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(spans, "MIN_SPAN_PACKETS", 10)  # a 60-frame film: cut at every keyframe
    bp.main()
    res = json.loads(out.read_text())
    workers, n = spans.default_workers(), len(spans.plan(film))
    assert n >= 4 and res["decoding"] == (
        f"{n} keyframe spans on {min(n, workers)} decoders" if workers > 1 else "one decoder"
    )
    assert res["one_decoder_loop_fps"] > 0 and res["one_decoder_loop_ratio_paired"] > 0
