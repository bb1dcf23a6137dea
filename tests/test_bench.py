"""offline/bench.py: what every benchmark records about the machine and whether its run was quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from livevae.offline import bench


@pytest.mark.parametrize(
    ("cores", "before", "contended"),
    [(2, 0.4, False), (2, 1.0, False), (2, 1.5, True), (16, 6.0, False), (16, 9.0, True), (2, None, True)],
)
def test_a_run_that_starts_on_a_busy_machine_is_marked_contended(
    monkeypatch: pytest.MonkeyPatch, cores: int, before: float | None, contended: bool
) -> None:
    monkeypatch.setattr(bench.os, "cpu_count", lambda: cores)
    info = bench.conditions(before)
    assert info["contended"] is contended
    assert info["load_avg_1m_before"] == before and "load_avg_1m_after" in info
    line = bench.conditions_line(info)
    assert ("CONTENDED: not evidence" in line) is contended and ("quiet" in line) is not contended
    assert info["cpu"] in line and f"{cores} cores" in line and info["cpu_kind"] in line
    assert all(flag in line for flag in info["cpu_int8_flags"])  # the flags the figures depend on are named


def test_each_round_starts_one_backend_later_so_none_always_runs_last(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In a fixed order the last backend measured slower (same graphs: x2.41 last, x2.95 second); the rounds
    rotate, so each backend runs first, in the middle and last once in three rounds."""
    import numpy as np

    calls: list[str] = []

    class Fake:
        def __init__(self, name: str) -> None:
            self.name = name

        def encode(self, frames: np.ndarray) -> np.ndarray:
            calls.append(self.name)
            return np.zeros((len(frames), 16), np.float32)

        def decode(self, z: np.ndarray) -> np.ndarray:
            return np.zeros((len(z), 48, 64, 3), np.uint8)

    monkeypatch.setattr(bench, "_make_backend", lambda name, *a: (Fake(name), name))

    def measure(fn, seconds):  # type: ignore[no-untyped-def]
        fn()
        return [0.001, 0.001, 0.001], 100.0

    monkeypatch.setattr(bench, "measure", measure)
    report = bench.run_bench(["tiny"], ["torch-cpu", "a", "b"], [1], 0.01, 3, 1, tmp_path, say=lambda s: None)
    firsts = calls[::2]  # encode and both call encode: one entry per (backend, op) pair that encodes
    rounds = [list(dict.fromkeys(firsts[i * 3 : i * 3 + 3])) for i in range(3)]
    assert rounds == [["torch-cpu", "a", "b"], ["a", "b", "torch-cpu"], ["b", "torch-cpu", "a"]], calls
    assert {r.backend for r in report.rows} == {"torch-cpu", "a", "b"}
