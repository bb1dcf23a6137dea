"""Models for tests: a tiny model file shared across a session's backend tests, and torch at one thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


def shared_tiny(base: Path) -> tuple[Path, Path]:
    """(tiny model file, export cache) shared by this session's backend tests: same bytes -> cache hits."""
    from livevae.model import save_model
    from livevae.offline.bench import random_model

    path, cache = base / "backends-tiny.safetensors", base / "livevae-cache"
    if not path.exists():
        save_model(random_model("tiny"), path)
    return path, cache


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """torch at 1 thread here: on the shared 2-core machine 2 OpenMP threads stall each other (see bench)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
