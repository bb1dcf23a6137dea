"""An older x86 CPU where CPUID cannot be trapped: each library's own kernel choice steered, and checked.

bench/cpusim.py's first way (CPUID faulting) needs the `cpuid_fault` flag, which most KVM guests lack. This is
its second way, `cpusim.py --via dispatch`: the same command, the same simulated CPUs (avx2: an AVX2-only EPYC
Zen 2/3 or a pre-Skylake-SP Intel; avx512: a Skylake-SP, AVX-512 without VNNI), with each library told in its
own terms:

- ONNX Runtime: MLAS picks its kernels once, from CPUID, in its platform set-up, and has no switch. A private
  copy of the onnxruntime package (first on PYTHONPATH) has the jumps patched that enter its AVX-VNNI and
  AVX-512 VNNI blocks (avx512) and its AVX-512 block (avx2), so the set-up keeps the kernels of the CPU below.
  The sites are found by their CPUID bit masks (the AVX-512 BW/DQ/VL mask 0xC0020000 is the anchor) and each
  jump must land where the others do (the end of the AVX-512 block), or nothing is patched.
- PyTorch: ATEN_CPU_CAPABILITY and oneDNN's ONEDNN_MAX_CPU_ISA, their documented switches.
- FFmpeg (PyAV): av_force_cpu_flags, called from a sitecustomize in the same private folder, before any codec.
- NumPy: NPY_DISABLE_CPU_FEATURES. livevae: a /proc/cpuinfo without the flags, bound over the real one in a
  private mount namespace (as the first way does).

Every one is checked before the command runs (`probe`): an int8 dot product that vpmaddubsw saturates and VNNI
does not (ONNX Runtime must saturate), ONNX Runtime's NCHWc block (16 floats with AVX-512, 8 without), PyTorch's
capability and oneDNN's ISA line, FFmpeg's flags and livevae's CPU kind. A mismatch is one line and exit 2.
What stays this machine's: the clock, caches and cores, glibc's string functions, OpenCV's kernels, and the
instruction timings of this core (an AVX2 kernel on a Zen 4 is not an AVX2 kernel on a Zen 2).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

PATCHER_VERSION = 1
# CPU flags that this way cannot take away (no site is patched for them): a machine with them needs --via cpuid
UNCOVERED = ("amx_tile", "amx_int8", "avx_vnni_int8")

# x86 encodings (REX prefix optional): `and $0xC0020000, r32` (AVX-512 BW|DQ|VL), `and $0x800, r32` (VNNI),
# `test $0x10000, r32` (AVX512F) + `je rel8`; AVX-VNNI: `mov $7,%eax; mov $1,%ecx; cpuid; test $0x10,%al; je rel8`
_ANCHOR = re.compile(rb"(?:\x81[\xe0-\xe7]|\x25)\x00\x00\x02\xc0")
_VNNI_AND = re.compile(rb"(?:\x81[\xe0-\xe7]|\x25)\x00\x08\x00\x00")
_JE32 = re.compile(rb"\x0f\x84(....)", re.S)
_AVX512F = re.compile(rb"\xf7[\xc0-\xc7]\x00\x00\x01\x00\x74(.)", re.S)
_AVXVNNI = re.compile(rb"\xb8\x07\x00\x00\x00\xb9\x01\x00\x00\x00\x0f\xa2\xa8\x10\x74(.)", re.S)


class SimError(Exception):
    """One line: what could not be simulated, and why."""


def _rel8(data: bytes, at: int) -> int:
    """Target of the `je rel8` whose opcode byte is at `at`."""
    return at + 2 + int.from_bytes(data[at + 1 : at + 2], "little", signed=True)


def mlas_patches(data: bytes, cpu: str, name: str = "onnxruntime") -> list[tuple[int, bytes, bytes]]:
    """(offset, old bytes, new bytes) that make MLAS's set-up in `data` (ONNX Runtime's library) keep the
    kernels of `cpu` ("avx2" or "avx512"). Raises SimError naming what was not found exactly once."""
    anchors = list(_ANCHOR.finditer(data))
    if len(anchors) != 1:
        raise SimError(f"{name}: found {len(anchors)} AVX-512 BW/DQ/VL checks (and $0xC0020000); expected 1")
    a = anchors[0].start()
    f512 = [m for m in _AVX512F.finditer(data, max(0, a - 0x400), a)]
    if len(f512) != 1:
        raise SimError(f"{name}: found {len(f512)} AVX512F checks before the AVX-512 block; expected 1")
    join = _rel8(data, f512[0].end() - 2)  # where MLAS goes on when the CPU has no AVX-512
    vand = list(_VNNI_AND.finditer(data, a, a + 0x400))
    if len(vand) != 1:
        raise SimError(f"{name}: found {len(vand)} AVX-512 VNNI checks (and $0x800) in the block; expected 1")
    je = _JE32.search(data, vand[0].end(), vand[0].end() + 0x100)
    if je is None:
        raise SimError(f"{name}: no conditional jump after the AVX-512 VNNI check")
    target = je.end() + int.from_bytes(je.group(1), "little", signed=True)
    if target != join:
        raise SimError(f"{name}: the VNNI check's jump goes to {target:#x}, not the AVX-512 block's end {join:#x}")
    patches = [(je.start(), data[je.start() : je.start() + 2], b"\x90\xe9")]  # je rel32 -> nop; jmp rel32
    vnni = list(_AVXVNNI.finditer(data, max(0, a - 0x800), a))
    if len(vnni) > 1:
        raise SimError(f"{name}: found {len(vnni)} AVX-VNNI checks; expected at most 1")
    if vnni:  # je rel8 -> jmp rel8: the AVX-VNNI block is skipped (Skylake-SP and the AVX2 CPUs lack it)
        patches.append((vnni[0].end() - 2, b"\x74", b"\xeb"))
    if cpu == "avx2":
        patches.append((f512[0].end() - 2, b"\x74", b"\xeb"))
    return sorted(patches)


def ort_library() -> Path:
    """The installed onnxruntime package's Python extension, where MLAS is linked in (SimError if absent)."""
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise SimError("onnxruntime is not installed here; expected it in this Python's environment")
    capi = Path(next(iter(spec.submodule_search_locations))) / "capi"
    libs = sorted(capi.glob("onnxruntime_pybind11_state*.so"))
    if len(libs) != 1:
        raise SimError(f"{capi}: found {len(libs)} onnxruntime_pybind11_state libraries; expected 1")
    return libs[0]


# The kernels each simulated CPU keeps must be this CPU's to keep: dispatch can only take features away.
NEEDS = {"avx2": ("avx2", "fma"), "avx512": ("avx512f", "avx512bw", "avx512dq", "avx512vl")}


SITECUSTOMIZE = '''\
"""cpusim --via dispatch: FFmpeg's kernels for the simulated CPU (av_force_cpu_flags), before any codec opens."""
import ctypes, importlib.util, os
from pathlib import Path

_clear = int(os.environ.get("LIVEVAE_SIM_AV_CLEAR", "0"))
_spec = importlib.util.find_spec("av")
if _clear and _spec is not None and _spec.origin:
    for _lib in sorted((Path(_spec.origin).parent.parent / "av.libs").glob("libavutil*.so*")):
        _av = ctypes.CDLL(str(_lib))
        _av.av_force_cpu_flags(ctypes.c_int(_av.av_get_cpu_flags() & ~_clear))
        break
'''

# libavutil/cpu.h: AVX512 (Skylake-SP's F/CD/BW/DQ/VL) and AVX512ICL (Ice Lake's, VNNI among them)
AV_CPU_FLAG_AVX512, AV_CPU_FLAG_AVX512ICL = 0x100000, 0x200000
NUMPY_OFF = {"avx2": ("X86_V4", "AVX512_ICL", "AVX512_SPR"), "avx512": ("AVX512_ICL", "AVX512_SPR")}
ONEDNN_ISA = {"avx2": "AVX2", "avx512": "AVX512_CORE"}
ATEN = {"avx2": "avx2", "avx512": "avx512"}


def overlay(cache: Path, cpu: str) -> Path:
    """A folder to put first on PYTHONPATH: a patched copy of onnxruntime and the FFmpeg sitecustomize. Made
    once per (ONNX Runtime library, cpu, patcher version), into a temporary name renamed into place."""
    lib = ort_library()
    pkg = lib.parent.parent
    data = lib.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:12]
    out = cache / f"dispatch-{cpu}-{digest}-v{PATCHER_VERSION}"
    if (out / "onnxruntime").is_dir() and (out / "sitecustomize.py").is_file():
        return out  # made from these very bytes: no need to look for the sites again
    patches = mlas_patches(data, cpu, lib.name)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(pkg, tmp / "onnxruntime", ignore=shutil.ignore_patterns("__pycache__"))
    patched = bytearray(data)
    for at, old, new in patches:
        assert patched[at : at + len(old)] == old
        patched[at : at + len(new)] = new
    (tmp / "onnxruntime" / "capi" / lib.name).write_bytes(bytes(patched))
    (tmp / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp / "patches.json").write_text(json.dumps([[at, old.hex(), new.hex()] for at, old, new in patches]))
    try:
        os.replace(tmp, out)  # fails where another run has just put its own (identical) copy there: keep that one
    except OSError:
        if not (out / "onnxruntime").is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def environment(folder: Path, cpu: str) -> dict[str, str]:
    """The variables that steer each library (os.environ is not changed)."""
    path = os.environ.get("PYTHONPATH")
    return {
        "PYTHONPATH": str(folder) + (os.pathsep + path if path else ""),
        "ATEN_CPU_CAPABILITY": ATEN[cpu],
        "ONEDNN_MAX_CPU_ISA": ONEDNN_ISA[cpu],
        "DNNL_MAX_CPU_ISA": ONEDNN_ISA[cpu],  # oneDNN's older name for the same switch
        "NPY_DISABLE_CPU_FEATURES": " ".join(NUMPY_OFF[cpu]),
        "LIVEVAE_SIM_AV_CLEAR": str(AV_CPU_FLAG_AVX512ICL | (AV_CPU_FLAG_AVX512 if cpu == "avx2" else 0)),
    }


PROBE = textwrap.dedent(
    """
    import ctypes, json, os, tempfile
    import numpy as np, onnx, onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    def session(nodes, inputs, outputs, inits, path=None):
        g = helper.make_graph(nodes, "probe", inputs, outputs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if path:
            so.optimized_model_filepath = path
        so.log_severity_level = 3
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])

    k = 64  # 255 * 127 + 255 * 127 overflows int16: vpmaddubsw saturates there, VNNI's vpdpbusd does not
    s = session([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])],
                [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, k])],
                [helper.make_tensor_value_info("Y", TensorProto.INT32, [None, 4])],
                [numpy_helper.from_array(np.full((k, 4), 127, np.int8), "B")])
    dot = int(s.run(None, {"A": np.full((8, k), 255, np.uint8)})[0][0, 0])
    opt = os.path.join(tempfile.mkdtemp(), "nchwc.onnx")
    session([helper.make_node("Conv", ["X", "W"], ["Y"], pads=[1, 1, 1, 1])],
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 16, 8, 8])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 20, 8, 8])],
            [numpy_helper.from_array(np.ones((20, 16, 3, 3), np.float32), "W")], opt)
    block = max(i.dims[0] for i in onnx.load(opt).graph.initializer) - 16  # 20 channels padded to the block

    import sys
    import torch
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):  # prints oneDNN's ISA line
        torch.nn.functional.conv2d(torch.ones(1, 64, 72, 128), torch.ones(64, 64, 5, 5), stride=2)
    sys.stdout.flush()
    import av  # noqa: F401  (loads libavutil, which sitecustomize forced)
    from livevae.backends import cpuchoice
    from pathlib import Path
    lib = next(iter(sorted((Path(av.__file__).parent.parent / "av.libs").glob("libavutil*.so*"))), None)
    flags = ctypes.CDLL(str(lib)).av_get_cpu_flags() if lib else -1
    from numpy._core._multiarray_umath import __cpu_features__ as npf
    print(json.dumps({
        "ort_int8_dot": "exact" if dot == 255 * 127 * k else "saturating",
        "ort_nchwc_block": block,
        "torch": torch.backends.cpu.get_cpu_capability(),
        "ffmpeg_avx512": bool(flags & 0x100000), "ffmpeg_avx512icl": bool(flags & 0x200000),
        "numpy_avx512_skx": bool(npf.get("AVX512_SKX")), "numpy_avx512_icl": bool(npf.get("AVX512_ICL")),
        "livevae": cpuchoice.read_cpu().kind,
    }))
    """
)
EXPECTED = {
    "avx2": {"ort_int8_dot": "saturating", "ort_nchwc_block": 8, "torch": "AVX2", "ffmpeg_avx512": False,
             "ffmpeg_avx512icl": False, "numpy_avx512_skx": False, "numpy_avx512_icl": False, "livevae": "x86-avx2"},
    "avx512": {"ort_int8_dot": "saturating", "ort_nchwc_block": 16, "torch": "AVX512", "ffmpeg_avx512icl": False,
               "numpy_avx512_icl": False, "livevae": "x86-avx512"},
}  # fmt: skip


def check(seen: dict[str, object], cpu: str) -> list[str]:
    """What the probe saw that the simulated CPU would not give, one 'key: seen, expected' each."""
    wrong = [f"{k}: {seen.get(k)!r}, expected {v!r}" for k, v in EXPECTED[cpu].items() if seen.get(k) != v]
    isa = str(seen.get("onednn"))
    ok = isa == "Intel AVX2" if cpu == "avx2" else isa.startswith("Intel AVX-512") and "DL Boost" not in isa
    if not ok:  # AVX512_CORE names itself "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions"
        wrong.append(f"onednn: {isa!r}, expected {'Intel AVX2' if cpu == 'avx2' else 'AVX-512 without DL Boost'}")
    return wrong


def _flags(cpuinfo: str) -> list[str]:
    return next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])


def uncovered(cpuinfo: str) -> list[str]:
    """This machine's flags that the patches do not take away (see UNCOVERED)."""
    return [f for f in UNCOVERED if f in _flags(cpuinfo)]


def missing(cpuinfo: str, cpu: str) -> list[str]:
    """The flags `cpu` keeps that this machine lacks (an AVX2-only machine cannot play an AVX-512 one)."""
    return [f for f in NEEDS[cpu] if f not in _flags(cpuinfo)]


def probe(wrap: list[str], env: dict[str, str]) -> dict[str, object]:
    """Run PROBE under `wrap` (the mount-namespace prefix) with `env`; its JSON."""
    r = subprocess.run([*wrap, sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise SimError(f"the dispatch probe failed (exit {r.returncode}): {last}")
    lines = r.stdout.strip().splitlines()
    seen = dict(json.loads(lines[-1]))
    isa = [ln.split("isa:", 1)[1].strip() for ln in lines if ln.startswith("onednn_verbose") and "isa:" in ln]
    seen["onednn"] = isa[0] if isa else None
    return seen
