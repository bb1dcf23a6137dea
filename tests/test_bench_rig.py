"""bench/bench_rig.py's summary: medians over interleaved rounds, each NDI show against its own round's baseline."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

spec = importlib.util.spec_from_file_location(
    "bench_rig", Path(__file__).resolve().parents[1] / "bench" / "bench_rig.py"
)
assert spec is not None and spec.loader is not None
bench_rig = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_rig)


def show(cpu: float, threads: dict[str, float], fmt: str = "I420") -> dict[str, Any]:
    return {"cpu_ms_per_frame": cpu, "fps": 30.0, "frames": 150, "sinks": [], "send_format": fmt,
            "cpu_ms_per_frame_by_thread": threads}  # fmt: skip


def test_the_extra_is_the_median_of_paired_differences_not_of_medians() -> None:
    # the machine drifts: round 2 is 1 ms slower for every show; the NDI show costs 2.0, 2.1, 1.9 over its round
    base = [show(20.0, {"MainThread": 14.0}), show(21.0, {"MainThread": 15.0}), show(20.2, {"MainThread": 14.0})]
    ndi = [show(22.0, {"MainThread": 14.5, "ndi x": 1.5}), show(23.1, {"MainThread": 15.4, "ndi x": 1.6}),
           show(22.1, {"MainThread": 14.4, "ndi x": 1.4})]  # fmt: skip
    out = bench_rig.summarise({"baseline": base, "ndi_720p": ndi})
    assert out["baseline"]["cpu_ms_per_frame"] == 20.2 and out["ndi_720p"]["cpu_ms_per_frame"] == 22.1
    assert out["ndi_720p"]["extra_cpu_ms_per_frame"] == pytest.approx(2.0)  # medians' difference: 1.9
    assert out["ndi_720p"]["extra_cpu_ms_per_frame_rounds"] == [2.0, 2.1, 1.9]
    assert out["ndi_720p"]["ratio_vs_baseline"] == pytest.approx(22.1 / 20.2)
    # where it went: the NDI thread's median, and the frame thread's median against the baseline's
    assert out["ndi_720p"]["extra_by_thread"] == {"ndi x": 1.5, "MainThread": 0.5}


def test_a_thread_missing_from_a_round_counts_zero_there() -> None:
    rs = [show(1.0, {"a": 1.0}), show(1.0, {}), show(1.0, {"a": 0.4})]
    assert bench_rig.median_threads(rs) == {"a": 0.4}
