"""bench/cpusim.py: this machine masked to an AVX2-only CPU, for real (CPUID faulting), and the int8 path it gets."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("cpusim", ROOT / "bench" / "cpusim.py")
assert spec is not None and spec.loader is not None
cpusim = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cpusim)

WHY = cpusim.available()
WHY_NOT_DISPATCH = cpusim.dispatch_available("avx2")  # the AVX2 CPU: what needs_mask's tests present
# either way of simulating (cpusim's --via auto takes CPUID faulting where it runs, else dispatch)
needs_mask = pytest.mark.skipif(
    WHY is not None and WHY_NOT_DISPATCH is not None,
    reason=f"cannot simulate the CPU here: {WHY}; and no --via dispatch: {WHY_NOT_DISPATCH}",
)


def test_masked_cpuinfo_drops_avx512_vnni_and_amx_and_keeps_the_rest() -> None:
    text = (
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
        "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni amx_int8 amx_tile avx512_bf16\n"
    )
    out = cpusim.masked_cpuinfo(text)
    flags = next(line for line in out.splitlines() if line.startswith("flags")).split(":")[1].split()
    assert flags == ["fpu", "sse4_2", "avx", "avx2", "fma"]
    assert "model name\t: Intel(R) Xeon(R) Processor [AVX2 mask]" in out
    assert out.startswith("processor\t: 0\n")
    skx = cpusim.masked_cpuinfo(text, "avx512")  # a Skylake-SP: AVX-512 without VNNI
    flags = next(line for line in skx.splitlines() if line.startswith("flags")).split(":")[1].split()
    assert flags == ["fpu", "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw"]
    assert "[AVX512 mask]" in skx


def _masked(code: str, tmp_path: Path, timeout: float = 240, cpu: str = "avx2") -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(ROOT / "bench" / "cpusim.py"), "--cache", str(tmp_path / "mask"), cpu, "--"]
    return subprocess.run([*cmd, sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.skipif(WHY is not None, reason=f"cannot trap CPUID here: {WHY} (--via dispatch is tested below)")
@pytest.mark.parametrize(
    ("cpu", "want", "line"),
    [
        ("avx2", ["AVX2", "x86-avx2", "u8s8-w7"], "sees an AVX2-only CPU"),
        ("avx512", ["AVX512", "x86-avx512", "u8s8-w7"], "sees an AVX-512 CPU without VNNI"),
    ],
)
def test_every_library_sees_the_masked_cpu(cpu: str, want: list[str], line: str, tmp_path: Path) -> None:
    """PyTorch picks its kernels from CPUID (unmasked this machine gives AVX512 with VNNI/AMX); livevae reads the
    masked /proc/cpuinfo and gives the scheme for a CPU without VNNI."""
    r = _masked(
        "import torch; from livevae.backends import cpuchoice, quantize; c = cpuchoice.read_cpu();"
        "print(torch.backends.cpu.get_cpu_capability(), c.kind, quantize.scheme_for(c).name)",
        tmp_path,
        cpu=cpu,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == want, r.stdout
    assert line in r.stderr


@needs_mask
def test_on_avx2_kernels_full_8bit_weights_saturate_and_the_avx2_scheme_passes(tmp_path: Path) -> None:
    """The issue's EPYC finding, run for real on ONNX Runtime's AVX2 kernels: the demo encoder's u8s8 graph fails
    the export's accuracy check (vpmaddubsw saturates: 2.8 off against 0.41), and u8s8-w7, the scheme an AVX2
    CPU is given, passes it."""
    code = f"""
from livevae.backends import EngineError
from livevae.backends.onnx_export import NetSpec, export
demo = {str(ROOT / "livevae" / "assets" / "demo.safetensors")!r}
cache = {str(tmp_path / "cache")!r}
try:
    export(demo, NetSpec("encoder", 1, "int8", scheme="u8s8"), cache)
    print("u8s8 passed")
except EngineError as e:
    print("u8s8 refused:", e)
done = export(demo, NetSpec("encoder", 1, "int8", scheme="u8s8-w7"), cache)
print("u8s8-w7 passed", done.max_abs_diff)
"""
    r = _masked(code, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("u8s8 refused:") and "differs from PyTorch by" in lines[0], r.stdout
    assert lines[-1].startswith("u8s8-w7 passed"), r.stdout
    assert float(lines[-1].split()[-1]) < 0.41


# --via dispatch (bench/dispatchsim.py): where CPUID cannot be trapped, each library is steered and checked.
dispatchsim = sys.modules["dispatchsim"]  # imported by cpusim, from bench/
WHY_NOT_SKX = cpusim.dispatch_available("avx512")
needs_dispatch = pytest.mark.skipif(WHY_NOT_SKX is not None, reason=f"no --via dispatch avx512 here: {WHY_NOT_SKX}")


def _mlas_like(vnni_target_off: int = 0, anchors: int = 1, avx_vnni: bool = True) -> tuple[bytes, dict[str, int]]:
    """Bytes laid out as MLAS's platform set-up compiles (ONNX Runtime 1.32, gcc): the AVX-VNNI check, then
    `test $0x10000,%r10d; je END`, the AVX-512 block with its BW/DQ/VL mask, `and $0x800,%edi` and `je END`."""
    b = bytearray(b"\x90" * 0x40)
    at: dict[str, int] = {}
    if avx_vnni:
        b += b"\xb8\x07\x00\x00\x00\xb9\x01\x00\x00\x00\x0f\xa2\xa8\x10"
        at["avx_vnni_je"] = len(b)
        b += b"\x74\x10" + b"\x90" * 0x20
    b += b"\x41\xf7\xc2\x00\x00\x01\x00"
    at["avx512f_je"] = len(b)
    b += b"\x74\x00"  # rel8 filled in below (the block must end within 127 bytes of it)
    b += b"\x90" * 0x10
    for _ in range(anchors):
        b += b"\x41\x81\xe2\x00\x00\x02\xc0" + b"\x90" * 0x10
    b += b"\x81\xe7\x00\x08\x00\x00" + b"\x90" * 0x08
    at["vnni_je"] = len(b)
    b += b"\x0f\x84\x00\x00\x00\x00" + b"\x90" * 0x10
    at["end"] = len(b)
    b += b"\xc3"
    b[at["avx512f_je"] + 1] = at["end"] - (at["avx512f_je"] + 2)
    rel = at["end"] + vnni_target_off - (at["vnni_je"] + 6)
    b[at["vnni_je"] + 2 : at["vnni_je"] + 6] = rel.to_bytes(4, "little", signed=True)
    return bytes(b), at


def test_dispatch_patches_the_vnni_and_avx512_jumps_and_nothing_else() -> None:
    data, at = _mlas_like()
    skx = dispatchsim.mlas_patches(data, "avx512")
    assert skx == [(at["avx_vnni_je"], b"\x74", b"\xeb"), (at["vnni_je"], b"\x0f\x84", b"\x90\xe9")]
    avx2 = dispatchsim.mlas_patches(data, "avx2")  # and the AVX-512 block is skipped too
    assert avx2 == sorted([*skx, (at["avx512f_je"], b"\x74", b"\xeb")])
    plain, at2 = _mlas_like(avx_vnni=False)  # a build without the AVX-VNNI block: one patch fewer
    assert dispatchsim.mlas_patches(plain, "avx512") == [(at2["vnni_je"], b"\x0f\x84", b"\x90\xe9")]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"anchors": 0}, "found 0 AVX-512 BW/DQ/VL checks"),
        ({"anchors": 2}, "found 2 AVX-512 BW/DQ/VL checks"),
        ({"vnni_target_off": 8}, "not the AVX-512 block's end"),
    ],
)
def test_dispatch_patches_nothing_where_the_code_is_not_as_expected(kw: dict[str, int], message: str) -> None:
    data, _ = _mlas_like(**kw)
    with pytest.raises(dispatchsim.SimError, match=message):
        dispatchsim.mlas_patches(data, "avx2", "libfake.so")


def test_dispatch_check_names_each_library_that_did_not_take_the_cpu() -> None:
    skx_isa = "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions"  # oneDNN's AVX512_CORE
    seen = {**dispatchsim.EXPECTED["avx512"], "onednn": skx_isa}
    assert dispatchsim.check(seen, "avx512") == []
    seen.update(ort_int8_dot="exact", onednn="Intel AVX-512 with Intel DL Boost and bfloat16 support")
    wrong = dispatchsim.check(seen, "avx512")
    assert wrong[0] == "ort_int8_dot: 'exact', expected 'saturating'" and wrong[1].startswith("onednn:"), wrong
    assert dispatchsim.uncovered("flags\t: avx2 amx_tile amx_int8\n") == ["amx_tile", "amx_int8"]
    avx2_only = "flags\t: sse4_2 avx avx2 fma\n"  # an EPYC Zen 2: it can play an AVX2 CPU, not a Skylake-SP
    assert dispatchsim.missing(avx2_only, "avx2") == []
    assert dispatchsim.missing(avx2_only, "avx512") == ["avx512f", "avx512bw", "avx512dq", "avx512vl"]


@needs_dispatch
@pytest.mark.parametrize(("cpu", "want"), [("avx512", "AVX512 x86-avx512 u8s8-w7 saturating")])
def test_via_dispatch_the_command_itself_runs_the_older_cpus_kernels(cpu: str, want: str, tmp_path: Path) -> None:
    """Not only the probe: the command run sees the simulated CPU, in PyTorch and livevae, and ONNX Runtime's
    int8 dot product saturates in it as vpmaddubsw does (unsimulated, this CPU's VNNI gives the exact sum). The
    AVX2 CPU runs the issue's own export under either way above (its u8s8 graph saturates there)."""
    code = """
import numpy as np, torch
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort
from livevae.backends import cpuchoice, quantize
g = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "g",
    [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, 64])],
    [helper.make_tensor_value_info("Y", TensorProto.INT32, [None, 4])],
    [numpy_helper.from_array(np.full((64, 4), 127, np.int8), "B")])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None,
    {"A": np.full((2, 64), 255, np.uint8)})[0][0, 0]
c = cpuchoice.read_cpu()
print(torch.backends.cpu.get_cpu_capability(), c.kind, quantize.scheme_for(c).name,
      "exact" if y == 255 * 127 * 64 else "saturating")
"""
    cmd = [sys.executable, str(ROOT / "bench" / "cpusim.py"), "--via", "dispatch", "--cache", str(tmp_path), cpu]
    r = subprocess.run([*cmd, "--", sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == want.split(), r.stdout
    assert f"via dispatch, every library sees {cpusim.SEES[cpu]}" in r.stderr
    unsim = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    if "vnni" in Path("/proc/cpuinfo").read_text():  # and the same code unsimulated does not saturate here
        assert unsim.stdout.split()[-1] == "exact", unsim.stdout + unsim.stderr[-500:]


def test_dispatch_refuses_a_cpu_it_cannot_simulate_in_one_line(tmp_path: Path) -> None:
    """Where neither way can run (here: asked for cpuid only, without cpuid_fault; or a stub probe fails), the
    command is not run and the reason is one line, exit status 2."""
    if WHY is None:
        pytest.skip("CPUID faulting runs here, so --via cpuid is not refused")
    cmd = [sys.executable, str(ROOT / "bench" / "cpusim.py"), "--via", "cpuid", "--cache", str(tmp_path), "avx2"]
    r = subprocess.run([*cmd, "--", "touch", str(tmp_path / "ran")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and not (tmp_path / "ran").exists()
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("cpusim: "), r.stderr


def test_the_installed_onnx_runtime_has_the_sites_the_patcher_knows() -> None:
    """The patcher was written against ONNX Runtime 1.32's MLAS: there it must find every site (no silent skip
    of the dispatch tests if a rebuild moved them); another version is named in the skip."""
    import onnxruntime

    if os.uname().machine != "x86_64" or not onnxruntime.__version__.startswith("1.32."):
        pytest.skip(f"the patch sites are known for onnxruntime 1.32 on x86-64, not {onnxruntime.__version__}")
    lib = dispatchsim.ort_library()
    data = lib.read_bytes()
    skx, avx2 = dispatchsim.mlas_patches(data, "avx512"), dispatchsim.mlas_patches(data, "avx2")
    assert len(skx) == 2 and len(avx2) == 3, (skx, avx2)  # AVX-VNNI + AVX-512 VNNI; and AVX512F for avx2
    assert all(data[at : at + len(old)] == old for at, old, _ in avx2)
