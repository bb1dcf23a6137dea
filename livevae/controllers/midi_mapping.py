"""MIDI mappings, pure: CC/note/pitch-bend messages -> control changes and actions, MIDI learn, feedback out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import mido

from livevae.control.curves import scale, unscale
from livevae.control.state import ACTIONS, PERFORMER_ORIGINS, ControlError, canonical
from livevae.errors import LivevaeError

log = logging.getLogger("livevae.controllers.midi")

CC_MODES = ("absolute", "twos", "offset", "signmag")  # absolute faders/knobs, and the three relative-encoder codings
NOTE_MODES = ("gate", "toggle", "trigger")
LEARN_ACTIONS = ("midi.learn", "midi.unlearn")
MAP_ACTIONS = (*ACTIONS, *LEARN_ACTIONS)
DEFAULT_STEP = 1.0 / 128  # relative encoders: fraction of the range per tick, so 128 ticks sweep it
LEARN_14BIT_WINDOW = 0.3  # s: an LSB (cc n+32) this soon after the learned MSB (cc n) makes it a 14-bit mapping
LEARN_ORIGINS = tuple(o for o in PERFORMER_ORIGINS if o != "midi")  # "learn the control I last touched"
CONNECT_TIMEOUT = 1.0  # s: an unreachable network MIDI bridge must not stall the MIDI thread for minutes
SOCKET_POLL = 0.002  # s between polls of socket ports (rtmidi ports deliver by callback)


class MidiError(LivevaeError):
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
