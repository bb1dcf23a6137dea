"""Training batches: a rank's frames in a seeded order on a loader thread, to the device, augmented."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .config import TrainConfig


class Loader:
    """Background thread that reads uint8 batches from the memory-mapped dataset in the epoch's order and
    pins them (on CUDA), so the next batch is ready when the step ends."""

    def __init__(self, batches: Iterator[tuple[np.ndarray, np.ndarray]], pin: bool, prefetch: int = 2) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max(1, prefetch))
        self._pin = pin
        self._it = batches
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="livevae-loader", daemon=True)
        self._t.start()

    def _run(self) -> None:
        try:
            for idx, frames in self._it:
                t = torch.from_numpy(frames)  # [B, H, W, 3] uint8
                if self._pin:
                    t = t.pin_memory()
                while not self._stop.is_set():
                    try:
                        self._q.put((idx, t), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._q.put(None)
        except BaseException as e:  # handed to the consumer, raised there
            self._q.put(e)

    def __iter__(self) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        while True:
            item = self._q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._t.join(timeout=5)


def to_model_input(frames: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1] on the device."""
    x = frames.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def translate(x: torch.Tensor, shifts: torch.Tensor, t: int) -> torch.Tensor:
    """Each frame of x [N, 3, H, W] moved by its integer (dx, dy) in shifts [N, 2], |d| <= t, edges reflected."""
    n, c, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (t, t, t, t), mode="reflect")  # [N, 3, H + 2t, W + 2t]
    # One gather on the device: reading the shifts to the host (int(...)) would sync 2·N times a step.
    rows = (t + shifts[:, 1, None] + torch.arange(h, device=dev))[:, None, :, None]  # [N, 1, H, 1]
    cols = (t + shifts[:, 0, None] + torch.arange(w, device=dev))[:, None, None, :]  # [N, 1, 1, W]
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chans = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chans, rows, cols]  # [N, 3, H, W]


def synthetic_motion(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Temporal batches [a, a+1, b, b+1, ...]: in a share `temporal_shift_p` of the pairs the second frame becomes
    the first moved by a random integer (dx, dy), |d| <= temporal_shift, not (0, 0). A pan of known size: the
    change-matching loss then teaches the model to move a picture it has seen, rather than snap an unseen,
    moved frame back to the nearest one it knows (Broad's collapse of runs of similar frames)."""
    t = cfg.temporal_shift
    first = x[0::2]  # [N/2, 3, H, W]
    m, dev = first.shape[0], x.device
    shifts = torch.randint(-t, t + 1, (m, 2), generator=gen, device=dev)
    still = (shifts == 0).all(1)
    shifts[still, 0] = 1  # never a zero move: that pair would teach nothing
    pick = torch.rand(m, generator=gen, device=dev) < cfg.temporal_shift_p
    moved = translate(first, shifts, t)
    out = x.clone()
    out[1::2] = torch.where(pick[:, None, None, None], moved, x[1::2])
    return out


def augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Device-side augmentation per frame: flip, integer translation (reflect), brightness/contrast."""
    n = x.shape[0]
    dev = x.device
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    # Temporal batches are pairs [a, a+1, ...]: both frames of a pair get the same draw, or a flip or a shift of
    # one of them would be a huge change the temporal loss must then copy.
    m = (n + 1) // 2 if cfg.temporal else n

    def per_pair(t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(2, 0)[:n] if cfg.temporal else t

    if cfg.aug_flip:
        flip = per_pair(torch.rand(m, generator=gen, device=dev)) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if cfg.aug_translate:
        t = cfg.aug_translate
        shifts = per_pair(torch.randint(-t, t + 1, (m, 2), generator=gen, device=dev))  # [N, (dx, dy)]
        x = translate(x, shifts, t)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
    if cfg.aug_jitter:
        j = cfg.aug_jitter
        b = per_pair((torch.rand(m, 1, 1, 1, generator=gen, device=dev) * 2 - 1) * j)
        c = 1 + per_pair((torch.rand(m, 1, 1, 1, generator=gen, device=dev) * 2 - 1) * j)
        x = (x * c + b).clamp(-1, 1)
    return x
