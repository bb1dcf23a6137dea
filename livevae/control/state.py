"""The control state: one small thread-safe store that controllers write and the frame loop reads once per frame."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from livevae.errors import LivevaeError

log = logging.getLogger("livevae.control.state")


class ControlError(LivevaeError):
    """A control target, value or action is unknown or out of what is expected."""


# name -> (lo, hi, default). Values outside [lo, hi] are clamped: faders and LFOs overshoot, that is not an error.
SCALARS: dict[str, tuple[float, float, float]] = {
    "mix": (0.0, 1.0, 0.0),  # blend of z toward the anchor latent (a scene), 0 = the encoder's z, 1 = the anchor
    "noise": (0.0, 4.0, 0.0),  # std of Gaussian noise added to z, in latent units
    "smooth": (0.0, 0.99, 0.0),  # EMA weight of the previous z across frames; tames frame-to-frame flicker
    "slew": (0.0, 10.0, 0.0),  # default slew time in seconds for controls without their own smoothing
    "freeze": (0.0, 1.0, 0.0),  # >= 0.5 holds the current z
    "bpm": (20.0, 300.0, 120.0),  # tempo for tempo-synced LFOs
    # the film mirror (livevae.mirror; active when the model has a latent index)
    "mirror": (0.0, 1.0, 0.0),  # blend of z toward its nearest latents of the training film
    "mirror/k": (1.0, 64.0, 8.0),  # how many nearest film moments are blended
    "mirror/soft": (0.0, 1.0, 0.5),  # softness of their weights: 0 = the nearest only, 1 = nearly equal
    "mirror/snap": (0.0, 1.0, 0.0),  # >= 0.5 jumps to the single nearest moment
    "mirror/hold": (0.0, 1.0, 0.0),  # >= 0.5 keeps the current moment and plays the film on from it
    "mirror/film": (0.0, 1.0, 0.0),  # output: 0 = the reconstruction, 1 = the film's own matched frame, between: blend
    "mirror/split": (0.0, 1.0, 0.0),  # >= 0.5: output left half reconstruction | right half film frame
}
MIRROR_SCALARS = tuple(k for k in SCALARS if k.startswith("mirror"))
# per-dimension controls: prefix -> (lo, hi, default)
VECTORS: dict[str, tuple[float, float, float]] = {
    "z": (-8.0, 8.0, 0.0),  # offset added to dimension i, in latent units
    "gain": (-4.0, 4.0, 1.0),  # gain on dimension i, applied before the offset
    "pc": (-6.0, 6.0, 0.0),  # move along principal direction k, in standard deviations of the film
}
# per-LFO numeric parameters: name -> (lo, hi, default)
LFO_PARAMS: dict[str, tuple[float, float, float]] = {
    "rate": (0.0, 20.0, 0.25),  # Hz; with sync=1, cycles per beat
    "depth": (0.0, 8.0, 0.0),  # amplitude in the target control's units
    "phase": (0.0, 1.0, 0.0),  # phase offset in cycles
    "sync": (0.0, 1.0, 0.0),  # 1 = tempo-synced to bpm
}
LFO_SHAPES: tuple[str, ...] = ("sine", "triangle", "walk")
ALIASES = {"ema": "smooth", "offset": "z"}
ACTIONS = (
    "scene.recall",
    "scene.save",
    "source",
    "record",
    "screenshot",
    "fullscreen",
    "quit",
    "midi.learn",  # arm MIDI learn for a target (None: the control last moved); handled by the MIDI controller
    "midi.unlearn",
)
# input from these origins counts as a performer touching the instrument (autopilot hands back on it)
PERFORMER_ORIGINS = ("osc", "midi", "ui", "key")
COALESCED = ("source",)  # actions where only the latest queued one matters
MAX_ACTIONS = 256  # a flood of actions must not grow memory without bound; the oldest are dropped

_LFO_RE = re.compile(r"lfo/(\d+)/(\w+)$")
_VEC_RE = re.compile(r"(z|gain|pc)/(\d+)$")


@dataclass(frozen=True)
class LfoSettings:
    """One LFO's controls: wave(t) * depth is added to the target control."""

    rate: float = 0.25
    depth: float = 0.0
    phase: float = 0.0
    sync: bool = False
    target: str = ""  # a control target such as "pc/0", "z/12", "mix"; "" = off
    shape: str = "sine"


@dataclass(frozen=True)
class ControlSnapshot:
    """An immutable copy of every control, taken once per frame. Arrays are read-only."""

    zdim: int
    offset: np.ndarray  # [zdim] float32
    gain: np.ndarray  # [zdim] float32
    pc: np.ndarray  # [K] float32, in standard deviations
    mix: float = 0.0
    noise: float = 0.0
    smooth: float = 0.0
    slew: float = 0.0
    freeze: bool = False
    bpm: float = 120.0
    lfos: tuple[LfoSettings, ...] = ()
    anchor: np.ndarray | None = None  # [zdim] float32, the latent mixed toward; None = the film's mean latent
    slews: Mapping[str, float] = field(default_factory=dict)  # per-target slew time in seconds
    mirror: float = 0.0  # the film mirror's controls (SCALARS "mirror", "mirror/k", ... as attributes)
    mirror_k: float = 8.0
    mirror_soft: float = 0.5
    mirror_snap: float = 0.0
    mirror_hold: float = 0.0
    mirror_film: float = 0.0
    mirror_split: float = 0.0
    version: int = 0  # bumps on every change, so consumers can skip work when nothing moved

    def get(self, target: str) -> float:
        """The value of one numeric target ("mix", "z/3", "pc/0", "lfo/1/rate", ...)."""
        target = canonical(target)
        if target in SCALARS:
            v = getattr(self, scalar_attr(target))
            return float(v)
        m = _VEC_RE.match(target)
        if m:
            arr = {"z": self.offset, "gain": self.gain, "pc": self.pc}[m.group(1)]
            i = int(m.group(2))
            if i < len(arr):
                return float(arr[i])
        m = _LFO_RE.match(target)
        if m and int(m.group(1)) < len(self.lfos) and m.group(2) in LFO_PARAMS:
            return float(getattr(self.lfos[int(m.group(1))], m.group(2)))
        raise ControlError(f"control {target!r}: unknown numeric target")

    def values(self) -> dict[str, float]:
        """Every numeric control that differs from its default (for scene snapshots and feedback)."""
        out: dict[str, float] = {}
        for name, (_, _, d) in SCALARS.items():
            v = float(getattr(self, scalar_attr(name)))
            if v != d:
                out[name] = v
        for prefix, arr in (("z", self.offset), ("gain", self.gain), ("pc", self.pc)):
            d = VECTORS[prefix][2]
            for i in np.flatnonzero(arr != d):
                out[f"{prefix}/{int(i)}"] = float(arr[i])
        for n, lfo in enumerate(self.lfos):
            base = LfoSettings()
            for p in LFO_PARAMS:
                if getattr(lfo, p) != getattr(base, p):
                    out[f"lfo/{n}/{p}"] = float(getattr(lfo, p))
        return out


def scalar_attr(name: str) -> str:
    """The ControlSnapshot attribute of a scalar control: "mirror/k" -> "mirror_k", "mix" -> "mix"."""
    return name.replace("/", "_")


def default_value(target: str) -> float:
    """The default of a numeric target ("mix" -> 0, "gain/3" -> 1, "lfo/0/rate" -> 0.25); KeyError if unknown."""
    t = canonical(target)
    if t in SCALARS:
        return SCALARS[t][2]
    m = _VEC_RE.match(t)
    if m:
        return VECTORS[m.group(1)][2]
    m = _LFO_RE.match(t)
    if m and m.group(2) in LFO_PARAMS:
        return LFO_PARAMS[m.group(2)][2]
    raise KeyError(target)


def canonical(target: str) -> str:
    """Strip a leading "/livevae/" or "/" and resolve aliases: "/livevae/ema" -> "smooth"."""
    t = target.strip()
    if t.startswith("/livevae/"):
        t = t[len("/livevae/") :]
    t = t.strip("/")
    head, _, rest = t.partition("/")
    if head in ALIASES:
        t = ALIASES[head] + ("/" + rest if rest else "")
    return t


class ControlState:
    """Thread-safe store: controllers (OSC, MIDI, audio, LFO/autopilot) write, the frame loop reads once per frame.

    Writers hold the lock only to copy a few numbers; listeners (OSC/MIDI feedback) are called after it is
    released, in the writer's thread, and their exceptions are logged, never raised into the writer.
    """

    def __init__(self, zdim: int, n_pcs: int = 0, n_lfos: int = 8) -> None:
        if zdim <= 0:
            raise ControlError(f"ControlState: zdim must be positive, got {zdim}")
        self.zdim = zdim
        self.n_pcs = max(0, int(n_pcs))
        self.n_lfos = max(0, int(n_lfos))
        self._lock = threading.Lock()
        self._scalars = {k: d for k, (_, _, d) in SCALARS.items()}
        self._offset = np.zeros(zdim, np.float32)
        self._gain = np.ones(zdim, np.float32)
        self._pc = np.zeros(self.n_pcs, np.float32)
        self._lfos = [LfoSettings() for _ in range(self.n_lfos)]
        self._anchor: np.ndarray | None = None
        self._slews: dict[str, float] = {}
        self._version = 0
        self._snap: ControlSnapshot | None = None
        self._actions: deque[tuple[str, object]] = deque(maxlen=MAX_ACTIONS)
        self._listeners: list[Callable[[str, float, str], None]] = []
        self._reset_listeners: list[Callable[[str], None]] = []
        # the show as it started (set_start): numeric values that differ from the defaults, and the LFOs
        self._start_values: dict[str, float] = {}
        self._start_lfos: tuple[LfoSettings, ...] = tuple(self._lfos)
        self.last_input_time: float = 0.0
        self.last_origin: str = ""

    # --- writers -------------------------------------------------------------------------------------------
    def set(self, target: str, value: float, origin: str = "") -> None:
        """Set a continuous control. Targets: "z/{i}" (offset), "gain/{i}", "pc/{k}", "mix", "noise", "smooth"
        (alias "ema"), "slew", "freeze" (0/1), "bpm", "lfo/{n}/rate|depth|phase|sync", and "lfo/{n}/target"
        (an int i means "z/i") / "lfo/{n}/shape" (0 sine, 1 triangle, 2 walk). Values are clamped to range.

        Raises ControlError naming the target and the expected range for an unknown target or non-finite value.
        """
        t = canonical(target)
        m = _LFO_RE.match(t)
        if m and m.group(2) in ("target", "shape"):
            v = _finite(t, value)
            if m.group(2) == "target":
                self.set_text(t, f"z/{int(v)}", origin)
            else:
                self.set_text(t, LFO_SHAPES[int(np.clip(round(v), 0, len(LFO_SHAPES) - 1))], origin)
            return
        changed = self._set_many({t: value}, origin)
        self._notify(changed, origin)

    def set_many(self, values: Mapping[str, float], origin: str = "") -> None:
        """Set several controls at once (a scene recall): one lock, one version bump; all-or-nothing."""
        changed = self._set_many({canonical(k): v for k, v in values.items()}, origin)
        self._notify(changed, origin)

    def set_vector(self, name: str, values: Sequence[float] | np.ndarray, origin: str = "") -> None:
        """Set a whole vector: "z" (offsets, zdim values), "gain" (zdim), "pc" (n_pcs) or "anchor" (zdim latent
        mixed toward by "mix"). Shorter input sets the leading entries. Raises ControlError on a bad name/length."""
        name = canonical(name)
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if name == "anchor":
            if arr.size != self.zdim:
                raise ControlError(f"control 'anchor': got {arr.size} values; expected {self.zdim} (zdim)")
            if not np.all(np.isfinite(arr)):
                raise ControlError("control 'anchor': values must be finite")
            with self._lock:
                self._anchor = arr.astype(np.float32)
                self._anchor.flags.writeable = False
                self._bump(origin)
            return
        if name not in VECTORS:
            raise ControlError(f"control vector {name!r}: unknown; expected one of z, gain, pc, anchor")
        n = self._vec_len(name)
        if arr.size > n:
            raise ControlError(f"control vector {name!r}: got {arr.size} values; expected at most {n}")
        if not np.all(np.isfinite(arr)):
            raise ControlError(f"control vector {name!r}: values must be finite numbers")
        self.set_many({f"{name}/{i}": float(v) for i, v in enumerate(arr)}, origin)

    def clear_anchor(self, origin: str = "") -> None:
        with self._lock:
            self._anchor = None
            self._bump(origin)

    def set_text(self, target: str, value: str, origin: str = "") -> None:
        """Set a text control: "lfo/{n}/target" (a numeric control name, "" = off) or "lfo/{n}/shape"."""
        t = canonical(target)
        m = _LFO_RE.match(t)
        if not m or m.group(2) not in ("target", "shape"):
            raise ControlError(f"control {target!r}: not a text control; expected lfo/{{n}}/target or lfo/{{n}}/shape")
        n = self._lfo_index(t, m)
        if m.group(2) == "shape":
            if value not in LFO_SHAPES:
                raise ControlError(f"control {target!r}: shape {value!r}; expected one of {', '.join(LFO_SHAPES)}")
            new = {"shape": value}
        else:
            tv = canonical(value) if value else ""
            if tv:
                self.check_target(tv)
                if tv.startswith("lfo/"):
                    raise ControlError(f"control {target!r}: an LFO cannot modulate {tv!r}; expected a non-LFO target")
            new = {"target": tv}
        with self._lock:
            old = self._lfos[n]
            self._lfos[n] = LfoSettings(**{**old.__dict__, **new})
            self._bump(origin)

    def set_lfo(self, n: int, settings: LfoSettings, origin: str = "") -> None:
        """Replace LFO n's settings at once (show files); validates target and shape."""
        self.set_text(f"lfo/{n}/target", settings.target, origin)
        self.set_text(f"lfo/{n}/shape", settings.shape, origin)
        self.set_many(
            {f"lfo/{n}/{p}": float(getattr(settings, p)) for p in LFO_PARAMS},
            origin,
        )

    def set_slew(self, target: str, seconds: float) -> None:
        """Per-control slew time (seconds to move most of the way); 0 removes it (the global "slew" applies)."""
        t = canonical(target)
        self.check_target(t)
        s = _finite(t, seconds)
        with self._lock:
            if s > 0:
                self._slews[t] = min(s, 60.0)
            else:
                self._slews.pop(t, None)
            self._bump("")

    def set_start(self, values: Mapping[str, float] | None = None, lfos: Sequence[LfoSettings] | None = None) -> None:
        """Remember the show as it started, for reset(): values (default: every control now) and LFOs (default:
        the LFOs now). A show file's [controls] and [[lfo]]; a hot reload that changes them moves it too."""
        if values is None:
            values = self.snapshot().values()
        resolved = {}
        for t, v in values.items():
            lo, hi = self.check_target(t)
            resolved[canonical(t)] = float(min(max(_finite(t, v), lo), hi))
        with self._lock:
            self._start_values = resolved
            if lfos is not None:
                self._start_lfos = tuple(lfos) + tuple(LfoSettings() for _ in range(self.n_lfos - len(lfos)))
            else:
                self._start_lfos = tuple(self._lfos)

    def start_values(self) -> dict[str, float]:
        """Every numeric control's value in the show as it started (the defaults where the show sets none)."""
        with self._lock:
            start = dict(self._start_values)
            lfos = self._start_lfos
        out = {t: start.get(t, default_value(t)) for t in self.targets() if not t.startswith("lfo/")}
        for n, lfo in enumerate(lfos[: self.n_lfos]):
            for p in LFO_PARAMS:
                out[f"lfo/{n}/{p}"] = float(getattr(lfo, p))
        return out

    def reset(self, origin: str = "") -> None:
        """The panic button: the show as it started (set_start) — its controls, smoothing and LFOs — with no
        scene's anchor. Slews are kept. Listeners hear each control that moved (OSC/MIDI feedback puts the faders
        back), reset listeners hear the reset itself (the scene label goes)."""
        with self._lock:
            start, lfos = dict(self._start_values), self._start_lfos
        self._restore(start, lfos, origin)

    def zero(self, origin: str = "") -> None:
        """Every control to its built-in default and every LFO off ("all to zero"); slews are kept."""
        self._restore({}, tuple(LfoSettings() for _ in range(self.n_lfos)), origin)

    def add_reset_listener(self, cb: Callable[[str], None]) -> None:
        """cb(origin) after every reset() or zero(), in the caller's thread."""
        with self._lock:
            self._reset_listeners.append(cb)

    def _restore(self, values: Mapping[str, float], lfos: Sequence[LfoSettings], origin: str) -> None:
        before = self.snapshot()
        with self._lock:
            self._scalars = {k: values.get(k, d) for k, (_, _, d) in SCALARS.items()}
            for prefix, arr in (("z", self._offset), ("gain", self._gain), ("pc", self._pc)):
                arr[:] = VECTORS[prefix][2]
                for i in range(len(arr)):
                    if f"{prefix}/{i}" in values:
                        arr[i] = values[f"{prefix}/{i}"]
            self._lfos = list(lfos[: self.n_lfos])
            self._anchor = None
            self._bump(origin)
            listeners = list(self._reset_listeners)
        after = self.snapshot()
        # a write racing in between notifies on its own
        moved = [(t, after.get(t)) for t in self.targets() if before.get(t) != after.get(t)]
        self._notify(moved, origin)
        for cb in listeners:
            try:
                cb(origin)
            except Exception as e:  # a broken listener must not break the panic button
                log.warning("reset listener %r failed: %s", cb, e)

    def post(self, action: str, arg: object = None, origin: str = "") -> None:
        """Queue a one-shot action for the frame loop: "scene.recall" name, "scene.save" name, "source" int|str,
        "record" bool|None (toggle), "screenshot", "fullscreen", "quit". Raises ControlError for an unknown one."""
        if action not in ACTIONS:
            raise ControlError(f"action {action!r}: unknown; expected one of {', '.join(ACTIONS)}")
        with self._lock:
            if action in COALESCED:  # a burst of source switches opens one source, the last asked for
                kept = [a for a in self._actions if a[0] != action]
                self._actions.clear()
                self._actions.extend(kept)
            self._actions.append((action, arg))
            self._touch(origin)

    # --- readers -------------------------------------------------------------------------------------------
    def drain_actions(self) -> list[tuple[str, object]]:
        """Every queued action, oldest first, removing them."""
        with self._lock:
            out = list(self._actions)
            self._actions.clear()
        return out

    def snapshot(self) -> ControlSnapshot:
        """An immutable copy of every control; cached until the next change, so reading it is cheap."""
        with self._lock:
            if self._snap is None or self._snap.version != self._version:
                off, gain, pc = self._offset.copy(), self._gain.copy(), self._pc.copy()
                for a in (off, gain, pc):
                    a.flags.writeable = False
                s = self._scalars
                self._snap = ControlSnapshot(
                    zdim=self.zdim,
                    offset=off,
                    gain=gain,
                    pc=pc,
                    mix=s["mix"],
                    noise=s["noise"],
                    smooth=s["smooth"],
                    slew=s["slew"],
                    freeze=s["freeze"] >= 0.5,
                    bpm=s["bpm"],
                    lfos=tuple(self._lfos),
                    anchor=self._anchor,
                    slews=dict(self._slews),
                    version=self._version,
                    **{scalar_attr(k): s[k] for k in MIRROR_SCALARS},  # type: ignore[arg-type]
                )
            return self._snap

    def get(self, target: str) -> float:
        return self.snapshot().get(target)

    def defaults(self) -> dict[str, float]:
        """target -> default value for every numeric target."""
        return {t: default_value(t) for t in self.targets()}

    def targets(self) -> list[str]:
        """Every numeric target this state accepts, e.g. ["mix", ..., "z/0", ..., "lfo/7/sync"]."""
        out = list(SCALARS)
        out += [f"z/{i}" for i in range(self.zdim)]
        out += [f"gain/{i}" for i in range(self.zdim)]
        out += [f"pc/{k}" for k in range(self.n_pcs)]
        for n in range(self.n_lfos):
            out += [f"lfo/{n}/{p}" for p in LFO_PARAMS]
        return out

    def check_target(self, target: str) -> tuple[float, float]:
        """(lo, hi) of a numeric target; raises ControlError naming it and what is expected if it is unknown."""
        t = canonical(target)
        if t in SCALARS:
            return SCALARS[t][0], SCALARS[t][1]
        m = _VEC_RE.match(t)
        if m:
            n = self._vec_len(m.group(1))
            if int(m.group(2)) < n:
                lo, hi, _ = VECTORS[m.group(1)]
                return lo, hi
            raise ControlError(f"control {target!r}: index {m.group(2)} out of range; expected 0..{n - 1}")
        m = _LFO_RE.match(t)
        if m and m.group(2) in LFO_PARAMS:
            self._lfo_index(t, m)
            lo, hi, _ = LFO_PARAMS[m.group(2)]
            return lo, hi
        raise ControlError(
            f"control {target!r}: unknown target; expected one of {', '.join(SCALARS)}, z/{{0..{self.zdim - 1}}}, "
            f"gain/{{0..{self.zdim - 1}}}, pc/{{0..{self.n_pcs - 1}}}, lfo/{{0..{self.n_lfos - 1}}}/"
            f"{{{'|'.join((*LFO_PARAMS, 'target', 'shape'))}}}"
        )

    def add_listener(self, cb: Callable[[str, float, str], None]) -> None:
        """cb(target, value, origin) once per numeric control that changed, whoever changed it: OSC, MIDI, keys,
        scenes, reset, the autopilot (OSC/MIDI feedback subscribe here)."""
        with self._lock:
            self._listeners.append(cb)

    def remove_listener(self, cb: Callable[[str, float, str], None]) -> None:
        with self._lock:
            if cb in self._listeners:
                self._listeners.remove(cb)

    # --- internals -----------------------------------------------------------------------------------------
    def _vec_len(self, prefix: str) -> int:
        return self.n_pcs if prefix == "pc" else self.zdim

    def _lfo_index(self, t: str, m: re.Match[str]) -> int:
        n = int(m.group(1))
        if n >= self.n_lfos:
            raise ControlError(f"control {t!r}: LFO {n} out of range; expected 0..{self.n_lfos - 1}")
        return n

    def _touch(self, origin: str) -> None:
        if origin.split(":")[0] in PERFORMER_ORIGINS:
            self.last_input_time = time.monotonic()
        if origin:
            self.last_origin = origin

    def _bump(self, origin: str) -> None:
        self._version += 1
        self._touch(origin)

    def _set_many(self, values: Mapping[str, float], origin: str) -> list[tuple[str, float]]:
        # validate everything first so a bad entry changes nothing
        resolved: list[tuple[str, float]] = []
        for t, v in values.items():
            lo, hi = self.check_target(t)
            x = _finite(t, v)
            resolved.append((t, float(min(max(x, lo), hi))))
        changed: list[tuple[str, float]] = []
        with self._lock:
            for t, x in resolved:
                if t in self._scalars:
                    if self._scalars[t] != x:
                        self._scalars[t] = x
                        changed.append((t, x))
                    continue
                m = _VEC_RE.match(t)
                if m:
                    arr = {"z": self._offset, "gain": self._gain, "pc": self._pc}[m.group(1)]
                    i = int(m.group(2))
                    if arr[i] != np.float32(x):
                        arr[i] = x
                        changed.append((t, float(arr[i])))
                    continue
                m = _LFO_RE.match(t)
                if m:
                    n, p = int(m.group(1)), m.group(2)
                    old = self._lfos[n]
                    val: float | bool = x >= 0.5 if p == "sync" else x
                    if getattr(old, p) != val:
                        self._lfos[n] = LfoSettings(**{**old.__dict__, p: val})
                        changed.append((t, x))
            if changed:
                self._version += 1
            self._touch(origin)
        return changed

    def _notify(self, changed: list[tuple[str, float]], origin: str) -> None:
        if not changed:
            return
        with self._lock:
            listeners = list(self._listeners)
        for cb in listeners:
            for t, v in changed:
                try:
                    cb(t, v, origin)
                except Exception as e:  # a broken feedback target must not break the controller that wrote
                    log.warning("control listener %r failed on %s=%s: %s", cb, t, v, e)


def _finite(target: str, value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise ControlError(f"control {target!r}: value {value!r} is not a number") from e
    if not math.isfinite(x):
        raise ControlError(f"control {target!r}: value {value!r}; expected a finite number")
    return x
