"""The TensorRT backend run on the CPU through tests/fakes/tensorrt.py: build, cache, chunks, graphs, ranks."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from livevae.backends import EngineError
from livevae.backends.cache import read_verified, sidecar_path, write_verified
from livevae.backends.onnx_export import NetSpec, export
from livevae.model import read_model_header
from tests.fakes import tensorrt as fake


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake.reset()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    yield fake
    fake.reset()


def _backend(model: Path, cache: Path, **kw: Any) -> Any:
    from livevae.backends.tensorrt_backend import TensorRTBackend

    kw.setdefault("cuda_graph", False)
    return TensorRTBackend(model, cache_dir=cache, device="cpu", **kw)


def _reference(model: Path) -> Any:
    from livevae.backends.torch_backend import TorchBackend

    return TorchBackend.from_file(str(model))


def test_fake_tensorrt_refuses_what_it_does_not_model() -> None:
    with pytest.raises(AttributeError, match=r"fake tensorrt: tensorrt\.IInt8Calibrator is not implemented"):
        _ = fake.IInt8Calibrator
    builder = fake.Builder(fake.Logger(fake.Logger.WARNING))
    with pytest.raises(AttributeError, match=r"Builder\.build_engine is not implemented"):
        _ = builder.build_engine  # TensorRT 8's call, removed in 10
    with pytest.raises(TypeError, match="ILogger"):
        fake.Builder("not a logger")  # type: ignore[arg-type]


def test_fake_tensorrt_checks_profiles_and_strong_typing(tiny_model_file: Path, tmp_path: Path) -> None:
    cfg, _ = read_model_header(tiny_model_file)
    spec = NetSpec("decoder", None, "fp32", max_batch=8)
    onnx = export(tiny_model_file, spec, tmp_path).path.read_bytes()
    logger = fake.Logger(fake.Logger.INTERNAL_ERROR)
    builder = fake.Builder(logger)

    def build(flags: int, profile: bool, fp16_flag: bool) -> Any:
        net = builder.create_network(flags)
        assert fake.OnnxParser(net, logger).parse(onnx, "decoder.onnx")
        config = builder.create_builder_config()
        if fp16_flag:
            config.set_flag(fake.BuilderFlag.FP16)
        if profile:
            p = builder.create_optimization_profile()
            p.set_shape("z", *spec.profile(cfg)["z"])
            config.add_optimization_profile(p)
        return builder.build_serialized_network(net, config)

    typed = 1 << int(fake.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert build(typed, profile=False, fp16_flag=False) is None  # dynamic batch needs a profile
    assert "no optimization profile" in logger.messages[-1][1]
    assert build(typed, profile=True, fp16_flag=True) is None
    assert "not allowed on a strongly typed network" in logger.messages[-1][1]
    plan = build(typed, profile=True, fp16_flag=False)
    assert plan is not None
    engine = fake.Runtime(logger).deserialize_cuda_engine(bytes(plan))
    ctx = engine.create_execution_context()
    assert not ctx.execute_async_v3(0)  # no addresses yet: TensorRT returns False, and so does the fake
    assert not ctx.set_input_shape("z", (9, cfg.zdim))  # outside the profile's max of 8
    assert fake.Runtime(logger).deserialize_cuda_engine(b"an engine from elsewhere") is None
    with pytest.raises(ValueError, match="min <= opt <= max"):
        builder.create_optimization_profile().set_shape("z", (4, 16), (2, 16), (8, 16))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_backend_matches_torch_through_the_fake(
    fake_trt: Any, tiny_model_file: Path, tmp_path: Path, precision: str
) -> None:
    ref = _reference(tiny_model_file)
    frames = np.random.default_rng(0).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    b = _backend(tiny_model_file, tmp_path, batch=None, precision=precision)
    z, zr = b.encode(frames), ref.encode(frames)
    tol = 1e-4 if precision == "fp32" else 3e-2
    assert np.abs(z - zr).max() <= tol * max(1.0, float(np.abs(zr).max()))
    assert np.abs(b.decode(zr).astype(int) - ref.decode(zr).astype(int)).max() <= (1 if precision == "fp32" else 8)
    assert "tensorrt (10.13.0, host" in b.describe()
    names = [c[0] for c in fake_trt.calls]
    assert names.index("set_tensor_address") < names.index("set_input_shape") < names.index("execute_async_v3")


def test_engine_cache_hit_builds_nothing_and_tampering_is_refused(
    fake_trt: Any, tiny_model_file: Path, tmp_path: Path
) -> None:
    _backend(tiny_model_file, tmp_path, batch=1, precision="fp32")
    assert fake_trt.Builder.builds == 2  # encoder and decoder
    _backend(tiny_model_file, tmp_path, batch=1, precision="fp32")
    assert fake_trt.Builder.builds == 2
    plans = sorted((tmp_path / "tensorrt").glob("*.plan"))
    assert [p.name.split("-")[0] for p in plans] == ["decoder", "encoder"]
    assert len(list((tmp_path / "tensorrt").glob("timing-*.cache"))) == 1
    plans[0].write_bytes(plans[0].read_bytes() + b"!")
    with pytest.raises(EngineError, match="does not match"):
        _backend(tiny_model_file, tmp_path, batch=1, precision="fp32")


class _StaticBufferNet:
    """A net like TrtNet: run() writes into one static output buffer and returns a view of it."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self.spec = SimpleNamespace(batch=None, name="fake-net")
        self.out = torch.empty(max_batch, 2)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        self.out[: len(x)] = x * 10
        return self.out[: len(x)]


def test_chunks_keep_every_chunk_not_just_the_last() -> None:
    from livevae.backends.tensorrt_backend import TensorRTBackend

    x = torch.arange(20, dtype=torch.float32).reshape(10, 2)  # 3 chunks of 4, 4, 2
    backend = object.__new__(TensorRTBackend)  # _chunks reads nothing from the backend itself
    y = backend._chunks(_StaticBufferNet(4), x)
    assert torch.equal(y, x * 10)


def test_many_chunks_through_the_fake_engine(fake_trt: Any, tiny_model_file: Path, tmp_path: Path) -> None:
    from livevae.backends import onnx_export

    ref = _reference(tiny_model_file)
    b = _backend(tiny_model_file, tmp_path, batch=None, precision="fp32")
    assert b.enc.max_batch == onnx_export.DEFAULT_MAX_BATCH
    n = 2 * b.enc.max_batch + 3  # three chunks, the last one short
    frames = np.random.default_rng(1).integers(0, 256, (n, 48, 64, 3), dtype=np.uint8)
    z, zr = b.encode(frames), ref.encode(frames)
    assert np.abs(z - zr).max() <= 1e-4 * max(1.0, float(np.abs(zr).max()))
    assert np.abs(b.decode(zr).astype(int) - ref.decode(zr).astype(int)).max() <= 1


class _FakeGraph:
    """torch.cuda.CUDAGraph stand-in: what the fake records while capturing runs again on replay."""

    def __init__(self) -> None:
        self.launches: list[Callable[[], None]] = []
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1
        for launch in self.launches:
            launch()


def test_cuda_graph_replay_gives_each_new_frame(
    fake_trt: Any, tiny_model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextlib.contextmanager
    def graph(g: _FakeGraph, stream: object = None) -> Iterator[None]:
        fake_trt.capturing = g.launches
        try:
            yield
        finally:
            fake_trt.capturing = None

    monkeypatch.setattr(torch.cuda, "CUDAGraph", _FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    b = _backend(tiny_model_file, tmp_path, batch=1, precision="fp32", cuda_graph=True)
    ref = _reference(tiny_model_file)
    frames = np.random.default_rng(2).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    z = [b.encode(frames[i : i + 1]) for i in range(2)]  # two different frames in a row
    zr = ref.encode(frames)
    assert b.enc.graph.replays == 2 and len(b.enc.graph.launches) == 1
    assert np.abs(np.concatenate(z) - zr).max() <= 1e-4 * max(1.0, float(np.abs(zr).max()))
    assert np.abs(z[0] - z[1]).max() > 1e-3  # not the stale output of the first frame


def test_cuda_graph_capture_failure_is_an_engine_error_and_keeps_no_graph(
    fake_trt: Any, tiny_model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from livevae.backends.tensorrt_backend import TrtNet

    @contextlib.contextmanager
    def graph(g: _FakeGraph, stream: object = None) -> Iterator[None]:
        yield
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "CUDAGraph", _FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    made: list[TrtNet] = []
    init = TrtNet.__init__

    def keep(self: TrtNet, *a: Any, **kw: Any) -> None:
        made.append(self)
        init(self, *a, **kw)

    monkeypatch.setattr(TrtNet, "__init__", keep)
    with pytest.raises(EngineError, match=r"encoder-b1-fp32: CUDA graph capture failed \(RuntimeError: CUDA error"):
        _backend(tiny_model_file, tmp_path, batch=1, precision="fp32", cuda_graph=True)
    assert made and made[0].graph is None


def test_ranks_sharing_a_cache_build_each_engine_once(fake_trt: Any, tiny_model_file: Path, tmp_path: Path) -> None:
    """Four fake torchrun ranks (threads: flock excludes per open file, so threads exclude like processes)."""
    from livevae.backends.tensorrt_backend import build_engine, engine_fields

    cfg, _ = read_model_header(tiny_model_file)
    spec = NetSpec("encoder", 1, "fp32")
    onnx = export(tiny_model_file, spec, tmp_path)
    paths: list[Path] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def rank() -> None:
        try:
            start.wait()
            paths.append(build_engine(onnx.path, spec, cfg, tmp_path, device="cpu"))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=rank) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(set(paths)) == 1 and len(paths) == 4
    assert fake_trt.Builder.builds == 1
    read_verified(paths[0], engine_fields(fake_trt, spec, cfg, onnx.sha256, "cpu"))


def test_concurrent_writers_leave_a_matching_pair(tmp_path: Path) -> None:
    """Writers racing on one artifact: each os.replace succeeds and the file always matches its sidecar."""
    art = tmp_path / "engine.plan"
    fields = {"k": 1}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(i: int) -> None:
        try:
            start.wait()
            for j in range(40):
                write_verified(art, f"writer {i} round {j} ".encode() * 2000, fields)
                read_verified(art, fields)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    read_verified(art, fields)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine.plan", "engine.plan.json", "engine.plan.lock"]
    assert sidecar_path(art).is_file()


def test_a_held_cache_lock_is_waited_for_only_so_long(tmp_path: Path) -> None:
    from livevae.backends.cache import file_lock

    lock = tmp_path / "encoder.plan.build.lock"
    held = r"encoder\.plan\.build\.lock: held by another process"
    with file_lock(lock), pytest.raises(EngineError, match=held), file_lock(lock, timeout=0.2):
        pass
    with file_lock(lock, shared=True), file_lock(lock, shared=True, timeout=0.2):
        pass  # readers share
