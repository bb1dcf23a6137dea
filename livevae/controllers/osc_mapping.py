"""OSC, pure: the /livevae address map, show mappings and their curves, argument coercion; no sockets."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from livevae.control.curves import curve, curve_inverse
from livevae.control.state import SCALARS, VECTORS
from livevae.errors import LivevaeError

log = logging.getLogger("livevae.controllers.osc")  # one logger for OSC: users see "livevae osc: ..."

DEFAULT_HOST = "127.0.0.1"  # the LAN only when asked for (--osc-host 0.0.0.0)
DEFAULT_PORT = 9000
PREFIX = "/livevae"
MAX_WARNED = 1000  # distinct bad addresses remembered for log-once; garbage must not grow memory without bound


class OscError(LivevaeError):
    """An OSC server cannot start, or a mapping is malformed."""


# --- mappings (pure) -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mapping:
    """One controller address (e.g. TouchOSC's /1/fader3) driving one control target or one action.

    A control mapping scales its input from `in_range` (0..1 by default) through `curve` onto `range` (the
    target's own range when None). An action mapping fires on a press (no argument, or an argument >= 0.5).
    """

    address: str
    target: str = ""  # control target, e.g. "pc/0", "mix"
    action: str = ""  # or an action: "scene.recall", "record", "source", ...
    arg: object = None  # the action's argument (a scene name, a source index)
    range: tuple[float, float] | None = None
    in_range: tuple[float, float] = (0.0, 1.0)
    curve: str = "linear"
    smoothing: float = 0.0  # seconds of slew on the target
    index: int = 0  # which OSC argument to read (an XY pad sends two)


def map_value(m: Mapping, x: float, target_range: tuple[float, float]) -> float:
    """An input value -> the control value: normalise by in_range, clamp to 0..1, curve, scale to range."""
    a, b = m.in_range
    u = 0.0 if b == a else (x - a) / (b - a)
    u = curve(m.curve, min(max(u, 0.0), 1.0))
    lo, hi = m.range if m.range is not None else target_range
    return lo + u * (hi - lo)


def unmap_value(m: Mapping, v: float, target_range: tuple[float, float]) -> float:
    """The inverse of map_value, for feedback: a control value -> where the controller's fader should sit."""
    lo, hi = m.range if m.range is not None else target_range
    u = 0.0 if hi == lo else (v - lo) / (hi - lo)
    u = curve_inverse(m.curve, min(max(u, 0.0), 1.0))
    a, b = m.in_range
    return a + u * (b - a)


def coerce_number(args: Sequence[Any], index: int = 0) -> float | None:
    """The index-th OSC argument as a float when it is an int, float or bool (T/F); None otherwise."""
    if index >= len(args):
        return None
    a = args[index]
    if isinstance(a, bool | int | float):
        x = float(a)
        return x if math.isfinite(x) else None
    return None


# --- the address map -------------------------------------------------------------------------------------------
def address_map(zdim: int, n_pcs: int, n_lfos: int) -> list[tuple[str, str, str]]:
    """(address, arguments, what it does) of every built-in address, for the README and `livevae osc-map`."""

    def rng(name: str) -> str:
        lo, hi, d = SCALARS[name]
        return f"{lo:g}..{hi:g}, default {d:g}"

    zl, zh, _ = VECTORS["z"]
    gl, gh, _ = VECTORS["gain"]
    pl, ph, _ = VECTORS["pc"]
    return [
        (f"{PREFIX}/z/{{0..{zdim - 1}}}", "f", f"offset of dimension i, latent units ({zl:g}..{zh:g})"),
        (f"{PREFIX}/z", "f f ...", f"the whole offset vector (up to {zdim} values)"),
        (
            f"{PREFIX}/pc/{{0..{max(n_pcs - 1, 0)}}}",
            "f",
            f"move along principal direction k, in the film's std ({pl:g}..{ph:g})"
            + ("" if n_pcs else "; this model has no PCA"),
        ),
        (f"{PREFIX}/pc", "f f ...", "every principal direction at once"),
        (f"{PREFIX}/gain/{{0..{zdim - 1}}}", "f", f"gain of dimension i ({gl:g}..{gh:g}, default 1)"),
        (f"{PREFIX}/mix", "f", f"mix toward the stored latent (scene anchor) ({rng('mix')})"),
        (f"{PREFIX}/freeze", "i", "1 holds the current z, 0 lets it go"),
        (f"{PREFIX}/noise", "f", f"Gaussian noise on z, std in latent units ({rng('noise')})"),
        (f"{PREFIX}/smooth", "f", f"EMA on z across frames, tames flicker ({rng('smooth')}); alias /livevae/ema"),
        (f"{PREFIX}/slew", "f", f"default slew time of every control, seconds ({rng('slew')})"),
        (f"{PREFIX}/bpm", "f", f"tempo for synced LFOs ({rng('bpm')})"),
        (f"{PREFIX}/mirror", "f", f"film mirror: blend z toward its nearest training-film latents ({rng('mirror')})"),
        (f"{PREFIX}/mirror/k", "f", f"film mirror: how many nearest film moments are blended ({rng('mirror/k')})"),
        (
            f"{PREFIX}/mirror/soft",
            "f",
            f"film mirror: softness of the k weights, 0 = nearest only ({rng('mirror/soft')})",
        ),
        (f"{PREFIX}/mirror/snap", "i", "film mirror: 1 jumps to the single nearest film moment"),
        (f"{PREFIX}/mirror/hold", "i", "film mirror: 1 keeps the current moment and plays the film on from it"),
        (f"{PREFIX}/mirror/film", "f", "output: 0 the reconstruction, 1 the film's own matched frame, between: blend"),
        (f"{PREFIX}/mirror/split", "i", "output: 1 shows reconstruction | film frame side by side"),
        (f"{PREFIX}/reset", "", "the show as it started: its controls, LFOs, smoothing, no scene (the panic button)"),
        (f"{PREFIX}/zero", "", "every control and LFO to the built-in defaults (all to zero, LFOs off)"),
        (f"{PREFIX}/scene/{{name}}", "[i]", "recall a scene (a press: no argument or >= 0.5)"),
        (f"{PREFIX}/scene/save", "s", "save the current latent and controls as a scene"),
        (f"{PREFIX}/source", "i | s", "switch source: index in the show's list, or a path/URL/camera"),
        (f"{PREFIX}/record", "[i]", "1 starts, 0 stops recording; no argument toggles"),
        (f"{PREFIX}/screenshot", "", "save the current output frame"),
        (f"{PREFIX}/fullscreen", "", "toggle fullscreen"),
        (
            f"{PREFIX}/lfo/{{0..{n_lfos - 1}}}/{{rate|depth|phase|sync}}",
            "f",
            "LFO rate (Hz; cycles per beat when synced), depth (target units), phase (cycles), sync (0/1)",
        ),
        (f"{PREFIX}/lfo/{{n}}/target", "s | i", "what the LFO moves: a control such as pc/0, mix, z/12 (i = z/i)"),
        (f"{PREFIX}/lfo/{{n}}/shape", "s | i", "sine, triangle or walk (0, 1, 2)"),
        (f"{PREFIX}/ping", "[i]", "answers /livevae/pong to the sender (to port i when given)"),
        (f"{PREFIX}/feedback", "", "re-send every mapped value to every feedback target (resync faders)"),
        (f"{PREFIX}/hello", "[i]", "feed this controller back from now on, at port i or the port it sent from"),
        (f"{PREFIX}/bye", "[i]", "stop feeding this controller back"),
        ("(out) /livevae/status", "f s s i i f", "periodically: fps, source, scene, frame index, recording, audio"),
        (
            "(out) /livevae/mirror/status",
            "s i f i",
            "with the status: the film mirror's timecode, frame, seconds, held",
        ),
        ("(out) /livevae/<control>", "f", "feedback: each control's value on change and after a scene recall"),
        ("(out) /livevae/record", "i", "feedback: 1 while recording, 0 when not (mapped record toggles follow)"),
        ("(out) /livevae/source, /scene", "s", 'feedback: what plays, the scene last recalled ("" after reset)'),
        ("(out) <mapped address>", "f [f ...]", "feedback: one message per address; an XY pad gets x and y at once"),
    ]


def format_address_map(rows: Iterable[tuple[str, str, str]], markdown: bool = False) -> str:
    rows = list(rows)
    if markdown:
        lines = ["| address | args | what it does |", "| --- | --- | --- |"]

        def cell(x: str) -> str:  # a bare | would split the table's cell, even inside backticks
            return x.replace("|", "\\|")

        lines += [
            f"| `{cell(a)}` | `{cell(t)}` | {cell(w)} |" if t else f"| `{cell(a)}` | | {cell(w)} |" for a, t, w in rows
        ]
        return "\n".join(lines)
    wa = max(len(a) for a, _, _ in rows)
    wt = max(len(t) for _, t, _ in rows)
    return "\n".join(f"{a:<{wa}}  {t:<{wt}}  {w}" for a, t, w in rows)
