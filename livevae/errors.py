"""One error base: every error livevae raises on purpose derives from LivevaeError; the CLI prints it as one line."""

from __future__ import annotations


class LivevaeError(Exception):
    """An error a user can act on: the message names the file, key or address, what was found and what was expected.
    Each area has its subclass (ShowError, EngineError, OscError, ...); the CLI turns any of them into one line and
    exit status 1, and the live loop catches them at its edge. Anything else is a bug and keeps its traceback."""
