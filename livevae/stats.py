"""What a show measured: milliseconds per stage (StageTimes) and the exit stats of a run (LiveStats)."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


class StageTimes:
    """Per-stage timings: running count and sum for means, the last `keep` samples for percentiles."""

    def __init__(self, keep: int = 20000) -> None:
        self.n: dict[str, int] = {}
        self.total: dict[str, float] = {}
        self.recent: dict[str, deque[float]] = {}
        self.keep = keep

    def add(self, stage: str, ms: float) -> None:
        if stage not in self.n:
            self.n[stage], self.total[stage], self.recent[stage] = 0, 0.0, deque(maxlen=self.keep)
        self.n[stage] += 1
        self.total[stage] += ms
        self.recent[stage].append(ms)

    def mean_recent(self, stage: str, last: int = 30) -> float:
        r = self.recent.get(stage)
        if not r:
            return 0.0
        k = min(last, len(r))
        return sum(r[i] for i in range(len(r) - k, len(r))) / k

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for s in self.n:
            a = np.asarray(self.recent[s], np.float64)
            out[s] = {
                "mean_ms": self.total[s] / self.n[s],
                "p50_ms": float(np.percentile(a, 50)),
                "p99_ms": float(np.percentile(a, 99)),
            }
        return out


@dataclass
class LiveStats:
    """What a show did, printed on exit (and written as JSON with --stats-json)."""

    frames: int = 0
    seconds: float = 0.0  # wall time of the loop
    fps: float = 0.0  # frames / seconds
    source_fps: float = 0.0
    backend: str = ""
    mode: str = "live"  # live | realtime | offline
    pipelined_frames: int = 0  # frames whose encode ran beside the previous frame's decode (LiveConfig.pipeline)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    dropped: int = 0  # stale frames dropped in the source slot
    display_dropped: int = 0  # decoded frames the display thread had no refresh for (newest shown instead)
    record_dropped: int = 0  # frames a full recorder queue dropped
    fallback_frames: int = 0
    source_failures: int = 0
    reconnects: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)  # capture -> present: p50, p99, mean
    controller_errors: int = 0
    outputs: list[str] = field(default_factory=list)  # recordings and renders written
    screenshots: list[str] = field(default_factory=list)
    sinks: list[str] = field(default_factory=list)  # each extra output (NDI, Syphon ...) at the end: sent, dropped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lat = self.latency_ms
        period = 1000 / self.source_fps if self.source_fps else float("nan")
        piped = f", {self.pipelined_frames} pipelined" if self.pipelined_frames else ""
        lines = [
            f"{self.frames} frames in {self.seconds:.2f} s: {self.fps:.1f} fps (source {self.source_fps:.2f} fps, "
            f"{self.mode}, {self.backend}{piped})",
            "  "
            + "  ".join(f"{k} {v['mean_ms']:.1f}/{v['p99_ms']:.1f}" for k, v in self.stages.items())
            + "  ms mean/p99",
            f"  latency capture->present p50 {lat.get('p50', 0):.1f} ms, p99 {lat.get('p99', 0):.1f} ms "
            f"({lat.get('p99', 0) / period:.2f} frames)",
            f"  dropped {self.dropped} (source) + {self.record_dropped} (recorder) + {self.display_dropped} (display); "
            "fallback frames "
            f"{self.fallback_frames}; source failures {self.source_failures}, reconnects {self.reconnects}",
        ]
        if self.controller_errors:
            lines.append(f"  controller errors {self.controller_errors}")
        lines += [f"  wrote {p}" for p in self.outputs + self.screenshots]
        lines += [f"  output {d}" for d in self.sinks]
        return "\n".join(lines)
