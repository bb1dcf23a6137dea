"""Run a command as on an older x86 CPU, for real: CPUID masked (bench/cpumask/cpumask.c), /proc/cpuinfo to match.

    python bench/cpusim.py avx2 -- python -m livevae bench --presets broad2016 ...
    python bench/cpusim.py avx512 -- ...     # AVX-512 without VNNI (Skylake-SP)

Every library that picks kernels from CPUID (ONNX Runtime's MLAS, oneDNN, PyTorch, FFmpeg) takes its AVX2 path,
and livevae reads a /proc/cpuinfo whose flags lack AVX-512, VNNI and AMX (bound over the real one in a private
mount namespace, so nothing else on the machine sees it). The clock, caches and cores stay this machine's: the
figures are this CPU's AVX2 kernels, not another CPU's. Needs Linux with the cpuid_fault flag, gcc, and
`unshare -m` (root, or user namespaces); anything missing is one line on stderr and exit status 2.

Where CPUID cannot be trapped (no cpuid_fault, as in most KVM guests), `--via dispatch` (bench/dispatchsim.py)
tells each library in its own terms instead and checks that each took it; `--via auto` (the default) takes
CPUID faulting where it can run, else dispatch. The way taken is printed first, on stderr.

    python bench/cpusim.py --via dispatch avx512 -- python -m livevae bench ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # dispatchsim, beside this file (bench/ is not a package)
import dispatchsim  # noqa: E402

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


def fail(msg: str) -> NoReturn:
    print(f"cpusim: {msg}", file=sys.stderr)
    raise SystemExit(2)


def masked_cpuinfo(text: str, cpu: str = "avx2", how: str = "mask") -> str:
    """/proc/cpuinfo's text with the masked flags dropped from every 'flags' line and the model marked (`how`:
    "mask" for CPUID faulting, "dispatch" for --via dispatch, so each benchmark record names its way)."""
    out = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if key.strip() == "flags":
            value = " " + " ".join(f for f in value.split() if not f.startswith(MASKED_PREFIXES[cpu]))
        elif key.strip() == "model name":
            value = value.rstrip() + f" [{cpu.upper()} {how}]"
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


def _namespace_problem() -> str | None:
    """None where `unshare -m` can make a private mount namespace here (for the simulated /proc/cpuinfo)."""
    root = [] if os.geteuid() == 0 else ["-r"]
    try:
        r = subprocess.run(["unshare", *root, "-m", "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare -m: {e}"
    if r.returncode != 0:
        return f"unshare -m cannot make a mount namespace here: {r.stderr.strip()[:120]}"
    return None


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
    return _namespace_problem()


def command(cmd: list[str], cache: Path, cpu: str = "avx2") -> list[str]:
    """The argv that runs `cmd` masked: unshare -> bind the masked cpuinfo -> exec with LD_PRELOAD."""
    lib = build(cache)
    info = cache / f"cpuinfo-{cpu}-{os.getpid()}"
    info.write_text(masked_cpuinfo(Path("/proc/cpuinfo").read_text(), cpu))
    script = f'mount --bind "$1" /proc/cpuinfo || exit 2; shift; exec env LIVEVAE_CPUMASK={cpu} LD_PRELOAD="$0" "$@"'
    root = [] if os.geteuid() == 0 else ["-r"]  # an unprivileged user maps itself to root in a user namespace
    return ["unshare", *root, "-m", "--propagation", "private", "sh", "-c", script, str(lib), str(info), *cmd]


def _namespace(info: Path) -> list[str]:
    """The argv prefix that runs a command with `info` bound over /proc/cpuinfo, in a private mount namespace."""
    root = [] if os.geteuid() == 0 else ["-r"]
    script = 'mount --bind "$0" /proc/cpuinfo || exit 2; exec "$@"'
    return ["unshare", *root, "-m", "--propagation", "private", "sh", "-c", script, str(info)]


def dispatch_available(cpu: str = "avx2") -> str | None:
    """None where --via dispatch can present `cpu` here; else why not, in one line."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return f"needs Linux on x86-64; this is {sys.platform} {os.uname().machine}"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError as e:
        return f"/proc/cpuinfo: {e}"
    lacking = dispatchsim.missing(flags, cpu)
    if lacking:
        return f"this CPU lacks {', '.join(lacking)}, which a simulated {cpu} CPU keeps; dispatch only takes away"
    left = dispatchsim.uncovered(flags)
    if left:
        return f"this CPU has {', '.join(left)}, which the dispatch patches do not take away; expected --via cpuid"
    if shutil.which("unshare") is None:
        return "no unshare (util-linux) to give the command its own /proc/cpuinfo"
    try:
        lib = dispatchsim.ort_library()
        dispatchsim.mlas_patches(lib.read_bytes(), cpu, lib.name)
    except (dispatchsim.SimError, OSError) as e:
        return str(e)
    return _namespace_problem()


def dispatch_command(cmd: list[str], cache: Path, cpu: str = "avx2") -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run `cmd` with each library steered to `cpu`'s kernels, after the probe
    has seen every one of them take it (dispatchsim.SimError otherwise)."""
    folder = dispatchsim.overlay(cache, cpu)
    info = cache / f"cpuinfo-{cpu}-{os.getpid()}"
    info.write_text(masked_cpuinfo(Path("/proc/cpuinfo").read_text(), cpu, "dispatch"))
    env = dict(os.environ, **dispatchsim.environment(folder, cpu))
    seen = dispatchsim.probe(_namespace(info), env)
    wrong = dispatchsim.check(seen, cpu)
    if wrong:
        raise dispatchsim.SimError(f"the simulated {cpu} CPU did not take: {'; '.join(wrong)}")
    print(f"cpusim: via dispatch, every library sees {SEES[cpu]}: {json.dumps(seen)}", file=sys.stderr)
    return [*_namespace(info), *cmd], env


SEES = {"avx2": "an AVX2-only CPU", "avx512": "an AVX-512 CPU without VNNI"}


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
    ap.add_argument(  # before `avx2`, as --cache
        "--via",
        choices=("auto", "cpuid", "dispatch"),
        default="auto",
        help="cpuid: trap CPUID (needs cpuid_fault); dispatch: steer each library (bench/dispatchsim.py); "
        "auto: cpuid where it can run, else dispatch",
    )
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        fail("no command; expected e.g. cpusim.py avx2 -- python -m livevae bench")
    why = available() if args.via != "dispatch" else "not asked for"
    if why is None:
        return subprocess.call(command(cmd, args.cache, args.cpu))
    if args.via == "cpuid":
        fail(why)
    why_not = dispatch_available(args.cpu)
    if why_not:
        fail(f"cannot trap CPUID ({why}), and --via dispatch cannot run either: {why_not}")
    try:
        argv2, env = dispatch_command(cmd, args.cache, args.cpu)
    except (dispatchsim.SimError, OSError, subprocess.TimeoutExpired) as e:
        fail(str(e))
    return subprocess.call(argv2, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
