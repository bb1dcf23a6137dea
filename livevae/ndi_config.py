"""The NDI runtime's settings in a show: the user's ndi-config.v1.json, plus SpeedHQ 4:2:0 for livevae's senders."""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIG_NAME = "ndi-config.v1.json"
# SpeedHQ's chroma: the runtime's default compresses 4:2:2, so the I420 livevae sends (yuv.I420Scaler) had its
# chroma doubled in height first, then compressed twice over. 4:2:0 compresses what is sent as it is: the same
# pixels at the receiver (tests/test_ndi.py's colour chart, to the level) for 0.3 CPU ms less a 720p frame
# (bench/bench_rig.py). The key is the runtime's own (libndi 6 reads ndi.codec.shq.mode: 4:2:0, 4:2:2, ...).
SHQ_MODE = "4:2:0"
MAX_CONFIG_BYTES = 1 << 20  # a settings file, not a data file: anything larger is not read

_lock = threading.Lock()
_done: str | None = None


def user_config_dir() -> Path:
    """Where the NDI runtime reads its settings: NDI_CONFIG_DIR, else the platform's own folder."""
    env = os.environ.get("NDI_CONFIG_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "NDI"
    return Path.home() / ".ndi"


def merged_config(user_dir: Path) -> tuple[dict[str, Any] | None, str]:
    """(the user's settings with ndi.codec.shq.mode = 4:2:0, one line saying what) or (None, why not): their
    own mode wins, and a file that cannot be read is left to the runtime as it is (never half-applied)."""
    path = user_dir / CONFIG_NAME
    cfg: Any = {}
    if path.exists():
        try:
            size = path.stat().st_size
            if size > MAX_CONFIG_BYTES:
                return None, f"{path}: {size} bytes; expected an NDI settings file under {MAX_CONFIG_BYTES}"
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
            return None, f"{path}: unreadable ({e.__class__.__name__}: {e}); expected NDI's JSON settings"
    ndi = cfg.get("ndi", {}) if isinstance(cfg, dict) else None
    codec = ndi.get("codec", {}) if isinstance(ndi, dict) else None
    shq = codec.get("shq", {}) if isinstance(codec, dict) else None
    if not isinstance(shq, dict):
        return None, f"{path}: no ndi.codec.shq object in {type(cfg).__name__} settings; expected NDI's JSON"
    if "mode" in shq:
        return None, f"{path} sets ndi.codec.shq.mode = {shq['mode']!r}: kept"
    out = json.loads(json.dumps(cfg))  # a deep copy: the user's dict is never changed
    out.setdefault("ndi", {}).setdefault("codec", {}).setdefault("shq", {})["mode"] = SHQ_MODE
    where = f"the rest from {path}" if path.exists() else f"no settings at {path}"
    return out, f"SpeedHQ {SHQ_MODE} (the I420 sent, compressed as it is); {where}"


def prepare() -> str:
    """Call before this process makes its first NDI finder, sender or receiver (the runtime reads its settings
    then, once): points NDI_CONFIG_DIR at a private copy of the user's settings with SpeedHQ 4:2:0. Idempotent;
    returns the one line it logged."""
    global _done
    with _lock:
        if _done is not None:
            return _done
        cfg, why = merged_config(user_config_dir())
        if cfg is not None:
            d = Path(tempfile.mkdtemp(prefix="livevae-ndi-"))
            atexit.register(shutil.rmtree, d, True)
            tmp = d / (CONFIG_NAME + ".part")
            tmp.write_text(json.dumps(cfg), encoding="utf-8")
            os.replace(tmp, d / CONFIG_NAME)  # whole or absent when the runtime reads it
            os.environ["NDI_CONFIG_DIR"] = str(d)
            _done = f"NDI settings: {why}"
        else:
            _done = f"NDI settings: {why}; the runtime's own compression applies"
        log.info(_done)
        return _done
