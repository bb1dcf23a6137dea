"""A LoopHandle without a loop: controllers under test get this, and tests read what they asked of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from livevae.handle import LoopHandle, LoopStatus


class RecordingHandle(LoopHandle):
    """Holds a LoopStatus the test sets (`status_`) and records every request: posts, holds, quit, the backend
    after wrap_backend. preprocess is the identity unless `pre` is given."""

    def __init__(self, status: LoopStatus | None = None, backend: Any = None, **fields: Any) -> None:
        self.status_ = replace(status or LoopStatus(), **fields)
        self.backend = backend
        self.posted: list[tuple[str, object]] = []
        self.held: tuple[np.ndarray, float] | None = None
        self.quit = False
        self.pre: Callable[[np.ndarray], np.ndarray] | None = None
        self.offered: dict[str, object] = {}

    def update(self, **fields: Any) -> None:
        self.status_ = replace(self.status_, **fields)

    def status(self) -> LoopStatus:
        return self.status_

    def post(self, action: str, arg: object = None) -> None:
        self.posted.append((action, arg))

    def request_quit(self) -> None:
        self.quit = True

    def hold(self, picture: np.ndarray, fps: float) -> None:
        self.held = (picture, fps)

    def resume(self) -> None:
        self.held = None

    def wrap_backend(self, wrap: Callable[[Any], Any]) -> None:
        self.backend = wrap(self.backend)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return self.pre(image) if self.pre is not None else image

    def service(self, name: str) -> object | None:
        return self.offered.get(name)
