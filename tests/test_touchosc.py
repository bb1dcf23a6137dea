"""`livevae touchosc`: the layout parses, and every control in it sends what moves the show it was made for."""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest
from pythonosc.osc_message_builder import build_msg

from livevae.cli.main import main
from livevae.control.state import ControlState
from livevae.controllers.osc import OscServer
from livevae.show.schema import load_show

SHOW = """
name = "set"
model = "missing.safetensors"

[[mapping]]
address = "/1/fader1"
target = "pc/2"

[[mapping]]
address = "/1/fader2"
target = "noise"
in_range = [0, 127]

[[mapping]]
address = "/1/xy"
target = "pc/0"
index = 0

[[mapping]]
address = "/1/xy"
target = "pc/1"
index = 1

[[mapping]]
address = "/1/push"
action = "screenshot"

[scenes.verse]
controls = { mix = 0.5 }
"""


def nodes(path: Path) -> list[ET.Element]:
    root = ET.fromstring(zlib.decompress(path.read_bytes()))
    assert root.tag == "lexml" and root.get("version") == "3"
    top = root.find("node")
    assert top is not None and top.get("type") == "GROUP"
    return list(top.find("children") or [])


def message(node: ET.Element, at: float) -> tuple[str, list[float]]:
    """What TouchOSC sends for this control with every variable at `at` (0..1): the path and scaled arguments."""
    osc = node.find("messages/osc")
    assert osc is not None and osc.findtext("send") == "1"
    path = osc.findtext("path/partial/value")
    assert path is not None
    args = []
    for p in osc.findall("arguments/partial"):
        lo, hi = float(p.findtext("scaleMin") or 0), float(p.findtext("scaleMax") or 1)
        args.append(lo + at * (hi - lo))
    return path, args


def test_every_control_in_the_layout_moves_the_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    show = tmp_path / "set.toml"
    show.write_text(SHOW)
    out = tmp_path / "set.tosc"
    assert main(["touchosc", str(show), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    ns = nodes(out)
    names = {n.findtext("properties/property[key='name']/value"): n for n in ns}
    assert {"pc/2", "noise", "pc/0 x pc/1", "screenshot", "mix", "smooth", "scene verse", "record", "reset"} <= set(
        names
    )
    assert len({n.get("ID") for n in ns}) == len(ns)  # TouchOSC keys controls by ID

    state = ControlState(200, 16)
    server = OscServer(state, port=0, mappings=load_show(show).osc_mappings())
    reset = names.pop("reset")
    for n in names.values():
        path, args = message(n, 1.0)
        server.handle_datagram(build_msg(path, args).dgram)
    assert server.stats.bad_args == 0 and server.stats.unknown == 0 and server.stats.malformed == 0
    # each fader at its top is the top of its control's range, whichever address it goes through
    for t in ("pc/2", "noise", "pc/0", "pc/1", "mix", "smooth", "z/0" if state.n_pcs == 0 else "pc/7"):
        assert state.get(t) == pytest.approx(state.check_target(t)[1]), t
    actions = [a for a, _ in state.drain_actions()]
    assert {"screenshot", "scene.recall", "record"} <= set(actions)
    path, args = message(reset, 1.0)
    assert (path, args) == ("/livevae/reset", [])  # a press without an argument
    server.handle_datagram(build_msg(path, args).dgram)
    assert state.get("pc/2") == 0.0 and state.get("mix") == 0.0


def test_an_unwritable_layout_exits_non_zero_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    show = tmp_path / "set.toml"
    show.write_text(SHOW)
    out = tmp_path / "no" / "such" / "dir" / "set.tosc"
    assert main(["touchosc", str(show), "-o", str(out)]) != 0
    err = capsys.readouterr().err
    assert str(out) in err and "cannot write" in err
    assert not out.exists()
