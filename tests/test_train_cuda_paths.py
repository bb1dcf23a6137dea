"""The CUDA-only settings of the training loop, checked on the CPU: compile, determinism, NCCL, TF32, augment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from tests.test_train import make_dataset, tiny_cfg
from train import loop
from train.batches import augment
from train.dist import init_distributed
from train.loop import train


def _old_translate(x: torch.Tensor, t: int, shifts: torch.Tensor) -> torch.Tensor:
    """The per-frame slicing the gather replaced: the reference for what each frame must become."""
    padded = torch.nn.functional.pad(x, (t, t, t, t), mode="reflect")
    h, w = x.shape[2:]
    return torch.stack(
        [
            padded[i, :, t + int(s[1]) : t + int(s[1]) + h, t + int(s[0]) : t + int(s[0]) + w]
            for i, s in enumerate(shifts)
        ]
    )


class _HostReads(TorchFunctionMode):
    """Counts tensor -> Python number conversions: each one is a device-to-host sync on CUDA."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in ("__int__", "__index__", "item", "tolist", "__bool__", "__float__"):
            self.reads += 1
        return func(*args, **(kwargs or {}))


def test_augment_translates_like_per_frame_slicing_without_reading_to_the_host() -> None:
    cfg = tiny_cfg(augment=True, aug_flip=False, aug_jitter=0.0, aug_translate=3)
    x = torch.randn(6, 3, 20, 24)
    gen = torch.Generator().manual_seed(5)
    with _HostReads() as reads:
        y = augment(x, cfg, gen)
    shifts = torch.randint(-3, 4, (6, 2), generator=torch.Generator().manual_seed(5))
    assert torch.equal(y, _old_translate(x, 3, shifts))
    assert reads.reads == 0  # the old loop read 2 numbers per frame: 12 syncs here
    xc = x.contiguous(memory_format=torch.channels_last)
    yc = augment(xc, cfg, torch.Generator().manual_seed(5))
    assert yc.is_contiguous(memory_format=torch.channels_last) and torch.equal(yc, y)


@pytest.fixture
def restore_determinism(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    was = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(was)


def test_determinism_sets_the_cublas_workspace_first(restore_determinism: None) -> None:
    import os

    from train.dist import enable_determinism

    enable_determinism()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled()


def test_a_deterministic_run_leaves_the_process_as_it_found_it(restore_determinism: None, tmp_path: Path) -> None:
    torch.use_deterministic_algorithms(False)
    train(tiny_cfg(deterministic=True, max_steps=1), make_dataset(tmp_path / "d"), tmp_path / "run", progress=False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_nccl_is_initialised_with_this_ranks_device(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def init_process_group(backend: str, **kw: Any) -> None:
        seen.update(kw, backend=backend)

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(loop.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(loop.dist, "init_process_group", init_process_group)
    monkeypatch.setattr(loop.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(loop.dist, "get_world_size", lambda: 2)
    d = init_distributed(torch.device("cuda"))
    assert seen == {"backend": "nccl", "device_id": torch.device("cuda", 1)}
    assert (d.rank, d.world, d.local_rank) == (1, 2, 1)
    seen.clear()
    init_distributed(torch.device("cpu"))
    assert seen == {"backend": "gloo"}


@pytest.mark.skipif(not hasattr(torch.backends.cuda.matmul, "fp32_precision"), reason="torch < 2.9: legacy API only")
def test_tf32_is_set_through_the_new_api_only() -> None:
    m, conv, rnn = torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn  # type: ignore[attr-defined]
    before = (m.fp32_precision, conv.fp32_precision, rnn.fp32_precision)
    from train.dist import fast_fp32_matmul

    try:
        fast_fp32_matmul()
        assert (m.fp32_precision, conv.fp32_precision, rnn.fp32_precision) == ("tf32", "tf32", "tf32")
        assert torch.backends.cudnn.allow_tf32  # conv and rnn agree, so the cuDNN-wide flag is not "mixed"
    finally:
        m.fp32_precision, conv.fp32_precision, rnn.fp32_precision = before


def test_compile_turns_off_donated_buffers_and_dynamic_shapes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torch._functorch.config as fconfig

    from train.losses import VAEGANLoss

    calls: list[dict[str, Any]] = []

    def fake_compile(fn: Any, **kw: Any) -> Any:
        calls.append(kw)
        return fn

    monkeypatch.setattr(fconfig, "donated_buffer", True)
    monkeypatch.setattr(torch, "compile", fake_compile)
    t = loop.Trainer(
        tiny_cfg(compile=True, max_steps=1), make_dataset(tmp_path / "d"), tmp_path / "run", progress=False
    )
    assert isinstance(t.loss, VAEGANLoss)
    assert fconfig.donated_buffer is False  # autograd.grad(retain_graph=True) through AOTAutograd needs this
    assert len(calls) == 3 and all(c.get("dynamic") is False for c in calls)
