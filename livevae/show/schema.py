"""The show-file schema (pydantic): every section and key, validated in one pass, errors naming file and key."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from livevae.control.curves import CURVES
from livevae.control.state import ACTIONS, LFO_SHAPES
from livevae.controllers.osc_mapping import DEFAULT_HOST, DEFAULT_PORT, Mapping
from livevae.errors import LivevaeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


log = logging.getLogger("livevae.show.showfile")  # one logger for show files: users see "livevae show: ..."

MAX_SHOW_BYTES = 4 << 20  # a show file is a few KB; a hot reload must not read a runaway log into memory
MAX_DEPTH = 32  # nesting of tables and arrays in a show file
# Show-file sections owned by other modules: name -> module whose from_show(section, state, show_path) returns a
# Controller. Imported when the section is present, so only shows that use MIDI or audio load mido or sounddevice.
EXTENSIONS: dict[str, str] = {
    "midi": "livevae.controllers.midi",
    "audio": "livevae.controllers.audio",
    "installation": "livevae.installation.controller",
    "tempo": "livevae.controllers.tempo",
    "remote": "livevae.controllers.remote",
    "mirror": "livevae.mirror.controller",
}


class ShowError(LivevaeError):
    """A show file is missing, malformed or inconsistent with its model; the message names the file and key."""


# --- the schema ------------------------------------------------------------------------------------------------
class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Size = tuple[int, int] | str  # [1280, 720] or "1280x720"


class InputSection(_Section):
    sources: list[str | int] = Field(default_factory=lambda: list[str | int](["testcard"]))
    playlist: str | None = None  # a .txt/.m3u file, one video/image/folder per line; added after sources
    source: int = Field(default=0, ge=0)  # which one plays first
    size: Size | None = None  # camera: requested capture size
    source_fps: float | None = Field(default=None, gt=0)
    fps: float | None = Field(default=None, gt=0, le=1000)  # show rate; default the source's own
    hold: float = Field(default=0.0, ge=0)
    loop: bool = True
    fallback: Literal["hold", "black", "testcard"] = "hold"
    crop: str = "centre"


class WindowSection(_Section):
    display: int = Field(default=0, ge=0)
    size: Size = "1280x720"
    fullscreen: bool = False
    borderless: bool = False
    vsync: bool = True
    filter: Literal["smooth", "pixelated"] = "smooth"
    hud: bool = True
    cursor: bool = False
    title: str = "livevae"
    monitor: bool = False  # a second window with the HUD for the performer; the output window stays clean
    monitor_size: Size = "640x360"


class SendSection(_Section):
    """One extra output: [[output.send]] kind = "ndi", name = "livevae", size = "1920x1080"."""

    kind: Literal["ndi", "syphon", "spout", "virtualcam"]
    name: str = "livevae"
    size: Size = "1280x720"
    fps: float | None = Field(default=None, gt=0, le=240)  # default: the show's rate


class OutputSection(_Section):
    headless: bool = False
    realtime: bool = False
    out: str | None = None
    frames: int | None = Field(default=None, gt=0)
    seconds: float | None = Field(default=None, gt=0)
    record: str | None = None
    record_dir: str = "recordings"
    record_size: Size | None = None
    screenshot_dir: str = "screenshots"
    virtualcam: bool = False
    virtualcam_size: Size = "1280x720"
    stats_json: str | None = None
    send: list[SendSection] = Field(default_factory=list)  # NDI / Syphon / Spout / virtual camera, several at once
    scale_filter: Literal["nearest", "bilinear", "bicubic", "sharp"] = "bilinear"  # model pixels -> output size


class OscSection(_Section):
    enabled: bool = True
    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    feedback: str | None = None  # "host:port" of the controller (TouchOSC, Max) to keep in sync
    reply_to_sender: bool = False  # also feed back every controller that sends, at the port it sent from
    status_interval: float = Field(default=1.0, ge=0)  # seconds between /livevae/status; 0 = never
    echo: bool = True  # also echo /livevae/<control> on change, not only the mapped addresses

    @field_validator("feedback")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is None:
            return v
        host, _, port = v.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f'{v!r} is not host:port; expected e.g. "192.168.1.20:9001"')
        return v


class MappingSection(_Section):
    address: str
    target: str | None = None
    action: Literal[ACTIONS] | None = None  # type: ignore[valid-type]
    arg: str | int | float | bool | None = None
    range: tuple[float, float] | None = None
    in_range: tuple[float, float] = (0.0, 1.0)
    curve: Literal[CURVES] = "linear"  # type: ignore[valid-type]
    smoothing: float = Field(default=0.0, ge=0, le=60)
    index: int = Field(default=0, ge=0)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if not v.startswith("/") or any(c in v for c in " #*?[]{},"):
            raise ValueError(f'{v!r}: expected an OSC address such as "/1/fader3" (starts with /, no wildcards)')
        return v

    @model_validator(mode="after")
    def _one_of(self) -> MappingSection:
        if (self.target is None) == (self.action is None):
            raise ValueError('give exactly one of target (a control, e.g. "pc/0") or action (e.g. "scene.recall")')
        return self


class FramesSection(_Section):
    video: str  # a film (path relative to the show, or clip:NAME)
    start: float | None = Field(default=None, ge=0)  # seconds
    end: float | None = Field(default=None, gt=0)
    max_frames: int = Field(default=64, gt=0, le=4096)


class SceneSection(_Section):
    controls: dict[str, float] = Field(default_factory=dict)
    anchor: list[float] | None = None  # a latent, zdim values
    frames: FramesSection | None = None  # or the mean latent of these film frames
    fade: float = Field(default=0.0, ge=0, le=600)

    @model_validator(mode="after")
    def _one_anchor(self) -> SceneSection:
        if self.anchor is not None and self.frames is not None:
            raise ValueError("give anchor or frames, not both")
        return self


class LfoSection(_Section):
    target: str
    shape: Literal[LFO_SHAPES] = "sine"  # type: ignore[valid-type]
    rate: float = Field(default=0.25, ge=0, le=20)
    depth: float = Field(default=1.0, ge=0, le=8)
    phase: float = Field(default=0.0, ge=0, le=1)
    sync: bool = False


class Show(_Section):
    """A whole show file, as written (paths unresolved)."""

    name: str = ""
    model: str
    backend: str = "auto"
    threads: int | None = Field(default=None, ge=1, le=256)  # CPU inference threads, every backend; None = 2
    pipeline: bool = True  # the next frame's encode beside this one's decode (LiveConfig.pipeline)
    seed: int = 0  # noise and random-walk LFOs repeat for a seed
    hot_reload: bool = True
    input: InputSection = Field(default_factory=lambda: InputSection())
    window: WindowSection = Field(default_factory=lambda: WindowSection())
    output: OutputSection = Field(default_factory=lambda: OutputSection())
    osc: OscSection = Field(default_factory=lambda: OscSection())
    controls: dict[str, float] = Field(default_factory=dict)  # starting values, e.g. smooth = 0.3, "pc/0" = 1
    mapping: list[MappingSection] = Field(default_factory=list)
    scenes: dict[str, SceneSection] = Field(default_factory=dict)
    lfo: list[LfoSection] = Field(default_factory=list)
    midi: dict[str, Any] | None = None  # validated by livevae.controllers.midi.from_show
    audio: dict[str, Any] | None = None  # validated by livevae.controllers.audio.from_show
    installation: dict[str, Any] | None = None  # validated by livevae.installation.controller.from_show
    tempo: dict[str, Any] | None = None  # validated by livevae.controllers.tempo.from_show
    remote: dict[str, Any] | None = None  # validated by livevae.controllers.remote.from_show
    mirror: dict[str, Any] | None = None  # validated by livevae.mirror.controller.from_show

    # filled by load_show, not by the file
    path: Path = Field(default=Path("show.toml"), exclude=True)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def osc_mappings(self) -> list[Mapping]:
        return [
            Mapping(
                address=m.address,
                target=m.target or "",
                action=m.action or "",
                arg=m.arg,
                range=m.range,
                in_range=m.in_range,
                curve=m.curve,
                smoothing=m.smoothing,
                index=m.index,
            )
            for m in self.mapping
        ]


_UNION_MEMBERS = {"str", "int", "float", "bool", "none", "dict", "list", "tuple"}


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_MEMBERS or "[" in part or part.startswith("function-"):
            continue  # pydantic's names for union members and validators, not keys of the file
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def format_validation(path: Path, e: ValidationError) -> str:
    """One line per bad key: "FILE: key: what is wrong (got VALUE)"; a union's members merge into one line."""
    by_key: dict[str, list[str]] = {}
    got_by_key: dict[str, str] = {}
    for err in e.errors():
        key = _loc(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; check the spelling (see shows/demo.toml for every key)"
        elif err["type"] == "missing":
            last = err["loc"][-1] if err["loc"] else None
            if isinstance(last, int):  # a short tuple: name the list, not the missing slot
                key = _loc(err["loc"][:-1])
                msg = f"too few values (nothing at position {last}); expected two values"
            else:
                msg = "missing; this key is required"
        got = err.get("input")
        if err["type"] not in ("missing", "extra_forbidden") and key not in got_by_key:
            got_by_key[key] = f" (got {got!r:.60})"
        msgs = by_key.setdefault(key, [])
        if msg not in msgs:
            msgs.append(msg)
    lines = []
    for key, msgs in by_key.items():
        if len(msgs) > 1 and all(m.startswith("Input should be ") for m in msgs):
            text = "expected " + " or ".join(m.removeprefix("Input should be ") for m in msgs)
        else:
            text = "; ".join(msgs)
        lines.append(f"{path}: {key}: {text}{got_by_key.get(key, '')}")
    return "\n".join(lines)


def check_values(data: object, where: str) -> None:
    """Every value of a parsed file is finite and nested at most MAX_DEPTH deep (TOML allows nan and inf; a NaN
    control or LFO would be taken live and poison every frame). Raises ShowError naming the key."""
    stack: list[tuple[object, str, int]] = [(data, "", 0)]
    while stack:
        v, key, depth = stack.pop()
        if depth > MAX_DEPTH:
            shown = key if len(key) <= 60 else key[:60] + "..."
            raise ShowError(f"{where}: {shown or '(top)'}: nested more than {MAX_DEPTH} deep; expected a flat show")
        if isinstance(v, float) and not math.isfinite(v):
            raise ShowError(f"{where}: {key}: {v}; expected a finite number")
        if isinstance(v, dict):
            stack.extend((x, f"{key}.{k}" if key else str(k), depth + 1) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, f"{key}[{i}]", depth + 1) for i, x in enumerate(v))


def load_show(path: str | Path) -> Show:
    """Parse and validate a show file's structure (no model needed). Raises ShowError naming the file and key."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SHOW_BYTES + 1)
        if len(raw) > MAX_SHOW_BYTES:
            raise ShowError(f"{path}: more than {MAX_SHOW_BYTES >> 20} MB; expected a show file (a few KB of TOML)")
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ShowError(f"{path}: show file not found; expected a .toml show (see shows/demo.toml)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ShowError(f"{path}: cannot read ({e})") from e
    except tomllib.TOMLDecodeError as e:
        raise ShowError(f"{path}: TOML syntax error: {e}") from e
    except RecursionError:  # tomllib recurses per nested array or inline table
        raise ShowError(f"{path}: nested too deep to parse; expected at most {MAX_DEPTH} levels") from None
    check_values(data, str(path))
    if "path" in data:
        raise ShowError(f"{path}: path: unknown key; check the spelling")
    try:
        show = Show.model_validate(data)
    except ValidationError as e:
        raise ShowError(format_validation(path, e)) from None
    return show.model_copy(update={"path": path.resolve()})
