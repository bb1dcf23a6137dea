"""Response curves for controls: a normalised 0..1 input (fader, CC, audio feature) onto a control's range."""

from __future__ import annotations

import math

from livevae.errors import LivevaeError

CURVES = ("linear", "exp", "log", "smooth", "toggle")


class CurveError(LivevaeError, ValueError):
    """An unknown curve name."""


def curve(name: str, u: float) -> float:
    """u in [0, 1] through a response curve -> [0, 1]; raises CurveError for an unknown name."""
    if name == "linear":
        return u
    if name == "exp":  # fine control near the bottom, like an audio fader
        return u * u
    if name == "log":  # fine control near the top
        return math.sqrt(u)
    if name == "smooth":
        return u * u * (3.0 - 2.0 * u)
    if name == "toggle":
        return 1.0 if u >= 0.5 else 0.0
    raise CurveError(f"curve {name!r}: unknown; expected one of {', '.join(CURVES)}")


def curve_inverse(name: str, v: float) -> float:
    """The inverse of curve(): where the fader sits for a value (feedback, relative encoders)."""
    v = min(max(v, 0.0), 1.0)
    if name == "exp":
        return math.sqrt(v)
    if name == "log":
        return v * v
    if name == "smooth":  # monotonic on [0, 1]: bisection is exact enough for a fader
        lo, hi = 0.0, 1.0
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if curve("smooth", mid) < v else (lo, mid)
        return 0.5 * (lo + hi)
    if name == "toggle":
        return 1.0 if v >= 0.5 else 0.0
    return v


def scale(u: float, name: str, rng: tuple[float, float]) -> float:
    """A normalised input (0..1, clamped) through `name` onto rng = (lo, hi)."""
    lo, hi = rng
    return lo + curve(name, min(max(u, 0.0), 1.0)) * (hi - lo)


def unscale(v: float, name: str, rng: tuple[float, float]) -> float:
    """The inverse of scale(): a control value back to the 0..1 input position."""
    lo, hi = rng
    return curve_inverse(name, 0.0 if hi == lo else (v - lo) / (hi - lo))
