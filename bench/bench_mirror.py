"""Benchmark: nearest film moment for a film-size index (170,000 x 200), batch 1, against torch eager; live fps."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from livevae.control.state import ControlState
from livevae.mirror.controller import MirrorController
from livevae.mirror.index import LatentIndex
from livevae.mirror.search import ExactSearch, HnswSearch, faiss_available

DEMO = Path(__file__).resolve().parents[1] / "livevae" / "assets" / "demo.safetensors"


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and the flags that decide matrix-product speed, from /proc/cpuinfo."""
    name, flags = "", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    keep = [f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")) or f in ("sse4_2",)]
    return {"model": name, "flags": sorted(keep), "cores": os.cpu_count()}


def film_like(n: int, zdim: int, seed: int = 0, shot: int = 240) -> np.ndarray:
    """A synthetic film's latents, float16 [n, zdim]: shots of ~`shot` frames, each a slow random walk from a
    point of the prior N(0, I) (a cut jumps, a shot drifts), like an encoder's means along a real film."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, zdim), np.float32)
    i = 0
    while i < n:
        m = min(n - i, int(rng.integers(shot // 4, shot * 2)))
        start = rng.standard_normal(zdim).astype(np.float32)
        steps = 0.04 * rng.standard_normal((m, zdim)).astype(np.float32)
        out[i : i + m] = start + np.cumsum(steps, axis=0)
        i += m
    return out.astype(np.float16)


def time_queries(fn: Callable[[np.ndarray], np.ndarray], qs: np.ndarray, warm: int = 5) -> dict[str, Any]:
    """Batch 1: each query alone; returns ms per frame (median, p99) and the nearest rows."""
    for q in qs[:warm]:
        fn(q[None])
    rows, ms = [], []
    for q in qs:
        t0 = time.perf_counter()
        r = fn(q[None])
        ms.append((time.perf_counter() - t0) * 1000)
        rows.append(int(r[0]))
    a = np.asarray(ms)
    return {"ms_p50": round(float(np.median(a)), 3), "ms_p99": round(float(np.percentile(a, 99)), 3),
            "ms_mean": round(float(a.mean()), 3), "rows": np.asarray(rows)}  # fmt: skip


def search_bench(n: int, zdim: int, queries: int, threads: int, ef: list[int]) -> dict[str, Any]:
    lat16 = film_like(n, zdim)
    lat = lat16.astype(np.float32)
    rng = np.random.default_rng(1)
    pick = rng.integers(0, n, queries)
    # The mirror's queries: film frames seen again through a camera / another encoder (a small perturbation),
    # and, as a worst case, latents of nothing in the film (draws from the prior).
    sets = {
        "film_frames_perturbed": lat[pick] + 0.05 * rng.standard_normal((queries, zdim)).astype(np.float32),
        "prior_draws": rng.standard_normal((queries, zdim)).astype(np.float32),
    }
    xt = torch.from_numpy(lat)  # [N, zdim]
    xsq = (xt * xt).sum(1)

    def torch_eager(q: np.ndarray) -> np.ndarray:  # the plain way: one matrix product and an argmin
        qt = torch.from_numpy(q)
        d = (qt * qt).sum(1, keepdim=True) - 2 * qt @ xt.T + xsq  # [1, N]
        return d.argmin(1).numpy()

    exact = ExactSearch(lat16)
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "torch_eager": torch_eager,
        "livevae_exact_blocked": lambda q: exact.search(q, 1)[0][:, 0],
    }
    build: dict[str, float] = {}
    if faiss_available():
        import faiss

        faiss.omp_set_num_threads(threads)
        flat = faiss.IndexFlatL2(zdim)
        flat.add(lat)
        methods["faiss_flat_exact"] = lambda q: flat.search(q, 1)[1][:, 0]
        t0 = time.perf_counter()
        hnsw = HnswSearch(lat)
        build["faiss_hnsw"] = round(time.perf_counter() - t0, 1)
        faiss.omp_set_num_threads(1)  # batch 1: one thread answers fastest (no OpenMP fork per query)
        for e in ef:

            def run(q: np.ndarray, e: int = e) -> np.ndarray:
                hnsw.index.hnsw.efSearch = e
                return hnsw.index.search(q, 1)[1][:, 0]

            methods[f"faiss_hnsw_ef{e}"] = run
    out: dict[str, Any] = {"n": n, "zdim": zdim, "queries": queries, "build_seconds": build, "sets": {}}
    for set_name, qs in sets.items():
        truth, truth_d2 = exact.search(qs, 1)
        truth, truth_d = truth[:, 0], np.sqrt(truth_d2[:, 0])
        res: dict[str, Any] = {}
        for name, fn in methods.items():
            r = time_queries(fn, qs)
            rows = r.pop("rows")
            r["recall_at_1"] = round(float((rows == truth).mean()), 4)
            # How much farther than the true nearest the answer is, on average (1.0 = always as near)
            got_d = np.linalg.norm(lat[rows] - qs, axis=1)
            r["distance_x_exact_mean"] = round(float(np.mean(got_d / np.maximum(truth_d, 1e-9))), 4)
            res[name] = r
        base = res["torch_eager"]["ms_p50"]
        for r in res.values():
            r["speed_x_eager"] = round(base / r["ms_p50"], 2)
        out["sets"][set_name] = res
    return out


def live_bench(n: int, zdim: int, frames: int, seconds: float) -> dict[str, Any]:
    """The live loop (bundled demo model, a 640x480 file in, headless) with the mirror off and on over an n-frame
    index: offline capacity fps (as fast as it goes) and realtime fps (paced by the 30 fps source)."""
    from bench.bench_live import synthetic_video
    from livevae.backends import create
    from livevae.loop import LiveConfig, LiveLoop

    idx = LatentIndex(film_like(n, zdim), np.arange(n), np.arange(n) / 24.0, 24.0, "")
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = synthetic_video(Path(tmp) / "in.mp4")
        backend = create(str(DEMO), "auto")
        runs: dict[str, list[dict[str, Any]]] = {}
        mirrors: dict[str, MirrorController] = {}
        state_on, state_off = ControlState(zdim), ControlState(zdim)
        state_on.set_many({"mirror": 1.0, "mirror/k": 8})
        for case in ("on_exact", "on_hnsw"):
            if case == "on_hnsw" and not faiss_available():
                continue
            m = MirrorController(state_on, idx, graph=case == "on_hnsw")
            if m.searcher is not None:
                m.searcher.wait()  # the show would use exact search until the graph is ready
            mirrors[case] = m
        # Interleaved, twice: on a shared machine the load moves, and a fixed order would bias one case.
        for _ in range(2):
            for case in ("off", *mirrors):
                state = state_on if case in mirrors else state_off
                ctrls: list[Any] = [mirrors[case]] if case in mirrors else []
                cfg = LiveConfig(model=str(DEMO), sources=[str(clip)], headless=True, frames=frames)
                off = LiveLoop(cfg, backend, state, ctrls).run()
                cfg = LiveConfig(model=str(DEMO), sources=[str(clip)], headless=True, realtime=True, seconds=seconds)
                rt = LiveLoop(cfg, backend, state, ctrls).run()
                runs.setdefault(case, []).append(
                    {"offline_fps": off.fps, "realtime_fps": rt.fps, "modulate_ms": off.stages["modulate"]["mean_ms"]}
                )
        for case, rs in runs.items():
            res[case] = {k: round(float(np.median([r[k] for r in rs])), 2) for k in rs[0]}
            res[case]["runs"] = [{k: round(v, 2) for k, v in r.items()} for r in rs]
            res[case]["search"] = mirrors[case].searcher.name if case in mirrors and mirrors[case].searcher else None
        res["backend"] = backend.name
    for case in ("on_exact", "on_hnsw"):
        if case in res:
            res[case]["offline_fps_x_off"] = round(res[case]["offline_fps"] / res["off"]["offline_fps"], 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=170_000, help="index rows (a 2-hour film at 24 fps: 170,000)")
    ap.add_argument("--zdim", type=int, default=200)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ef", default="16,64,256", help="HNSW efSearch values to try")
    ap.add_argument("--live-frames", type=int, default=300, help="offline live-loop frames per case (0 = skip)")
    ap.add_argument("--live-seconds", type=float, default=6.0)
    ap.add_argument("--json", default="bench/results/mirror.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    results: dict[str, Any] = {"cpu": cpu_info(), "threads": a.threads, "load_avg_at_start": os.getloadavg()}
    s = search_bench(a.n, a.zdim, a.queries, a.threads, [int(e) for e in a.ef.split(",")])
    results["search"] = s
    print(f"nearest film moment, {a.n} x {a.zdim} index, batch 1, {a.threads} threads; {results['cpu']['model']}")
    print(f"HNSW build: {s['build_seconds']} s")
    for set_name, res in s["sets"].items():
        print(f"\n{set_name}")
        print("| method | ms/frame p50 | p99 | x torch eager | recall@1 vs exact | distance x exact |")
        print("|---|---|---|---|---|---|")
        for name, r in res.items():
            ms = f"{r['ms_p50']:.3f} | {r['ms_p99']:.3f}"
            rec = f"{r['recall_at_1']:.4f} | {r['distance_x_exact_mean']:.4f}"
            print(f"| {name} | {ms} | {r['speed_x_eager']:.2f} | {rec} |")
    if a.live_frames:
        live = live_bench(a.n, a.zdim, a.live_frames, a.live_seconds)
        results["live"] = live
        print(f"\nlive loop, demo model on {live['backend']}, mirror 1.0, k 8, {a.n}-frame index")
        print("| mirror | offline fps (x off) | realtime fps | modulate ms |\n|---|---|---|---|")
        for case in ("off", "on_exact", "on_hnsw"):
            if case in live:
                r = live[case]
                print(f"| {case} | {r['offline_fps']:.1f} ({r.get('offline_fps_x_off', 1.0):.2f}) | "
                      f"{r['realtime_fps']:.1f} | {r['modulate_ms']:.2f} |")  # fmt: skip
    results["load_avg_at_end"] = os.getloadavg()
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
