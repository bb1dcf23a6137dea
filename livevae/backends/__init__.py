"""Inference backends behind one contract: encode(frames) -> z [N, zdim], decode(z) -> frames uint8."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Protocol

import numpy as np

from livevae.errors import LivevaeError
from livevae.model import ModelConfig

log = logging.getLogger(__name__)


class EngineError(LivevaeError):
    """A backend cannot be created or run (missing library, no GPU, bad engine file)."""


class Backend(Protocol):
    """Every backend: the same preprocessing, the same shapes, chosen once at start."""

    name: str
    cfg: ModelConfig

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] RGB (or float32 [N, 3, H, W] in [-1, 1]) -> float32 z = mean [N, zdim]."""
        ...

    def decode(self, z: np.ndarray) -> np.ndarray:
        """float32 [N, zdim] -> uint8 [N, H, W, 3] RGB."""
        ...


# What `auto` tries, fastest first. Each is skipped only for an EngineError (library or device missing,
# engine build failed), logged with its reason; any other exception is a real bug and propagates.
AUTO_ORDER = ("tensorrt", "torch-cuda", "onnxruntime", "torch-cpu")
NAMES = (*AUTO_ORDER, "onnxruntime-cuda", "torch-cpu-jit", "torch")


def _make(
    name: str,
    model_path: str,
    batch: int | None,
    precision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    threads: int | None = None,
    logger: Callable[[str], None] = log.info,
    overlap: bool = False,
) -> Backend:
    import torch

    if threads:
        torch.set_num_threads(threads)  # torch's pool is process-wide: the one thread setting reaches it too
    if name == "tensorrt":
        from livevae.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(model_path, batch=batch, precision=precision or "fp16", cache_dir=cache_dir)
    if name == "torch-cuda":
        from livevae.backends.torch_backend import TorchBackend

        if not torch.cuda.is_available():
            raise EngineError(f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)")
        return TorchBackend.from_file(model_path, device="cuda", precision=precision or "fp16", batch=batch)
    if name in ("onnxruntime", "onnxruntime-cuda"):
        from livevae.backends.onnxruntime_backend import OnnxRuntimeBackend

        provider = "cuda" if name.endswith("cuda") else "cpu"
        scheme: str | None = None  # int8: the scheme for this CPU (NetSpec's default) unless one was measured
        if precision in (None, "int8") and provider == "cpu":
            from livevae.backends.cpuchoice import choose_precision

            # int8 (and which scheme) or fp32 by measuring them on this CPU (once per model, CPU and ONNX Runtime;
            # cached): int8 graphs that fail their accuracy check, or are not clearly faster here, mean fp32.
            # A pinned int8 still gets the fastest int8 scheme measured here (they all give the same outputs).
            choice = choose_precision(model_path, batch, cache_dir, threads, logger)
            scheme = choice.scheme
            precision = precision or choice.precision
            if precision != "int8":
                scheme = None
        if overlap and provider == "cpu":
            from livevae.backends.cpuchoice import choose_overlap
            from livevae.backends.onnxruntime_backend import default_threads

            # the pipeline only where it measured faster here (cached): it costs a frame of latency, and on some
            # CPUs the two one-thread runs slow each other down more than they gain
            if (threads or default_threads()) >= 2:
                p = precision or "fp32"
                overlap = choose_overlap(model_path, p, scheme, batch, cache_dir, threads, logger).overlap
        return OnnxRuntimeBackend.from_file(
            model_path,
            provider=provider,
            batch=batch,
            precision=precision or "fp32",
            cache_dir=cache_dir,
            threads=threads,
            scheme=scheme,
            overlap=overlap,
        )
    if name in ("torch-cpu", "torch", "torch-cpu-jit"):
        from livevae.backends.torch_backend import TorchBackend

        mode = "jit" if name == "torch-cpu-jit" else "eager"
        return TorchBackend.from_file(model_path, device="cpu", precision=precision or "fp32", mode=mode, batch=batch)
    raise EngineError(f"backend {name!r}: unknown; expected one of auto, {', '.join(NAMES)}")


def overlaps(backend: object) -> bool:
    """Whether `backend` was built to run an encode beside a decode (create's overlap): its threads are shared
    out between the two, so the live loop's pipeline should keep both busy."""
    return bool(getattr(backend, "overlaps", False))


PRECISION_SUFFIXES = ("fp32", "fp16", "bf16", "int8")


def split_precision(backend: str, precision: str | None = None) -> tuple[str, str | None]:
    """'onnxruntime+fp32' -> ('onnxruntime', 'fp32'): a precision named with the backend, so every place that
    takes a backend name (--backend, a show file's `backend =`) can also pin one. An explicit precision
    argument that disagrees is an error; a name without a suffix keeps `precision` as given."""
    name, plus, suffix = backend.partition("+")
    if not plus or suffix not in PRECISION_SUFFIXES:
        return backend, precision  # e.g. bench-only variants such as onnxruntime+spin pass through
    if precision is not None and precision != suffix:
        raise EngineError(f"backend {backend!r} with precision {precision!r}: they disagree; name one precision")
    return name, suffix


def create(
    model_path: str | os.PathLike[str],
    backend: str = "auto",
    *,
    batch: int | None = 1,
    precision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    order: tuple[str, ...] = AUTO_ORDER,
    logger: Callable[[str], None] = log.info,
    overlap: bool = False,
) -> Backend:
    """Create the named backend, or with 'auto' the first that works in `order`; log the choice.

    batch: 1 = static batch-1 graphs/engines for live use; None = dynamic batch for offline runs.
    precision: None = the backend's default (fp16 on GPUs; on CPU for ONNX Runtime int8 or fp32, whichever
    measured faster on this CPU and model, see cpuchoice.choose_precision), or 'fp32'/'fp16' ('bf16'
    torch-cuda, 'int8' ONNX Runtime CPU); also given as a suffix of the name, 'onnxruntime+fp32' (see
    split_precision).
    threads: CPU inference threads for every backend: ONNX Runtime's intra-op pool (default min(2, cores))
    and torch's (torch.set_num_threads); 1 leaves a core to capture and display. None keeps the defaults.
    overlap: built for the live loop's pipeline (one frame's encode beside the last one's decode) where that
    measured faster: ONNX Runtime on CPU with 2+ threads times both ways once (cpuchoice.choose_overlap, cached)
    and, if the pipeline wins, shares the threads out between its two sessions and says so (`overlaps`); every
    other backend ignores it and runs one call after the other.
    Every skipped backend is logged with its reason, one stderr line each, then the choice.
    Raises ModelError for a missing/bad model file (before trying any backend) and EngineError when
    the named backend, or every backend in `order`, cannot run.
    """
    from livevae.model import read_model_header

    model_path = str(model_path)
    read_model_header(model_path)  # a bad model file is the user's error, not a reason to fall back
    backend, precision = split_precision(backend, precision)
    names = order if backend == "auto" else (backend,)
    reasons: list[str] = []
    for name in names:
        try:
            b = _make(name, model_path, batch, precision, cache_dir, threads, logger, overlap)
        except EngineError as e:
            if backend != "auto":
                raise
            logger(f"{name} unavailable: {e}")
            reasons.append(f"{name}: {e}")
            continue
        describe = getattr(b, "describe", None)
        how = describe() if callable(describe) else b.name
        logger(f"using {how}" + (" (auto)" if backend == "auto" else ""))
        return b
    raise EngineError("no backend could run: " + "; ".join(reasons))
