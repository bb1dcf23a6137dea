"""Evaluate model files on a dataset's held-out frames (PSNR, SSIM, sharpness) and draw an
original | reconstruction side-by-side PNG.

  python -m train.report runs/bbb-vaegan/model.safetensors runs/bbb-pixel/model.safetensors \\
      --data data/bbb --png docs/train_side_by_side.png --json out/report.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from livevae.model import load_model

from . import metrics
from .dataset import FrameDataset
from .loop import grid, to_model_input, write_png


@torch.no_grad()
def evaluate(model_path: Path, ds: FrameDataset, idx: np.ndarray) -> tuple[dict[str, float], torch.Tensor]:
    """Metrics over frames `idx` and the reconstructions [N, 3, H, W] in [-1, 1] (eval mode, z = mean)."""
    m = load_model(model_path)
    ds.check_size(m.cfg.width, m.cfg.height)
    x = to_model_input(torch.from_numpy(ds.get(idx)), torch.device("cpu"), False)
    rec = torch.cat([m(x[i : i + 32]) for i in range(0, len(x), 32)])
    out = metrics.summarize(rec, x)
    out["frames"] = float(len(idx))
    return out, rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--held-out-every", type=int, default=10, help="as in the recipe")
    ap.add_argument("--frames", type=int, default=4, help="held-out frames in the PNG")
    ap.add_argument("--png", type=Path, help="rows: originals, then each model's reconstructions")
    ap.add_argument("--scale", type=float, default=0.5, help="PNG scale (small for the repository)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    ds = FrameDataset(a.data, held_out_every=a.held_out_every)
    idx = ds.val_idx if len(ds.val_idx) else ds.train_idx
    results, rows = {}, []
    show = np.linspace(0, len(idx) - 1, min(a.frames, len(idx))).round().astype(np.int64)
    for p in a.models:
        r, rec = evaluate(p, ds, idx)
        results[str(p)] = r
        rows.append(rec[show])
        print(f"{p}: PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}, sharpness {r['sharpness']:.3f} ({len(idx)} frames)")
    if a.png:
        x = to_model_input(torch.from_numpy(ds.get(idx[show])), torch.device("cpu"), False)
        # One row per frame: original | model 1 | model 2 ...
        per_frame = [torch.stack([x[i]] + [r[i] for r in rows]) for i in range(len(show))]
        img = grid(per_frame)
        if a.scale != 1.0:
            import cv2

            img = cv2.resize(img, None, fx=a.scale, fy=a.scale, interpolation=cv2.INTER_AREA)
        write_png(a.png, img)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
