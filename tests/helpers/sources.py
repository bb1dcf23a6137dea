"""Sources for tests: one that fails on chosen reads and opens, to exercise capture's fallback and reconnects."""

from __future__ import annotations

import numpy as np

from livevae.media.source import Source, SourceError


class FlakySource(Source):
    """Test card frames; read() raises for reads in `fail_reads`, open() raises for opens in `fail_opens`."""

    def __init__(self, fail_reads: set[int], fail_opens: set[int] = frozenset(), fps: float = 100.0) -> None:  # type: ignore[assignment]
        self.fail_reads, self.fail_opens = fail_reads, fail_opens
        self._fps = fps
        self.name = "flaky"
        self.reads = self.opens = 0

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        self.opens += 1
        if self.opens in self.fail_opens:
            raise SourceError(f"flaky: open {self.opens} fails")

    def read(self) -> np.ndarray:
        self.reads += 1
        if self.reads in self.fail_reads:
            raise SourceError(f"flaky: read {self.reads} fails")
        return np.full((24, 32, 3), self.reads % 256, np.uint8)
