"""The seam between the live loop and what plugs into it: the Controller protocol, FrameInfo, and the LoopHandle."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from livevae.backends import Backend


@dataclass
class FrameInfo:
    """Passed to every controller after each presented frame."""

    index: int
    t: float  # show clock: wall seconds live, index / fps in offline renders
    fps: float  # measured, recent
    source: str
    dropped: int  # frames dropped so far (stale in the source slot + recorder queue full)
    latency_ms: float  # capture -> present of this frame
    stage_ms: dict[str, float] = field(default_factory=dict)  # this frame's ms per stage
    fallback: bool = False  # the source was down: this frame came from the fallback picture
    frozen: bool = False
    recording: bool = False
    z: np.ndarray | None = None  # float32 [1, zdim] after modulation
    output: np.ndarray | None = None  # uint8 [H, W, 3] the decoded picture (read-only: do not modify)


@dataclass(frozen=True)
class LoopStatus:
    """What a controller may know about the loop, copied at the moment it asks (never a live reference)."""

    backend: str = ""  # the running backend's name, e.g. "onnxruntime-int8"
    model: str = ""  # the model file the show was built with ("" when the backend was handed in)
    backend_spec: str = "auto"  # what the show asked for (--backend), to rebuild the same one
    threads: int | None = None  # CPU inference threads the show asked for (None: the backend's default)
    pipeline: bool = True  # the show's pipeline setting, to rebuild the backend for it (LiveConfig.pipeline)
    offline: bool = False  # a fixed-step headless render (show time is index / fps)
    size: tuple[int, int] = (256, 144)  # the model's (w, h)
    index: int = 0  # frames presented so far
    sources: tuple[str, ...] = ()  # the show's source list
    source_index: int = 0  # which of them plays
    source_name: str = ""  # what is playing now
    source_status: str = ""  # "running", "reconnecting", "ended"; "" before the first open
    source_published: int = 0  # frames the capture has published: progress, for a watchdog
    controller_errors: int = 0
    outputs: tuple[str, ...] = ()  # one line per extra output (NDI, Syphon, Spout, virtual camera): state, counts

    @property
    def source_spec(self) -> str:
        """The spec of the source that plays (a path, camera index or "testcard"); "" when out of range."""
        return self.sources[self.source_index] if 0 <= self.source_index < len(self.sources) else ""


class LoopHandle(ABC):
    """What a controller gets from the live loop instead of the loop itself: post an action, read a status,
    hold a picture and resume, wrap the backend, find a service another controller offers. Every method is
    safe from any thread; changes reach the frame loop at its next frame, never in the middle of one."""

    @abstractmethod
    def status(self) -> LoopStatus: ...

    @abstractmethod
    def post(self, action: str, arg: object = None) -> None:
        """Run an action ("source", "record", "scene.recall", ...) on the frame thread before its next frame."""

    @abstractmethod
    def request_quit(self) -> None: ...

    @abstractmethod
    def hold(self, picture: np.ndarray, fps: float) -> None:
        """Show `picture` (uint8 [H, W, 3]) at `fps` instead of the model, source stopped (closed hours)."""

    @abstractmethod
    def resume(self) -> None:
        """End a hold: the source reopens and the model plays again."""

    @abstractmethod
    def wrap_backend(self, wrap: Callable[[Backend], Backend]) -> None:
        """Replace the backend by wrap(backend), e.g. a watchdog's guarded one; called once, at start."""

    @abstractmethod
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """A source picture (uint8 [h, w, 3]) cropped and resized as the model sees it: uint8 [H, W, 3]."""

    @abstractmethod
    def service(self, name: str) -> object | None:
        """What another controller offers under `name` ("osc.routes", "scenes"), or None."""


class Controller(Protocol):
    """Anything that moves the show: OSC, MIDI, audio, LFOs, cues. Writes into the ControlState from its own
    threads; only modulate() runs in the frame loop, and it must be quick."""

    def start(self, loop: LoopHandle | None) -> None: ...

    def modulate(self, z: np.ndarray, t: float) -> np.ndarray: ...

    def handle_action(self, action: str, arg: object) -> bool: ...

    def on_frame(self, info: FrameInfo) -> None: ...

    def stop(self) -> None: ...


class Watcher:
    """A Controller that moves nothing: the protocol's no-op half, so probes, clocks and recorders that only
    watch frames override on_frame (or modulate) and nothing else."""

    def start(self, loop: LoopHandle | None) -> None:
        pass

    def modulate(self, z: np.ndarray, t: float) -> np.ndarray:
        return z

    def handle_action(self, action: str, arg: object) -> bool:
        return False

    def on_frame(self, info: FrameInfo) -> None:
        pass

    def stop(self) -> None:
        pass


def services_of(controllers: Iterable[object]) -> dict[str, object]:
    """Every service the controllers offer through an optional `services() -> {name: object}`; first one wins."""
    out: dict[str, object] = {}
    for c in controllers:
        offer = getattr(c, "services", None)
        if callable(offer):
            for k, v in dict(offer()).items():
                out.setdefault(k, v)
    return out
