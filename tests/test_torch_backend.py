"""torch-cuda's CUDA graph capture, on the CPU with torch.cuda's stream and graph calls replaced."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from livevae.backends import EngineError


class _Stream:
    def wait_stream(self, other: object) -> None:
        pass


class _Graph:
    def replay(self) -> None:
        raise AssertionError("a graph whose capture failed must never be replayed")


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: _Stream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a, **k: _Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", _Graph)


def test_capture_failure_is_an_engine_error_and_keeps_no_graph(
    fake_cuda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from livevae.backends.torch_backend import _CudaGraph

    @contextlib.contextmanager
    def graph(g: Any, *a: Any, **k: Any) -> Iterator[None]:
        yield
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "graph", graph)
    net = torch.nn.Linear(4, 2)
    with pytest.raises(EngineError, match=r"torch-cuda encoder: CUDA graph capture failed \(RuntimeError: CUDA error"):
        _CudaGraph(net, torch.zeros(1, 4), name="encoder")


def test_capture_that_works_replays_into_the_static_output(fake_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from livevae.backends.torch_backend import _CudaGraph

    monkeypatch.setattr(torch.cuda, "graph", lambda g, *a, **k: contextlib.nullcontext())
    replays: list[int] = []
    monkeypatch.setattr(_Graph, "replay", lambda self: replays.append(1))
    g = _CudaGraph(lambda x: x * 2, torch.zeros(1, 4), name="decoder")
    x = torch.ones(1, 4)
    assert g(x) is g.out and torch.equal(g.inp, x) and replays == [1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch-cuda CUDA graphs need a GPU")
def test_two_frames_in_a_row_through_cuda_graphs_are_each_their_own(tiny_model_file: Any) -> None:
    import numpy as np

    from livevae.backends.torch_backend import TorchBackend
    from livevae.offline.runners import TorchCudaRunner, protocol_runner

    cpu = TorchBackend.from_file(str(tiny_model_file))
    gpu = TorchBackend.from_file(str(tiny_model_file), device="cuda", precision="fp32", batch=1)
    frames = np.random.default_rng(3).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    z = [gpu.encode(frames[i : i + 1]) for i in range(2)]
    zr = cpu.encode(frames)
    assert np.abs(np.concatenate(z) - zr).max() <= 1e-2 * max(1.0, float(np.abs(zr).max()))
    out = [gpu.decode(zr[i : i + 1]) for i in range(2)]
    assert (out[0] != out[1]).any()
    runner = TorchCudaRunner(gpu.model, gpu.device, "auto", gpu.channels_last)
    many = np.random.default_rng(4).integers(0, 256, (256, 48, 64, 3), dtype=np.uint8)
    assert np.abs(runner(many).astype(int) - protocol_runner(cpu)(many).astype(int)).max() <= 4
