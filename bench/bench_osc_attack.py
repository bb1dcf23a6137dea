"""Benchmark: a realtime show's fps before, during and after each OSC attack class, and its largest frame gap.

python bench/bench_osc_attack.py                                  # untrained `live` preset, torch eager, 30 fps card
python bench/bench_osc_attack.py --preset tiny --phase 2 --json bench/results/osc_attack.json

Method: one show (OSC on 127.0.0.1, test card at --fps, torch eager backend) runs for the whole benchmark; a
watcher stamps every presented frame. For each attack class, a sender in its own process (so it never takes the
show's GIL) is quiet for --phase seconds, attacks for --phase seconds at full rate, and is quiet again; fps and the
largest gap between presented frames are measured in each window. The "null" class floods a port nobody reads:
it measures what the attacker process itself takes from this machine's cores. The baseline is the same show with
no attack, measured in the same run: fps_ratio = fps during / fps before. The goal: ratio >= 0.9 and no gap over 100 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import build_msg
from realtime_show import realtime_show  # bench/ is the script's folder

from livevae.backends import create
from livevae.loop import FrameInfo, LiveLoop, Watcher

ATTACKS = ("null", "wildcards", "garbage", "fanout", "scene-save", "big-source", "source-switch", "valid-flood")


def _datagrams(kind: str, rng: random.Random) -> list[bytes]:
    """A pool of datagrams of one attack class, built before the clock starts."""
    if kind == "wildcards":  # the finding: a few dozen bytes of wildcards stalled python-osc's regex
        pats = ["/" + "*" * 40, "/" + "*?" * 30, "/livevae/" + "*a" * 30, "/*/*/*/*/*/*/*/*", "/livevae/[a-z]*" * 8]
        return [build_msg(p, [0.5]).dgram for p in pats]
    if kind == "null":  # valid datagrams to a port nobody listens on: what the sender itself costs this machine
        return [build_msg("/livevae/z/0", [0.5]).dgram]
    if kind == "garbage":
        return [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300))) for _ in range(2000)]
    if kind == "fanout":
        b = OscBundleBuilder(IMMEDIATELY)
        for _ in range(50):
            b.add_content(build_msg("/livevae/*/*", [0.1]))
        return [b.build().dgram]
    if kind == "scene-save":
        return [build_msg("/livevae/scene/save", [f"flood{i}"]).dgram for i in range(5000)]
    if kind == "big-source":
        return [build_msg("/livevae/source", [f"testcard:{w}x{w}"]).dgram for w in (100000, 40000, 8192)]
    if kind == "source-switch":
        return [build_msg("/livevae/source", [s]).dgram for s in ("testcard:320x240", "testcard:640x480")]
    if kind == "valid-flood":
        return [build_msg(f"/livevae/z/{i % 200}", [rng.uniform(-1, 1)]).dgram for i in range(2000)]
    raise ValueError(kind)


def sender(kind: str, port: int, seconds: float, out: Any) -> None:
    """Send one attack class at full rate for `seconds`; puts the count sent on `out`."""
    rng = random.Random(0)
    pool = _datagrams(kind, rng)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if kind == "null":
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel drops nearly all, as for the show
        port = sink.getsockname()[1]
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        with contextlib.suppress(OSError):  # a full send buffer: keep flooding
            s.sendto(pool[n % len(pool)], ("127.0.0.1", port))
        n += 1
    out.put(n)


class Stamps(Watcher):
    def __init__(self) -> None:
        self.t: list[float] = []

    def on_frame(self, info: FrameInfo) -> None:
        self.t.append(time.monotonic())


def window(stamps: list[float], a: float, b: float) -> tuple[float, float]:
    """(fps, largest gap in ms) of the frames presented in [a, b)."""
    ts = np.asarray([t for t in stamps if a <= t < b])
    if len(ts) < 2:
        return 0.0, (b - a) * 1000
    edges = np.concatenate([[a], ts, [b]])
    return (len(ts) - 1) / (ts[-1] - ts[0]), float(np.diff(edges).max() * 1000)


def loadavg() -> float:
    """The machine's 1-minute load average: on a shared 2-core machine, other work moves every figure."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def cpu_line() -> str:
    model, flags = "?", ""
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name") and model == "?":
                model = ln.split(":", 1)[1].strip()
            if ln.startswith("flags") and not flags:
                have = set(ln.split(":", 1)[1].split())
                flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile", "fma") if f in have)
    except OSError:
        pass
    return f"{model} [{flags}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a model file (default: an untrained --preset model)")
    ap.add_argument("--preset", default="live")
    ap.add_argument("--fps", type=float, default=30.0, help="test card rate")
    ap.add_argument("--phase", type=float, default=3.0, help="seconds of each window (before, during, after)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    attacks = [a for a in args.attacks.split(",") if a]
    torch.set_num_threads(args.threads)
    # ended by a quit action once every attack is measured
    cfg, state, ctrl, model = realtime_show(
        args.model, args.preset, args.fps, 3600.0, "testcard:320x240", "osc_attack_"
    )
    assert ctrl.server is not None
    stamps = Stamps()
    loop = LiveLoop(cfg, create(cfg.model, "torch"), state, [ctrl, stamps])
    runner = threading.Thread(target=loop.run)
    runner.start()
    while len(stamps.t) < 5:
        time.sleep(0.01)
    time.sleep(1.0)  # warm
    ctx = mp.get_context("spawn")
    rows = []
    for kind in attacks:
        q: Any = ctx.Queue()
        proc = ctx.Process(target=sender, args=(kind, ctrl.server.port, args.phase, q))
        t0 = time.monotonic()
        time.sleep(args.phase)  # "before": quiet
        t1 = time.monotonic()
        proc.start()
        sent = q.get()
        proc.join()
        t2 = time.monotonic()
        time.sleep(args.phase)  # "after": quiet again (the next attack's "before" follows)
        t3 = time.monotonic()
        (fb, gb), (fd, gd), (fa, ga) = window(stamps.t, t0, t1), window(stamps.t, t1, t2), window(stamps.t, t2, t3)
        load = loadavg()
        rows.append({
            "attack": kind, "sent": sent, "fps_before": round(fb, 2), "fps_during": round(fd, 2),
            "fps_after": round(fa, 2), "fps_ratio_during": round(fd / fb, 3) if fb else 0.0,
            "fps_ratio_after": round(fa / fb, 3) if fb else 0.0, "max_gap_ms_during": round(gd, 1),
            "max_gap_ms_after": round(ga, 1), "max_gap_ms_before": round(gb, 1), "loadavg_1min": load,
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    state.post("quit")
    runner.join()
    st = ctrl.server.stats
    res = {
        "cpu": cpu_line(),
        "cores": os.cpu_count(),
        "preset": args.preset if args.model is None else Path(model).name,
        "backend": "torch eager",
        "threads": args.threads,
        "card_fps": args.fps,
        "phase_s": args.phase,
        "server": {
            "datagrams": st.datagrams,
            "malformed": st.malformed,
            "unknown": st.unknown,
            "bad_args": st.bad_args,
            "dropped_fanout": st.dropped,
            "throttled": st.throttled,
            "stale": st.stale,
        },
        "live_scenes": len(ctrl.scenes.names()),
        "rows": rows,
        "goal_met": all(r["fps_ratio_during"] >= 0.9 and r["max_gap_ms_during"] <= 100 for r in rows),
    }
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}, indent=2))
    write_json(args.json, res)
    return 0


def write_json(path: str | None, res: dict[str, Any]) -> None:
    """The figures as JSON at `path` (nothing when None)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
