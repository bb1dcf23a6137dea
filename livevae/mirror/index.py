"""The latent index of a training film: the encoder mean of every dataset frame, its row and timecode."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from livevae.errors import LivevaeError
from livevae.offline.prep import FRAMES_FILE, META_FILE

log = logging.getLogger(__name__)

FORMAT = "livevae-index"
VERSION = 1
SUFFIX = ".index.safetensors"  # runs/br/model.safetensors -> runs/br/model.index.safetensors
MAX_ROWS = 5_000_000  # a 58-hour film at 24 fps; a bigger "index" is refused before it is read into memory
TIMES_FILE = "times.npy"  # written by prep beside frames.npy: each row's time in the source, seconds


class MirrorError(LivevaeError):
    """A latent index or its dataset is missing, corrupt, stale or does not fit the model."""


@dataclass(frozen=True)
class LatentIndex:
    """Every training frame's place in latent space. Row r of `latents` is dataset row `frames[r]`."""

    latents: np.ndarray  # float16 [N, zdim], the encoder mean (z = mu, no sampling noise)
    frames: np.ndarray  # int64 [N], the dataset row of each latent
    times: np.ndarray  # float64 [N], that frame's time in the source film, seconds
    fps: float  # the dataset's frame rate (the film plays on at this rate under mirror/hold)
    model_sha256: str  # the model the latents came from; another model's index is refused
    dataset: str = ""  # the dataset folder (frames.npy, memory-mapped for the film view and resequence)
    source: str = ""  # the film the dataset was prepared from

    @property
    def n(self) -> int:
        return int(self.latents.shape[0])

    @property
    def zdim(self) -> int:
        return int(self.latents.shape[1])

    def timecode(self, row: int) -> str:
        """'hh:mm:ss:ff' of index row `row` in the source film (ff counted at the dataset's rate)."""
        return timecode(float(self.times[row]), self.fps)


def timecode(seconds: float, fps: float) -> str:
    """'hh:mm:ss:ff' (SMPTE-style, non-drop) for a time in seconds at a frame rate."""
    fps_i = max(1, round(fps))
    total = round(max(seconds, 0.0) * fps_i)
    ff = total % fps_i
    s = total // fps_i
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{ff:02d}"


def index_path(model: str | os.PathLike[str]) -> Path:
    """Where a model's index lives: beside it, `<stem>.index.safetensors`."""
    p = Path(model)
    return p.with_name(p.stem + SUFFIX)


def model_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of the whole model file: any change to its weights makes its index stale."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- the dataset, read without train/ --------------------------------------------------------------------------
@dataclass(frozen=True)
class Film:
    """A prep dataset opened read-only: frames memory-mapped (nothing is read until a row is asked for)."""

    path: Path
    frames: np.ndarray  # uint8 [N, H, W, 3] RGB, memory-mapped
    times: np.ndarray  # float64 [N] seconds in the source
    fps: float
    meta: dict[str, Any]


def open_film(path: str | os.PathLike[str]) -> Film:
    """Open a dataset written by `livevae prep`; raises MirrorError naming the file and what was expected."""
    path = Path(path)
    meta_file, frames_file = path / META_FILE, path / FRAMES_FILE
    if not meta_file.is_file() or not frames_file.is_file():
        raise MirrorError(f"{path}: no {META_FILE} + {FRAMES_FILE}; expected a dataset folder from `livevae prep`")
    try:
        meta = json.loads(meta_file.read_text())
        frames = np.load(frames_file, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise MirrorError(f"{path}: unreadable dataset ({e}); expected a dataset folder from `livevae prep`") from e
    if meta.get("format") != "livevae-frames" or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise MirrorError(
            f"{frames_file}: {frames.dtype} {tuple(frames.shape)}, format {meta.get('format')!r}; "
            "expected uint8 [N, H, W, 3] of format 'livevae-frames'"
        )
    fps = float(meta.get("fps") or 25.0) / max(int(meta.get("every") or 1), 1)
    times_file = path / TIMES_FILE
    times = np.load(times_file) if times_file.is_file() else None
    if times is None or times.shape != (frames.shape[0],):
        times = np.arange(frames.shape[0], dtype=np.float64) / fps  # an older dataset: rows at the nominal rate
    return Film(path, frames, np.asarray(times, np.float64), fps, meta)


# --- building ----------------------------------------------------------------------------------------------------
def build_index(
    encode: Callable[[np.ndarray], np.ndarray],
    film: Film,
    model_hash: str,
    size: tuple[int, int],
    batch: int = 32,
    progress: bool = True,
) -> LatentIndex:
    """Encode every frame of `film` with `encode` (uint8 [B, H, W, 3] -> float32 mean [B, zdim]).

    size: the model's (w, h); a dataset of another size is refused, since the model never saw those pixels.
    """
    n, h, w = film.frames.shape[:3]
    if (w, h) != tuple(size):
        raise MirrorError(f"{film.path}: frames are {w}x{h}; expected the model's {size[0]}x{size[1]}")
    out: np.ndarray | None = None
    bar = tqdm(total=n, unit="frame", desc=f"index {film.path.name}", disable=not progress, dynamic_ncols=True)
    for i in range(0, n, batch):
        z = np.asarray(encode(np.array(film.frames[i : i + batch])), np.float32)  # [B, zdim]
        if out is None:
            out = np.empty((n, z.shape[1]), np.float16)
        if not np.isfinite(z).all():
            raise MirrorError(f"{film.path}: rows {i}..{i + len(z) - 1} encode to non-finite latents")
        out[i : i + len(z)] = z
        bar.update(len(z))
    bar.close()
    assert out is not None  # n >= 1: prep never writes an empty dataset
    return LatentIndex(
        latents=out,
        frames=np.arange(n, dtype=np.int64),
        times=film.times.copy(),
        fps=film.fps,
        model_sha256=model_hash,
        dataset=str(film.path.resolve()),
        source=str(film.meta.get("source", "")),
    )


def index_model(
    model: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    batch: int = 32,
    progress: bool = True,
) -> tuple[Path, LatentIndex]:
    """Build and save the index of `model` over `dataset` (beside the model unless `out`); returns (path, index)."""
    import torch

    from livevae.backends.torch_backend import TorchBackend

    film = open_film(dataset)
    backend = TorchBackend.from_file(str(model), device="cpu", precision="fp32", batch=None)
    digest = model_sha256(model)
    with torch.inference_mode():
        idx = build_index(backend.encode, film, digest, (backend.cfg.width, backend.cfg.height), batch, progress)
    path = save_index(idx, out or index_path(model))
    return path, idx


# --- the file ------------------------------------------------------------------------------------------------------
def save_index(idx: LatentIndex, path: str | os.PathLike[str]) -> Path:
    """Write the index as one safetensors file (fp16 latents, int64 rows, float64 times), atomically."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "model_sha256": idx.model_sha256,
        "fps": repr(float(idx.fps)),
        "dataset": idx.dataset,
        "source": idx.source,
    }
    tensors: dict[str, np.ndarray] = {
        "latents": np.ascontiguousarray(idx.latents, np.float16),
        "frames": np.ascontiguousarray(idx.frames, np.int64),
        "times": np.ascontiguousarray(idx.times, np.float64),
    }
    tmp = path.with_name(f".{path.name}.partial")
    try:
        save_file(tensors, str(tmp), metadata=header)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_index(
    path: str | os.PathLike[str], model: str | os.PathLike[str] | None = None, zdim: int | None = None
) -> LatentIndex:
    """Read an index; with `model`, refuse it unless it was built from that exact model file (sha256).

    Raises MirrorError naming the file: missing, unreadable, not an index, inconsistent shapes, or stale.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        hint = f"; build it with `livevae index {model} DATASET`" if model else ""
        raise MirrorError(f"{path}: index file not found{hint}")
    try:
        with safe_open(str(path), framework="np") as f:
            md = f.metadata() or {}
            keys = set(f.keys())
            if md.get("format") != FORMAT or not {"latents", "frames", "times"} <= keys:
                raise MirrorError(
                    f"{path}: format {md.get('format')!r} with tensors {sorted(keys)}; "
                    f"expected {FORMAT!r} with latents, frames, times"
                )
            shape = f.get_slice("latents").get_shape()
            if len(shape) != 2 or shape[0] > MAX_ROWS or shape[1] > 4096:
                raise MirrorError(
                    f"{path}: latents of shape {list(shape)}; expected [N, zdim] with N <= {MAX_ROWS} and zdim <= 4096"
                )
            lat, rows, times = f.get_tensor("latents"), f.get_tensor("frames"), f.get_tensor("times")
    except MirrorError:
        raise
    except Exception as e:  # safetensors raises several types for truncated or garbage files
        raise MirrorError(f"{path}: not a readable safetensors file ({e}); expected a livevae index") from e
    if lat.ndim != 2 or lat.shape[0] == 0 or rows.shape != (lat.shape[0],) or times.shape != (lat.shape[0],):
        raise MirrorError(
            f"{path}: latents {lat.shape}, frames {rows.shape}, times {times.shape}; expected [N, zdim], [N], [N]"
        )
    if zdim is not None and lat.shape[1] != zdim:
        raise MirrorError(f"{path}: latents have {lat.shape[1]} dimensions; expected the model's {zdim}")
    try:
        fps = float(md.get("fps", "25"))
    except ValueError as e:
        raise MirrorError(f"{path}: metadata fps={md.get('fps')!r}; expected a number") from e
    idx = LatentIndex(
        latents=np.asarray(lat, np.float16),
        frames=np.asarray(rows, np.int64),
        times=np.asarray(times, np.float64),
        fps=fps if fps > 0 else 25.0,
        model_sha256=str(md.get("model_sha256", "")),
        dataset=str(md.get("dataset", "")),
        source=str(md.get("source", "")),
    )
    if model is not None:
        digest = model_sha256(model)
        if digest != idx.model_sha256:
            raise MirrorError(
                f"{path}: built for model sha256 {idx.model_sha256[:12] or '?'}, but {model} is {digest[:12]}: "
                f"stale; expected an index of this model (rebuild: livevae index {model} DATASET)"
            )
    return idx
