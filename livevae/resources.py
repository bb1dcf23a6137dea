"""Where livevae's own files are (bundled shows, recipes) and where runtime state goes, in a checkout or a wheel."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# In a wheel the shows are package data (livevae/shows, mapped from the repo's shows/ by pyproject.toml);
# in a checkout, editable install or not, they are the repo's shows/ folder beside the package.
_SHOWS = (PACKAGE / "shows", PACKAGE.parent / "shows")
STATE_PREFIX = "state:"


def shows_dir() -> Path:
    """The folder of the shows that ship with livevae (demo.toml, gallery_loop.toml, ...)."""
    for d in _SHOWS:
        if (d / "demo.toml").is_file():
            return d
    return _SHOWS[0]


def bundled_show(name: str) -> Path | None:
    """A shipped show by name ('demo' or 'demo.toml'), or None when there is none of that name."""
    p = shows_dir() / (name if name.endswith(".toml") else f"{name}.toml")
    return p if Path(name).name == name and p.is_file() else None


def show_file(arg: str) -> Path:
    """A show as given on the command line: a path when it exists, else a shipped show's name
    (`livevae live demo` works from any folder, checkout or wheel), else the path as given (its own error)."""
    p = Path(arg)
    if p.is_file():
        return p
    return bundled_show(arg) or p


def state_dir() -> Path:
    """Runtime state (heartbeats, logs): $LIVEVAE_STATE, else %LOCALAPPDATA%\\livevae\\state on Windows,
    else $XDG_STATE_HOME/livevae, else ~/.local/state/livevae (XDG base directories; macOS too)."""
    env = os.environ.get("LIVEVAE_STATE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "livevae" / "state"
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "livevae"


def runtime_path(text: str, show_dir: Path, show_name: str) -> Path:
    """A heartbeat/log path as a show writes it: "state:REST" is REST under state_dir()/<show name>, so runtime
    files never land among the show files (or in site-packages); other relative paths are beside the show."""
    if text.startswith(STATE_PREFIX):
        return state_dir() / (show_name or "show") / text[len(STATE_PREFIX) :]
    p = Path(text).expanduser()
    return p if p.is_absolute() else show_dir / p
