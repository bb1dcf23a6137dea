"""reconstruct's TorchCudaRunner on the CPU, with torch.cuda's stream calls recorded instead of run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from livevae.offline.runners import TorchCudaRunner, protocol_runner


class _Stream:
    def __init__(self, events: list[tuple[str, Any]], device: Any = None) -> None:
        self.events = events

    def wait_stream(self, other: Any) -> None:
        self.events.append(("wait_stream", other))

    def synchronize(self) -> None:
        self.events.append(("synchronize", None))


@pytest.fixture
def cuda_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Stand-ins for the stream calls, recording their order; tensors stay on the CPU."""
    events: list[tuple[str, Any]] = []

    @contextlib.contextmanager
    def stream(s: _Stream) -> Iterator[None]:
        events.append(("enter side stream", None))
        yield

    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: _Stream(events, device))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: "default stream")
    monkeypatch.setattr(torch.cuda, "stream", stream)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # the runner sets it; restored after
    return events


def test_side_stream_waits_for_the_default_stream_before_any_work(
    cuda_calls: list[tuple[str, Any]], tiny_model_file: Path
) -> None:
    from livevae.backends.torch_backend import TorchBackend

    backend = TorchBackend.from_file(str(tiny_model_file))
    runner = TorchCudaRunner(backend.model, "cpu", "auto")
    frames = np.random.default_rng(0).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    out = runner(frames)
    assert cuda_calls[:2] == [("wait_stream", "default stream"), ("enter side stream", None)]
    assert cuda_calls[-1] == ("synchronize", None)
    ref = protocol_runner(backend)(frames)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_auto_precision_keeps_a_pinned_fp32_backend_in_fp32(
    cuda_calls: list[tuple[str, Any]], tiny_model_file: Path
) -> None:
    from livevae.model import load_model

    model = load_model(str(tiny_model_file), device="cpu")  # fp32 weights, as torch-cuda+fp32 leaves them
    auto = TorchCudaRunner(model, "cpu", "auto")
    assert (auto.autocast, auto.amp_dtype) == (False, torch.float32)
    asked = TorchCudaRunner(model, "cpu", "bf16")  # an explicit half request over fp32 weights: autocast
    assert (asked.autocast, asked.amp_dtype) == (True, torch.bfloat16)
    half = TorchCudaRunner(model.to(torch.bfloat16), "cpu", "auto")  # half weights run as they are
    assert (half.autocast, half.amp_dtype) == (False, torch.bfloat16)
