"""offline/bench.py: what every benchmark records about the machine and whether its run was quiet."""

from __future__ import annotations

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
