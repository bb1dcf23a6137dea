"""Resume safety: a dataset's content fingerprint, and every command-line setting that differs from the run's."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

# What --resume may change: stopping rules, the CPU thread count (a run moved to another machine), the device
# and how often it checkpoints. Everything else would make the continued run a different run.
MAY_CHANGE = ("epochs", "max_steps", "time_budget", "threads", "device", "checkpoint_every")
SAMPLES = 64  # frames hashed: spread over the film, so a different film with the same frame count differs


def fingerprint(frames: np.ndarray) -> str:
    """sha256 of the array's shape and SAMPLES evenly spaced frames (uint8 [N, H, W, 3], memory-mapped): a few
    MB read whatever the film's length, enough to tell two films (or two preps of one) apart."""
    h = hashlib.sha256(repr(tuple(frames.shape)).encode())
    n = len(frames)
    for i in np.unique(np.linspace(0, n - 1, min(SAMPLES, n)).round().astype(int)) if n else []:
        h.update(np.ascontiguousarray(frames[i]).tobytes())
    return h.hexdigest()


def differing_flags(asked: Mapping[str, Any], run: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(refused, allowed): 'key: asked X, the run has Y' for each setting given on the command line that differs
    from the run's config; refused are those not in MAY_CHANGE."""
    refused: list[str] = []
    allowed: list[str] = []
    for k, v in asked.items():
        if v is None or k not in run:
            continue
        have = run[k]
        if isinstance(have, list) and isinstance(v, tuple):
            v = list(v)
        if v != have:
            line = f"{k}: asked {v!r}, the run has {have!r}"
            (allowed if k in MAY_CHANGE else refused).append(line)
    return refused, allowed
