"""MIDI in and out: show mappings and MIDI learn into the control state, hot-plugged ports, LED/motor-fader feedback."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import mido
import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from livevae.control import ACTIONS, PERFORMER_ORIGINS, ControlError, ControlState, canonical
from livevae.curves import CURVES, curve, scale, unscale

if TYPE_CHECKING:
    from livevae.live import FrameInfo, LiveLoop

log = logging.getLogger("livevae.midi")

CC_MODES = ("absolute", "twos", "offset", "signmag")  # absolute faders/knobs, and the three relative-encoder codings
NOTE_MODES = ("gate", "toggle", "trigger")
LEARN_ACTIONS = ("midi.learn", "midi.unlearn")
MAP_ACTIONS = (*ACTIONS, *LEARN_ACTIONS)
DEFAULT_STEP = 1.0 / 128  # relative encoders: fraction of the range per tick, so 128 ticks sweep it
LEARN_14BIT_WINDOW = 0.3  # s: an LSB (cc n+32) this soon after the learned MSB (cc n) makes it a 14-bit mapping
LEARN_ORIGINS = tuple(o for o in PERFORMER_ORIGINS if o != "midi")  # "learn the control I last touched"
CONNECT_TIMEOUT = 1.0  # s: an unreachable network MIDI bridge must not stall the MIDI thread for minutes
SOCKET_POLL = 0.002  # s between polls of socket ports (rtmidi ports deliver by callback)


class MidiError(Exception):
    """A [midi] show section, learn file or port spec is malformed."""


def relative_delta(value: int, mode: str) -> int:
    """Ticks encoded in one relative-encoder CC value (0..127).

    twos:    two's complement, 1..63 up, 127..65 = -1..-63 (Ableton "Relative (2's Comp.)", Behringer "Relative 1")
    offset:  binary offset around 64: 65 = +1, 63 = -1 (Ableton "Relative (Bin Offset)", Arturia "Relative 1")
    signmag: sign and magnitude, bit 6 = down: 1 = +1, 65 = -1 (Ableton "Relative (Signed Bit)", Mackie-style)
    """
    value &= 0x7F
    if mode == "twos":
        return value - 128 if value >= 64 else value
    if mode == "offset":
        return value - 64
    if mode == "signmag":
        return -(value & 0x3F) if value & 0x40 else value
    raise MidiError(f"relative mode {mode!r}: unknown; expected one of {', '.join(CC_MODES[1:])}")


# --- mappings (pure) ---------------------------------------------------------------------------------------------
Kind = Literal["cc", "cc14", "note", "pitchbend"]


@dataclass(frozen=True)
class MidiMapping:
    """One control on a MIDI controller driving one control target or one action.

    kind/number: "cc" 0..127, "cc14" 0..31 (MSB cc n + LSB cc n+32), "note" 0..127, "pitchbend" (number unused).
    channel: 0..15 as mido counts (show files write 1..16), None = any. port: a port-name prefix, "" = any.
    A control mapping normalises the input to 0..1, applies `curve` and scales onto `range` (the target's own
    range when None). `mode`: for CCs absolute or a relative-encoder coding; for notes gate (velocity while held,
    the low end on release), toggle (each press flips between the range ends) or trigger (velocity, release
    ignored). An action mapping fires on a press (note on, or a CC crossing 64 upwards).
    """

    kind: Kind
    number: int = 0
    channel: int | None = None
    port: str = ""
    target: str = ""
    action: str = ""
    arg: object = None
    range: tuple[float, float] | None = None
    curve: str = "linear"
    mode: str = "absolute"
    step: float = DEFAULT_STEP
    smoothing: float = 0.0
    feedback: bool = True

    @property
    def name(self) -> str:
        """A short label, also the origin of the changes it makes: "cc7/ch1", "cc14:1/ch3", "note36", "pitchbend"."""
        n = "pitchbend" if self.kind == "pitchbend" else f"{self.kind}{self.number}"
        return (
            n + (f"/ch{self.channel + 1}" if self.channel is not None else "") + (f"@{self.port}" if self.port else "")
        )

    def controls(self) -> set[tuple[str, int, int | None]]:
        """The (message kind, number, channel) it listens to; a 14-bit mapping listens to two CCs."""
        if self.kind == "cc14":
            return {("cc", self.number, self.channel), ("cc", self.number + 32, self.channel)}
        return {(self.kind, self.number, self.channel)}

    def overlaps(self, other: MidiMapping) -> bool:
        """True when both listen to the same control (same port filter): the later one replaces the earlier."""
        return self.port == other.port and bool(self.controls() & other.controls())


@dataclass(frozen=True)
class SetControl:
    """Effect: set a control target."""

    target: str
    value: float
    origin: str


@dataclass(frozen=True)
class PostAction:
    """Effect: post a one-shot action (scene recall, record, ...), or arm/cancel MIDI learn."""

    action: str
    arg: object
    origin: str


@dataclass(frozen=True)
class Learned:
    """Effect: MIDI learn bound a new mapping (the caller saves the learn file)."""

    mapping: MidiMapping


Effect = SetControl | PostAction | Learned


def normalised(msg: mido.Message) -> float:
    """The 0..1 value a message carries: CC value / 127, velocity / 127, pitch bend -8192..8191 -> 0..1."""
    if msg.type == "control_change":
        return msg.value / 127.0
    if msg.type in ("note_on", "note_off"):
        return (msg.velocity if msg.type == "note_on" else 0) / 127.0
    if msg.type == "pitchwheel":
        return (msg.pitch + 8192) / 16383.0
    raise MidiError(f"MIDI message {msg.type!r} carries no value")


def message_for(m: MidiMapping, u: float) -> list[mido.Message]:
    """Feedback: the messages that put a controller's LED/motor fader at normalised position u (0..1)."""
    u = min(max(u, 0.0), 1.0)
    ch = m.channel or 0
    if m.kind == "cc":
        return [mido.Message("control_change", channel=ch, control=m.number, value=round(u * 127))]
    if m.kind == "cc14":
        v = round(u * 16383)
        return [
            mido.Message("control_change", channel=ch, control=m.number, value=v >> 7),
            mido.Message("control_change", channel=ch, control=m.number + 32, value=v & 0x7F),
        ]
    if m.kind == "note":  # pads light with velocity 127, go dark with note off
        if u >= 0.5:
            return [mido.Message("note_on", channel=ch, note=m.number, velocity=127)]
        return [mido.Message("note_off", channel=ch, note=m.number, velocity=0)]
    return [mido.Message("pitchwheel", channel=ch, pitch=min(8191, round(u * 16383) - 8192))]


class MidiMapper:
    """Turns mido messages into effects on the control state; pure apart from its own small memory (14-bit
    halves, button edges, the armed learn target). Thread-compatible: callers serialise handle() with a lock.

    ranges(target) -> (lo, hi) of a target (raises ControlError for an unknown one); current(target) -> its value
    now (relative encoders and toggles start from it).
    """

    def __init__(
        self,
        mappings: Sequence[MidiMapping],
        ranges: Callable[[str], tuple[float, float]],
        current: Callable[[str], float],
        learned: Sequence[MidiMapping] = (),
    ) -> None:
        self.ranges, self.current = ranges, current
        self.show_mappings = tuple(mappings)
        self.learned: list[MidiMapping] = list(learned)
        self.mappings: tuple[MidiMapping, ...] = ()
        self._index: dict[tuple[str, int], list[MidiMapping]] = {}
        self._msb: dict[tuple[str, int, int], int] = {}  # (port, channel, msb cc) -> last MSB
        self._lsb: dict[tuple[str, int, int], int] = {}
        self._pressed: dict[tuple[MidiMapping, str], bool] = {}
        self.armed: str | None = None  # target awaiting MIDI learn
        self.armed_at = 0.0
        self._just_learned: tuple[MidiMapping, float] | None = None
        self._rebuild()

    # -- the mapping table --
    def _rebuild(self) -> None:
        """Learned mappings override show mappings on the same control; index by (kind, number) for O(1) lookup."""
        kept = [m for m in self.show_mappings if not any(m.overlaps(lm) for lm in self.learned)]
        self.mappings = (*kept, *self.learned)
        idx: dict[tuple[str, int], list[MidiMapping]] = {}
        for m in self.mappings:
            for kind, number, _ in m.controls():
                idx.setdefault((kind, number), []).append(m)
        self._index = idx

    def arm(self, target: str, now: float) -> None:
        """Arm learn: the next CC, note or pitch bend moved binds to `target`. Raises ControlError if unknown."""
        self.ranges(target)
        self.armed, self.armed_at = canonical(target), now

    def disarm(self) -> None:
        self.armed = None

    def unlearn(self, target: str) -> int:
        """Forget learned mappings of `target` (show mappings come back); returns how many were removed."""
        before = len(self.learned)
        self.learned = [m for m in self.learned if m.target != target]
        self._rebuild()
        return before - len(self.learned)

    def _learn(self, m: MidiMapping, now: float) -> Learned:
        self.learned = [lm for lm in self.learned if lm.target != m.target and not lm.overlaps(m)]
        self.learned.append(m)
        self._rebuild()
        self.armed = None
        self._just_learned = (m, now)
        return Learned(m)

    # -- messages --
    def handle(self, msg: mido.Message, port: str = "", now: float = 0.0) -> list[Effect]:
        """Effects of one incoming message (in order). Never raises for a message it does not map."""
        out: list[Effect] = []
        t = msg.type
        if t == "control_change":
            kind, number = "cc", msg.control
        elif t in ("note_on", "note_off"):
            kind, number = "note", msg.note
        elif t == "pitchwheel":
            kind, number = "pitchbend", 0
        else:
            return out
        ch = msg.channel
        jl = self._just_learned
        if jl is not None and kind == "cc":
            lm, when = jl
            if (
                lm.kind == "cc"
                and lm.number < 32
                and number == lm.number + 32
                and lm.channel == ch
                and now - when <= LEARN_14BIT_WINDOW
            ):
                # the control sent an LSB right after its MSB: it is a 14-bit control, learn it as one
                self.learned = [x for x in self.learned if x is not lm]
                out.append(self._learn(replace(lm, kind="cc14"), now))
            elif number != lm.number:
                self._just_learned = None
        if kind == "cc" and number < 64:  # remember 14-bit halves for every possible pair
            if number < 32:
                self._msb[(port, ch, number)] = msg.value
                self._lsb[(port, ch, number)] = 0  # MIDI 1.0: a new MSB resets the LSB
            else:
                self._lsb[(port, ch, number - 32)] = msg.value
        hits = self._hits(kind, number, ch, port)
        if (
            self.armed is not None
            and (kind != "note" or (t == "note_on" and msg.velocity > 0))
            and not any(m.action in LEARN_ACTIONS for m in hits)  # the learn pad itself is never learned
        ):
            target = self.armed
            new: MidiMapping
            if kind == "note":
                new = MidiMapping("note", number, ch, target=target, mode="toggle")
            else:
                new = MidiMapping(kind, number, ch, target=target)  # type: ignore[arg-type]
            out.append(self._learn(new, now))
            hits = self._hits(kind, number, ch, port)
        learned = [m for m in hits if any(m is lm for lm in self.learned)]
        for m in learned or hits:  # a learned binding overrides the show's for the messages it catches
            e = self._apply(m, msg, port)
            if e is not None:
                out.append(e)
        return out

    def _hits(self, kind: str, number: int, ch: int, port: str) -> list[MidiMapping]:
        return [
            m
            for m in self._index.get((kind, number), ())
            if (m.channel is None or m.channel == ch) and (not m.port or port.lower().startswith(m.port.lower()))
        ]

    def _apply(self, m: MidiMapping, msg: mido.Message, port: str) -> Effect | None:
        origin = f"midi:{m.name}"
        if m.kind == "cc14":
            msb = self._msb.get((port, msg.channel, m.number), 0)
            lsb = self._lsb.get((port, msg.channel, m.number), 0)
            u = ((msb << 7) | lsb) / 16383.0
        else:
            u = normalised(msg)
        if m.action:
            # a pad presses with note on; a button CC sends 127 down, 0 up
            pressed = (msg.type == "note_on" and msg.velocity > 0) if m.kind == "note" else u >= 0.5
            key = (m, port)
            was = self._pressed.get(key, False)
            self._pressed[key] = pressed
            if pressed and not was:
                return PostAction(m.action, m.arg, origin)
            return None
        try:
            rng = m.range if m.range is not None else self.ranges(m.target)
        except ControlError:
            return None
        if m.kind == "note":
            on = msg.type == "note_on" and msg.velocity > 0
            if m.mode == "toggle":
                if not on:
                    return None
                lo, hi = rng
                cur = self.current(m.target)
                return SetControl(m.target, lo if abs(cur - hi) < abs(cur - lo) else hi, origin)
            if m.mode == "trigger" and not on:
                return None
            return SetControl(m.target, scale(u if on else 0.0, m.curve, rng), origin)
        if m.kind == "cc" and m.mode != "absolute":
            ticks = relative_delta(msg.value, m.mode)
            u0 = unscale(self.current(m.target), m.curve, rng)
            return SetControl(m.target, scale(u0 + ticks * m.step, m.curve, rng), origin)
        return SetControl(m.target, scale(u, m.curve, rng), origin)


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


# --- ports -------------------------------------------------------------------------------------------------------
_SOCKET_RE = re.compile(r"^(tcp|listen):(.+):(\d+)$")


@dataclass(frozen=True)
class PortSpec:
    """What to open: "*" (every port), a name prefix (case-insensitive; ALSA numbers change between boots),
    "tcp:HOST:PORT" (connect to a mido socket-port server, e.g. a network MIDI bridge) or "listen:HOST:PORT"
    (serve one: other programs connect and send)."""

    text: str
    kind: Literal["all", "prefix", "tcp", "listen"]
    host: str = ""
    portno: int = 0

    @classmethod
    def parse(cls, text: str) -> PortSpec:
        t = text.strip()
        m = _SOCKET_RE.match(t)
        if m:
            port = int(m.group(3))
            if not 0 < port < 65536:
                raise MidiError(f"MIDI port {text!r}: port {port} out of range; expected 1..65535")
            return cls(t, m.group(1), m.group(2), port)  # type: ignore[arg-type]
        if t.startswith(("tcp:", "listen:")):
            raise MidiError(f"MIDI port {text!r}: expected tcp:HOST:PORT or listen:HOST:PORT")
        if t in ("", "*", "all"):
            return cls(t, "all")
        return cls(t, "prefix")

    def matches(self, name: str) -> bool:
        if self.kind == "all":
            return True
        return self.kind == "prefix" and name.lower().startswith(self.text.lower())


class _Warner:
    """Warnings said once per key until that key recovers: a port that keeps failing must not flood the log."""

    def __init__(self) -> None:
        self._said: set[str] = set()

    def warn(self, key: str, text: str, *args: object) -> None:
        if key not in self._said:
            self._said.add(key)
            log.warning(text, *args)

    def ok(self, key: str) -> None:
        self._said.discard(key)


@dataclass
class MidiStats:
    """Counters for tests and the status line."""

    messages: int = 0
    handled: int = 0
    opened: int = 0
    vanished: int = 0
    errors: int = 0
    learned: int = 0
    sent: int = 0


@dataclass
class _Open:
    name: str
    port: Any  # a mido input port (rtmidi, socket or socket server)
    spec: PortSpec
    polled: bool  # True: read by the MIDI thread; False: rtmidi delivers by callback
    server: bool = False  # a listening socket port (accepts senders)
    client: bool = False  # a sender connected to our listening port


class MidiController:
    """MIDI input (hot-plugged ports, mappings, learn) and feedback output into one ControlState.

    Its thread rescans port names every `rescan` seconds and opens new matching ports; rtmidi ports deliver on
    rtmidi's own thread by callback, socket ports are polled. Every device error becomes one warning and a retry
    on the next scan; nothing raises into the frame loop. modulate() is the identity.
    """

    def __init__(
        self,
        state: ControlState,
        mappings: Sequence[MidiMapping] = (),
        inputs: Sequence[str] = ("*",),
        output: str = "",
        rescan: float = 1.0,
        learn_file: Path | None = None,
        show_path: Path | None = None,
        learn_timeout: float = 30.0,
        learned: Sequence[MidiMapping] = (),
    ) -> None:
        self.state = state
        self.specs = [PortSpec.parse(s) for s in inputs] or [PortSpec.parse("*")]
        self.out_spec = PortSpec.parse(output) if output else None
        self.rescan, self.learn_file, self.show_path = rescan, learn_file, show_path
        self.learn_timeout = learn_timeout
        self.mapper = MidiMapper(mappings, state.check_target, state.get, learned)
        self.stats = MidiStats()
        self.warn = _Warner()
        self._lock = threading.Lock()  # serialises mapper.handle across rtmidi callbacks and the poll thread
        self._open: dict[str, _Open] = {}
        self._out: Any = None
        self._out_name = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_touched = ""  # the control most recently moved by a non-MIDI input, for learn without a target
        self._dirty: dict[str, str] = {}
        self._dirty_lock = threading.Lock()
        self._wake = threading.Event()
        self._apply_slews()

    # -- lifecycle --
    def start(self, loop: LiveLoop | None = None) -> None:
        if self._thread is not None:
            return
        self.state.add_listener(self._on_change)
        if loop is not None:
            self._attach_osc_from(loop)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="midi", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.state.remove_listener(self._on_change)
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None
        for o in list(self._open.values()):
            self._close(o)
        self._open.clear()
        if self._out is not None:
            self._safe_close(self._out)
            self._out = None

    def modulate(self, z: Any, t: float) -> Any:
        return z

    def on_frame(self, info: FrameInfo) -> None:
        pass

    def handle_action(self, action: str, arg: object) -> bool:
        """ "midi.learn" [target] arms learn (no target: the control last moved by OSC/keys/UI); "midi.unlearn"
        target forgets its learned mappings."""
        if action == "midi.learn":
            self.arm_learn(str(arg) if arg not in (None, "") else None)
            return True
        if action == "midi.unlearn" and arg:
            self.unlearn(str(arg))
            return True
        return False

    # -- learn --
    def arm_learn(self, target: str | None = None) -> bool:
        """Arm MIDI learn for `target` (None: the control last moved by a non-MIDI input). The next CC, note or
        pitch bend moved binds to it. Returns False (with a warning) when there is nothing to learn for."""
        t = target or self._last_touched
        if not t:
            log.warning("MIDI learn: no target given and no control moved yet; expected e.g. midi.learn pc/0")
            return False
        try:
            with self._lock:
                self.mapper.arm(t, time.monotonic())
        except ControlError as e:
            log.warning("MIDI learn: %s", e)
            return False
        log.info("MIDI learn: move a control to bind it to %s", t)
        return True

    def unlearn(self, target: str) -> int:
        with self._lock:
            n = self.mapper.unlearn(target)
        if n:
            self._save_learned()
            self._apply_slews()
        return n

    def _save_learned(self) -> None:
        if self.learn_file is None:
            return
        try:
            save_learned(self.learn_file, self.mapper.learned, self.show_path)
        except (OSError, MidiError) as e:
            self.warn.warn("learn-save", "MIDI learn: cannot save %s (%s); learned mappings last until quit",
                           self.learn_file, e)  # fmt: skip

    def _apply_slews(self) -> None:
        for m in self.mapper.mappings:
            if m.target and m.smoothing > 0:
                try:
                    self.state.set_slew(m.target, m.smoothing)
                except ControlError as e:
                    log.warning("MIDI mapping %s: %s", m.name, e)

    # -- messages --
    def feed(self, msg: mido.Message, port: str = "") -> list[Effect]:
        """Handle one message as if it came from `port`; applies its effects to the state. Never raises."""
        self.stats.messages += 1
        now = time.monotonic()
        with self._lock:
            if self.mapper.armed is not None and now - self.mapper.armed_at > self.learn_timeout:
                log.info("MIDI learn for %s timed out", self.mapper.armed)
                self.mapper.disarm()
            try:
                effects = self.mapper.handle(msg, port, now)
            except Exception as e:  # a mapping bug must not kill a port's thread
                self.stats.errors += 1
                self.warn.warn("handle", "MIDI: %s on %s from %s; ignored", e, msg, port)
                return []
        for eff in effects:
            try:
                if isinstance(eff, SetControl):
                    self.state.set(eff.target, eff.value, origin=eff.origin)
                    self.stats.handled += 1
                elif isinstance(eff, PostAction):
                    self.stats.handled += 1
                    if eff.action in LEARN_ACTIONS:
                        self.handle_action(eff.action, eff.arg)
                    else:
                        self.state.post(eff.action, eff.arg, origin=eff.origin)
                else:
                    self.stats.learned += 1
                    log.info("MIDI learn: %s -> %s", eff.mapping.name, eff.mapping.target)
                    self._save_learned()
                    self._mark_all()
            except ControlError as err:
                self.stats.errors += 1
                self.warn.warn(f"effect {eff}", "MIDI: %s", err)
        return effects

    def _on_change(self, target: str, value: float, origin: str) -> None:
        if origin.split(":")[0] in LEARN_ORIGINS:  # a performer's hand, not MIDI itself, audio, LFOs or scenes
            self._last_touched = target
        if self._out is not None:
            with self._dirty_lock:
                self._dirty[target] = origin
            self._wake.set()

    def _mark_all(self) -> None:
        with self._dirty_lock:
            for m in self.mapper.mappings:
                if m.target:
                    self._dirty[m.target] = ""
        self._wake.set()

    # -- the thread --
    def _run(self) -> None:
        next_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_scan:
                self.scan()
                next_scan = time.monotonic() + self.rescan
            self.flush_feedback()
            polled = [o for o in self._open.values() if o.polled]
            for o in polled:
                self._poll(o)
            if polled:
                self._wake.wait(SOCKET_POLL)
            else:
                self._wake.wait(max(0.0, next_scan - time.monotonic()))
            self._wake.clear()

    def _poll(self, o: _Open) -> None:
        if o.server:
            self._accept(o)
            return
        try:
            for msg in o.port.iter_pending():
                self.feed(msg, o.name)
            gone = bool(getattr(o.port, "closed", False))
        except Exception as e:  # a socket reset, an rtmidi error
            gone = True
            self.warn.warn(f"read {o.name}", "MIDI port %s: read failed (%s)", o.name, e)
        if gone:
            self._vanished(o)

    def _accept(self, o: _Open) -> None:
        """A listening socket port: take new senders (each polled on its own); the server itself is never read,
        since mido's PortServer.receive blocks while it has no clients."""
        try:
            client = o.port.accept(block=False)
        except OSError as e:
            self.warn.warn(f"accept {o.name}", "MIDI port %s: accept failed (%s)", o.name, e)
            return
        if client is not None:
            o.port.ports.append(client)  # so feedback sent to the server reaches every connected sender
            name = f"{o.name} <- {client.name}"
            self._open[name] = _Open(name, client, o.spec, polled=True, client=True)
            log.info("MIDI in: %s", name)

    def _vanished(self, o: _Open) -> None:
        if o.client:  # a sender hanging up on our server is ordinary
            log.info("MIDI in: %s disconnected", o.name)
            self._close(o)
            self._open.pop(o.name, None)
            return
        self.stats.vanished += 1
        log.warning("MIDI port %s vanished; will reopen it when it comes back", o.name)
        self._close(o)
        self._open.pop(o.name, None)

    def scan(self) -> None:
        """Open matching input ports that are not open, drop ones that vanished, (re)open the feedback output."""
        names = self._names(mido.get_input_names, "inputs") if any(
            s.kind in ("all", "prefix") for s in self.specs
        ) else []  # fmt: skip
        if names is not None:
            for o in [o for o in self._open.values() if o.spec.kind in ("all", "prefix") and o.name not in names]:
                self._vanished(o)
            for name in names:
                if (
                    name not in self._open
                    and not name.startswith("RtMidi")
                    and any(s.matches(name) for s in self.specs)
                ):
                    self._open_rtmidi(name, next(s for s in self.specs if s.matches(name)))
        for s in self.specs:
            if s.kind in ("tcp", "listen") and s.text not in self._open:
                self._open_socket(s)
        if self.out_spec is not None:
            self._scan_output()

    def _names(self, fn: Callable[[], list[str]], what: str) -> list[str] | None:
        try:
            names = list(fn())
        except Exception as e:  # no ALSA sequencer / no CoreMIDI: rtmidi raises on creating its client
            self.warn.warn(f"names {what}", "MIDI: cannot list %s (%s); will keep trying every %gs", what, e,
                           self.rescan)  # fmt: skip
            return None
        self.warn.ok(f"names {what}")
        return names

    def _open_rtmidi(self, name: str, spec: PortSpec) -> None:
        def cb(msg: mido.Message, _name: str = name) -> None:
            self.feed(msg, _name)

        try:
            port = mido.open_input(name, callback=cb)
        except Exception as e:
            self.warn.warn(f"open {name}", "MIDI port %s: cannot open (%s); will retry", name, e)
            return
        self.warn.ok(f"open {name}")
        self._open[name] = _Open(name, port, spec, polled=False)
        self.stats.opened += 1
        log.info("MIDI in: %s", name)

    def _open_socket(self, s: PortSpec) -> None:
        from mido import sockets

        try:
            port: Any = _connect(s.host, s.portno) if s.kind == "tcp" else sockets.PortServer(s.host, s.portno)
        except OSError as e:
            self.warn.warn(f"open {s.text}", "MIDI port %s: cannot %s (%s); will retry every %gs", s.text,
                           "connect" if s.kind == "tcp" else "listen", e, self.rescan)  # fmt: skip
            return
        self.warn.ok(f"open {s.text}")
        self._open[s.text] = _Open(s.text, port, s, polled=True, server=s.kind == "listen")
        self.stats.opened += 1
        log.info("MIDI in: %s", s.text)

    def _scan_output(self) -> None:
        spec = self.out_spec
        assert spec is not None
        if self._out is not None:
            if getattr(self._out, "closed", False):
                log.warning("MIDI out %s vanished; will reopen it when it comes back", self._out_name)
                self._out = None
            elif spec.kind in ("all", "prefix"):
                names = self._names(mido.get_output_names, "outputs")
                if names is not None and self._out_name not in names:
                    log.warning("MIDI out %s vanished; will reopen it when it comes back", self._out_name)
                    self._safe_close(self._out)
                    self._out = None
            if self._out is not None:
                return
        try:
            if spec.kind in ("tcp", "listen"):
                inp = self._open.get(spec.text)
                if inp is not None:  # the same socket carries both directions
                    port, name = inp.port, spec.text
                else:
                    port, name = _connect(spec.host, spec.portno), spec.text
            else:
                names = self._names(mido.get_output_names, "outputs")
                match = [n for n in names or () if spec.matches(n) and not n.startswith("RtMidi")]
                if not match:
                    if names is not None:
                        self.warn.warn("out missing", "MIDI out %r: no such port (found %s); will retry",
                                       spec.text, ", ".join(names) or "none")  # fmt: skip
                    return
                name = match[0]
                port = mido.open_output(name)
        except Exception as e:
            self.warn.warn("out open", "MIDI out %s: cannot open (%s); will retry", spec.text, e)
            return
        self.warn.ok("out open")
        self.warn.ok("out missing")
        self._out, self._out_name = port, name
        log.info("MIDI out: %s", name)
        self._mark_all()  # a controller just (re)appeared: put its faders and LEDs where the show is

    # -- feedback --
    def flush_feedback(self) -> None:
        """Send the values of changed mapped controls to the output port (not back to the control that moved)."""
        out = self._out
        if out is None:
            return
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, {}
        if not dirty:
            return
        snap = self.state.snapshot()
        for m in self.mapper.mappings:
            if not m.target or not m.feedback or m.target not in dirty:
                continue
            if dirty[m.target] == f"midi:{m.name}":  # a motor fader fights its own echo
                continue
            try:
                rng = m.range if m.range is not None else self.state.check_target(m.target)
                msgs = message_for(m, unscale(snap.get(m.target), m.curve, rng))
                for msg in msgs:
                    out.send(msg)
                    self.stats.sent += 1
            except ControlError:
                continue
            except Exception as e:
                log.warning("MIDI out %s: send failed (%s); will reopen it when it comes back", self._out_name, e)
                self._safe_close(out)
                self._out = None
                return

    # -- helpers --
    def _close(self, o: _Open) -> None:
        if o.port is self._out:
            self._out = None
        self._safe_close(o.port)

    @staticmethod
    def _safe_close(port: Any) -> None:
        sock = getattr(port, "_socket", None)
        if isinstance(sock, socket.socket) and getattr(port, "_rfile", None) is not None:
            # mido's SocketPort.close() leaves the connection open while its makefile() objects live
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        try:
            port.close()
        except Exception as e:  # closing a port whose device is gone may itself fail
            log.debug("MIDI close %r: %s", port, e)

    def _attach_osc_from(self, loop: Any) -> None:
        """Find the show's OSC server among the loop's controllers and add /livevae/midi/learn to it."""
        from livevae.osc import OscServer

        for c in getattr(loop, "controllers", ()):
            for cand in (c, getattr(c, "server", None), getattr(c, "osc", None)):
                if isinstance(cand, OscServer):
                    attach_osc(self, cand)
                    return

    @property
    def open_ports(self) -> list[str]:
        return list(self._open)

    @property
    def mappings(self) -> tuple[MidiMapping, ...]:
        return self.mapper.mappings


def _connect(host: str, portno: int) -> Any:
    """mido.sockets.connect with a connect timeout (mido's own blocks for the OS's, minutes on a LAN)."""
    from mido import sockets

    sock = socket.create_connection((host, portno), timeout=CONNECT_TIMEOUT)
    sock.settimeout(None)  # mido reads only what select() says is there
    return sockets.SocketPort(host, portno, conn=sock)


def attach_osc(ctl: MidiController, server: Any) -> None:
    """Add /livevae/midi/learn [target] and /livevae/midi/unlearn target to an OscServer."""

    def learn(address: str, *args: Any) -> None:
        ctl.arm_learn(str(args[0]) if args and isinstance(args[0], str) and args[0] else None)

    def unlearn(address: str, *args: Any) -> None:
        if args and isinstance(args[0], str):
            ctl.unlearn(args[0])

    # the server thread dispatches under this lock; mapping while it runs must not race it
    with getattr(server, "_map_lock", contextlib.nullcontext()):
        server.dispatcher.map("/livevae/midi/learn", learn)
        server.dispatcher.map("/livevae/midi/unlearn", unlearn)
    log.info("OSC: /livevae/midi/learn [target] and /livevae/midi/unlearn target")


def from_show(section: dict[str, Any], state: ControlState, show_path: Path) -> MidiController:
    """A MidiController from a show's [midi] section, with learned mappings from SHOW.midi-learn.toml merged over
    it. Raises MidiError naming the key and what was expected; checks every target against `state`."""
    try:
        cfg = MidiSection.model_validate(section)
    except ValidationError as e:
        raise MidiError(validation_message("[midi]", e)) from e
    mappings = parse_mappings([m.model_dump(exclude_defaults=True) for m in cfg.map], "[midi]")
    for i, m in enumerate(mappings):
        key, name = ("target", m.target) if m.target else ("arg", str(m.arg or ""))
        if m.target or (m.action in LEARN_ACTIONS and name):
            try:
                state.check_target(name)
            except ControlError as e:
                raise MidiError(f"[midi] map[{i}].{key}: {e}") from e
    show_path = Path(show_path)
    lp = learn_path(show_path, cfg.learn_file)
    learned = load_learned(lp)
    for i, m in enumerate(learned):
        if m.target:
            try:
                state.check_target(m.target)
            except ControlError as e:
                raise MidiError(f"MIDI learn file {lp} map[{i}].target: {e}") from e
    try:
        return MidiController(
            state,
            mappings,
            inputs=cfg.inputs,
            output=cfg.output,
            rescan=cfg.rescan,
            learn_file=lp,
            show_path=show_path,
            learn_timeout=cfg.learn_timeout,
            learned=learned,
        )
    except MidiError as e:
        raise MidiError(f"[midi] inputs/output: {e}") from e


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m livevae.midi`: list MIDI ports (the names `inputs`/`output` match by prefix); with --monitor,
    print what arrives (e.g. to find a knob's CC number and channel)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m livevae.midi", description=main.__doc__)
    p.add_argument("--monitor", nargs="*", metavar="PORT", help="print messages from these inputs (default: all)")
    args = p.parse_args(argv)
    for what, fn in (("inputs", mido.get_input_names), ("outputs", mido.get_output_names)):
        try:
            names = fn()
        except Exception as e:  # no ALSA sequencer / CoreMIDI
            print(f"MIDI {what}: none available ({e}); socket ports (tcp:HOST:PORT, listen:HOST:PORT) still work")
            continue
        print(f"MIDI {what}:" + "".join(f"\n  {n}" for n in names) if names else f"MIDI {what}: none")
    if args.monitor is None:
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = ControlState(zdim=1)
    ctl = MidiController(state, inputs=args.monitor or ["*"])
    orig = ctl.feed

    def show(msg: mido.Message, port: str = "") -> list[Effect]:
        ch = f" ch{msg.channel + 1}" if hasattr(msg, "channel") else ""
        print(f"{port}:{ch} {msg}")
        return orig(msg, port)

    ctl.feed = show  # type: ignore[method-assign]
    ctl.start()
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        ctl.stop()
    return 0


__all__ = [
    "CC_MODES",
    "CURVES",
    "NOTE_MODES",
    "Learned",
    "MidiController",
    "MidiError",
    "MidiMapper",
    "MidiMapping",
    "PortSpec",
    "PostAction",
    "SetControl",
    "attach_osc",
    "curve",
    "from_show",
    "learn_path",
    "load_learned",
    "message_for",
    "relative_delta",
    "save_learned",
    "scale",
    "unscale",
]


if __name__ == "__main__":
    raise SystemExit(main())
