"""Nearest film latents: exact search by blocked matrix products, and an optional faiss HNSW graph built off-thread."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from livevae.mirror.index import MirrorError

log = logging.getLogger(__name__)

BLOCK_FLOATS = 1 << 22  # distances per matrix product ([B, rows] float32, 16 MB): bounds memory for big batches
HNSW_MIN_ROWS = 20000  # below this the exact search is already well under a millisecond
HNSW_M = 32  # graph degree
# bench/bench_mirror.py, 170,000 x 200: ef 64 gives recall@1 0.993 on film frames, ef 256 gives 1.000 (and 0.73 for
# latents of nothing in the film, whose answers are then 0.3 % farther than the exact nearest) at ~0.1-0.2 ms/frame.
HNSW_EF_SEARCH = 256


class ExactSearch:
    """k nearest rows of `latents` by squared Euclidean distance, computed exactly.

    ||q - x||^2 = ||q||^2 - 2 q.x + ||x||^2 over blocks of rows, so a query batch never makes a distance matrix
    of more than BLOCK_FLOATS at once (a live query, batch 1, is one block: one matrix-vector product); the top-k
    of each block is merged with the running best.
    """

    name = "exact"

    def __init__(self, latents: np.ndarray) -> None:
        if latents.ndim != 2 or latents.shape[0] == 0:
            raise MirrorError(f"search: latents of shape {latents.shape}; expected [N, zdim] with N >= 1")
        self.x = np.ascontiguousarray(latents, np.float32)  # [N, zdim]
        self.sq = np.einsum("nd,nd->n", self.x, self.x)  # [N]

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def search(self, q: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """q [B, zdim] -> (rows int64 [B, k], squared distances float32 [B, k]), nearest first."""
        q = np.ascontiguousarray(np.atleast_2d(q), np.float32)
        if q.shape[1] != self.x.shape[1]:
            raise MirrorError(f"search: query of shape {q.shape}; expected [B, {self.x.shape[1]}]")
        k = max(1, min(int(k), self.n))
        qsq = np.einsum("bd,bd->b", q, q)[:, None]  # [B, 1]
        best_d = np.full((q.shape[0], 0), np.inf, np.float32)
        best_i = np.zeros((q.shape[0], 0), np.int64)
        block = max(k, BLOCK_FLOATS // q.shape[0])
        for s in range(0, self.n, block):
            xb = self.x[s : s + block]
            d = (xb @ (-2.0 * q).T).T  # [B, b]; rows of x against columns of q: BLAS gemv/gemm over x as stored
            d += qsq
            d += self.sq[s : s + block]
            kk = min(k, d.shape[1])
            part = (
                np.argpartition(d, kk - 1, axis=1)[:, :kk]
                if kk < d.shape[1]
                else np.broadcast_to(np.arange(d.shape[1]), (d.shape[0], d.shape[1]))
            )
            cand_d = np.concatenate([best_d, np.take_along_axis(d, part, 1)], axis=1)
            cand_i = np.concatenate([best_i, part + s], axis=1)
            keep = np.argsort(cand_d, axis=1, kind="stable")[:, :k]
            best_d, best_i = np.take_along_axis(cand_d, keep, 1), np.take_along_axis(cand_i, keep, 1)
        return best_i.astype(np.int64), np.maximum(best_d, 0.0).astype(np.float32)


class HnswSearch:
    """faiss IndexHNSWFlat over the same latents: approximate, a fraction of a millisecond per query."""

    name = "faiss-hnsw"

    def __init__(self, latents: np.ndarray, m: int = HNSW_M, ef_search: int = HNSW_EF_SEARCH) -> None:
        import faiss

        x = np.ascontiguousarray(latents, np.float32)
        self.index: Any = faiss.IndexHNSWFlat(x.shape[1], m)
        self.index.hnsw.efConstruction = 80
        self.index.add(x)
        self.index.hnsw.efSearch = ef_search
        self.zdim = x.shape[1]

    def search(self, q: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(q), np.float32)
        k = max(1, min(int(k), self.index.ntotal))
        self.index.hnsw.efSearch = max(HNSW_EF_SEARCH, k)
        d, i = self.index.search(q, k)
        return i.astype(np.int64), np.maximum(d, 0.0).astype(np.float32)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class Searcher:
    """What the live mirror calls: exact search from the first frame; for a large index, and where faiss is
    installed, an HNSW graph is built on a background thread and takes over once ready, so a show never waits
    for it at start."""

    def __init__(self, latents: np.ndarray, graph: bool | None = None) -> None:
        self.exact = ExactSearch(latents)
        self._fast: HnswSearch | None = None
        self.build_seconds: float | None = None
        self._thread: threading.Thread | None = None
        want = graph if graph is not None else self.exact.n >= HNSW_MIN_ROWS
        if want and faiss_available():
            self._thread = threading.Thread(target=self._build, name="mirror-hnsw", daemon=True)
            self._thread.start()
        elif want:
            log.info("mirror: faiss not installed (pip install 'livevae[mirror]'); exact search for %d frames",
                     self.exact.n)  # fmt: skip

    def _build(self) -> None:
        t0 = time.perf_counter()
        try:
            import faiss

            faiss.omp_set_num_threads(1)  # one core builds; the other keeps the show's frame loop
            fast = HnswSearch(self.exact.x)
        except Exception as e:  # a failed graph build leaves exact search, which is correct, only slower
            log.warning("mirror: HNSW build failed (%s); staying on exact search", e)
            return
        self.build_seconds = time.perf_counter() - t0
        self._fast = fast
        log.info("mirror: HNSW graph over %d frames ready in %.1f s", self.exact.n, self.build_seconds)

    @property
    def name(self) -> str:
        return self._fast.name if self._fast is not None else self.exact.name

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the graph (benchmarks, tests); True when the fast search is in use."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._fast is not None

    def search(self, q: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """q [B, zdim] -> (rows int64 [B, k], squared distances float32 [B, k]), nearest first."""
        fast = self._fast
        return fast.search(q, k) if fast is not None else self.exact.search(q, k)
