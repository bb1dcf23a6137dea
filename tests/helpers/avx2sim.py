"""pytest plugin: run tests as on an AVX2-only x86 CPU whose u8s8 kernels saturate (a simulation, for portability).

This machine's /proc/cpuinfo reads as an AMD EPYC without VNNI, and every int8 graph with full 8-bit weights
(u8s8 and the schemes derived from it) fails the export's accuracy check, as the demo encoder did on a real
EPYC (2.7 off PyTorch against 0.41 allowed). tests/test_portable_sim.py runs the CPU-dependent tests under it.
LIVEVAE_SIM_DIR names a folder for the fake cpuinfo and for `seen`, what the session's code saw of the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import livevae.backends.cpuchoice as cpuchoice
import livevae.backends.onnx_export as onnx_export
import livevae.backends.quantize as quantize
from livevae.backends import EngineError

SIM = Path(os.environ["LIVEVAE_SIM_DIR"])
FAKE = SIM / "cpuinfo"
FAKE.write_text("model name\t: AMD EPYC 7B12 64-Core Processor\nflags\t\t: fpu sse2 ssse3 fma sse4_1 sse4_2 avx avx2\n")
SATURATING = {name for name, s in quantize.SCHEMES.items() if not s.reduce_range}

cpuchoice.CPUINFO = FAKE
_read_cpu = cpuchoice.read_cpu
_check_export = onnx_export.check_export


def read_cpu(path: Path | None = None) -> cpuchoice.CpuInfo:
    """No path reads cpuchoice.CPUINFO (the fake, unless a test put its own there); the real file's path,
    named by a test that wants this machine's own CPU, reads the fake too."""
    return _read_cpu(FAKE if path is not None and str(path) == "/proc/cpuinfo" else path)


def check_export(spec: Any, model: Any, path: Path, batch: int | None = None) -> float:
    if spec.precision == "int8" and spec.scheme in SATURATING:
        raise EngineError(f"{path}: ONNX Runtime differs from PyTorch by 2.7; expected <= 0.41 (int8, simulated)")
    return float(_check_export(spec, model, path, batch))


cpuchoice.read_cpu = read_cpu
quantize.read_cpu = read_cpu  # type: ignore[assignment]
onnx_export.check_export = check_export


def pytest_report_header() -> str:
    return "livevae: simulating an AVX2-only CPU whose u8s8 kernels saturate (tests/helpers/avx2sim.py)"


def pytest_sessionfinish() -> None:
    """What the code under test saw: the CPU kind and the int8 scheme it was given (the caller checks both)."""
    cpu = cpuchoice.read_cpu()
    (SIM / "seen").write_text(f"{cpu.kind} {quantize.scheme_for(cpu).name}")
