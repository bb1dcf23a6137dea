"""Watchdog: stalls and faults restart a component with backoff; the guarded backend stands in and recovers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from livevae.installation.watchdog import GuardedBackend, Watchdog, WatchdogError
from livevae.model import ModelConfig, preset


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_stall_restarts_after_timeout_with_backoff() -> None:
    clock = Clock()
    wd = Watchdog(clock=clock)
    restarts: list[float] = []
    wd.add("source", lambda: restarts.append(clock.t), timeout=5)
    clock.t += 4
    assert wd.check() == []
    clock.t += 2  # 6 s without progress
    assert wd.check() == ["source"]
    # still dead: the next try waits for the timeout again, then backoff doubles the wait between tries
    clock.t += 5.5
    assert wd.check() == ["source"]
    clock.t += 5.5
    assert wd.check() == ["source"]
    assert wd.component("source").backoff == 8.0
    wd.beat("source")  # it came back: backoff resets
    assert wd.component("source").backoff == 1.0
    assert len(restarts) == 3 and wd.status()["source"]["restarts"] == 3


def test_progress_counter_counts_as_a_beat() -> None:
    clock = Clock()
    wd = Watchdog(clock=clock)
    count = [0]
    wd.add("source", lambda: None, timeout=2, progress=lambda: count[0])
    for _ in range(10):
        clock.t += 1
        count[0] += 1
        assert wd.check() == []
    clock.t += 3
    assert wd.check() == ["source"]


def test_fault_restarts_at_next_check_and_failed_restart_backs_off() -> None:
    clock = Clock()
    wd = Watchdog(clock=clock)
    calls = [0]

    def restart() -> None:
        calls[0] += 1
        if calls[0] < 3:
            raise RuntimeError("device busy")

    wd.add("backend", restart, timeout=30)
    wd.fault("backend", ValueError("CUDA error"))
    assert wd.check() == ["backend"]
    assert "restart failed: RuntimeError: device busy" in wd.status()["backend"]["last_error"]
    wd.fault("backend", "again")
    assert wd.check() == []  # backing off (1 s)
    clock.t += 1.0
    assert wd.check() == ["backend"]
    wd.fault("backend", "again")
    clock.t += 2.0
    assert wd.check() == ["backend"] and calls[0] == 3


def test_paused_components_are_not_restarted() -> None:
    clock = Clock()
    wd = Watchdog(clock=clock)
    wd.add("source", lambda: None, timeout=1)
    wd.pause(True)
    clock.t += 100
    assert wd.check() == []
    wd.pause(False)  # resuming restarts the clock: no instant restart
    assert wd.check() == []
    clock.t += 2
    assert wd.check() == ["source"]


def test_hung_loop_calls_on_hang_once() -> None:
    clock = Clock()
    hung: list[str] = []
    wd = Watchdog(clock=clock, hang_exit=60, on_hang=hung.append)
    wd.add("loop", lambda: None, timeout=10)
    clock.t += 30
    assert wd.check() == ["loop"]  # first an in-process restart
    clock.t += 61
    wd.check()
    wd.check()
    assert len(hung) == 1 and "stalled" in hung[0]


def test_unknown_and_duplicate_components() -> None:
    wd = Watchdog()
    wd.add("a", lambda: None, 1)
    with pytest.raises(WatchdogError, match="registered twice"):
        wd.add("a", lambda: None, 1)
    with pytest.raises(WatchdogError, match="no component 'b'"):
        wd.fault("b", "x")
    wd.beat("b")  # beats of unknown parts are ignored: cheap, never raise in the frame loop


def test_watchdog_thread_runs_checks() -> None:
    wd = Watchdog(interval=0.02)
    done = threading.Event()
    wd.add("x", done.set, timeout=0.05)
    wd.start()
    try:
        assert done.wait(2.0)
    finally:
        wd.stop()


class FakeBackend:
    """Encodes to the mean pixel, decodes to a flat colour; can be told to fail or hang."""

    made = 0

    def __init__(self, cfg: ModelConfig) -> None:
        FakeBackend.made += 1
        self.cfg = cfg
        self.name = f"fake{FakeBackend.made}"
        self.fail = False
        self.hang = 0.0
        self.offset = 0.0  # added to every z: tells this backend's answers from another's

    def encode(self, frames: np.ndarray) -> np.ndarray:
        if self.hang:
            time.sleep(self.hang)
        if self.fail:
            raise RuntimeError("injected encode failure")
        return np.full((len(frames), self.cfg.zdim), frames.mean() / 255 + self.offset, np.float32)

    def decode(self, z: np.ndarray) -> np.ndarray:
        if self.fail:
            raise RuntimeError("injected decode failure")
        return np.full((len(z), self.cfg.height, self.cfg.width, 3), 100, np.uint8)


def test_guarded_backend_stands_in_and_is_rebuilt() -> None:
    cfg = preset("tiny")
    clock = Clock()
    wd = Watchdog(clock=clock)
    gb = GuardedBackend(lambda: FakeBackend(cfg), wd)
    frames = np.full((1, cfg.height, cfg.width, 3), 51, np.uint8)
    z = gb.encode(frames)
    assert z.shape == (1, cfg.zdim) and np.allclose(z, 0.2)
    good = gb.decode(z)
    first = gb.inner
    first.fail = True
    z2 = gb.encode(frames)  # the last good z stands in
    np.testing.assert_array_equal(z2, z)
    np.testing.assert_array_equal(gb.decode(z2), good)
    assert gb.failures == 1  # the broken backend is not called again until rebuilt
    assert wd.check() == ["backend"]
    assert gb.inner is not first and gb.rebuilds == 1
    np.testing.assert_allclose(gb.encode(frames), 0.2)
    # a batch of a new size with nothing good to stand in: zeros / black of the right shape
    gb.inner.fail = True
    assert gb.encode(np.zeros((2, cfg.height, cfg.width, 3), np.uint8)).shape == (2, cfg.zdim)
    assert gb.decode(np.zeros((3, cfg.zdim), np.float32)).shape == (3, cfg.height, cfg.width, 3)


def test_guarded_backend_abandons_a_hung_call() -> None:
    # Timeouts with room for a loaded 2-core machine (a 0.5 s bound once failed there at 0.57 s): what is checked
    # is who answered, not how fast.
    cfg = preset("tiny")
    wd = Watchdog()
    gb = GuardedBackend(lambda: FakeBackend(cfg), wd, call_timeout=1.0)
    try:
        frames = np.zeros((1, cfg.height, cfg.width, 3), np.uint8)
        gb.encode(frames)
        gb.inner.hang = 4.0
        t0 = time.monotonic()
        z = gb.encode(frames)  # the stand-in after the 1 s timeout, not after the 4 s hang
        assert time.monotonic() - t0 < 3.0 and z.shape == (1, cfg.zdim)
        assert "ran past 1 s" in wd.status()["backend"]["last_error"]
        assert wd.check() == ["backend"]
        gb.inner.offset = 0.5  # the rebuilt backend's answers, unlike the stand-in (the last good z, all 0)
        z = gb.encode(frames)  # answered by the fresh backend, on a fresh worker: the old one still sleeps
        np.testing.assert_allclose(z, 0.5)
        assert gb.failures == 1
    finally:
        gb.close()
