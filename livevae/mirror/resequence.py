"""Resequencing: every frame of another video replaced by its nearest training-film frame, planned for continuity."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from livevae.media.preprocess import Preprocessor
from livevae.media.video import AudioMux, VideoWriter, iter_frames, probe
from livevae.mirror.index import Film, LatentIndex, MirrorError, index_path, load_index, open_film
from livevae.mirror.search import ExactSearch

log = logging.getLogger(__name__)

SHOW = ("original", "reconstruction")


@dataclass(frozen=True)
class Options:
    model: str
    input: str
    out: str
    index: str = ""  # default beside the model
    dataset: str = ""  # default the index's own dataset (needed for show="original")
    show: str = "original"  # the film's frames themselves, or the model's reconstructions of them
    k: int = 16  # nearest candidates per input frame (plus the successors of the last frame's)
    jump: float = 1.0  # cost of a cut, in units of the median nearest distance; 0 = nearest frame each time
    repeats: bool = False  # allow the same film frame twice in a row (a freeze)
    audio: str = "auto"  # the input's audio: auto (copy where it plays, else AAC), copy, aac; or "none"
    backend: str = "auto"
    batch: int = 32
    crop: str = "centre"
    progress: bool = True


def plan(cand: np.ndarray, dist: np.ndarray, jump: float, repeats: bool = False) -> tuple[np.ndarray, dict[str, float]]:
    """The cheapest path through the candidates (Viterbi): cand int64 [T, K] index rows, dist float [T, K] their
    distances to each input frame -> chosen rows int64 [T] and a summary.

    A step costs its distance plus `jump` unless it is the film's next frame (row + 1: the film plays on);
    without `repeats`, the same row twice in a row is forbidden. Distances are divided by their median nearest
    distance first, so `jump` means the same in any film's latent scale.
    """
    t_len, k = cand.shape
    scale = float(np.median(dist.min(axis=1))) or 1.0
    cost = dist / scale  # [T, K]
    acc = cost[0].astype(np.float64)
    back = np.zeros((t_len, k), np.int64)
    for t in range(1, t_len):
        prev, cur = cand[t - 1], cand[t]
        trans = np.where(cur[None, :] == prev[:, None] + 1, 0.0, jump)  # [K prev, K cur]
        if not repeats:
            trans = np.where(cur[None, :] == prev[:, None], np.inf, trans)
        total = acc[:, None] + trans  # [K, K]
        back[t] = np.argmin(total, axis=0)
        acc = total[back[t], np.arange(k)] + cost[t]
        if not np.isfinite(acc).any():  # cannot happen with K >= 2 distinct candidates; be safe anyway
            raise MirrorError(f"resequence: no allowed path at input frame {t}; expected k >= 2")
    path = np.empty(t_len, np.int64)
    j = int(np.argmin(acc))
    for t in range(t_len - 1, -1, -1):
        path[t] = cand[t, j]
        j = int(back[t, j])
    cuts = int(np.sum(path[1:] != path[:-1] + 1)) if t_len > 1 else 0
    summary = {"frames": float(t_len), "cuts": float(cuts), "unique": float(len(np.unique(path)))}
    return path, summary


def candidates(z: np.ndarray, search: ExactSearch, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For each input latent z [T, zdim]: its k nearest index rows, plus the successors of the previous frame's
    k nearest (so a continuing shot stays a candidate when it is not among the k nearest): ([T, 2k], [T, 2k])."""
    rows, d2 = search.search(z, k)  # [T, k]
    succ = np.concatenate([rows[:1], rows[:-1]], axis=0) + 1  # [T, k]; frame 0 has its own rows again
    succ = np.minimum(succ, n - 1)
    diff = search.x[succ] - z[:, None, :]  # [T, k, zdim]
    sd2 = np.einsum("tkd,tkd->tk", diff, diff)
    cand = np.concatenate([rows, succ], axis=1)
    dist = np.sqrt(np.maximum(np.concatenate([d2, sd2], axis=1), 0.0))
    return cand, dist


def resequence(opts: Options) -> dict[str, Any]:
    """Write opts.out: the input's frame count and rate, each frame a training-film frame; returns a summary."""
    from livevae.backends import create

    if opts.show not in SHOW:
        raise MirrorError(f"--show {opts.show!r}: expected one of {', '.join(SHOW)}")
    if opts.k < 2 and not opts.repeats:
        raise MirrorError(f"-k {opts.k}: forbidding repeats needs at least 2 candidates; expected -k >= 2")
    idx: LatentIndex = load_index(opts.index or index_path(opts.model), opts.model)
    film: Film | None = None
    if opts.show == "original":
        ds = opts.dataset or idx.dataset
        if not ds:
            raise MirrorError(f"{opts.index or index_path(opts.model)}: names no dataset; expected --dataset DIR")
        film = open_film(ds)
        if len(film.frames) <= int(idx.frames.max()):
            raise MirrorError(
                f"{film.path}: {len(film.frames)} frames; the index refers to row {int(idx.frames.max())}: "
                "expected the dataset the index was built on"
            )
    info = probe(opts.input)
    backend = create(opts.model, opts.backend, batch=None)
    size = (backend.cfg.width, backend.cfg.height)
    pre = Preprocessor(size, opts.crop)
    # Pass 1: encode every input frame (z [T, zdim]), keeping only latents and times in memory.
    zs: list[np.ndarray] = []
    times: list[float] = []
    bar = tqdm(total=info.frames or None, unit="frame", desc=f"encode {Path(opts.input).name}",
               disable=not opts.progress, dynamic_ncols=True)  # fmt: skip
    buf: list[np.ndarray] = []
    for img, t in iter_frames(opts.input):
        buf.append(pre(img))
        times.append(t)
        if len(buf) == opts.batch:
            zs.append(np.asarray(backend.encode(np.stack(buf)), np.float32))
            bar.update(len(buf))
            buf = []
    if buf:
        zs.append(np.asarray(backend.encode(np.stack(buf)), np.float32))
        bar.update(len(buf))
    bar.close()
    if not times:
        raise MirrorError(f"{opts.input}: decoded 0 frames; expected a video")
    z = np.concatenate(zs)  # [T, zdim]
    search = ExactSearch(idx.latents)
    k = max(1, min(opts.k, idx.n))
    cand, dist = candidates(z, search, k, idx.n)
    path, summary = plan(cand, dist, opts.jump, opts.repeats)
    # Pass 2: write the chosen film frames at the input's own times, with the input's audio.
    writer = VideoWriter(opts.out, info.fps, size, time_base=info.time_base,
                         metadata={"comment": json.dumps({"livevae": "resequence", "model": str(opts.model),
                                                          "input": str(opts.input), "show": opts.show})})  # fmt: skip
    audio: AudioMux | None = None
    origin = times[0]
    try:
        if opts.audio != "none" and info.has_audio:
            audio = AudioMux(opts.input, writer.container, origin=origin, mode=opts.audio)
        bar = tqdm(total=len(path), unit="frame", desc=f"write {Path(opts.out).name}", disable=not opts.progress,
                   dynamic_ncols=True)  # fmt: skip
        for s in range(0, len(path), opts.batch):
            rows = path[s : s + opts.batch]
            if film is not None:
                pics = film.frames[idx.frames[rows]]  # [B, H, W, 3] memory-mapped rows
            else:
                pics = backend.decode(idx.latents[rows].astype(np.float32))  # [B, H, W, 3]
            for j, pic in enumerate(pics):
                t = times[s + j]
                if audio is not None:
                    audio.feed(t)
                writer.write(np.ascontiguousarray(pic), t - origin)
            bar.update(len(rows))
        bar.close()
        if audio is not None:
            audio.finish()
            audio = None
        out = writer.close()
    except BaseException:
        if audio is not None:
            audio.close()
        writer.abort()
        raise
    summary.update({"fps": float(info.fps), "has_audio": float(info.has_audio and opts.audio != "none")})
    return {"out": str(out), "rows": path, "first_timecode": idx.timecode(int(path[0])), **summary}


def check_out(out: str | os.PathLike[str]) -> None:
    p = Path(out)
    if p.suffix.lower() not in (".mp4", ".mkv", ".mov"):
        raise MirrorError(f"{p}: output suffix {p.suffix!r}; expected .mp4, .mkv or .mov")
