"""FrameDataset: the memory-mapped frames written by `livevae prep`, read in shuffled batches."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from livevae.errors import LivevaeError
from livevae.offline.prep import FRAMES_FILE, META_FILE


class DatasetError(LivevaeError):
    """A dataset folder is missing, incomplete or not what the model expects."""


class FrameDataset:
    """uint8 frames [N, H, W, 3] memory-mapped from disk: the whole film never sits in RAM.

    held_out_every: every k-th frame is kept out of training (validation); 0 keeps all frames in training.
    segments: (count, length, gap) instead: `count` contiguous held-out blocks of `length` frames spread evenly
      through the film, with `gap` frames on each side of a block used for neither training nor validation
      (see TrainConfig.held_out). `val_segments` lists the blocks; `val_idx` is their concatenation.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        held_out_every: int = 0,
        segments: tuple[int, int, int] | None = None,
    ) -> None:
        self.path = Path(path)
        meta_path, frames_path = self.path / META_FILE, self.path / FRAMES_FILE
        if not self.path.is_dir():
            raise DatasetError(f"{self.path}: dataset folder not found; expected the output of `livevae prep`")
        if not meta_path.is_file() or not frames_path.is_file():
            raise DatasetError(
                f"{self.path}: missing {META_FILE} or {FRAMES_FILE}; expected the output of `livevae prep`"
            )
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
            self.frames = np.load(frames_path, mmap_mode="r")  # [N, H, W, 3] uint8, lazily paged in
        except (ValueError, OSError) as e:
            raise DatasetError(f"{self.path}: unreadable dataset ({e})") from e
        if self.frames.ndim != 4 or self.frames.shape[3] != 3 or self.frames.dtype != np.uint8:
            raise DatasetError(
                f"{frames_path}: shape {self.frames.shape} {self.frames.dtype}; expected uint8 [N, H, W, 3]"
            )
        if self.meta.get("frames") != len(self.frames):
            raise DatasetError(
                f"{meta_path}: 'frames' is {self.meta.get('frames')} but {FRAMES_FILE} holds {len(self.frames)}"
            )
        n = len(self.frames)
        idx = np.arange(n)
        self.split_note = ""
        if segments is not None and segments[0] > 0:
            self.val_segments, guard = self._segments(n, *segments)
            val = np.zeros(n, bool)
            for seg in self.val_segments:
                val[seg] = True
            self.train_idx, self.val_idx = idx[~val & ~guard], idx[val]
        elif held_out_every and n > 1:
            val = idx % held_out_every == held_out_every // 2
            self.train_idx, self.val_idx = idx[~val], idx[val]
            self.val_segments = [np.array([i]) for i in self.val_idx]  # single frames: no temporal figures
        else:
            self.train_idx, self.val_idx = idx, idx[:0]
            self.val_segments = []

    def _segments(self, n: int, count: int, length: int, gap: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Blocks centred at (k + 1/2) n / count. The blocks and their gaps take at most half the film: a shorter
        film gets fewer blocks, and one too short for a single block gets a shorter block and gaps (a quarter of
        the film); split_note says which."""
        span = length + 2 * gap
        if 2 * span > n:
            f = n / (4 * span)
            length, gap = max(2, int(length * f)), max(1, int(gap * f))
            if length + 2 * gap > n // 2:
                raise DatasetError(
                    f"{self.path}: {n} frames; too few to hold out a block of consecutive frames with a gap on each "
                    f"side (held_out_segment, held_out_gap); expected at least 8 frames, or held_out_segments = 0"
                )
            self.split_note = f"{self.path}: {n} frames: held-out blocks shortened to {length} frames, gaps to {gap}"
            span = length + 2 * gap
        fits = (n // 2) // span
        if count > fits:
            self.split_note = self.split_note or f"{self.path}: {n} frames fit {fits} held-out blocks, not {count}"
            count = fits
        guard = np.zeros(n, bool)
        out = []
        for k in range(count):
            start = round((k + 0.5) * n / count) - length // 2
            start = min(max(start, gap), n - gap - length)
            out.append(np.arange(start, start + length))
            guard[max(0, start - gap) : start] = True
            guard[start + length : start + length + gap] = True
        return out, guard

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    def __len__(self) -> int:
        return len(self.frames)

    def check_size(self, width: int, height: int) -> None:
        if self.size != (width, height):
            raise DatasetError(
                f"{self.path}: frames are {self.size[0]}x{self.size[1]} but the model expects {width}x{height}; "
                f"re-run `livevae prep --size {width}x{height}`"
            )

    def get(self, indices: np.ndarray) -> np.ndarray:
        """uint8 [B, H, W, 3]; reads pages in index order, then restores the requested order."""
        order = np.argsort(indices, kind="stable")
        out = np.empty((len(indices), *self.frames.shape[1:]), np.uint8)
        out[order] = self.frames[np.asarray(indices)[order]]
        return out

    def epoch_order(self, epoch: int, seed: int, rank: int = 0, world: int = 1) -> np.ndarray:
        """Training indices for one epoch: a permutation fixed by (seed, epoch), so a resumed run sees the
        same order; rank r of `world` takes every world-th item, so ranks see disjoint shares."""
        rng = np.random.default_rng([seed, epoch])
        perm = self.train_idx[rng.permutation(len(self.train_idx))]
        usable = len(perm) - len(perm) % world if len(perm) >= world else len(perm)
        return perm[:usable][rank::world]

    def pair_order(self, epoch: int, seed: int, rank: int = 0, world: int = 1) -> np.ndarray:
        """Training indices for one epoch of temporal training: consecutive pairs (i, i + 1) of training frames in
        a permutation fixed by (seed, epoch), interleaved [a, a+1, b, b+1, ...]; each rank takes its share of the
        pairs. A pair never spans a held-out block or its gap."""
        train = np.zeros(len(self), bool)
        train[self.train_idx] = True
        starts = np.flatnonzero(train[:-1] & train[1:])
        rng = np.random.default_rng([seed, epoch, 2])  # its own stream: the plain order is unchanged
        perm = starts[rng.permutation(len(starts))]
        usable = len(perm) - len(perm) % world if len(perm) >= world else len(perm)
        mine = perm[:usable][rank::world]
        return np.stack([mine, mine + 1], 1).reshape(-1)

    def batches(
        self, batch: int, epoch: int, seed: int, skip: int = 0, rank: int = 0, world: int = 1
    ) -> Iterator[np.ndarray]:
        """uint8 batches [B, H, W, 3] for one epoch, skipping the first `skip` batches (resume).
        The last partial batch is kept."""
        order = self.epoch_order(epoch, seed, rank, world)
        for b in range(skip, (len(order) + batch - 1) // batch):
            yield self.get(order[b * batch : (b + 1) * batch])
