"""Distributed and numeric set-up for training: ranks under torchrun, determinism, fast fp32, gradient averaging."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the torchrun group when WORLD_SIZE > 1: NCCL on CUDA, gloo on CPU.

    NCCL gets this rank's device (cuda:LOCAL_RANK) as device_id, so the communicator is created eagerly on
    the right GPU instead of lazily at the first collective, where NCCL may guess the device and hang.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=torch.device("cuda", local))
        else:
            dist.init_process_group("gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local)


DETERMINISTIC_CUBLAS = ":4096:8"  # the workspace setting cuBLAS needs for reproducible matmuls


def enable_determinism() -> None:
    """torch.use_deterministic_algorithms(True), with the cuBLAS workspace it needs on CUDA.

    cuBLAS reads CUBLAS_WORKSPACE_CONFIG when PyTorch first creates a handle; without it the first CUDA
    matmul under deterministic mode raises. Set it here, before the trainer touches CUDA.
    """
    if not os.environ.get("CUBLAS_WORKSPACE_CONFIG"):
        if torch.cuda.is_initialized():
            print(
                "livevae train: CUDA started before deterministic mode; set CUBLAS_WORKSPACE_CONFIG="
                f"{DETERMINISTIC_CUBLAS} before starting for bit-exact cuBLAS",
                file=sys.stderr,
            )
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = DETERMINISTIC_CUBLAS
    torch.use_deterministic_algorithms(True)


def fast_fp32_matmul() -> None:
    """Allow TF32 for fp32 matmuls and convolutions on CUDA through the one API torch has.

    torch >= 2.9 has `fp32_precision`; once any code in the process uses it, the legacy allow_tf32 flags
    read back as "mixed" and raise (RuntimeError "...mix of the legacy and new APIs..."), so the legacy
    setters are only used on a torch that lacks the new API. cuDNN's conv and rnn stay equal, or the
    cuDNN-wide flag is mixed too.
    """
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"  # type: ignore[attr-defined]
        torch.backends.cudnn.rnn.fp32_precision = "tf32"  # type: ignore[attr-defined]
    else:
        matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def average_(tensors: list[torch.Tensor], d: Dist) -> None:
    """All-reduce a list of tensors to their mean across ranks, as one flat buffer."""
    if d.world <= 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= d.world
    i = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[i : i + n].view_as(t).to(t.dtype))
        i += n
