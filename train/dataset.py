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
    """

    def __init__(self, path: str | os.PathLike[str], held_out_every: int = 0) -> None:
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
        if held_out_every and n > 1:
            val = idx % held_out_every == held_out_every // 2
            self.train_idx, self.val_idx = idx[~val], idx[val]
        else:
            self.train_idx, self.val_idx = idx, idx[:0]

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

    def batches(
        self, batch: int, epoch: int, seed: int, skip: int = 0, rank: int = 0, world: int = 1
    ) -> Iterator[np.ndarray]:
        """uint8 batches [B, H, W, 3] for one epoch, skipping the first `skip` batches (resume).
        The last partial batch is kept."""
        order = self.epoch_order(epoch, seed, rank, world)
        for b in range(skip, (len(order) + batch - 1) // batch):
            yield self.get(order[b * batch : (b + 1) * batch])
