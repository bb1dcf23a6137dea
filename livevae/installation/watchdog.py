"""In-process watchdog: notices a stalled or failing component (source, backend, frame loop) and restarts it."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from livevae.errors import LivevaeError

log = logging.getLogger("livevae.installation.watchdog")

EXIT_HUNG = 70  # EX_SOFTWARE: the frame loop hung beyond repair in-process; the service manager restarts us


class WatchdogError(LivevaeError):
    """A watched component is unknown, or was registered twice."""


@dataclass
class Component:
    """One watched part of the show. It is alive while it makes progress: either it calls Watchdog.beat(),
    or `progress()` (a counter such as frames published) keeps changing. A component that stops making
    progress for `timeout` seconds, or reports a fault, is restarted, with exponential backoff between
    restarts that do not bring it back."""

    name: str
    timeout: float
    restart: Callable[[], None]
    progress: Callable[[], int] | None = None
    last_beat: float = 0.0
    last_count: int | None = None
    restarts: int = 0
    failed_restarts: int = 0
    faults: int = 0
    last_error: str = ""
    pending_fault: str = ""
    paused: bool = False
    backoff: float = 1.0
    not_before: float = 0.0


class Watchdog:
    """Checks every `interval` seconds on its own thread (or when check() is called, in tests).

    `hang_exit` > 0: if the component named "loop" makes no progress for that long, in-process repair has
    failed (a call that never returns cannot be interrupted in Python), so `on_hang` runs, by default logging
    and exiting the process with EXIT_HUNG for systemd's Restart=always to start a fresh one.
    """

    def __init__(
        self,
        interval: float = 0.5,
        hang_exit: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        on_hang: Callable[[str], None] | None = None,
        max_backoff: float = 60.0,
    ) -> None:
        self.interval = interval
        self.hang_exit = hang_exit
        self.clock = clock
        self.on_hang = on_hang or _exit_hung
        self.max_backoff = max_backoff
        self._components: dict[str, Component] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.hung = False

    # --- registration and reports ----------------------------------------------------------------------
    def add(
        self,
        name: str,
        restart: Callable[[], None],
        timeout: float,
        progress: Callable[[], int] | None = None,
    ) -> Component:
        with self._lock:
            if name in self._components:
                raise WatchdogError(f"watchdog: component {name!r} registered twice")
            c = Component(name, float(timeout), restart, progress, last_beat=self.clock())
            if progress is not None:
                c.last_count = _safe_count(progress)
            self._components[name] = c
            return c

    def component(self, name: str) -> Component:
        try:
            return self._components[name]
        except KeyError:
            raise WatchdogError(f"watchdog: no component {name!r}; have {', '.join(self._components)}") from None

    def beat(self, name: str) -> None:
        """`name` made progress (cheap: one dict lookup and a clock read)."""
        c = self._components.get(name)
        if c is not None:
            c.last_beat = self.clock()
            c.backoff = 1.0
            c.failed_restarts = 0

    def fault(self, name: str, err: BaseException | str) -> None:
        """`name` failed; it is restarted at the next check (never in the caller's thread)."""
        c = self.component(name)
        with self._lock:
            c.faults += 1
            c.pending_fault = c.last_error = _describe(err)

    def pause(self, paused: bool = True, *names: str) -> None:
        """Stop (or resume) expecting progress, e.g. while the show is closed; resuming restarts the clock."""
        with self._lock:
            for c in self._components.values():
                if not names or c.name in names:
                    c.paused = paused
                    c.last_beat = self.clock()
                    if c.progress is not None:
                        c.last_count = _safe_count(c.progress)

    # --- checking ---------------------------------------------------------------------------------------
    def check(self, now: float | None = None) -> list[str]:
        """Restart whatever is stalled or faulted; returns the names restarted (or tried)."""
        now = self.clock() if now is None else now
        acted: list[str] = []
        with self._lock:
            comps = list(self._components.values())
        for c in comps:
            if c.progress is not None:
                n = _safe_count(c.progress)
                if n != c.last_count:
                    c.last_count = n
                    self.beat(c.name)
            if c.paused:
                continue
            idle = now - c.last_beat
            if c.name == "loop" and self.hang_exit > 0 and idle > self.hang_exit and not self.hung:
                self.hung = True
                log.critical("watchdog: the frame loop made no progress for %.0f s; giving up in-process", idle)
                self.on_hang(f"frame loop stalled for {idle:.0f} s")
                continue
            reason = c.pending_fault or (
                f"no progress for {idle:.1f} s (timeout {c.timeout:g} s)" if idle > c.timeout else ""
            )
            if not reason or now < c.not_before:
                continue
            self._restart(c, reason, now)
            acted.append(c.name)
        return acted

    def _restart(self, c: Component, reason: str, now: float) -> None:
        log.warning("watchdog: restarting %s: %s", c.name, reason)
        c.pending_fault = ""
        c.last_error = reason
        c.restarts += 1
        try:
            c.restart()
        except Exception as e:  # the restart itself failed: try again later, backing off
            c.failed_restarts += 1
            c.last_error = f"restart failed: {_describe(e)}"
            log.error("watchdog: restarting %s failed: %s; next try in %.0f s", c.name, _describe(e), c.backoff)
        # grace: a restarted part gets its timeout to show progress; repeated restarts back off
        c.last_beat = self.clock()
        c.not_before = now + c.backoff
        c.backoff = min(self.max_backoff, c.backoff * 2)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per component: restarts, faults, last error, seconds since progress (for the heartbeat)."""
        now = self.clock()
        with self._lock:
            return {
                c.name: {
                    "restarts": c.restarts,
                    "faults": c.faults,
                    "idle_s": round(now - c.last_beat, 2),
                    "paused": c.paused,
                    "last_error": c.last_error,
                }
                for c in self._components.values()
            }

    # --- thread -----------------------------------------------------------------------------------------
    def start(self) -> Watchdog:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as e:  # the watchdog must outlive whatever it watches
                log.error("watchdog: check failed: %s", _describe(e))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None


def _safe_count(progress: Callable[[], int]) -> int | None:
    try:
        return int(progress())
    except Exception:
        return None


def _describe(err: BaseException | str) -> str:
    return err if isinstance(err, str) else f"{type(err).__name__}: {err}"


def _exit_hung(reason: str) -> None:
    logging.shutdown()  # flush the log file first: this is the last thing the process says
    os._exit(EXIT_HUNG)


class GuardedBackend:
    """A Backend that survives its backend: an exception or a call running past `call_timeout` returns a
    stand-in (the last good result, or zeros/black) so the show goes on, and reports a fault to the watchdog,
    which builds a fresh backend with `factory` off the frame thread and swaps it in.

    With `call_timeout` set, each call runs on a one-thread executor so a hung call can be abandoned (its
    thread is left to finish or die with the process); without it calls run inline (no thread hop).
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        watchdog: Watchdog | None = None,
        call_timeout: float | None = None,
        timeout: float = 30.0,
        name: str = "backend",
        inner: Any = None,
    ) -> None:
        self.factory = factory
        self.watchdog = watchdog
        self.call_timeout = call_timeout
        self.component = name
        self._inner = factory() if inner is None else inner  # an already built backend saves a second load
        self.cfg = self._inner.cfg
        self.name = f"guarded({self._inner.name})"
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self._broken = False
        self._last_z: np.ndarray | None = None
        self._last_frames: np.ndarray | None = None
        self.failures = 0
        self.rebuilds = 0
        if watchdog is not None:
            watchdog.add(name, self.rebuild, timeout)

    def _new_pool(self) -> cf.ThreadPoolExecutor | None:
        if self.call_timeout is None:
            return None
        # two workers for a backend built to run an encode beside a decode (the loop's pipeline), else one
        workers = 2 if self.overlaps else 1
        return cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=self.component)

    @property
    def inner(self) -> Any:
        return self._inner

    @property
    def overlaps(self) -> bool:
        """The inner backend's (backends.overlaps), so the loop pipelines a guarded backend as it would the bare one."""
        return bool(getattr(self._inner, "overlaps", False))

    def rebuild(self) -> None:
        """Build a fresh backend and swap it in (called by the watchdog, off the frame thread)."""
        fresh = self.factory()
        with self._lock:
            old_pool = self._pool
            self._inner = fresh
            self._pool = self._new_pool()
            self._broken = False
            self.rebuilds += 1
        if old_pool is not None:
            old_pool.shutdown(wait=False, cancel_futures=True)
        log.warning("watchdog: %s rebuilt (%s)", self.component, fresh.name)

    def _call(self, method: str, arg: np.ndarray) -> np.ndarray | None:
        with self._lock:
            inner, pool, broken = self._inner, self._pool, self._broken
        if broken:  # waiting for the watchdog's rebuild: do not hammer a broken backend every frame
            return None
        try:
            if pool is None:
                out = getattr(inner, method)(arg)
            else:
                out = pool.submit(getattr(inner, method), arg).result(timeout=self.call_timeout)
        except cf.TimeoutError:
            self._failed(inner, f"{method} ran past {self.call_timeout:g} s")
            return None
        except Exception as e:  # any backend failure: stand in, report, let the watchdog rebuild
            self._failed(inner, e)
            return None
        if self.watchdog is not None:
            self.watchdog.beat(self.component)
        return np.asarray(out)

    def _failed(self, inner: Any, err: BaseException | str) -> None:
        self.failures += 1
        with self._lock:
            if inner is self._inner:
                self._broken = self.watchdog is not None  # without a watchdog, keep trying each call
        log.error("%s %s failed: %s", self.component, getattr(inner, "name", "?"), _describe(err))
        if self.watchdog is not None:
            self.watchdog.fault(self.component, err)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 [N, zdim]; on failure the last good z (or zeros)."""
        z = self._call("encode", frames)
        n = len(frames)
        if z is not None:
            self._last_z = z
            return z
        if self._last_z is not None and len(self._last_z) == n:
            return self._last_z
        return np.zeros((n, self.cfg.zdim), np.float32)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """float32 [N, zdim] -> uint8 [N, H, W, 3]; on failure the last good frames (or black)."""
        out = self._call("decode", z)
        n = len(z)
        if out is not None:
            self._last_frames = out
            return out
        if self._last_frames is not None and len(self._last_frames) == n:
            return self._last_frames
        return np.zeros((n, self.cfg.height, self.cfg.width, 3), np.uint8)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()
