"""Logging, configured once by the CLI: livevae's loggers on stderr as `livevae <part>: message`, -v/-q, a file."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from livevae.errors import LivevaeError

# A logger's last name component -> the word users have always seen after "livevae" on stderr.
PARTS = {
    "loop": "live",
    "backends": "backend",
    "showfile": "show",
    "recorder": "record",
    "controller": "installation",
    "check_show": "check-show",
    "osc_map": "osc-map",
}
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ROOTS = ("livevae", "train")


class LogError(LivevaeError):
    """The log file cannot be opened."""


def part(name: str) -> str:
    last = name.rsplit(".", 1)[-1]
    return PARTS.get(last, last)


class _Console(logging.Handler):
    """Writes to whatever sys.stderr is at the time (pytest's capture, a tee): never a stream captured at setup.
    Under installation mode's stderr tee it writes to the real stream, so the tee does not log the line twice."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.addFilter(lambda r: r.name != "livevae.stderr")  # lines the tee copied are on the console already

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = f"livevae {part(record.name)}: {self.format(record)}"
            stream = sys.stderr
            stream = getattr(stream, "real_stream", stream)
            stream.write(msg + "\n")
            stream.flush()
        except Exception:  # a closed stderr must not end the show
            self.handleError(record)


_installed: list[tuple[str, logging.Handler]] = []


def configure(verbosity: int = 0, log_file: str | Path | None = None) -> None:
    """Send livevae's and train's loggers to stderr at INFO (verbosity 0), WARNING (-1, -q) or DEBUG (1, -v),
    and to `log_file` too when given (appended, at DEBUG when -v else INFO). Calling it again replaces what an
    earlier call installed, so tests and embedders can call it freely. Raises LogError naming an unusable file."""
    for name, h in _installed:
        logging.getLogger(name).removeHandler(h)
        h.close()
    _installed.clear()
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handlers: list[logging.Handler] = [_Console()]
    handlers[0].setLevel(level)
    if log_file is not None:
        p = Path(log_file)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(p, encoding="utf-8")
        except OSError as e:
            raise LogError(f"--log-file {p}: cannot open ({e.strerror or e}); expected a writable file path") from None
        fh.setFormatter(logging.Formatter(FILE_FORMAT))
        fh.setLevel(min(level, logging.INFO))
        handlers.append(fh)
    for name in ROOTS:
        lg = logging.getLogger(name)
        lg.setLevel(min(h.level for h in handlers))
        for h in handlers:
            lg.addHandler(h)
            _installed.append((name, h))


def console_configured() -> bool:
    """True once configure() has put a console handler on livevae's logger."""
    return any(isinstance(h, _Console) for _, h in _installed)
