"""TensorRT 10/11 backend: strongly typed engines built from the ONNX exports, cached and hash-verified on disk.

Written against the TensorRT 10.x/11.x Python API (name-based tensors, execute_async_v3). TensorRT
cannot be installed on the development machine; CPU tests run this module through tests/fakes/tensorrt.py,
a fake that checks the calls and runs the graphs on host memory (device "cpu", only with that fake).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from livevae.backends import EngineError, log
from livevae.backends.cache import (
    cache_root,
    engine_key_fields,
    file_lock,
    file_sha256,
    key_of,
    read_verified,
    timing_cache_key_fields,
    write_verified,
)
from livevae.backends.onnx_export import NetSpec, export
from livevae.media.preprocess import to_tensor, to_uint8
from livevae.model import ModelConfig, read_model_header

WORKSPACE_BYTES = 2 << 30  # builder scratch memory; our nets need far less, tactics may want more


def require_tensorrt(device: torch.device | str = "cuda") -> Any:
    """Import tensorrt, or raise EngineError saying what is missing (the library, or CUDA).

    device "cpu" is only for a tensorrt module whose tensor addresses are host memory (HOST_MEMORY, the
    test fake); the real library needs "cuda".
    """
    if importlib.util.find_spec("tensorrt") is None:
        raise EngineError(
            "the tensorrt Python package is not installed (pip install 'livevae[tensorrt-cu12]', or -cu13 for CUDA 13)"
        )
    if torch.device(device).type == "cpu":
        import tensorrt as fake

        if not getattr(fake, "HOST_MEMORY", False):
            raise EngineError("tensorrt on device 'cpu': TensorRT runs on CUDA devices only; expected device 'cuda'")
        return fake
    if not torch.cuda.is_available():
        raise EngineError(
            f"TensorRT needs CUDA, and torch {torch.__version__} sees no CUDA device "
            "(torch.cuda.is_available() is False)"
        )
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:  # OSError: libnvinfer*.so missing or the wrong CUDA
        raise EngineError(f"tensorrt is installed but cannot be imported: {e}") from e
    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise EngineError(f"tensorrt {trt.__version__}: expected TensorRT 10 or 11 (name-based tensor API)")
    return trt


def gpu_identity(device: torch.device | str = "cuda") -> tuple[str, tuple[int, int]]:
    """(GPU name, compute capability) of a CUDA device: engines are only valid on the GPU model that built them.

    On "cpu" (the test fake only): the host CPU's name and capability (0, 0).
    """
    device = torch.device(device)
    if device.type == "cpu":
        return f"host {platform.machine()}", (0, 0)
    name = torch.cuda.get_device_name(device)
    major, minor = torch.cuda.get_device_capability(device)
    return name, (major, minor)


def engine_fields(
    trt: Any, spec: NetSpec, cfg: ModelConfig, onnx_sha256: str, device: torch.device | str = "cuda"
) -> dict[str, Any]:
    name, cc = gpu_identity(device)
    return engine_key_fields(onnx_sha256, trt.__version__, name, cc, spec.precision, spec.profile(cfg))


def engine_path(spec: NetSpec, fields: dict[str, Any], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(cache_dir) / "tensorrt" / f"{spec.name}-{key_of(fields)}.plan"


def _timing_cache(
    trt: Any, cache_dir: str | os.PathLike[str] | None, device: torch.device | str
) -> tuple[Path, dict[str, Any], bytes]:
    name, cc = gpu_identity(device)
    fields = timing_cache_key_fields(trt.__version__, name, cc)
    path = cache_root(cache_dir) / "tensorrt" / f"timing-{key_of(fields)}.cache"
    data = b""
    if path.is_file():
        try:
            data = read_verified(path, fields)
        except EngineError as e:
            log.info(f"ignoring timing cache: {e}")
    return path, fields, data


def build_engine(
    onnx_path: Path,
    spec: NetSpec,
    cfg: ModelConfig,
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    device: torch.device | str = "cuda",
) -> Path:
    """Build (or find in the cache) the engine for one exported sub-network; returns its path.

    Strongly typed network: layer precisions come from the ONNX graph itself (the fp16 export is
    half inside with float32 I/O), so no FP16 builder flag, and TensorRT cannot silently pick fp32.
    Under torchrun every rank asks for the same engine at once: one builds it under a lock, the
    others wait for that lock and then load what it wrote.
    """
    trt = require_tensorrt(device)
    onnx_sha = file_sha256(onnx_path)
    fields = engine_fields(trt, spec, cfg, onnx_sha, device)
    path = engine_path(spec, fields, cache_dir)
    if path.is_file() and not force:
        read_verified(path, fields)  # raises for a file the cache did not write
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(path.name + ".build.lock")):
        if path.is_file() and not force:  # another rank built it while this one waited
            read_verified(path, fields)
            return path
        return _build(trt, onnx_path, spec, cfg, path, fields, cache_dir, device)


def _build(
    trt: Any,
    onnx_path: Path,
    spec: NetSpec,
    cfg: ModelConfig,
    path: Path,
    fields: dict[str, Any],
    cache_dir: str | os.PathLike[str] | None,
    device: torch.device | str,
) -> Path:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if spec.precision == "fp32":
        # TF32 is on by default and would round fp32 convolutions to a 10-bit mantissa: "fp32" means fp32.
        config.clear_flag(trt.BuilderFlag.TF32)
    tc_path, tc_fields, tc_bytes = _timing_cache(trt, cache_dir, device)
    timing_cache = config.create_timing_cache(tc_bytes)
    config.set_timing_cache(timing_cache, False)  # ignore_mismatch=False: never reuse another GPU's timings
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in spec.profile(cfg).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    log.info(f"building TensorRT engine {path.name} (this takes a while once; it is cached)")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"{onnx_path}: TensorRT {trt.__version__} failed to build an engine for {spec.name}")
    write_verified(path, bytes(plan), fields)
    write_verified(tc_path, bytes(config.get_timing_cache().serialize()), tc_fields)
    return path


def _torch_dtype(trt: Any, dt: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if dt not in table:
        raise EngineError(f"engine tensor dtype {dt}; expected one of {list(table)}")
    return table[dt]


class HostStream:
    """What a CUDA stream is to TrtNet, on device "cpu" (the test fake): handle 0, nothing to wait for."""

    cuda_stream = 0

    def synchronize(self) -> None:
        pass

    def wait_stream(self, other: object) -> None:
        pass


def _on(stream: torch.cuda.Stream | HostStream) -> contextlib.AbstractContextManager[object]:
    return torch.cuda.stream(stream) if isinstance(stream, torch.cuda.Stream) else contextlib.nullcontext()


class TrtNet:
    """One deserialised engine with its context, its own CUDA stream and I/O buffers allocated once.

    A static-batch net with cuda_graph=True is warmed up and captured as a CUDA graph here, at start, so a
    capture failure is an EngineError at creation (`auto` falls back) and never a broken graph kept for replay.
    """

    def __init__(
        self,
        trt: Any,
        path: Path,
        fields: dict[str, Any],
        spec: NetSpec,
        cfg: ModelConfig,
        cuda_graph: bool,
        device: torch.device | str = "cuda",
    ) -> None:
        data = read_verified(path, fields)  # sha256 checked against the sidecar before TensorRT sees the bytes
        self.device = torch.device(device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineError(f"{path}: TensorRT {trt.__version__} could not deserialise the engine")
        self.context = self.engine.create_execution_context()
        self.spec = spec
        self.stream: torch.cuda.Stream | HostStream = (
            torch.cuda.Stream(self.device) if self.device.type == "cuda" else HostStream()
        )
        self.max_batch = spec.batch or spec.max_batch
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [spec.input_name] or set(names) != {spec.input_name, spec.output_name}:
            raise EngineError(f"{path}: engine tensors {names}; expected {spec.input_name} -> {spec.output_name}")
        # Buffers at the largest batch, allocated once; smaller batches use a prefix (same address).
        self.inp = torch.empty(
            spec.input_shape(cfg, self.max_batch),
            dtype=_torch_dtype(trt, self.engine.get_tensor_dtype(spec.input_name)),
            device=self.device,
        )
        self.out = torch.empty(
            spec.output_shape(cfg, self.max_batch),
            dtype=_torch_dtype(trt, self.engine.get_tensor_dtype(spec.output_name)),
            device=self.device,
        )
        for name, buf in ((spec.input_name, self.inp), (spec.output_name, self.out)):
            if not self.context.set_tensor_address(name, buf.data_ptr()):
                raise EngineError(f"{path}: TensorRT refused the address of tensor {name!r}")
        self._shape_n = -1
        self.graph: torch.cuda.CUDAGraph | None = None
        self.use_graph = cuda_graph and spec.batch is not None  # graphs need fixed shapes
        if self.use_graph:
            self._capture()

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise EngineError(f"TensorRT execute_async_v3 failed for {self.spec.name}")

    def _set_batch(self, n: int) -> None:
        if n != self._shape_n:
            if not self.context.set_input_shape(self.spec.input_name, tuple(self.inp[:n].shape)):
                raise EngineError(f"{self.spec.name}: TensorRT refused input shape {tuple(self.inp[:n].shape)}")
            self._shape_n = n

    def _capture(self) -> None:
        """Warm up, then capture one enqueue on this net's stream; any failure discards the graph."""
        self.inp.zero_()
        self._set_batch(self.max_batch)
        try:
            with _on(self.stream):
                for _ in range(3):  # TensorRT allocates and applies deferred shape updates on the first runs
                    self._enqueue()
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):  # type: ignore[arg-type]
                self._enqueue()
        except Exception as e:  # torch raises RuntimeError for cudaErrorStreamCapture*; never keep that graph
            self.graph = None
            raise EngineError(
                f"{self.spec.name}: CUDA graph capture failed ({type(e).__name__}: {e}); expected a capturable engine"
            ) from e
        self.graph = graph

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """x: tensor [n, ...] on this net's device, n <= max batch -> output [n, ...], a view of the static
        buffer that the next run overwrites: copy it before running again.

        Call inside `torch.cuda.stream(self.stream)`; the caller synchronises (reading to host does).
        """
        n = x.shape[0]
        if n > self.max_batch:
            raise EngineError(f"{self.spec.name}: batch {n} > engine maximum {self.max_batch}")
        self.inp[:n].copy_(x)
        self._set_batch(n)
        if self.graph is not None and n == self.max_batch:
            self.graph.replay()
        else:
            self._enqueue()
        return self.out[:n]


def run_chunks(net: TrtNet, x: torch.Tensor) -> torch.Tensor:
    """Run x [N, ...] through `net` in chunks of its maximum batch -> float32 [N, ...].

    Each chunk's output is copied out of the net's one static buffer before the next chunk overwrites it.
    """
    step = net.max_batch
    if net.spec.batch is not None and len(x) % step:
        raise EngineError(f"{len(x)} items do not split into static batches of {step}; use batch=None")
    out: torch.Tensor | None = None
    for i in range(0, len(x), step):
        y = net.run(x[i : i + step])
        if out is None:
            out = torch.empty((len(x), *y.shape[1:]), dtype=torch.float32, device=y.device)
        out[i : i + len(y)].copy_(y)
    if out is None:
        raise EngineError(f"{net.spec.name}: no items to run; expected at least one")
    return out


class TensorRTBackend:
    """encode/decode through two TensorRT engines; pre/post-processing runs on the GPU in torch."""

    name = "tensorrt"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        batch: int | None = 1,
        precision: str = "fp16",
        cache_dir: str | os.PathLike[str] | None = None,
        cuda_graph: bool = True,
        device: torch.device | str = "cuda",
    ) -> None:
        if precision == "int8":  # QDQ graphs calibrated for ONNX Runtime's CPU kernels, not TensorRT's
            raise EngineError("tensorrt precision 'int8': not supported; expected fp16 or fp32")
        self.device = torch.device(device)
        trt = require_tensorrt(self.device)
        self.cfg, _ = read_model_header(model_path)
        self.batch = batch
        self.precision = precision
        self.trt_version = trt.__version__
        nets = {}
        for net in ("encoder", "decoder"):
            spec = NetSpec(net, batch, precision)  # type: ignore[arg-type]
            onnx = export(model_path, spec, cache_dir)
            path = build_engine(onnx.path, spec, self.cfg, cache_dir, device=self.device)
            fields = engine_fields(trt, spec, self.cfg, onnx.sha256, self.device)
            nets[net] = TrtNet(trt, path, fields, spec, self.cfg, cuda_graph, self.device)
        self.enc, self.dec = nets["encoder"], nets["decoder"]
        self.cuda_graph = cuda_graph

    def describe(self) -> str:
        b = "dynamic batch" if self.batch is None else f"batch {self.batch}"
        g = ", CUDA graphs" if self.cuda_graph and self.batch is not None else ""
        return f"tensorrt ({self.trt_version}, {gpu_identity(self.device)[0]}, {self.precision}, {b}{g})"

    def _chunks(self, net: TrtNet, x: torch.Tensor) -> torch.Tensor:
        return run_chunks(net, x)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] or float32 [N, 3, H, W] in [-1, 1] -> float32 z [N, zdim]."""
        with _on(self.enc.stream):
            if frames.dtype == np.uint8:
                x = to_tensor(frames, self.device)  # uint8 upload, [N, 3, H, W] float on the GPU
            else:
                x = torch.as_tensor(frames, dtype=torch.float32, device=self.device)
            return self._chunks(self.enc, x).cpu().numpy()  # .cpu() synchronises the stream

    @torch.inference_mode()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """float32 [N, zdim] -> uint8 [N, H, W, 3]."""
        with _on(self.dec.stream):
            zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=self.device)
            if zt.ndim != 2 or zt.shape[1] != self.cfg.zdim:
                raise EngineError(f"decode: z of shape {tuple(zt.shape)}; expected [N, {self.cfg.zdim}]")
            return to_uint8(self._chunks(self.dec, zt))  # uint8 conversion on the GPU, then one copy


def build_all(
    model_path: str | os.PathLike[str],
    specs: list[NetSpec],
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> list[Path]:
    """Export and build every spec ahead of a show (what `livevae export --backend tensorrt` runs)."""
    cfg, _ = read_model_header(model_path)
    require_tensorrt()
    return [build_engine(export(model_path, s, cache_dir).path, s, cfg, cache_dir, force) for s in specs]
