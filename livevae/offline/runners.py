"""Reconstruct's inference: any backend behind one batch runner, and the CUDA runner overlapping copy and compute."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from livevae.model import ModelError

Runner = Callable[[np.ndarray], np.ndarray]  # uint8 [N, H, W, 3] -> uint8 [N, H, W, 3]


def protocol_runner(backend: Any) -> Runner:
    """Any Backend: encode to z = mean, decode. The z round trip through the host is [N, zdim] floats, tiny."""

    def run(frames: np.ndarray) -> np.ndarray:
        return np.asarray(backend.decode(backend.encode(frames)))

    return run


def amp_plan(weights: Any, precision: str) -> tuple[bool, Any]:
    """(autocast on?, compute dtype) for a model whose weights are `weights`, asked for `precision`.

    "auto" means the backend's own precision, which its weights already carry (a pinned torch-cuda+fp32
    stays fp32); fp32 weights asked for fp16/bf16 autocast; half weights run as they are.
    """
    import torch

    want = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}.get(precision, weights)
    return weights == torch.float32 and want != torch.float32, want


class TorchCudaRunner:
    """The CUDA path for a PyTorch backend: pinned host buffers, non-blocking copies on a side stream,
    the backend's fp16/bf16 weights (or autocast over fp32 ones), uint8 conversion on the GPU, so only
    bytes cross the bus both ways and the CPU waits once per batch. CPU tests run it with torch.cuda's
    stream calls replaced (tests/test_reconstruct_cuda.py); bench/gpu_check.py runs it on a GPU."""

    def __init__(self, model: Any, device: Any, precision: str = "auto", channels_last: bool = False) -> None:
        import torch

        self.torch = torch
        self.model = model.eval()
        self.device = torch.device(device)
        self.weights = next(model.parameters()).dtype  # the backend may have cast the model to fp16/bf16
        self.autocast, self.amp_dtype = amp_plan(self.weights, precision)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.stream = torch.cuda.Stream(self.device)
        self._in: Any = None
        self._out: Any = None
        torch.backends.cudnn.benchmark = True  # fixed shapes per batch size: let cuDNN pick its fastest kernels

    def _buffers(self, shape: tuple[int, ...]) -> None:
        if self._in is None or self._in.shape[0] < shape[0] or tuple(self._in.shape[1:]) != shape[1:]:
            self._in = self.torch.empty(shape, dtype=self.torch.uint8).pin_memory()
            self._out = self.torch.empty(shape, dtype=self.torch.uint8).pin_memory()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        torch = self.torch
        n = frames.shape[0]
        self._buffers(tuple(frames.shape))
        host_in = self._in[:n]
        host_in.numpy()[...] = frames  # pageable -> pinned, so the upload below can be asynchronous
        # The side stream must wait for the default one, where the backend queued its weight conversions
        # (and any earlier work on these weights); streams do not order against each other by themselves.
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode(), torch.cuda.stream(self.stream):
            x = host_in.to(self.device, non_blocking=True)  # [N, H, W, 3] uint8
            x = x.permute(0, 3, 1, 2).to(self.weights).div_(127.5).sub_(1.0)  # [N, 3, H, W] in [-1, 1]
            x = x.contiguous(memory_format=self.memory_format)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.autocast):
                mu, _ = self.model.encode(x)  # z = mean [N, zdim]
                y = self.model.decode(mu)  # [N, 3, H, W] in [-1, 1]
            y = (y.float().clamp_(-1, 1).add_(1.0).mul_(127.5)).round_().to(torch.uint8).permute(0, 2, 3, 1)
            host_out = self._out[:n]
            host_out.copy_(y, non_blocking=True)
        self.stream.synchronize()  # the one CPU-GPU sync point per batch
        return host_out.numpy().copy()  # the pinned buffer is reused by the next batch


def make_runner(backend: Any, precision: str = "auto") -> Runner:
    """The fastest way to drive `backend`: the CUDA path when it is PyTorch on a GPU, else its protocol."""
    model, device = getattr(backend, "model", None), getattr(backend, "device", None)
    if model is not None and hasattr(model, "encode") and getattr(device, "type", None) == "cuda":
        return TorchCudaRunner(model, device, precision, bool(getattr(backend, "channels_last", False)))
    return protocol_runner(backend)


def load_backend(path: str, backend: str, precision: str = "auto", threads: int | None = None) -> Any:
    """livevae.backends.create for offline use (dynamic batch), naming the model file in every error."""
    import inspect

    from livevae.backends import EngineError, create

    if not Path(path).is_file():
        raise ModelError(f"{path}: model file not found; expected a livevae .safetensors model")
    # Only pass what this version of create() takes: batch=None asks for dynamic-batch graphs/engines.
    wanted: dict[str, Any] = {"batch": None, "precision": None if precision == "auto" else precision}
    wanted["threads"] = threads
    params = inspect.signature(create).parameters
    kw = {k: v for k, v in wanted.items() if k in params}
    try:
        return create(path, backend, **kw)
    except (ModelError, EngineError):
        raise
    except Exception as e:  # a backend library's own failure on a bad file: still one line naming the file
        raise ModelError(f"{path}: cannot load with backend {backend!r} ({e.__class__.__name__}: {e})") from e
