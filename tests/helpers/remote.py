"""A live show with the remote server for tests: tiny model, a still picture, OSC and remote on free ports."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from livevae.handle import FrameInfo, Watcher
from livevae.media.source import Source


class StillSource(Source):
    """The same picture on every read at `fps`: what changes in the output comes from the controls alone."""

    def __init__(self, fps: float = 25.0) -> None:
        self._fps, self.name = fps, "still"
        yy, xx = np.mgrid[0:48, 0:64]
        self.img = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1).astype(np.uint8)  # [48, 64, 3]

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray:
        time.sleep(1.0 / self._fps)  # a camera's pace: the realtime loop shows frames as they come
        return self.img


@dataclass
class FrameLog(Watcher):
    """Per presented frame: wall time (time.time(), what a browser's Date.now() compares with), the value of
    one control as that frame used it, and the decoded picture."""

    state: Any = None
    target: str = "z/0"
    frames: list[tuple[float, int, float, np.ndarray]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_frame(self, info: FrameInfo) -> None:
        assert info.output is not None
        value = self.state.get(self.target) if self.state is not None else 0.0
        with self.lock:
            self.frames.append((time.time(), info.index, value, info.output.copy()))
            del self.frames[:-2000]

    @property
    def index(self) -> int:
        with self.lock:
            return self.frames[-1][1] if self.frames else -1

    def index_at(self, wall: float) -> int:
        """The index of the last frame presented at or before wall time `wall` (-1 before the first)."""
        with self.lock:
            before = [i for t, i, _, _ in self.frames if t <= wall]
        return before[-1] if before else -1

    def first_where(self, pred: Callable[[float], bool]) -> tuple[int, np.ndarray] | None:
        with self.lock:
            for _, i, v, out in self.frames:
                if pred(v):
                    return i, out
        return None

    def wait_frames(self, n: int, timeout: float = 30.0) -> None:
        start, deadline = self.index, time.monotonic() + timeout
        while self.index < start + n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} frames not shown within {timeout}s")
            time.sleep(0.01)


@dataclass
class LiveShow:
    loop: Any
    thread: threading.Thread
    state: Any
    remote: Any
    osc: Any
    log: FrameLog


def start_live_show(model: Path, tmp: Path, name: str, fps: float = 25.0, **remote: Any) -> LiveShow:
    """Run a realtime headless show on a thread: the show controller (OSC on a free port, scenes stored under
    tmp), the remote server on a free port, and a FrameLog. Stop it with stop_live_show."""
    from livevae.backends import create
    from livevae.cli.live import pca_count
    from livevae.control.state import ControlState
    from livevae.controllers.remote import RemoteSection, RemoteServer
    from livevae.loop import LiveConfig, LiveLoop
    from livevae.show.showfile import default_controllers

    cfg = LiveConfig(model=str(model), sources=["still", "testcard"], headless=True, realtime=True, fps=fps)
    backend = create(str(model), "torch")
    state = ControlState(backend.cfg.zdim, pca_count(str(model)))
    (show_ctl,) = default_controllers(cfg, state, osc_host="127.0.0.1", osc_port=0)
    rs = RemoteServer(state, RemoteSection(port=0, name=name, **remote))
    log = FrameLog(state=state)
    loop = LiveLoop(cfg, backend, state, [show_ctl, rs, log], make_source=lambda spec: StillSource(fps))
    t = threading.Thread(target=loop.run, name="live-show", daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while (rs.port == 0 or log.index < 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.index >= 2, "the live show did not start"
    return LiveShow(loop, t, state, rs, getattr(show_ctl, "server", None), log)


def stop_live_show(show: LiveShow) -> None:
    show.loop.request_quit()
    show.thread.join(15)
    assert not show.thread.is_alive(), "the live show did not stop"
