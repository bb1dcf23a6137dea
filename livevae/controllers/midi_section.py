"""The [midi] show-file section and the learn file (SHOW.midi-learn.toml): validation, parsing, atomic saving."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from livevae.control.curves import CURVES
from livevae.control.state import canonical
from livevae.controllers.midi_mapping import (
    CC_MODES,
    DEFAULT_STEP,
    MAP_ACTIONS,
    NOTE_MODES,
    Kind,
    MidiError,
    MidiMapping,
)

log = logging.getLogger("livevae.controllers.midi")


# --- show-file section -------------------------------------------------------------------------------------------
class MapSpec(BaseModel):
    """One [[midi.map]] entry as written in a show file or learn file."""

    model_config = ConfigDict(extra="forbid")

    cc: int | None = Field(None, ge=0, le=127)
    cc14: int | None = Field(None, ge=0, le=31)
    note: int | None = Field(None, ge=0, le=127)
    pitchbend: bool = False
    channel: int | None = Field(None, ge=1, le=16)
    port: str = ""
    target: str = ""
    action: str = ""
    arg: str | int | float | None = None
    range: tuple[float, float] | None = None
    curve: str = "linear"
    mode: str = ""
    step: float = Field(DEFAULT_STEP, gt=0, le=1)
    smoothing: float = Field(0.0, ge=0, le=60)
    feedback: bool = True

    @model_validator(mode="after")
    def _check(self) -> MapSpec:
        kinds = [k for k in ("cc", "cc14", "note") if getattr(self, k) is not None] + (
            ["pitchbend"] if self.pitchbend else []
        )
        if len(kinds) != 1:
            raise ValueError(f"found {', '.join(kinds) or 'none'}; expected exactly one of cc, cc14, note, pitchbend")
        if bool(self.target) == bool(self.action):
            raise ValueError("expected exactly one of target (a control) or action (scene.recall, record, ...)")
        if self.action and self.action not in MAP_ACTIONS:
            raise ValueError(f"action {self.action!r}; expected one of {', '.join(MAP_ACTIONS)}")
        if self.curve not in CURVES:
            raise ValueError(f"curve {self.curve!r}; expected one of {', '.join(CURVES)}")
        kind = kinds[0]
        allowed = {"cc": CC_MODES, "note": NOTE_MODES}.get(kind, ("absolute",))
        if self.mode and self.mode not in allowed:
            raise ValueError(f"mode {self.mode!r} for {kind}; expected one of {', '.join(allowed)}")
        return self

    def to_mapping(self) -> MidiMapping:
        kind: Kind
        if self.cc is not None:
            kind, number = "cc", self.cc
        elif self.cc14 is not None:
            kind, number = "cc14", self.cc14
        elif self.note is not None:
            kind, number = "note", self.note
        else:
            kind, number = "pitchbend", 0
        mode = self.mode or ("gate" if kind == "note" else "absolute")
        return MidiMapping(
            kind=kind,
            number=number,
            channel=None if self.channel is None else self.channel - 1,
            port=self.port,
            target=canonical(self.target) if self.target else "",  # "/livevae/ema" -> "smooth", as feedback names it
            action=self.action,
            arg=self.arg,
            range=self.range,
            curve=self.curve,
            mode=mode,
            step=self.step,
            smoothing=self.smoothing,
            feedback=self.feedback,
        )


class MidiSection(BaseModel):
    """The [midi] section of a show file."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(default_factory=lambda: ["*"])
    output: str = ""
    rescan: float = Field(1.0, ge=0.1, le=60)
    learn_file: str = ""
    learn_timeout: float = Field(30.0, gt=0)
    map: list[MapSpec] = Field(default_factory=list)

    @field_validator("inputs", mode="before")
    @classmethod
    def _one_input(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v


def validation_message(section: str, e: ValidationError) -> str:
    """A pydantic error as one line per problem: "[midi] map[2].cc: Input should be ... (found 200)"."""
    lines = []
    for err in e.errors():
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        found = err.get("input")
        shown = "" if isinstance(found, dict) else f" (found {found!r})"
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{section} {loc or '(section)'}: {msg}{shown}")
    return "; ".join(lines)


def parse_mappings(entries: Iterable[object], where: str) -> list[MidiMapping]:
    """[[map]] entries (dicts) -> mappings; raises MidiError naming `where` and the entry."""
    out = []
    for i, entry in enumerate(entries):
        try:
            out.append(MapSpec.model_validate(entry).to_mapping())
        except ValidationError as e:
            raise MidiError(validation_message(f"{where} map[{i}]", e)) from e
    return out


def learn_path(show_path: Path, learn_file: str = "") -> Path:
    """Where learned mappings live: SHOW.midi-learn.toml next to the show (never the show itself)."""
    p = Path(learn_file) if learn_file else show_path.with_name(show_path.stem + ".midi-learn.toml")
    if learn_file and not p.is_absolute():
        p = show_path.parent / p
    if p.resolve() == show_path.resolve():
        raise MidiError(f"[midi] learn_file: {p} is the show itself; expected a separate file")
    return p


def load_learned(path: Path) -> list[MidiMapping]:
    """Mappings from a learn file; [] when it does not exist. Raises MidiError naming the file on bad content."""
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise MidiError(f"MIDI learn file {path}: {e}; expected TOML with [[map]] entries") from e
    except RecursionError:  # tomllib recurses per nested array
        raise MidiError(
            f"MIDI learn file {path}: nested too deep to parse; expected TOML with [[map]] entries"
        ) from None
    entries = data.get("map", [])
    if not isinstance(entries, list):
        raise MidiError(f"MIDI learn file {path}: 'map' is {type(entries).__name__}; expected [[map]] entries")
    return parse_mappings(entries, str(path))


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def mapping_toml(m: MidiMapping) -> str:
    """One [[map]] table as a show/learn file writes it (channels 1..16)."""
    lines = ["[[map]]"]
    lines.append("pitchbend = true" if m.kind == "pitchbend" else f"{m.kind} = {m.number}")
    if m.channel is not None:
        lines.append(f"channel = {m.channel + 1}")
    if m.port:
        lines.append(f"port = {_toml_value(m.port)}")
    if m.target:
        lines.append(f"target = {_toml_value(m.target)}")
    else:
        lines.append(f"action = {_toml_value(m.action)}")
        if m.arg is not None:
            lines.append(f"arg = {_toml_value(m.arg)}")
    if m.range is not None:
        lines.append(f"range = {_toml_value(m.range)}")
    if m.curve != "linear":
        lines.append(f"curve = {_toml_value(m.curve)}")
    if m.mode not in ("absolute", "gate") or (m.kind == "note" and m.mode != "gate"):
        lines.append(f"mode = {_toml_value(m.mode)}")
    if m.step != DEFAULT_STEP:
        lines.append(f"step = {m.step!r}")
    if m.smoothing:
        lines.append(f"smoothing = {m.smoothing!r}")
    if not m.feedback:
        lines.append("feedback = false")
    return "\n".join(lines)


def save_learned(path: Path, mappings: Sequence[MidiMapping], show_path: Path | None = None) -> None:
    """Write the learn file atomically (a crash mid-write leaves the old one). Refuses to write the show itself."""
    if show_path is not None and path.resolve() == show_path.resolve():
        raise MidiError(f"MIDI learn file {path}: is the show itself; refusing to overwrite it")
    head = (
        "# MIDI learn: written by livevae; merged over the [midi] mappings of "
        f"{show_path.name if show_path else 'the show'} at load.\n"
        '# Edit freely (mode = "twos" for a relative encoder, range, curve); delete an entry to forget it.\n'
    )
    text = head + "\n\n".join(mapping_toml(m) for m in mappings) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
