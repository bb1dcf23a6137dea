"""Health of a long-running show: an atomically written heartbeat file, a rotating log file, process RSS."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import logging.handlers
import os
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from livevae.errors import LivevaeError

log = logging.getLogger("livevae.installation.health")

HEARTBEAT_VERSION = 1
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class HealthError(LivevaeError):
    """A heartbeat or log file cannot be written or read."""


def rss_bytes() -> int:
    """Resident set size of this process in bytes (psutil; falls back to /proc, then to 0)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so a reader sees the old file or the new one, never half of one: a temporary
    file in the same folder, flushed and fsynced, then renamed over the target (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_heartbeat(path: Path, fields: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
    """Write one heartbeat (JSON) atomically; returns what was written. `time` (unix seconds) and `iso`
    (UTC) are added so a monitor can tell a stale file from a live one."""
    t = time.time() if now is None else now
    data = {
        "version": HEARTBEAT_VERSION,
        "time": round(t, 3),
        "iso": dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds"),
        "pid": os.getpid(),
        **fields,
    }
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    return data


def read_heartbeat(path: Path) -> dict[str, Any]:
    """The last heartbeat; raises HealthError naming the file if it is missing or not a heartbeat."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise HealthError(f"heartbeat {path}: no such file; is the show running with a heartbeat path?") from None
    except (OSError, ValueError) as e:
        raise HealthError(f"heartbeat {path}: unreadable ({e}); expected a JSON heartbeat") from None
    if not isinstance(data, dict) or "time" not in data:
        raise HealthError(f"heartbeat {path}: no 'time' field; expected a livevae heartbeat")
    return data


def heartbeat_age(path: Path, now: float | None = None) -> float:
    """Seconds since the heartbeat at `path` was written (from its own `time` field)."""
    return (time.time() if now is None else now) - float(read_heartbeat(path)["time"])


class Heartbeat:
    """Collects the show's health fields (cheap, from the frame loop) and writes them every `interval`
    seconds on its own thread, so the frame loop never waits on the disk.

    A failed write (full disk, removed folder) is logged once per kind of error and retried next interval.
    """

    def __init__(self, path: Path, interval: float = 5.0) -> None:
        self.path = Path(path)
        self.interval = max(0.1, float(interval))
        self.started = time.monotonic()
        self.writes = 0
        self.errors = 0
        self._fields: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error = ""

    def update(self, **fields: Any) -> None:
        with self._lock:
            self._fields.update(fields)

    def fields(self) -> dict[str, Any]:
        with self._lock:
            out = dict(self._fields)
        out["uptime_s"] = round(time.monotonic() - self.started, 1)
        out["rss_mb"] = round(rss_bytes() / 2**20, 1)
        return out

    def write_now(self) -> bool:
        """Write one heartbeat now; False (logged) if it could not be written."""
        try:
            write_heartbeat(self.path, self.fields())
        except OSError as e:
            self.errors += 1
            if str(e) != self._last_error:
                log.warning("heartbeat %s: cannot write (%s); retrying every %.0f s", self.path, e, self.interval)
                self._last_error = str(e)
            return False
        self.writes += 1
        self._last_error = ""
        return True

    def start(self) -> Heartbeat:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        self.write_now()
        while not self._stop.wait(self.interval):
            self.write_now()

    def stop(self, final: dict[str, Any] | None = None) -> None:
        """Stop the thread and write a last heartbeat (with `final` fields, e.g. state="stopped")."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        if final:
            self.update(**final)
        self.write_now()


def setup_log_file(
    path: Path, max_bytes: int = 10 * 2**20, backups: int = 5, level: int = logging.INFO
) -> logging.Handler:
    """Send the `livevae` logger (and stderr-printing modules that use it) to a rotating log file: at most
    `max_bytes` per file and `backups` old files (path.1 ... path.N). Returns the handler (remove it to stop)."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(p, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    except OSError as e:
        raise HealthError(f"log file {p}: cannot open ({e}); expected a writable path") from None
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(level)
    root = logging.getLogger("livevae")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    return handler


class StderrTee:
    """A text stream that copies every complete line written to it into a logger, then to the real stream.

    Many livevae modules report with print(..., file=sys.stderr); an unattended show needs those lines in its
    rotating log too, so install() wraps sys.stderr."""

    def __init__(self, stream: Any, logger: logging.Logger) -> None:
        self.stream = stream
        self.logger = logger
        self._buf = ""
        self._lock = threading.Lock()
        self._inside = threading.local()

    def write(self, text: str) -> int:
        n = self.stream.write(text)
        if getattr(self._inside, "on", False):  # a logging handler writing to stderr: do not loop
            return n
        with self._lock:
            self._buf += text
            lines = self._buf.split("\n")
            self._buf = lines.pop()
        self._inside.on = True
        try:
            for line in lines:
                if line.strip():
                    self.logger.info(line)
        finally:
            self._inside.on = False
        return n

    def flush(self) -> None:
        self.stream.flush()

    @property
    def real_stream(self) -> Any:
        """The stream under the tee: console log handlers write here, so the tee does not copy their lines."""
        return self.stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    @classmethod
    def install(cls, logger: logging.Logger | None = None) -> StderrTee:
        tee = cls(sys.stderr, logger or logging.getLogger("livevae.stderr"))
        sys.stderr = tee
        return tee

    def uninstall(self) -> None:
        if sys.stderr is self:
            sys.stderr = self.stream


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("heartbeat", type=Path, help="the show's heartbeat file")
    p.add_argument("--max-age", type=float, default=30.0, help="seconds after which the heartbeat counts as stale")


def run(args: argparse.Namespace) -> int:
    """Print the heartbeat; exit 0 if it is fresh, 1 if stale or missing (for cron or a monitoring agent)."""
    try:
        data = read_heartbeat(args.heartbeat)
    except HealthError as e:
        print(f"livevae health: {e}", file=sys.stderr)
        return 1
    age = time.time() - float(data["time"])
    print(json.dumps({**data, "age_s": round(age, 1)}, indent=1, sort_keys=True))
    if age > args.max_age:
        print(
            f"livevae health: {args.heartbeat}: stale, written {age:.0f} s ago (> {args.max_age:.0f} s)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":  # python -m livevae.installation.health /var/tmp/livevae/heartbeat.json
    _p = argparse.ArgumentParser(prog="python -m livevae.installation.health", description=run.__doc__)
    add_arguments(_p)
    raise SystemExit(run(_p.parse_args()))
