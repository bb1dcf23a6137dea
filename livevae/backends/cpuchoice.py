"""The CPU this runs on (model, flags) and the measured choices for ONNX Runtime on it: graphs (fp32, int8 scheme)
and whether the live loop's pipeline (encode beside decode) is faster than one net after the other."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from livevae.backends import EngineError, log

CPUINFO = Path("/proc/cpuinfo")
# The timed run at export time: warm-up calls, then rounds of one call of each candidate until either runs out.
# About a second: long enough that a 5% difference shows through a contended machine's noise, short enough
# for a show's first start (the result is cached, so it is paid once per model, CPU and ONNX Runtime).
CHOICE_SECONDS = float(os.environ.get("LIVEVAE_CHOICE_SECONDS", "1.0"))
CHOICE_WARMUP = 2
CHOICE_MAX_ROUNDS = 30
# int8 costs some accuracy, so it must win clearly: at least 5% faster than fp32 on this machine.
INT8_MARGIN = 0.95
# Each candidate runs CHOICE_BLOCK calls in a row per round, the first untimed: it pays for the switch from the
# other candidates (their weights and buffers in the caches), which a show running one model never does. Single
# calls interleaved measured broad2016's u8s8 and u8s8-gemm the same (13.2 / 13.1 ms) where a show runs the
# second 9-14% faster (11.5 / 9.8 ms in blocks of 5, 11.7 / 10.7 in blocks of 3, same run).
CHOICE_BLOCK = 3
# 2: int8 schemes are measured against each other too, and the winner is recorded; 3: timed in blocks
CHOICE_FORMAT = 3
# The pipeline costs about a frame of latency where the model is slower than the source, so it must win clearly
# too. Measured side by side, it is not always faster: on a 2-core Zen 4 steered to its AVX2 kernels the demo
# model ran x1.14 and broad2016 x1.03 pipelined, on its AVX-512 kernels without VNNI x1.25 and x0.85 (the two
# one-thread runs slowed each other to nearly the sum of their times), on its own VNNI kernels x1.07 and x1.02.
OVERLAP_MARGIN = 0.95


@dataclass(frozen=True)
class CpuInfo:
    """What the int8 decisions depend on: architecture, model name and feature flags."""

    arch: str  # "x86_64", "aarch64", "arm64", ... (from the flags' style, else platform.machine())
    model: str
    flags: frozenset[str]

    @property
    def x86(self) -> bool:
        return self.arch in ("x86_64", "amd64", "i386", "i686", "x86")

    @property
    def arm(self) -> bool:
        return self.arch in ("aarch64", "arm64") or self.arch.startswith("arm")

    @property
    def vnni(self) -> bool:
        """x86 int8 dot products: u8 x s8 summed straight into 32 bits (AVX-512 VNNI, AVX-VNNI, AMX)."""
        return self.x86 and bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def dotprod(self) -> bool:
        """Arm int8 dot products (sdot/udot; Linux calls the feature asimddp)."""
        return self.arm and bool(self.flags & {"asimddp", "dotprod"})

    @property
    def kind(self) -> str:
        """A name for logs and tables: x86-vnni, x86-avx512, x86-avx2, x86, arm-dotprod, arm or other."""
        if self.x86:
            if self.vnni:
                return "x86-vnni"
            return "x86-avx512" if "avx512bw" in self.flags else "x86-avx2" if "avx2" in self.flags else "x86"
        if self.arm:
            return "arm-dotprod" if self.dotprod else "arm"
        return "other"

    def fingerprint(self) -> str:
        """A short hash of arch, model and the sorted flags: the same CPU gives the same string on any run."""
        blob = json.dumps([self.arch, self.model, sorted(self.flags)])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_cpu(path: Path | None = None) -> CpuInfo:
    """This machine's CpuInfo from /proc/cpuinfo (Linux x86 'flags', Arm 'Features'); macOS and Windows,
    which have no such file, get the model from `platform` and flags only where they are certain
    (every Apple silicon core has dotprod); unknown flags are empty, which selects the safe int8 scheme."""
    machine = platform.machine().lower()
    path = CPUINFO if path is None else path
    if platform.system() == "Darwin" and not path.is_file():
        return CpuInfo(machine, platform.processor() or machine, frozenset({"asimddp"} if machine == "arm64" else ()))
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return CpuInfo(machine, platform.processor() or "unknown", frozenset())
    model, arch = "", ""
    flags: set[str] = set()
    implementer = part = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "flags":  # one line per logical CPU; the first is enough, they agree
            flags.update(value.split())
            arch = arch or "x86_64"
        elif key == "Features":
            flags.update(value.split())
            arch = arch or "aarch64"
        elif key == "model name" and not model:
            model = value
        elif key == "CPU implementer" and not implementer:
            implementer = value
        elif key == "CPU part" and not part:
            part = value
    if not model and (implementer or part):  # Arm Linux rarely says a model name
        model = f"Arm implementer {implementer} part {part}"
    return CpuInfo(arch or machine, model or platform.processor() or "unknown", frozenset(flags))


@dataclass(frozen=True)
class Choice:
    """The measured choice for one model on one CPU: the precision, the int8 scheme, and why."""

    precision: str  # "int8" or "fp32"
    reason: str
    int8_ms: float | None  # the fastest int8 scheme's median encode+decode per call; None when none passed its check
    fp32_ms: float
    cached: bool = False
    scheme: str | None = None  # the fastest int8 scheme (quantize.SCHEMES), whichever precision won; None: no int8


def time_calls(
    calls: Sequence[Callable[[], object]], seconds: float = CHOICE_SECONDS, block: int = CHOICE_BLOCK
) -> list[float]:
    """Median milliseconds per call of each of `calls`, in interleaved rounds (a a a, b b b, c c c, a a a, ...) so
    that a noisy neighbour slows all alike; in each round a candidate runs `block` calls in a row and the first is
    not timed (see CHOICE_BLOCK). CHOICE_WARMUP untimed calls each first (allocations, kernel selection)."""
    for _ in range(CHOICE_WARMUP):
        for f in calls:
            f()
    times: list[list[float]] = [[] for _ in calls]
    end = time.perf_counter() + seconds
    rounds = 0
    while rounds < 3 or (time.perf_counter() < end and rounds < CHOICE_MAX_ROUNDS):
        for f, out in zip(calls, times, strict=True):
            for k in range(max(1, block)):
                t0 = time.perf_counter()
                f()
                if k or block <= 1:
                    out.append((time.perf_counter() - t0) * 1000)
        rounds += 1
    return [statistics.median(t) for t in times]


def _median_ms(b: Any, frames: np.ndarray, n: int = 5) -> float:
    """Median ms of encode+decode, for the record when there is nothing to compare with."""
    b.decode(b.encode(frames))
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        b.decode(b.encode(frames))
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def choice_path(fields: dict[str, Any], cache_dir: str | os.PathLike[str] | None) -> Path:
    from livevae.backends.cache import cache_root, key_of

    return cache_root(cache_dir) / "cpu-choice" / f"{key_of(fields)}.json"


def choice_fields(model_sha256: str, batch: int | None, threads: int, cpu: CpuInfo) -> dict[str, Any]:
    """Everything the choice depends on: the CPU (model + flags), ONNX Runtime's version (its kernels), the
    model, the graphs' batch, the thread count and the int8 recipe. A different machine never reuses it."""
    try:
        import onnxruntime as ort
    except ImportError as e:  # `auto` then moves on to the next backend, saying why
        raise EngineError(f"onnxruntime is not installed ({e}); pip install onnxruntime") from e

    from livevae.backends.quantize import candidate_schemes, recipe

    return {
        "choice_format": CHOICE_FORMAT,
        "cpu": cpu.fingerprint(),
        "onnxruntime": ort.__version__,
        "model_sha256": model_sha256,
        "batch": batch,
        "threads": threads,
        "int8": [recipe(s) for s in candidate_schemes(cpu)],
    }


def _read_choice(path: Path, fields: dict[str, Any]) -> Choice | None:
    try:
        info = json.loads(path.read_text())
        if info.get("fields") != fields or info.get("precision") not in ("int8", "fp32"):
            return None
        scheme = info.get("scheme")
        if info["precision"] == "int8" and not isinstance(scheme, str):
            return None
        return Choice(
            info["precision"], info["reason"], info["int8_ms"], float(info["fp32_ms"]), cached=True, scheme=scheme
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.info(f"{path}: unreadable CPU choice ({e}); measuring again")
        return None


def choose_precision(
    model_path: str | os.PathLike[str],
    batch: int | None = 1,
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    logger: Callable[[str], None] = log.info,
    force: bool = False,
    cpu: CpuInfo | None = None,
) -> Choice:
    """fp32 or one of the int8 schemes for ONNX Runtime on this CPU, by measuring them on this model (cached).

    Exports (or reuses) the fp32 graphs and those of every int8 scheme this CPU can run exactly
    (quantize.candidate_schemes); an int8 graph that fails its accuracy check at export is left out, and if
    every one does, fp32 it is. Otherwise a short timed run of all of them (time_calls, ~CHOICE_SECONDS) picks
    the fastest int8 scheme, and int8 only where that is at least 5% faster than fp32 (int8 schemes give the
    same outputs as each other, so between them only speed counts). The result is stored under
    <cache>/cpu-choice/, keyed by choice_fields, and logged with its reason either way. Raises EngineError
    only when even the fp32 graph cannot be built.
    """
    from livevae.backends.cache import file_sha256
    from livevae.backends.onnxruntime_backend import OnnxRuntimeBackend, default_threads
    from livevae.backends.quantize import candidate_schemes

    cpu = read_cpu() if cpu is None else cpu
    threads = threads or default_threads()
    fields = choice_fields(file_sha256(model_path), batch, threads, cpu)
    path = choice_path(fields, cache_dir)
    if not force and (hit := _read_choice(path, fields)) is not None:
        logger(f"onnxruntime {hit.precision} on this {cpu.kind} CPU: {hit.reason} (measured before; {path})")
        return hit
    schemes = [s.name for s in candidate_schemes(cpu)]
    logger(f"measuring int8 ({', '.join(schemes)}) against fp32 on this {cpu.kind} CPU ({cpu.model}); once, cached")
    b32 = OnnxRuntimeBackend.from_file(model_path, batch=batch, precision="fp32", cache_dir=cache_dir, threads=threads)
    n = batch or 4
    frames = np.random.default_rng(0).integers(0, 256, (n, b32.cfg.height, b32.cfg.width, 3), dtype=np.uint8)
    int8: dict[str, Any] = {}
    failed: list[str] = []
    for name in schemes:
        try:
            int8[name] = OnnxRuntimeBackend.from_file(
                model_path, batch=batch, precision="int8", cache_dir=cache_dir, threads=threads, scheme=name
            )
        except EngineError as e:
            failed.append(f"{name}: {e}")
    if not int8:
        why = f"int8 failed its accuracy check at export ({failed[0]})"
        choice = Choice("fp32", why, None, _median_ms(b32, frames))
    else:
        calls = [lambda b=b: b.decode(b.encode(frames)) for b in (b32, *int8.values())]
        t32, *t8s = time_calls(calls)
        by_scheme = dict(zip(int8, t8s, strict=True))
        best = min(by_scheme, key=by_scheme.__getitem__)
        t8 = by_scheme[best]
        others = "".join(f", {k} x{t32 / v:.2f}" for k, v in by_scheme.items() if k != best)
        if t8 < t32 * INT8_MARGIN:
            choice = Choice("int8", f"int8 ({best}) x{t32 / t8:.2f} the speed of fp32{others}", t8, t32, scheme=best)
        else:
            why = f"int8 ({best}) only x{t32 / t8:.2f} the speed of fp32 (needs x{1 / INT8_MARGIN:.2f}){others}"
            choice = Choice("fp32", why, t8, t32, scheme=best)
    _write_choice(path, fields, choice, cpu)
    logger(f"onnxruntime {choice.precision} on this {cpu.kind} CPU: {choice.reason} (cached in {path})")
    return choice


def pipelined_call(b: Any, frames: np.ndarray, pool: cf.ThreadPoolExecutor) -> Callable[[], object]:
    """One frame of the live loop's pipeline as a call: the next frame's encode on `pool`'s thread beside this
    frame's decode on the caller's (LiveLoop._begin/_finish). Timed in a row, each call is a frame's share of a
    steady stream, not one frame's latency."""
    last = [b.encode(frames)]

    def call() -> object:
        job = pool.submit(b.encode, frames)
        out = b.decode(last[0])
        last[0] = job.result()
        return out

    return call


@dataclass(frozen=True)
class OverlapChoice:
    """Whether the pipeline (encode beside decode, the threads shared out) beat one net after the other."""

    overlap: bool
    reason: str
    sequential_ms: float  # median ms a frame, encode then decode on all the threads
    pipelined_ms: float  # median ms a frame in the pipeline
    cached: bool = False


def choose_overlap(
    model_path: str | os.PathLike[str],
    precision: str,
    scheme: str | None,
    batch: int | None = 1,
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    logger: Callable[[str], None] = log.info,
    cpu: CpuInfo | None = None,
) -> OverlapChoice:
    """The pipeline or not for these graphs on this CPU, by timing both for about CHOICE_SECONDS (cached, keyed
    as choose_precision's choice plus the graphs): the pipeline only where it is at least 5% faster."""
    from livevae.backends.cache import file_sha256
    from livevae.backends.onnxruntime_backend import OnnxRuntimeBackend, default_threads

    cpu = read_cpu() if cpu is None else cpu
    threads = threads or default_threads()
    fields = {**choice_fields(file_sha256(model_path), batch, threads, cpu), "overlap": [precision, scheme]}
    path = choice_path(fields, cache_dir)
    try:
        info = json.loads(path.read_text())
        if info.get("fields") == fields:
            hit = OverlapChoice(bool(info["overlap"]), str(info["reason"]), float(info["sequential_ms"]),
                                float(info["pipelined_ms"]), cached=True)  # fmt: skip
            what = "pipelined" if hit.overlap else "not pipelined"
            logger(f"onnxruntime {what} on this {cpu.kind} CPU: {hit.reason} (measured before; {path})")
            return hit
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # not our JSON object: measure again
        log.info(f"{path}: unreadable pipeline choice ({e}); measuring again")
    logger(f"measuring the pipeline (encode beside decode) on this {cpu.kind} CPU; once, cached")
    kw: dict[str, Any] = {"batch": batch, "precision": precision, "cache_dir": cache_dir, "threads": threads}
    seq = OnnxRuntimeBackend.from_file(model_path, scheme=scheme, **kw)
    piped = OnnxRuntimeBackend.from_file(model_path, scheme=scheme, overlap=True, **kw)
    frames = np.random.default_rng(0).integers(0, 256, (batch or 4, seq.cfg.height, seq.cfg.width, 3), np.uint8)
    with cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="livevae choice") as pool:
        t_seq, t_pipe = time_calls([lambda: seq.decode(seq.encode(frames)), pipelined_call(piped, frames, pool)])
    ratio = t_seq / t_pipe
    if t_pipe < t_seq * OVERLAP_MARGIN:
        choice = OverlapChoice(True, f"pipelined x{ratio:.2f} the frames of one net after the other", t_seq, t_pipe)
    else:
        why = f"pipelined only x{ratio:.2f} the frames of one net after the other (needs x{1 / OVERLAP_MARGIN:.2f})"
        choice = OverlapChoice(False, why, t_seq, t_pipe)
    _write_json(path, {"fields": fields, "overlap": choice.overlap, "reason": choice.reason,
                       "sequential_ms": t_seq, "pipelined_ms": t_pipe, "cpu_model": cpu.model,
                       "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")})  # fmt: skip
    what = "pipelined" if choice.overlap else "not pipelined"
    logger(f"onnxruntime {what} on this {cpu.kind} CPU: {choice.reason} (cached in {path})")
    return choice


def _write_choice(path: Path, fields: dict[str, Any], choice: Choice, cpu: CpuInfo) -> None:
    """Atomically (temp file + rename): a crash mid-write leaves the old choice or none, never half a file."""
    _write_json(
        path,
        {
            "fields": fields,
            "precision": choice.precision,
            "scheme": choice.scheme,
            "reason": choice.reason,
            "int8_ms": choice.int8_ms,
            "fp32_ms": choice.fp32_ms,
            "cpu_model": cpu.model,
            "cpu_kind": cpu.kind,
            "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


def _write_json(path: Path, info: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache only costs a re-measure next start
        log.info(f"{path}: cannot cache the CPU choice ({e}); it will be measured again next start")
