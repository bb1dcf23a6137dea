"""PyTorch backend: eager on CPU (the reference every backend is measured against), a frozen-TorchScript
CPU variant, and on CUDA fp16/bf16 + channels_last + CUDA graphs."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from livevae.backends import EngineError
from livevae.media.preprocess import to_tensor, to_uint8
from livevae.model import VAE, load_model

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class _Mu(nn.Module):
    """frames [N, 3, H, W] -> mu [N, zdim]: the deterministic encode, as one traceable module."""

    def __init__(self, model: VAE) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]


class _CudaGraph:
    """One static-shape call captured as a CUDA graph: copy into `inp`, replay, read `out`.

    Removes the per-kernel launch cost, which dominates at batch 1 for nets this small.
    """

    def __init__(
        self, fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, warmup: int = 3, name: str = "net"
    ) -> None:
        self.inp = example.clone()
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
                for _ in range(warmup):
                    fn(self.inp)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = fn(self.inp)
        except Exception as e:  # RuntimeError from cudaStreamCapture*: an EngineError, so `auto` can fall back
            raise EngineError(
                f"torch-cuda {name}: CUDA graph capture failed ({type(e).__name__}: {e}); expected a capturable net"
            ) from e
        self.graph, self.out = graph, out  # only a graph that captured whole is kept for replay

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.inp.copy_(x)
        self.graph.replay()
        return self.out


class TorchBackend:
    """encode/decode with PyTorch.

    device 'cpu': mode 'eager' is the reference; mode 'jit' traces, freezes and runs
    torch.jit.optimize_for_inference (oneDNN conv fusion), optionally channels_last.
    device 'cuda': precision fp32/fp16/bf16, channels_last, and (batch 1 by default) CUDA graphs
    captured after a warm-up at creation. CPU tests cover the capture's failure path with torch.cuda's calls
    replaced; bench/gpu_check.py runs the rest on a GPU.
    """

    def __init__(
        self,
        model: VAE,
        device: str = "cpu",
        precision: str = "fp32",
        mode: str = "eager",
        channels_last: bool = False,
        cuda_graph: bool = True,
        batch: int | None = 1,
    ) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EngineError(f"torch {torch.__version__}: CUDA is not available (torch.cuda.is_available() is False)")
        if precision not in DTYPES:
            raise EngineError(f"torch precision {precision!r}; expected one of {sorted(DTYPES)}")
        if self.device.type == "cpu" and precision != "fp32":
            raise EngineError(f"torch-cpu precision {precision!r}; only fp32 is supported on CPU")
        if mode not in ("eager", "jit"):
            raise EngineError(f"torch mode {mode!r}; expected 'eager' or 'jit'")
        self.cfg = model.cfg
        self.precision = precision
        self.dtype = DTYPES[precision]
        self.mode = mode
        self.batch = batch
        self.channels_last = channels_last or self.device.type == "cuda"
        self.model = model.to(self.device).eval()
        if self.dtype != torch.float32:
            self.model = self.model.to(self.dtype)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._enc: Callable[[torch.Tensor], torch.Tensor] = _Mu(self.model).eval()
        self._dec: Callable[[torch.Tensor], torch.Tensor] = self.model.decoder
        if mode == "jit":
            self._trace()
        self._graphs: dict[str, _CudaGraph] = {}
        self.cuda_graph = cuda_graph and self.device.type == "cuda" and batch is not None
        if self.device.type == "cpu":
            self.name = "torch-cpu" if mode == "eager" else "torch-cpu-jit"
        else:
            self.name = "torch-cuda"
        if self.cuda_graph:
            self._capture()

    @torch.inference_mode()
    def _capture(self) -> None:
        """Capture both graphs now, on zeros: a capture failure is an EngineError at creation, where `auto`
        falls back, not at the first frame of a show; and the first frame does not wait for a capture."""
        assert self.batch is not None
        cfg = self.cfg
        x = self._prep(torch.zeros(self.batch, 3, cfg.height, cfg.width, device=self.device))
        z = torch.zeros(self.batch, cfg.zdim, device=self.device, dtype=self.dtype)
        self._graphs["encode"] = _CudaGraph(self._enc, x, name="encoder")
        self._graphs["decode"] = _CudaGraph(self._dec, z, name="decoder")

    @classmethod
    def from_file(cls, path: str, device: str = "cpu", **kw: object) -> TorchBackend:
        """Load a model file (raises ModelError naming it when missing or bad) into a backend."""
        return cls(load_model(path, device="cpu"), device=device, **kw)  # type: ignore[arg-type]

    def describe(self) -> str:
        parts = [self.name, self.precision]
        if self.channels_last:
            parts.append("channels_last")
        if self.mode == "jit":
            parts.append("jit.freeze")
        if self.cuda_graph:
            parts.append(f"CUDA graphs (batch {self.batch})")
        return f"{parts[0]} ({', '.join(parts[1:])})"

    @torch.inference_mode()
    def _trace(self) -> None:
        cfg = self.cfg
        x = self._prep(torch.zeros(1, 3, cfg.height, cfg.width, device=self.device))
        z = torch.zeros(1, cfg.zdim, device=self.device, dtype=self.dtype)
        with torch.no_grad(), warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript in favour of torch.compile, which needs a C++ toolchain and
            # minutes of compiling at start; freeze still works and is the cheap CPU variant we measure.
            warnings.simplefilter("ignore", DeprecationWarning)
            enc = torch.jit.freeze(torch.jit.trace(_Mu(self.model).eval(), x))
            dec = torch.jit.freeze(torch.jit.trace(self.model.decoder, z))
            self._enc = torch.jit.optimize_for_inference(enc)
            self._dec = torch.jit.optimize_for_inference(dec)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _input(self, frames: np.ndarray) -> torch.Tensor:
        cfg = self.cfg
        if frames.dtype == np.uint8:
            if frames.shape[-3:] != (cfg.height, cfg.width, 3):
                raise EngineError(
                    f"encode: uint8 frames of shape {frames.shape}; expected [N, {cfg.height}, {cfg.width}, 3]"
                )
            # The uint8 upload is 4x smaller than float; conversion happens on the device.
            return to_tensor(frames, self.device)  # [N, 3, H, W] in [-1, 1]
        if frames.shape[-3:] != (3, cfg.height, cfg.width):
            raise EngineError(
                f"encode: float frames of shape {frames.shape}; expected [N, 3, {cfg.height}, {cfg.width}]"
            )
        return torch.as_tensor(frames, dtype=torch.float32, device=self.device)

    def _call(self, key: str, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if self.cuda_graph and len(x) == self.batch:
            g = self._graphs.get(key)
            if g is None:
                g = self._graphs[key] = _CudaGraph(fn, x, name=key)
            return g(x)
        return fn(x)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] or float32 [N, 3, H, W] in [-1, 1] -> float32 z = mu [N, zdim]."""
        x = self._prep(self._input(frames))
        mu = self._call("encode", self._enc, x)
        return mu.float().cpu().numpy()  # [N, zdim]; .cpu() is the sync point on CUDA

    @torch.inference_mode()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """float32 [N, zdim] -> uint8 [N, H, W, 3]."""
        zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=self.device)
        if zt.ndim != 2 or zt.shape[1] != self.cfg.zdim:
            raise EngineError(f"decode: z of shape {tuple(zt.shape)}; expected [N, {self.cfg.zdim}]")
        x = self._call("decode", self._dec, zt.to(self.dtype))
        return to_uint8(x)  # [N, H, W, 3]; to_uint8 ends in .cpu(), the sync point on CUDA
