"""Benchmark: OSC control latency in a realtime show, in frames and ms, from a message's arrival to the first
presented frame that shows it, with the live loop's per-frame time (torch eager) measured in the same run.

python bench/bench_osc_latency.py                      # untrained `live` preset (256x144, z=200), 30 fps test card
python bench/bench_osc_latency.py --preset tiny --messages 200 --json bench/results/osc_latency.json

Method: two probe controllers sandwich the show's controller, so each frame's modulation (z after - z before) is
known exactly. A sender thread sends `/livevae/z/0 v` over UDP at random moments with a new v each time; the
arrival time is taken in the OSC server's thread when the control state changes. For each message:
frames = (index of the first frame whose modulation is v) - (index of the first frame presented after arrival),
so 0 means the very next frame on screen showed it, 1 means one stale frame was shown first.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pythonosc.udp_client import SimpleUDPClient
from realtime_show import realtime_show  # bench/ is the script's folder

from livevae.backends import create
from livevae.loop import FrameInfo, LiveLoop, Watcher


class Probe(Watcher):
    """Records z as it passes; `after` also records presentation times."""

    def __init__(self, record: dict[int, Any], key: str) -> None:
        self.record, self.key, self.index = record, key, 0

    def modulate(self, z: np.ndarray, t: float) -> np.ndarray:
        self.record.setdefault(self.index, {})[self.key] = float(z[0, 0])
        return z

    def on_frame(self, info: FrameInfo) -> None:
        if self.key == "after":
            self.record[info.index]["presented"] = time.monotonic()
        self.index = info.index + 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a model file (default: an untrained --preset model)")
    ap.add_argument("--preset", default="live")
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--fps", type=float, default=30.0, help="test card rate")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seconds = args.messages * 0.12 + 2.0
    cfg, state, ctrl, model = realtime_show(args.model, args.preset, args.fps, seconds, "testcard", "osc_latency_")
    assert ctrl.server is not None
    frames: dict[int, Any] = {}
    arrivals: dict[float, float] = {}

    def on_change(target: str, value: float, origin: str) -> None:
        if target == "z/0":  # called in the OSC server's thread the moment the message is applied
            arrivals.setdefault(value, time.monotonic())

    state.add_listener(on_change)
    before, after = Probe(frames, "before"), Probe(frames, "after")
    loop = LiveLoop(cfg, create(cfg.model, "torch"), state, [before, ctrl, after])
    runner = threading.Thread(target=loop.run)
    runner.start()
    while not any("presented" in f for f in frames.values()):
        time.sleep(0.01)
    client = SimpleUDPClient("127.0.0.1", ctrl.server.port)
    rng = random.Random(0)
    sent = []
    for k in range(args.messages):
        time.sleep(rng.uniform(0.05, 0.15))  # random phase against the frame clock
        v = round(1.0 + k * 0.01, 4)  # distinct values, inside z/0's range
        client.send_message("/livevae/z/0", v)
        sent.append(v)
    runner.join()
    idx = sorted(i for i, f in frames.items() if "presented" in f and "before" in f)
    lat_frames, lat_ms = [], []
    for v in sent:
        a = arrivals.get(float(np.float32(v)))
        if a is None:
            continue
        first_after = next((i for i in idx if frames[i]["presented"] > a), None)
        shown = next(
            (i for i in idx if abs(frames[i]["after"] - frames[i]["before"] - v) < 1e-4 and frames[i]["presented"] > a),
            None,
        )
        if first_after is None or shown is None:
            continue
        lat_frames.append(shown - first_after)
        lat_ms.append((frames[shown]["presented"] - a) * 1000)
    st = loop.stats
    frame_ms = 1000.0 / st.fps if st.fps else float("nan")
    eager_ms = sum(v.get("mean_ms", 0.0) for k, v in st.stages.items() if k in ("encode", "decode"))
    res = {
        "preset": args.preset if args.model is None else Path(model).name,
        "messages": len(sent),
        "measured": len(lat_frames),
        "frames_max": int(max(lat_frames)),
        "frames_mean": float(np.mean(lat_frames)),
        "frames_hist": {str(k): int(sum(1 for x in lat_frames if x == k)) for k in sorted(set(lat_frames))},
        "ms_p50": float(np.percentile(lat_ms, 50)),
        "ms_p99": float(np.percentile(lat_ms, 99)),
        "show_fps": st.fps,
        "frame_ms": frame_ms,
        "torch_eager_encode_decode_ms": eager_ms,
        "ms_p50_over_frame": float(np.percentile(lat_ms, 50)) / frame_ms,
        "modulate_ms_mean": st.stages.get("modulate", {}).get("mean_ms", float("nan")),
        "modulate_over_eager_encode_decode": st.stages.get("modulate", {}).get("mean_ms", float("nan")) / eager_ms,
    }
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
