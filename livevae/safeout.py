"""Output paths checked before work starts, folders replaced only when livevae made them, and atomic file writes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from livevae.errors import LivevaeError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".m4v", ".avi")  # containers FFmpeg writes H.264 into


class OutputError(LivevaeError):
    """A requested output cannot be written, or writing it would destroy something livevae did not make."""


def _probe_dir(folder: Path, what: str) -> None:
    """Create `folder` if needed and prove it is writable by making (and removing) a file in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".livevae-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise OutputError(f"{what}: cannot write in {folder} ({e.strerror or e}); expected a writable folder") from e


def check_output_file(path: str | os.PathLike[str], suffixes: Iterable[str] = (), what: str = "output") -> Path:
    """The path of a file about to be written, checked now so that no work is wasted and nothing is half-made:
    not a folder, one of `suffixes` (when given), and in a folder we can write. Raises OutputError."""
    p = Path(path).expanduser()
    allowed = tuple(suffixes)
    if p.is_dir() or str(path).endswith(("/", os.sep)) or p.name in ("", ".", ".."):
        raise OutputError(f"{what} {path}: is a folder; expected a file path like out{allowed[0] if allowed else ''}")
    if allowed and p.suffix.lower() not in allowed:
        raise OutputError(f"{what} {path}: suffix {p.suffix or '(none)'!r}; expected one of {', '.join(allowed)}")
    _probe_dir(p.parent, f"{what} {path}")
    return p


def check_dataset_out(path: str | os.PathLike[str], made_by: str, files: Iterable[str]) -> Path:
    """The resolved folder a dataset will be written to. It may not exist yet, or be empty, or be a dataset that
    livevae made (meta.json says `made_by`) holding only `files`: anything else is the user's, and is refused,
    never replaced. Its parent must be writable. Raises OutputError naming what was found."""
    p = Path(path).expanduser().resolve()
    if p.exists() and not p.is_dir():
        raise OutputError(f"output {path}: is a file; expected a folder for the dataset (a new or empty one)")
    if p.is_dir():
        found = sorted(x.name for x in p.iterdir())
        if found:
            ours = set(files)
            meta = p / "meta.json"
            try:
                fmt = json.loads(meta.read_text()).get("format") if meta.is_file() else None
            except (OSError, ValueError, AttributeError):
                fmt = None
            foreign = [f for f in found if f not in ours]
            if fmt != made_by or foreign:
                shown = ", ".join((foreign or found)[:5]) + (" ..." if len(foreign or found) > 5 else "")
                raise OutputError(
                    f"output {path}: a folder that is not a livevae dataset holds {shown}; expected a new or empty "
                    "folder (nothing in it was touched; choose another -o)"
                )
    if p.parent == p:
        raise OutputError(f"output {path}: the root folder; expected a dataset folder")
    _probe_dir(p.parent, f"output {path}")
    return p


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`; an old `out` (already checked to be ours) is moved aside first
    and removed only once the new one is in place, so a crash leaves one whole dataset, never none."""
    old: Path | None = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename, on any error (a full
    disk, Ctrl-C) it is removed, so the old file stays whole and no temporary file fills the disk."""
    dest = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); the output gets the old file's mode, or the usual 0644
        os.chmod(tmp, dest.stat().st_mode & 0o7777 if dest.exists() else 0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_writable_later(
    path: str | os.PathLike[str], what: str, folder: bool = False, suffixes: Iterable[str] = ()
) -> Path:
    """Whether `path` could be written when the time comes, without creating anything (for check-show): the
    nearest existing ancestor is a writable folder, the path itself is not the wrong kind. Raises OutputError."""
    p = Path(path).expanduser()
    allowed = tuple(suffixes)
    if p.exists() and p.is_dir() != folder:
        kind = "a folder" if p.is_dir() else "a file"
        raise OutputError(f"{what}: {p} is {kind}; expected {'a folder' if folder else 'a file path'}")
    if allowed and not folder and p.suffix.lower() not in allowed:
        raise OutputError(f"{what}: {p}: suffix {p.suffix or '(none)'!r}; expected one of {', '.join(allowed)}")
    base = p if folder and p.is_dir() else p.parent
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise OutputError(f"{what}: {p}: {base} is a file; expected a folder there")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"{what}: {p}: {base} is not writable; expected a folder livevae may write in")
    return p
