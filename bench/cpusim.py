"""Run a command as on an older x86 CPU, for real: CPUID masked (bench/cpumask/cpumask.c), /proc/cpuinfo to match.

    python bench/cpusim.py avx2 -- python -m livevae bench --presets broad2016 ...
    python bench/cpusim.py avx512 -- ...     # AVX-512 without VNNI (Skylake-SP)

Every library that picks kernels from CPUID (ONNX Runtime's MLAS, oneDNN, PyTorch, FFmpeg) takes its AVX2 path,
and livevae reads a /proc/cpuinfo whose flags lack AVX-512, VNNI and AMX (bound over the real one in a private
mount namespace, so nothing else on the machine sees it). The clock, caches and cores stay this machine's: the
figures are this CPU's AVX2 kernels, not another CPU's. Needs Linux with the cpuid_fault flag, gcc, and
`unshare -m` (root, or user namespaces); anything missing is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "cpumask" / "cpumask.c"
# Flags each simulated CPU lacks, as /proc/cpuinfo prefixes: avx2 lacks avx512f/bw/vl/..., amx_tile/int8/bf16 and
# avx_vnni(_int8); avx512 (a Skylake-SP) keeps AVX-512 F/CD/BW/DQ/VL and lacks VNNI, AMX and the later sets.
MASKED_PREFIXES = {
    "avx2": ("avx512", "amx", "avx_vnni", "avx_ifma", "avx10"),
    "avx512": (
        "avx512_vnni", "avx512vbmi", "avx512_vbmi2", "avx512_bitalg", "avx512_vpopcntdq", "avx512ifma",
        "avx512_bf16", "avx512_fp16", "avx512_vp2intersect", "amx", "avx_vnni", "avx_ifma", "avx10",
    ),
}  # fmt: skip


def fail(msg: str) -> None:
    print(f"cpusim: {msg}", file=sys.stderr)
    raise SystemExit(2)


def masked_cpuinfo(text: str, cpu: str = "avx2") -> str:
    """/proc/cpuinfo's text with the masked flags dropped from every 'flags' line and the model marked."""
    out = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if key.strip() == "flags":
            value = " " + " ".join(f for f in value.split() if not f.startswith(MASKED_PREFIXES[cpu]))
        elif key.strip() == "model name":
            value = value.rstrip() + f" [{cpu.upper()} mask]"
        out.append(key + sep + value if sep else line)
    return "\n".join(out) + "\n"


def build(cache: Path) -> Path:
    """Compile the mask once per source version into `cache`; returns the shared library's path."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    lib = cache / f"cpumask-{digest}.so"
    if lib.is_file():
        return lib
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        fail("no C compiler (gcc or cc); expected one to build bench/cpumask/cpumask.c")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = lib.with_suffix(f".{os.getpid()}.tmp")
    r = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE)], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{SOURCE}: {cc} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    os.replace(tmp, lib)
    return lib


def available() -> str | None:
    """None where the mask can run here; else why not, in one line."""
    if sys.platform != "linux":
        return f"needs Linux; this is {sys.platform}"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError as e:
        return f"/proc/cpuinfo: {e}"
    if "cpuid_fault" not in flags.split():
        return "/proc/cpuinfo has no cpuid_fault flag: this CPU or hypervisor cannot trap CPUID"
    if shutil.which("unshare") is None:
        return "no unshare (util-linux) to give the command its own /proc/cpuinfo"
    if shutil.which(os.environ.get("CC", "gcc")) is None and shutil.which("cc") is None:
        return "no C compiler (gcc or cc) to build the mask"
    root = [] if os.geteuid() == 0 else ["-r"]
    try:
        r = subprocess.run(["unshare", *root, "-m", "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare -m: {e}"
    if r.returncode != 0:
        return f"unshare -m cannot make a mount namespace here: {r.stderr.strip()[:120]}"
    return None


def command(cmd: list[str], cache: Path, cpu: str = "avx2") -> list[str]:
    """The argv that runs `cmd` masked: unshare -> bind the masked cpuinfo -> exec with LD_PRELOAD."""
    lib = build(cache)
    info = cache / f"cpuinfo-{cpu}-{os.getpid()}"
    info.write_text(masked_cpuinfo(Path("/proc/cpuinfo").read_text(), cpu))
    script = f'mount --bind "$1" /proc/cpuinfo || exit 2; shift; exec env LIVEVAE_CPUMASK={cpu} LD_PRELOAD="$0" "$@"'
    root = [] if os.geteuid() == 0 else ["-r"]  # an unprivileged user maps itself to root in a user namespace
    return ["unshare", *root, "-m", "--propagation", "private", "sh", "-c", script, str(lib), str(info), *cmd]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "cpu",
        choices=sorted(MASKED_PREFIXES),
        help="the CPU to present: avx2 (AVX2 + FMA, an EPYC Zen 2/3) or avx512 (AVX-512 without VNNI, a Skylake-SP)",
    )
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command")
    ap.add_argument(  # before `avx2`: everything after it is the command
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "livevae-cpusim", help="where the mask is built"
    )
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        fail("no command; expected e.g. cpusim.py avx2 -- python -m livevae bench")
    why = available()
    if why:
        fail(why)
    return subprocess.call(command(cmd, args.cache, args.cpu))


if __name__ == "__main__":
    raise SystemExit(main())
