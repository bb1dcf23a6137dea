"""Heartbeat file (atomic, fresh/stale), rotating log file, RSS, the stderr tee."""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from livevae.installation import health
from livevae.installation.health import (
    HealthError,
    Heartbeat,
    StderrTee,
    read_heartbeat,
    rss_bytes,
    setup_log_file,
    write_atomic,
)


def test_rss_is_positive() -> None:
    assert rss_bytes() > 10 * 2**20  # a Python process with numpy is well over 10 MB


def test_heartbeat_contains_what_the_readme_says(tmp_path: Path) -> None:
    hb = Heartbeat(tmp_path / "hb" / "heartbeat.json", interval=60)
    hb.update(fps=24.8, frames=1234, source="clip.mp4", scene="dusk", mode="autopilot")
    assert hb.write_now()
    data = read_heartbeat(hb.path)
    for key in ("version", "time", "iso", "pid", "uptime_s", "rss_mb", "fps", "frames", "source", "scene", "mode"):
        assert key in data, key
    assert data["pid"] == os.getpid() and data["frames"] == 1234 and data["rss_mb"] > 10
    assert abs(data["time"] - time.time()) < 5
    assert health.heartbeat_age(hb.path) < 5
    assert not list(hb.path.parent.glob(".*.tmp"))  # no temporary file left behind


def test_heartbeat_thread_writes_periodically_and_a_final_state(tmp_path: Path) -> None:
    hb = Heartbeat(tmp_path / "heartbeat.json", interval=0.1).start()
    hb.update(frames=1)
    deadline = time.monotonic() + 10
    while hb.writes < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hb.writes >= 3
    hb.stop(final={"state": "stopped"})
    assert read_heartbeat(hb.path)["state"] == "stopped"


def test_atomic_write_never_shows_a_partial_file(tmp_path: Path) -> None:
    p = tmp_path / "heartbeat.json"
    write_atomic(p, json.dumps({"time": 0, "pad": "x" * 50_000}))
    bad: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                json.loads(p.read_text())
            except ValueError as e:
                bad.append(str(e))

    th = threading.Thread(target=reader)
    th.start()
    for i in range(200):
        write_atomic(p, json.dumps({"time": i, "pad": "y" * (i * 300)}))
    stop.set()
    th.join()
    assert not bad


def test_unwritable_heartbeat_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    hb = Heartbeat(blocker / "heartbeat.json", interval=60)  # a folder that is a file: cannot be created
    with caplog.at_level(logging.WARNING, "livevae.installation.health"):
        assert not hb.write_now()
        assert not hb.write_now()
    assert hb.errors == 2
    assert sum("cannot write" in r.message for r in caplog.records) == 1  # one line per kind of error


def test_read_heartbeat_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(HealthError, match="no such file"):
        read_heartbeat(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(HealthError, match=r"x\.json: unreadable"):
        read_heartbeat(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("[1, 2]")
    with pytest.raises(HealthError, match="no 'time' field"):
        read_heartbeat(tmp_path / "y.json")


def test_health_command_fresh_and_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "hb.json"
    health.write_heartbeat(p, {"fps": 25.0})
    assert health.run(argparse.Namespace(heartbeat=p, max_age=30.0)) == 0
    assert '"fps": 25.0' in capsys.readouterr().out
    health.write_heartbeat(p, {"fps": 25.0}, now=time.time() - 100)
    assert health.run(argparse.Namespace(heartbeat=p, max_age=30.0)) == 1
    assert "stale" in capsys.readouterr().err
    assert health.run(argparse.Namespace(heartbeat=tmp_path / "none.json", max_age=30.0)) == 1


def test_log_file_rotates(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "livevae.log"
    handler = setup_log_file(path, max_bytes=2000, backups=2)
    try:
        lg = logging.getLogger("livevae.test")
        for i in range(200):
            lg.info("line %d %s", i, "x" * 40)
    finally:
        logging.getLogger("livevae").removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["livevae.log", "livevae.log.1", "livevae.log.2"]  # bounded: older ones deleted
    assert all(p.stat().st_size <= 2100 for p in path.parent.iterdir())
    assert "line 199" in path.read_text()


def test_log_file_error_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(HealthError, match=r"log file .*f/x\.log: cannot open"):
        setup_log_file(tmp_path / "f" / "x.log")


def test_stderr_tee_copies_lines_to_the_log(tmp_path: Path) -> None:
    import io

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    lg = logging.getLogger("livevae.test.tee")
    lg.addHandler(Keep())
    lg.setLevel(logging.INFO)
    out = io.StringIO()
    tee = StderrTee(out, lg)
    tee.write("livevae source: clip.mp4: lost; ")
    tee.write("reconnecting\nsecond line\npartial")
    assert records == ["livevae source: clip.mp4: lost; reconnecting", "second line"]
    assert out.getvalue().endswith("partial")
