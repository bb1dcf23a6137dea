"""CPU detection and the measured int8/fp32 choice: every kind of CPU (faked /proc/cpuinfo) gets an int8 scheme
that cannot saturate on its kernels, and the choice is timed once, cached per CPU and ONNX Runtime, and logged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

import livevae.backends.cpuchoice as cpuchoice
from livevae.backends import EngineError, create
from livevae.backends.cpuchoice import CpuInfo, choose_precision, read_cpu
from livevae.backends.onnx_export import NetSpec, export
from livevae.backends.quantize import (
    INT16_MAX,
    RECIPE,
    SCHEMES,
    accurate_schemes,
    candidate_schemes,
    scheme_for,
)
from livevae.model import random_model, save_model

X86 = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c"
# /proc/cpuinfo as each kind of machine writes it (first logical CPU; the flags trimmed to what matters).
CPUS = {
    "sapphire-rapids": (
        f"processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: {X86} avx2 avx512f avx512bw "
        "avx512_vnni avx_vnni amx_int8 amx_tile\n",
        "x86-vnni",
    ),
    "cascade-lake": (
        f"model name\t: Intel(R) Xeon(R) Gold 6248\nflags\t\t: {X86} avx2 avx512f avx512bw avx512_vnni\n",
        "x86-vnni",
    ),
    "alder-lake": (f"model name\t: 12th Gen Intel(R) Core(TM) i7-12700\nflags\t\t: {X86} avx2 avx_vnni\n", "x86-vnni"),
    "epyc-zen2": (f"model name\t: AMD EPYC 7B12 64-Core Processor\nflags\t\t: {X86} avx2 bmi2 sha_ni\n", "x86-avx2"),
    "skylake-sp": (
        f"model name\t: Intel(R) Xeon(R) Platinum 8175M\nflags\t\t: {X86} avx2 avx512f avx512bw avx512dq\n",
        "x86-avx512",
    ),
    "graviton2": (
        "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
        "asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n",
        "arm-dotprod",
    ),
    "cortex-a72": (
        "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n",
        "arm",
    ),
}


def fake_cpu(tmp_path: Path, name: str) -> CpuInfo:
    info = tmp_path / f"cpuinfo-{name}"
    info.write_text(CPUS[name][0])
    return read_cpu(info)


@pytest.mark.parametrize("name", list(CPUS))
def test_every_kind_of_cpu_gets_a_scheme_that_cannot_saturate(name: str, tmp_path: Path) -> None:
    """x86 without VNNI adds pairs of u8 x s8 products in a saturating int16 (vpmaddubsw): the scheme chosen
    there must keep 2 x 255 x |w| inside it; VNNI/AMX and Arm sum in 32 bits and get full 8-bit weights."""
    cpu = fake_cpu(tmp_path, name)
    assert cpu.kind == CPUS[name][1]
    scheme = scheme_for(cpu)
    assert scheme in accurate_schemes(cpu)
    if cpu.x86 and not cpu.vnni:
        assert scheme.reduce_range and scheme.pair_sum_bound() <= INT16_MAX, scheme
        assert SCHEMES["u8s8"].pair_sum_bound() > INT16_MAX  # why full 8-bit weights fail the check there
        assert SCHEMES["u8s8"] not in accurate_schemes(cpu)
    else:
        assert scheme.name == "u8s8" and not scheme.reduce_range
    # what the timed choice measures: the exact scheme first, then those derived from it; every one exact here
    candidates = candidate_schemes(cpu)
    assert candidates[0] is scheme and all(s in accurate_schemes(cpu) for s in candidates)
    if cpu.x86 and not cpu.vnni:  # moved weights reach 128: 2 x 255 x 128 would saturate vpmaddubsw's int16
        assert SCHEMES["u8s8-gemm"] not in candidates and SCHEMES["u8s8-gemm"].pair_sum_bound() > INT16_MAX
    else:  # 32-bit sums (VNNI, AMX, Arm): the GEMM-path graph is a candidate too
        assert [s.name for s in candidates] == ["u8s8", "u8s8-gemm"]


def test_cpu_fingerprint_names_model_and_flags(tmp_path: Path) -> None:
    a, b = fake_cpu(tmp_path, "epyc-zen2"), fake_cpu(tmp_path, "cascade-lake")
    assert a.model == "AMD EPYC 7B12 64-Core Processor" and "avx2" in a.flags
    assert a.fingerprint() != b.fingerprint() and a.fingerprint() == fake_cpu(tmp_path, "epyc-zen2").fingerprint()
    arm = fake_cpu(tmp_path, "cortex-a72")
    assert arm.arch == "aarch64" and "0xd08" in arm.model  # Arm Linux names no model: implementer and part
    missing = read_cpu(tmp_path / "no-such-cpuinfo")  # macOS/Windows/containers without the file: safe scheme
    assert scheme_for(CpuInfo("riscv64", "unknown", frozenset())).reduce_range
    assert missing.model


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return save_model(random_model("tiny").eval(), tmp_path / "tiny.safetensors")


def test_avx2_graph_weights_fit_vpmaddubsw(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On an AVX2-only CPU the exported int8 graph itself has 7-bit weights: no pair of products can saturate.
    (Before per-CPU schemes every CPU got full 8-bit weights, and the int8 tests failed on AMD EPYC.)"""
    info = tmp_path / "cpuinfo"
    info.write_text(CPUS["epyc-zen2"][0])
    monkeypatch.setattr(cpuchoice, "CPUINFO", info)
    for net in ("encoder", "decoder"):
        e = export(tiny, NetSpec(net, 1, "int8"), tmp_path / "cache")
        assert e.spec.scheme == "u8s8-w7" and e.path.name.startswith(f"{net}-b1-int8-u8s8-w7")
        g = onnx.load(str(e.path)).graph
        weights = [numpy_helper.to_array(t) for t in g.initializer if t.data_type == onnx.TensorProto.INT8]
        assert weights, "no int8 weights in the graph"
        worst = max(int(abs(w.astype(int)).max()) for w in weights)
        assert 2 * 255 * worst <= INT16_MAX, f"{net}: |w| up to {worst}"
    info.write_text(CPUS["sapphire-rapids"][0])  # the same model on VNNI: full-range weights, another graph
    if SCHEMES["u8s8"] not in accurate_schemes(read_cpu(Path("/proc/cpuinfo"))):  # really on AVX2: its export
        import livevae.backends.onnx_export as onnx_export  # check would (rightly) refuse 8-bit weights here

        monkeypatch.setattr(onnx_export, "check_export", lambda *a, **kw: 0.0)
    e = export(tiny, NetSpec("decoder", 1, "int8"), tmp_path / "cache")
    assert e.spec.scheme == "u8s8" and not e.cached


def test_choice_is_measured_once_and_cached_per_cpu(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import livevae.backends.onnx_export as onnx_export

    # The faked CPUs' graphs are exported on this machine, whose kernels may saturate on 8-bit weights (AVX2):
    # the accuracy check at export is this machine's and is tested on its own schemes (test_quantize); here
    # the choice's logic is tested, with the timings faked too.
    monkeypatch.setattr(onnx_export, "check_export", lambda *a, **kw: 0.0)
    timed: list[int] = []

    def fake_time_calls(calls: list[object], seconds: float = 0) -> list[float]:
        timed.append(len(calls))
        return [8.0, 4.0, 4.4, 4.6][: len(calls)]  # fp32, then the int8 schemes: the first twice as fast

    monkeypatch.setattr(cpuchoice, "time_calls", fake_time_calls)
    cache = tmp_path / "cache"
    lines: list[str] = []
    vnni = fake_cpu(tmp_path, "sapphire-rapids")
    first = choose_precision(tiny, 1, cache, 2, lines.append, cpu=vnni)
    assert first.precision == "int8" and not first.cached and "x2.00" in first.reason and timed == [3]
    assert first.scheme == "u8s8" and "u8s8-gemm x1.82" in first.reason  # fp32 + both VNNI schemes timed
    again = choose_precision(tiny, 1, cache, 2, lines.append, cpu=vnni)
    assert again.cached and again.precision == "int8" and again.scheme == "u8s8" and len(timed) == 1
    assert any("measured before" in s for s in lines), lines
    (stored,) = (cache / "cpu-choice").glob("*.json")
    info = json.loads(stored.read_text())
    assert info["cpu_model"] == "Intel(R) Xeon(R) Platinum 8480+" and info["fields"]["onnxruntime"]
    # the key names every scheme measured, so a new candidate scheme means a new measurement
    assert info["scheme"] == "u8s8"
    assert [r.removeprefix(RECIPE + "-") for r in info["fields"]["int8"]] == ["u8s8", "u8s8-gemm"]
    # another CPU, another ONNX Runtime or another thread count: measured again, never reused
    avx2 = choose_precision(tiny, 1, cache, 2, lines.append, cpu=fake_cpu(tmp_path, "epyc-zen2"))
    assert timed[1] == 2 and avx2.scheme == "u8s8-w7"  # AVX2: fp32 against the one exact int8 scheme
    monkeypatch.setattr("onnxruntime.__version__", "0.0.1-other")
    choose_precision(tiny, 1, cache, 2, lines.append, cpu=vnni)
    choose_precision(tiny, 1, cache, 1, lines.append, cpu=vnni)
    assert len(timed) == 4
    # int8 not clearly faster: fp32, and the log says by how much
    monkeypatch.setattr(cpuchoice, "time_calls", lambda calls, seconds=0: [10.0, 9.8, 9.9])
    slow = choose_precision(tiny, 1, cache, 2, lines.append, cpu=vnni, force=True)
    assert slow.precision == "fp32" and "only x1.02" in slow.reason and "only x1.02" in lines[-1]
    # the GEMM-path graph faster: it is the scheme chosen, and what `create` then opens
    monkeypatch.setattr(cpuchoice, "time_calls", lambda calls, seconds=0: [10.0, 4.0, 3.0])
    gemm = choose_precision(tiny, 1, cache, 2, lines.append, cpu=vnni, force=True)
    assert gemm.precision == "int8" and gemm.scheme == "u8s8-gemm"
    assert "(u8s8-gemm) x3.33" in gemm.reason and "u8s8 x2.50" in gemm.reason


def test_create_opens_the_measured_scheme(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`onnxruntime` with no precision, or with int8 pinned, opens the int8 scheme the choice measured fastest;
    fp32 pinned never measures. (Before, every int8 graph was the CPU's exact scheme, measured or not.)"""
    from livevae.backends.cpuchoice import Choice

    asked: list[object] = []

    def choose(*a: object, **kw: object) -> Choice:
        asked.append(a)
        return Choice("int8", "measured", 1.0, 2.0, scheme="u8s8-w7")  # a scheme every CPU runs exactly

    monkeypatch.setattr(cpuchoice, "choose_precision", choose)
    for backend in ("onnxruntime", "onnxruntime+int8"):
        b = create(tiny, backend, cache_dir=tmp_path / "cache", logger=lambda s: None)
        assert b.precision == "int8" and b.scheme == "u8s8-w7", backend  # type: ignore[attr-defined]
    assert len(asked) == 2
    b = create(tiny, "onnxruntime+fp32", cache_dir=tmp_path / "cache", logger=lambda s: None)
    assert b.precision == "fp32" and b.scheme is None and len(asked) == 2  # type: ignore[attr-defined]


def test_int8_that_fails_its_check_means_fp32_with_the_reason(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from livevae.backends.onnxruntime_backend import OnnxRuntimeBackend

    real = OnnxRuntimeBackend.from_file.__func__  # type: ignore[attr-defined]

    def from_file(cls: type, model_path: object, *a: object, precision: str = "fp32", **kw: object) -> object:
        if precision == "int8":
            raise EngineError("decoder-b1-int8-u8s8.onnx: int8 graph differs from PyTorch fp32 by 0.1 on average")
        return real(cls, model_path, *a, precision=precision, **kw)

    monkeypatch.setattr(OnnxRuntimeBackend, "from_file", classmethod(from_file))
    lines: list[str] = []
    b = create(tiny, "onnxruntime", cache_dir=tmp_path / "cache", logger=lines.append)
    assert b.precision == "fp32"  # type: ignore[attr-defined]
    assert any("onnxruntime fp32" in s and "failed its accuracy check" in s and "on average" in s for s in lines)


def test_real_choice_on_this_machine_is_short(tiny: Path, tmp_path: Path) -> None:
    """The timed run itself (both graphs exported before it) stays around CHOICE_SECONDS."""
    import time

    cache = tmp_path / "cache"
    for scheme in candidate_schemes(read_cpu()):
        for net in ("encoder", "decoder"):
            export(tiny, NetSpec(net, 1, "int8", scheme=scheme.name), cache)
    export(tiny, NetSpec("encoder", 1, "fp32"), cache), export(tiny, NetSpec("decoder", 1, "fp32"), cache)
    t = time.perf_counter()
    c = choose_precision(tiny, 1, cache, 2, lambda s: None)
    assert time.perf_counter() - t < cpuchoice.CHOICE_SECONDS + 3
    assert c.precision in ("int8", "fp32") and c.int8_ms and c.fp32_ms > 0 and not c.cached


def test_timed_choice_runs_each_candidate_in_blocks_and_drops_the_cold_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fake clock: a call right after another candidate's costs 5 ms (its weights out of the caches), a call
    right after its own 1 ms, as in a show. Rounds interleave the candidates; within a round each runs a block
    and its first call is not counted, so the medians are the warm 1 ms; single calls would all be cold."""
    clock = [0.0]
    order: list[str] = []

    def call(name: str, warm_ms: float) -> Callable[[], None]:
        def f() -> None:
            clock[0] += (warm_ms if order and order[-1] == name else 5.0) / 1000
            order.append(name)

        return f

    monkeypatch.setattr(cpuchoice.time, "perf_counter", lambda: clock[0])
    calls = [call("a", 1.0), call("b", 2.0)]
    assert cpuchoice.time_calls(calls, seconds=0.05, block=3) == pytest.approx([1.0, 2.0])
    timed = order[2 * cpuchoice.CHOICE_WARMUP :]
    assert timed[:12] == list("aaabbbaaabbb")  # interleaved rounds of blocks
    assert len(timed) // 6 >= 3  # at least 3 rounds, however short the time
    order.clear()
    assert cpuchoice.time_calls(calls, seconds=0.05, block=1) == pytest.approx([5.0, 5.0])  # single calls: all cold
