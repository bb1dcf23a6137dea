"""Response curves shared by OSC, MIDI and audio mappings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from livevae.control.curves import CURVES, CurveError, curve, curve_inverse, scale, unscale
from livevae.control.state import ControlState
from livevae.controllers.osc import OscServer
from livevae.controllers.osc_mapping import Mapping, OscError


@pytest.mark.parametrize("name", [c for c in CURVES if c != "toggle"])
def test_curves_are_monotonic_fix_the_ends_and_invert(name: str) -> None:
    u = np.linspace(0, 1, 51)
    v = [curve(name, float(x)) for x in u]
    assert v[0] == 0.0 and v[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in itertools.pairwise(v))
    for x in u:
        assert curve_inverse(name, curve(name, float(x))) == pytest.approx(float(x), abs=1e-6)
        assert unscale(scale(float(x), name, (-2.0, 6.0)), name, (-2.0, 6.0)) == pytest.approx(float(x), abs=1e-6)


def test_shapes_and_clamping() -> None:
    assert curve("exp", 0.5) == 0.25 and curve("log", 0.25) == 0.5 and curve("smooth", 0.5) == 0.5
    assert curve("toggle", 0.49) == 0.0 and curve("toggle", 0.5) == 1.0
    assert scale(3.0, "linear", (-1.0, 1.0)) == 1.0 and scale(-3.0, "linear", (-1.0, 1.0)) == -1.0
    assert unscale(5.0, "linear", (2.0, 2.0)) == 0.0  # an empty range does not divide by zero


def test_unknown_curve_is_named_and_osc_wraps_it() -> None:
    with pytest.raises(CurveError, match="curve 'wobble': unknown; expected one of linear"):
        curve("wobble", 0.5)
    srv = OscServer(ControlState(zdim=4))
    with pytest.raises(OscError, match="/1/fader1: curve 'wobble'"):
        srv.set_mappings([Mapping("/1/fader1", target="mix", curve="wobble")])
