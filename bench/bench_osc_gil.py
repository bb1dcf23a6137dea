"""Benchmark: how long the OSC server thread keeps another Python thread waiting, per attack class.

python bench/bench_osc_gil.py                        # every attack class of bench_osc_attack, 3 s each
python bench/bench_osc_gil.py --attacks null,fanout --seconds 5 --json bench/results/osc_gil.json

Method: a server (zdim 200, 16 PCs, no model) listens on 127.0.0.1; a sender process floods it with one attack
class; a ticker thread in the server's process sleeps 1 ms in a loop and records how late it wakes. Its lateness
is the time it waited for the GIL (plus the scheduler's), which is what the frame thread would wait. The "null"
class floods a port nobody reads: the same figure with the server idle, measured in the same run, is the baseline.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import threading
import time
from typing import Any

from bench_osc_attack import ATTACKS, cpu_line, loadavg, sender, write_json  # bench/ is the script's folder

from livevae.control.state import ControlState
from livevae.controllers.osc import OscServer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    srv = OscServer(ControlState(200, 16), port=0)
    srv.start()
    ctx = mp.get_context("spawn")
    rows: list[dict[str, Any]] = []
    for kind in [a for a in args.attacks.split(",") if a]:
        q: Any = ctx.Queue()
        proc = ctx.Process(target=sender, args=(kind, srv.port, args.seconds, q))
        late: list[float] = []
        stop = threading.Event()

        def tick(late: list[float] = late, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                t = time.perf_counter()
                time.sleep(0.001)
                late.append((time.perf_counter() - t - 0.001) * 1000)

        proc.start()
        time.sleep(0.5)  # the spawned sender imports and starts flooding
        th = threading.Thread(target=tick)
        th.start()
        sent = q.get()
        proc.join()
        stop.set()
        th.join()
        late.sort()
        rows.append({
            "attack": kind, "sent": sent, "ticks": len(late), "late_ms_p50": round(late[len(late) // 2], 2),
            "late_ms_p99": round(late[int(len(late) * 0.99)], 2), "late_ms_max": round(late[-1], 1),
            "loadavg_1min": loadavg(),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    st = srv.stats
    srv.stop()
    base = next((r for r in rows if r["attack"] == "null"), None)
    for r in rows:
        r["late_max_over_null"] = round(r["late_ms_max"] / base["late_ms_max"], 2) if base else None
    res = {"cpu": cpu_line(), "seconds": args.seconds, "throttled": st.throttled, "stale": st.stale, "rows": rows}
    write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
