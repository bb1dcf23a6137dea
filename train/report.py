"""Score model files on a dataset's held-out segments (PSNR, SSIM, sharpness, motion ratio, temporal error, collapse
rate), on other clips for information, and draw side-by-side PNGs: held-out frames, and a strip of consecutive ones.

  python -m livevae.train.report runs/a/model.safetensors runs/b/model.safetensors --data data/bbb \\
      --cross data/bikes --cross data/carphone --strip docs/temporal_strip.png --json out/report.json

The held-out split is the one each model file was trained with (its metadata); --held-out-every or --segments
override it (and are needed for model files written before the split was stored).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from livevae.errors import LivevaeError
from livevae.model import load_model, read_model_header

from . import metrics
from .dataset import FrameDataset
from .loop import grid, to_model_input, write_png

FIGURES = ("psnr", "ssim", "sharpness", "motion_ratio", "temporal_error", "collapse_rate")


@torch.no_grad()
def reconstruct(model: Any, ds: FrameDataset, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstructions, originals) [N, 3, H, W] in [-1, 1] of frames `idx`, eval mode, z = mean."""
    x = to_model_input(torch.from_numpy(ds.get(idx)), torch.device("cpu"), False)
    rec = torch.cat([model(x[i : i + 32]) for i in range(0, len(x), 32)])
    return rec, x


def evaluate(model_path: Path, ds: FrameDataset, segments: list[np.ndarray]) -> tuple[dict[str, float], list[Any]]:
    """Figures over `segments` (each a run of consecutive frame indices) and the per-segment reconstructions."""
    m = load_model(model_path)
    ds.check_size(m.cfg.width, m.cfg.height)
    pairs = [reconstruct(m, ds, s) for s in segments]
    out = metrics.summarize_segments([r for r, _ in pairs], [o for _, o in pairs])
    return out, [r for r, _ in pairs]


def split_of(model_path: Path, every: int | None, segments: str | None) -> dict[str, Any]:
    """FrameDataset keyword arguments: the flags if given, else the split stored in the model file."""
    if every is not None:
        return {"held_out_every": every}
    if segments is not None:
        try:
            c, n, g = (int(v) for v in segments.split(","))
        except ValueError:
            raise SystemExit(f"--segments {segments!r}: expected COUNT,LENGTH,GAP, e.g. 3,12,4") from None
        return {"segments": (c, n, g)}
    _, meta = read_model_header(model_path)
    split = meta.get("split")
    if not isinstance(split, dict):
        raise SystemExit(
            f"{model_path}: no held-out split in its metadata (written before 0.4); expected --segments or "
            "--held-out-every as it was trained"
        )
    if split.get("held_out") == "every":
        return {"held_out_every": int(split["held_out_every"])}
    return {"segments": tuple(int(v) for v in split["segments"])}


def line(name: str, r: dict[str, float]) -> str:
    t = ""
    if "motion_ratio" in r:
        t = (
            f", motion ratio {r['motion_ratio']:.3f}, temporal error {r['temporal_error']:.4f}, "
            f"collapse {r['collapse_rate']:.2f}"
        )
    return (
        f"{name}: PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}, sharpness {r['sharpness']:.3f}{t} "
        f"({int(r['frames'])} frames)"
    )


def _png(path: Path, rows: list[torch.Tensor], scale: float) -> None:
    img = grid(rows)
    if scale != 1.0:
        import cv2

        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    write_png(path, img)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except LivevaeError as e:  # a missing dataset, a model that does not fit: one line, no traceback
        print(f"livevae report: {e}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="the dataset the models were trained on")
    ap.add_argument("--held-out-every", type=int, help="override: every k-th frame (the old split)")
    ap.add_argument("--segments", help="override: COUNT,LENGTH,GAP held-out blocks (see held_out_segments)")
    ap.add_argument("--cross", type=Path, action="append", default=[], help="another prepped clip, for information")
    ap.add_argument("--cross-frames", type=int, default=0, help="frames of each --cross clip (0 = all)")
    ap.add_argument("--frames", type=int, default=4, help="held-out frames in the --png")
    ap.add_argument("--png", type=Path, help="rows: held-out frames; columns: original, then each model")
    ap.add_argument("--strip", type=Path, help="rows: source, then each model; columns: consecutive held-out frames")
    ap.add_argument("--strip-frames", type=int, default=6)
    ap.add_argument("--strip-segment", type=int, default=0, help="which held-out block the strip shows")
    ap.add_argument("--scale", type=float, default=0.5, help="PNG scale (small for the repository)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    ds = FrameDataset(a.data, **split_of(a.models[0], a.held_out_every, a.segments))
    segments = ds.val_segments or [ds.train_idx]
    results: dict[str, Any] = {}
    recs: list[list[torch.Tensor]] = []
    for p in a.models:
        mine = FrameDataset(a.data, **split_of(p, a.held_out_every, a.segments))
        if [s.tolist() for s in mine.val_segments] != [s.tolist() for s in segments]:
            raise SystemExit(f"{p}: trained with another held-out split than {a.models[0]}; expected the same")
        r, rec = evaluate(p, ds, segments)
        results[str(p)] = {"held_out": r}
        recs.append(rec)
        print(line(str(p), r))
        for c in a.cross:
            clip = FrameDataset(c)
            n = len(clip) if a.cross_frames <= 0 else min(a.cross_frames, len(clip))
            cr, _ = evaluate(p, clip, [np.arange(n)])
            results[str(p)][c.name] = cr
            print("  " + line(f"{c.name} (cross-film)", cr))
    allv = np.concatenate(segments)
    if a.png:
        show = np.linspace(0, len(allv) - 1, min(a.frames, len(allv))).round().astype(np.int64)
        flat = [torch.cat(r) for r in recs]
        x = to_model_input(torch.from_numpy(ds.get(allv[show])), torch.device("cpu"), False)
        _png(a.png, [torch.stack([x[i]] + [f[j] for f in flat]) for i, j in enumerate(show)], a.scale)
    if a.strip:
        k = min(a.strip_segment, len(segments) - 1)
        n = min(a.strip_frames, len(segments[k]))
        x = to_model_input(torch.from_numpy(ds.get(segments[k][:n])), torch.device("cpu"), False)
        _png(a.strip, [x] + [r[k][:n] for r in recs], a.scale)
    if a.json:
        from .checkpoint import atomic_write_json

        atomic_write_json(a.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
