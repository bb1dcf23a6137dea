"""A TouchOSC (2020+) layout of a show's mappings and main controls: zlib-compressed lexml XML, built pure."""

from __future__ import annotations

import logging
import uuid
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from livevae.control.state import ControlState
from livevae.controllers.osc_mapping import PREFIX, Mapping

log = logging.getLogger("livevae.controllers.touchosc")

WIDTH, HEIGHT = 1024, 768  # TouchOSC scales the root to the device; 4:3 suits tablets and phones in landscape
PAD, ROW = 8, 48
ORANGE = (0.91, 0.36, 0.16)
GREY = (0.45, 0.45, 0.45)


@dataclass(frozen=True)
class Control:
    """One control of the layout: what it is, what it sends, and the scale of each argument it sends."""

    kind: str  # "FADER", "XY", "BUTTON"
    name: str
    address: str
    scales: tuple[tuple[float, float], ...] = ((0.0, 1.0),)  # per argument: what x (then y) = 0 and 1 send
    toggle: bool = False  # a BUTTON that stays on (record)


def controls_for(state: ControlState, mappings: Sequence[Mapping] = (), scenes: Sequence[str] = ()) -> list[Control]:
    """The show's own mappings (faders, XY pads for two-argument addresses, buttons for actions), then livevae's
    main controls at their own ranges: the principal directions (or the first latent dimensions), mix, noise,
    smooth, the scenes, record and reset."""
    out: list[Control] = []
    by_address: dict[str, list[Mapping]] = {}
    for m in mappings:
        by_address.setdefault(m.address, []).append(m)
    for address, ms in by_address.items():
        ms = sorted(ms, key=lambda m: m.index)
        if all(m.target for m in ms) and len(ms) == 2 and [m.index for m in ms] == [0, 1]:
            scales = tuple((float(m.in_range[0]), float(m.in_range[1])) for m in ms)
            out.append(Control("XY", f"{ms[0].target} x {ms[1].target}", address, scales))
        elif ms[0].target:
            out.append(Control("FADER", ms[0].target, address, ((float(ms[0].in_range[0]), float(ms[0].in_range[1])),)))
        else:
            m = ms[0]
            what = m.action + (f" {m.arg}" if m.arg is not None else "")
            out.append(Control("BUTTON", what, address, toggle=m.action == "record" and m.arg is None))
    dirs = [f"pc/{k}" for k in range(min(state.n_pcs, 8))] or [f"z/{i}" for i in range(min(state.zdim, 8))]
    for t in [*dirs, "mix", "noise", "smooth"]:
        lo, hi = state.check_target(t)
        out.append(Control("FADER", t, f"{PREFIX}/{t}", ((lo, hi),)))
    if len(dirs) >= 2:
        (xl, xh), (yl, yh) = state.check_target(dirs[0]), state.check_target(dirs[1])
        out.append(Control("XY", f"{dirs[0]} x {dirs[1]}", f"{PREFIX}/{dirs[0].split('/')[0]}", ((xl, xh), (yl, yh))))
    out += [Control("BUTTON", f"scene {s}", f"{PREFIX}/scene/{s}") for s in scenes]
    out.append(Control("BUTTON", "record", f"{PREFIX}/record", ((0.0, 1.0),), toggle=True))
    out.append(Control("BUTTON", "reset", f"{PREFIX}/reset"))
    return out


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    e = ET.SubElement(parent, tag)
    e.text = text
    return e


def _prop(props: ET.Element, type_: str, key: str, value: str | dict[str, str]) -> None:
    p = ET.SubElement(props, "property", {"type": type_})
    _text(p, "key", key)
    v = ET.SubElement(p, "value")
    if isinstance(value, dict):
        for k, x in value.items():
            _text(v, k, x)
    else:
        v.text = value


def _value(values: ET.Element, key: str, default: str) -> None:
    v = ET.SubElement(values, "value")
    _text(v, "key", key)
    _text(v, "locked", "0")
    _text(v, "lockedDefaultCurrent", "0")
    _text(v, "default", default)
    _text(v, "defaultPull", "0")


def _partial(parent: ET.Element, type_: str, conversion: str, value: str, lo: float = 0.0, hi: float = 1.0) -> None:
    p = ET.SubElement(parent, "partial")
    _text(p, "type", type_)
    _text(p, "conversion", conversion)
    _text(p, "value", value)
    _text(p, "scaleMin", f"{lo:g}")
    _text(p, "scaleMax", f"{hi:g}")


def _node(parent: ET.Element, c: Control, frame: tuple[int, int, int, int]) -> None:
    n = ET.SubElement(parent, "node", {"ID": str(uuid.uuid5(uuid.NAMESPACE_URL, c.kind + c.address)), "type": c.kind})
    props = ET.SubElement(n, "properties")
    x, y, w, h = frame
    _prop(props, "s", "name", c.name)
    _prop(props, "r", "frame", {"x": str(x), "y": str(y), "w": str(w), "h": str(h)})
    r, g, b = ORANGE if c.kind != "BUTTON" else GREY
    _prop(props, "c", "color", {"r": f"{r:g}", "g": f"{g:g}", "b": f"{b:g}", "a": "1"})
    if c.kind == "FADER":
        _prop(props, "i", "orientation", "1")  # east: a horizontal fader, like the browser surface's
    if c.kind == "BUTTON":
        _prop(props, "i", "buttonType", "1" if c.toggle else "0")  # 1 = toggle, 0 = momentary
    values = ET.SubElement(n, "values")
    variables = ["x", "y"] if c.kind == "XY" else ["x"]
    for v in variables:
        _value(values, v, "0.5" if c.kind != "BUTTON" else "0")
    _value(values, "touch", "false")
    osc = ET.SubElement(ET.SubElement(n, "messages"), "osc")
    for tag, text in (("enabled", "1"), ("send", "1"), ("receive", "1"), ("feedback", "0"), ("connections", "00001")):
        _text(osc, tag, text)
    trigger = ET.SubElement(ET.SubElement(osc, "triggers"), "trigger")
    _text(trigger, "var", "x")
    _text(trigger, "condition", "ANY" if c.kind != "BUTTON" or c.toggle else "RISE")
    _partial(ET.SubElement(osc, "path"), "CONSTANT", "STRING", c.address)
    args = ET.SubElement(osc, "arguments")
    if c.kind == "BUTTON" and not c.toggle:
        pass  # a press with no argument: livevae reads it as a press
    else:
        for v, (lo, hi) in zip(variables, c.scales, strict=False):
            _partial(args, "VALUE", "FLOAT", v, lo, hi)
    ET.SubElement(n, "children")


def layout(controls: Sequence[Control], name: str = "livevae") -> bytes:
    """The .tosc bytes: one page, faders in two columns, then XY pads, then a grid of buttons."""
    root = ET.Element("lexml", {"version": "3"})
    top = ET.SubElement(root, "node", {"ID": str(uuid.uuid5(uuid.NAMESPACE_URL, name)), "type": "GROUP"})
    props = ET.SubElement(top, "properties")
    _prop(props, "s", "name", name)
    _prop(props, "r", "frame", {"x": "0", "y": "0", "w": str(WIDTH), "h": str(HEIGHT)})
    ET.SubElement(top, "values")
    ET.SubElement(top, "messages")
    children = ET.SubElement(top, "children")
    faders = [c for c in controls if c.kind == "FADER"]
    pads = [c for c in controls if c.kind == "XY"]
    buttons = [c for c in controls if c.kind == "BUTTON"]
    col_w = (WIDTH * 3 // 5 - 3 * PAD) // 2
    rows = max(1, (HEIGHT - 2 * ROW - PAD) // (ROW + PAD))
    for kind, items, room in (("faders", faders, rows * 2), ("XY pads", pads, 2), ("buttons", buttons, 16)):
        if len(items) > room:  # one page holds this much; the rest stay reachable over OSC
            left = ", ".join(c.name for c in items[room:])
            log.warning("TouchOSC layout: %d %s; the page has room for %d, left out: %s", len(items), kind, room, left)
    for i, c in enumerate(faders[: rows * 2]):
        _node(children, c, (PAD + (i // rows) * (col_w + PAD), PAD + (i % rows) * (ROW + PAD), col_w, ROW))
    pad_x, pad_w = WIDTH * 3 // 5 + PAD, WIDTH * 2 // 5 - 2 * PAD
    pad_h = min(pad_w, (HEIGHT - 2 * ROW - 3 * PAD) // max(len(pads), 1)) - PAD
    for i, c in enumerate(pads[:2]):
        _node(children, c, (pad_x, PAD + i * (pad_h + PAD), pad_w, pad_h))
    bw = (WIDTH - PAD) // 8 - PAD
    for i, c in enumerate(buttons[:16]):
        _node(children, c, (PAD + (i % 8) * (bw + PAD), HEIGHT - 2 * (ROW + PAD) + (i // 8) * (ROW + PAD), bw, ROW))
    xml = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return zlib.compress(xml)
