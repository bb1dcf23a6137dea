"""The CPU-dependent tests pass on an AVX2-only machine too: run again under a simulation of one (helpers/avx2sim)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The tests that pick int8 schemes, export int8 graphs or choose between them, all of which once assumed the
# CPU that wrote them (the suite was red on an AMD EPYC without VNNI).
CPU_DEPENDENT = [
    "tests/test_cpuchoice.py",
    "tests/test_quantize.py::test_gemm_scheme_is_the_u8s8_graph_with_moved_weights",
]


@pytest.mark.slow
def test_cpu_dependent_tests_pass_where_u8s8_saturates(tmp_path: Path) -> None:
    env = dict(os.environ, LIVEVAE_SIM_DIR=str(tmp_path), LIVEVAE_CACHE=str(tmp_path / "cache"))
    plugins = ["-p", "tests.helpers.avx2sim", "-p", "no:cacheprovider"]
    cmd = [sys.executable, "-m", "pytest", "-q", *plugins, *CPU_DEPENDENT]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "skipped" not in r.stdout, r.stdout[-2000:]
    # the simulation was in force: the code under test saw an AVX2 CPU and gave it the 7-bit scheme
    assert (tmp_path / "seen").read_text() == "x86-avx2 u8s8-w7"
