"""`livevae bench`: every backend x preset, fps and p50/p99 latency, each as a ratio to torch eager in the same run."""

from __future__ import annotations

import concurrent.futures as cf
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from livevae.backends import Backend, EngineError, create, overlaps
from livevae.backends.cpuchoice import pipelined_call
from livevae.model import VAE, preset, read_model_header, save_model

# The CPU features int8 and fp32 speed depend on, named in every table.
INT8_FLAGS = frozenset(
    {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "avx512_bf16",
     "asimd", "asimddp", "i8mm", "sve"}
)  # fmt: skip
REFERENCE = "torch-cpu"  # plain PyTorch eager on CPU: every ratio is against it
OPS = ("encode", "decode", "both")


@dataclass
class Row:
    """One measurement: a backend running one op on one preset at one batch size."""

    preset: str
    backend: str
    batch: int
    op: str
    fps: float  # frames per second (batch / mean latency)
    p50_ms: float
    p99_ms: float
    cpu_pct: float  # process CPU time / wall time: 200 = both cores busy
    cpu_ms: float  # process CPU time per frame: what the frame costs the machine, spinning included
    calls: int
    ratio: float | None = None  # fps / torch eager fps, same preset, op and batch
    detail: str = ""


@dataclass
class Report:
    machine: dict[str, Any]
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort

    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_avg_1m": load_avg(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    from livevae.backends.cpuchoice import read_cpu
    from livevae.backends.quantize import candidate_schemes, scheme_for

    cpu = read_cpu()
    info["cpu"] = cpu.model
    info["cpu_kind"] = cpu.kind
    info["cpu_int8_flags"] = sorted(cpu.flags & INT8_FLAGS)  # what the int8 schemes depend on
    info["cpu_flags"] = sorted(cpu.flags)
    info["int8_scheme"] = scheme_for(cpu).name
    info["int8_candidates"] = [s.name for s in candidate_schemes(cpu)]  # what the timed choice measures here
    return info


# A run is evidence only on a quiet machine. Other work's share of the cores, from the 1-minute load average
# before the run starts, above this marks it contended: torch's OpenMP pool collapses under contention (the
# eager baselines swung 4x between repeats at load 4-6), so ratios to eager from such runs are not quoted.
CONTENDED_LOAD = 0.5


def load_avg() -> float | None:
    """The 1-minute load average, or None where the OS has none (Windows)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def conditions(load_before: float | None) -> dict[str, Any]:
    """The machine and the load around a run: `load_before` taken at its start, the load now, and whether
    the run was contended (load before above CONTENDED_LOAD x cores; unknown counts as contended)."""
    cores = os.cpu_count() or 1
    info = machine_info()
    info.update(
        load_avg_1m_before=load_before,
        load_avg_1m_after=load_avg(),
        contended=load_before is None or load_before > CONTENDED_LOAD * cores,
    )
    return info


def conditions_line(info: dict[str, Any]) -> str:
    """One line naming the CPU, its int8-relevant flags, the cores and the load: for under every table."""
    state = "CONTENDED: not evidence" if info["contended"] else "quiet"
    before, after = info["load_avg_1m_before"], info["load_avg_1m_after"]
    load = "unknown" if before is None else f"{before:.2f} before, {after:.2f} after"
    return (
        f"machine: {info['cpu']} ({info['cpu_kind']}; {' '.join(info['cpu_int8_flags'])}), {info['cores']} cores, "
        f"load average {load}: {state}; torch {info['torch']}, onnxruntime {info['onnxruntime']}, "
        f"{info['date_utc']} UTC"
    )


def random_model(name: str, seed: int = 0) -> VAE:
    """A preset with random weights and warmed batch-norm statistics: speed does not depend on training."""
    torch.manual_seed(seed)
    m = VAE(preset(name))
    m.train()
    cfg = m.cfg
    with torch.no_grad():
        m(torch.rand(4, 3, cfg.height, cfg.width) * 2 - 1)
    return m.eval()


def measure(fn: Callable[[], object], seconds: float, warmup: int = 3, min_calls: int = 3) -> tuple[list[float], float]:
    """Latencies (s) of repeated calls for about `seconds` (at least `min_calls`), and CPU% over them.

    Warm-up: one call, then up to `warmup` more while they stay under a tenth of the budget (broad2016
    in torch eager takes ~0.5 s a call; tiny in ORT ~0.1 ms).
    """
    t0 = time.perf_counter()
    fn()
    for _ in range(warmup):
        if time.perf_counter() - t0 > seconds / 10:
            break
        fn()
    lat: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while len(lat) < min_calls or time.perf_counter() - wall0 < seconds:
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - wall0
    return lat, 100.0 * (time.process_time() - cpu0) / wall


def _ops(b: Backend, frames: np.ndarray, z: np.ndarray, pool: cf.ThreadPoolExecutor) -> dict[str, Callable[[], object]]:
    """The timed calls. enc+dec of a backend built to overlap (NAME+overlap) runs as the live loop's pipeline
    does (cpuchoice.pipelined_call): each call is a frame's share of a steady stream, not one frame's latency."""
    both = pipelined_call(b, frames, pool) if overlaps(b) else lambda: b.decode(b.encode(frames))
    return {"encode": lambda: b.encode(frames), "decode": lambda: b.decode(z), "both": both}


# Bench-only ONNX Runtime variants: spinning always on / always off against the default (spinning within a run),
# what it costs or buys; the live loop's pipeline forced on, whatever cpuchoice.choose_overlap would say.
ORT_VARIANTS: dict[str, dict[str, Any]] = {
    "onnxruntime+spin": {"spinning": "on"},
    "onnxruntime+nospin": {"spinning": "off"},
    "onnxruntime+overlap": {"overlap": True},
}


def _make_backend(name: str, model_path: Path, batch: int, cache: Path, threads: int) -> tuple[Backend, str]:
    if name in ORT_VARIANTS:  # one setting forced against the default, at the default's precision and scheme
        from livevae.backends.cpuchoice import choose_precision
        from livevae.backends.onnxruntime_backend import OnnxRuntimeBackend

        b_batch = 1 if batch == 1 else None
        c = choose_precision(model_path, b_batch, cache, threads, lambda s: None)
        ob = OnnxRuntimeBackend.from_file(
            model_path, batch=b_batch, precision=c.precision, cache_dir=cache, threads=threads,
            scheme=c.scheme if c.precision == "int8" else None, **ORT_VARIANTS[name],
        )  # fmt: skip
        return ob, ob.describe()
    if name.startswith("onnxruntime+int8:"):  # one int8 scheme forced (quantize.SCHEMES), e.g. onnxruntime+int8:u8s8-w7
        from livevae.backends.onnxruntime_backend import OnnxRuntimeBackend

        ob = OnnxRuntimeBackend.from_file(
            model_path, batch=1 if batch == 1 else None, precision="int8", cache_dir=cache, threads=threads,
            scheme=name.split(":", 1)[1],
        )  # fmt: skip
        return ob, ob.describe()
    if name in ("torch-cpu+channels_last", "torch-cpu-jit+channels_last"):  # cheap CPU wins, measured
        from livevae.backends.torch_backend import TorchBackend

        mode = "jit" if name.startswith("torch-cpu-jit") else "eager"
        tb = TorchBackend.from_file(str(model_path), mode=mode, channels_last=True)
        return tb, tb.describe()
    logs: list[str] = []  # NAME+fp32 / NAME+int8 pin a precision (create's split_precision)
    b = create(model_path, name, batch=1 if batch == 1 else None, cache_dir=cache, threads=threads, logger=logs.append)
    return b, logs[-1].removeprefix("using ")


def run_bench(
    presets: list[str],
    backends: list[str],
    batches: list[int],
    seconds: float,
    rounds: int,
    threads: int,
    cache_dir: Path,
    say: Callable[[str], None] = print,
) -> Report:
    """Measure every (preset, backend, batch, op). Rounds interleave the backends so that a burst of
    load from other processes hits all of them, not one."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_bench(presets, backends, batches, seconds, rounds, threads, cache_dir, say)
    finally:
        torch.set_num_threads(before)


def _run_bench(
    presets: list[str],
    backends: list[str],
    batches: list[int],
    seconds: float,
    rounds: int,
    threads: int,
    cache_dir: Path,
    say: Callable[[str], None],
) -> Report:
    report = Report(
        machine_info(),
        {
            "presets": presets,
            "backends": backends,
            "batches": batches,
            "seconds": seconds,
            "rounds": rounds,
            "threads": threads,
        },
    )
    if REFERENCE not in backends:
        backends = [REFERENCE, *backends]
    for pname in presets:
        if pname.endswith(".safetensors"):  # a model file (e.g. a trained one) instead of a preset
            path = Path(pname)
            cfg, _ = read_model_header(path)
        else:
            model = random_model(pname)
            cfg = model.cfg
            path = save_model(model, cache_dir / f"{pname}.safetensors")
        rng = np.random.default_rng(0)
        for batch in batches:
            frames = rng.integers(0, 256, (batch, cfg.height, cfg.width, 3), dtype=np.uint8)
            z = rng.standard_normal((batch, cfg.zdim)).astype(np.float32)
            live: dict[str, tuple[Backend, str]] = {}
            for name in backends:
                try:
                    live[name] = _make_backend(name, path, batch, cache_dir, threads)
                except EngineError as e:
                    report.skipped.append(f"{pname} {name} batch {batch}: {e}")
                    say(f"skip {pname} {name} batch {batch}: {e}")
            lat: dict[tuple[str, str], list[float]] = {}
            cpu: dict[tuple[str, str], list[float]] = {}
            pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench encode")  # for +overlap
            ops = {name: _ops(b, frames, z, pool) for name, (b, _) in live.items()}
            for rnd in range(rounds):
                # Each round starts one backend later: in a fixed order the last backend ran measurably slower
                # (AVX-512 simulated on a Zen 4: the default ran x2.41 and x2.44 eager last and x2.95 second, the
                # same graphs forced ran x2.90 and x2.56 before it and x2.78 last), so no backend always runs last.
                names = list(live)
                k = rnd % len(names) if names else 0
                for name in names[k:] + names[:k]:
                    for op, fn in ops[name].items():
                        ls, c = measure(fn, seconds / rounds)
                        lat.setdefault((name, op), []).extend(ls)
                        cpu.setdefault((name, op), []).append(c)
            pool.shutdown()
            for name, (_, detail) in live.items():
                for op in OPS:
                    a = np.array(lat[(name, op)])
                    cpu_pct = float(np.mean(cpu[(name, op)]))
                    report.rows.append(
                        Row(
                            pname,
                            name,
                            batch,
                            op,
                            batch / float(a.mean()),
                            1e3 * float(np.percentile(a, 50)),
                            1e3 * float(np.percentile(a, 99)),
                            cpu_pct,
                            10 * cpu_pct * float(a.mean()) / batch,
                            len(a),
                            None,
                            detail,
                        )
                    )
            ref = {
                r.op: r.fps for r in report.rows if r.preset == pname and r.batch == batch and r.backend == REFERENCE
            }
            for r in report.rows:
                if r.preset == pname and r.batch == batch and r.op in ref:
                    r.ratio = r.fps / ref[r.op]
            for r in report.rows:
                if r.preset == pname and r.batch == batch and r.op == "both":
                    say(f"{pname:9s} b{batch} {r.backend:18s} enc+dec {r.fps:8.1f} fps  x{r.ratio:.2f} eager")
    return report


def to_markdown(report: Report) -> str:
    """The README table: one block per batch size, one row per preset x backend."""
    m, s = report.machine, report.settings
    out = []
    for batch in s["batches"]:
        title = "live latency, batch 1" if batch == 1 else f"offline throughput, batch {batch}"
        threads = f"{s['threads']} thread" + ("s" if s["threads"] != 1 else "")
        out.append(f"#### Backends x presets: {title}, {threads}\n")
        out.append(
            "| preset | backend | encode fps (x eager) | encode p50/p99 ms | decode fps (x eager) | "
            "decode p50/p99 ms | enc+dec fps (x eager) | enc+dec p50/p99 ms | enc+dec CPU % / CPU ms per frame |"
        )
        out.append("|" + " --- |" * 9)
        by = {(r.preset, r.backend, r.op): r for r in report.rows if r.batch == batch}
        for pname in s["presets"]:
            for name in dict.fromkeys(r.backend for r in report.rows if r.preset == pname and r.batch == batch):
                cells = [pname, f"`{name}`"]
                for op in OPS:
                    r = by[(pname, name, op)]
                    cells.append(f"{r.fps:.1f} (x{r.ratio:.2f})" if r.ratio is not None else f"{r.fps:.1f}")
                    cells.append(f"{r.p50_ms:.2f} / {r.p99_ms:.2f}")
                both = by[(pname, name, "both")]
                cells.append(f"{both.cpu_pct:.0f} / {both.cpu_ms:.1f}")
                out.append("| " + " | ".join(cells) + " |")
        out.append("")
    details = sorted({f"`{r.backend}`: {r.detail}" for r in report.rows})
    out.append("Backends: " + "; ".join(details) + ".  ")
    out.append(
        f"Machine: {m['cpu']} ({m.get('cpu_kind', '?')}; int8-relevant flags: "
        f"{' '.join(m.get('cpu_int8_flags', [])) or 'none'}; this CPU's int8 scheme {m.get('int8_scheme', '?')}), "
        f"{m['cores']} cores, load average {m['load_avg_1m']:.1f} at start (shared machine); "
        f"torch {m['torch']}, onnxruntime {m['onnxruntime']}; {m['date_utc']} UTC. "
        f"{s['seconds']:g} s per figure in {s['rounds']} interleaved rounds; "
        "presets have random weights, model files their own; random frames."
    )
    for sk in report.skipped:
        out.append(f"- skipped {sk}")
    return "\n".join(out) + "\n"
