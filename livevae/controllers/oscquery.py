"""OSCQuery (Vidvox's proposal): the show's OSC address tree as JSON, built from the route registry (pure)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from livevae.control.state import LFO_SHAPES, ControlError, ControlSnapshot, ControlState, canonical
from livevae.controllers.osc_mapping import PREFIX, unmap_value
from livevae.controllers.osc_mapping import Mapping as OscMapping

# The proposal's optional attributes and WebSocket features this server implements (HOST_INFO's EXTENSIONS).
EXTENSIONS: dict[str, bool] = {
    "ACCESS": True,
    "VALUE": True,
    "RANGE": True,
    "DESCRIPTION": True,
    "TAGS": False,
    "EXTENDED_TYPE": False,
    "UNIT": False,
    "CRITICAL": False,
    "CLIPMODE": True,
    "LISTEN": True,
    "PATH_CHANGED": False,
    "PATH_RENAMED": False,
    "PATH_ADDED": True,
    "PATH_REMOVED": True,
    "HTML": False,
}
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "VALUE", "RANGE", "DESCRIPTION", "CLIPMODE", "HOST_INFO")
# ACCESS is a bit mask: 1 = the value can be read, 2 = it can be set
NO_VALUE, READ, WRITE, READ_WRITE = 0, 1, 2, 3

_SCALAR_DOC = {
    "mix": "mix toward the stored latent (scene anchor)",
    "noise": "Gaussian noise on z, std in latent units",
    "smooth": "EMA on z across frames, tames flicker",
    "slew": "default slew time of every control, seconds",
    "freeze": "1 holds the current z, 0 lets it go",
    "bpm": "tempo for synced LFOs",
}
_VECTOR_DOC = {
    "z": "offset of latent dimension {i}, latent units",
    "gain": "gain of latent dimension {i}",
    "pc": "move along principal direction {i}, in the film's standard deviations",
}
_ACTION_DOC = {
    "reset": "the show as it started (the panic button)",
    "zero": "every control and LFO to the built-in defaults",
    "screenshot": "save the current output frame",
    "fullscreen": "toggle fullscreen",
    "feedback": "re-send every mapped value to every feedback target",
    "ping": "answers /livevae/pong to the sender (to port i when given)",
    "hello": "feed this controller back from now on, at port i or the port it sent from",
    "bye": "stop feeding this controller back",
}
# registry addresses that are not nodes of their own: an alias, the scene wildcard (its scenes are), vector forms
_SKIP = {f"{PREFIX}/ema", f"{PREFIX}/scene/*", f"{PREFIX}/z", f"{PREFIX}/gain", f"{PREFIX}/pc"}


@dataclass(frozen=True)
class ShowInfo:
    """What the tree needs besides the controls: the loop's show state at the moment of the query."""

    recording: bool = False
    sources: tuple[str, ...] = ()
    source_index: int = 0
    scene: str = ""
    scenes: tuple[str, ...] = ()


def method(full_path: str, type_: str | None, access: int, description: str, **attrs: Any) -> dict[str, Any]:
    """One OSC method node: FULL_PATH, TYPE (omitted when the method takes no value), ACCESS, DESCRIPTION, and
    VALUE / RANGE / CLIPMODE when given."""
    node: dict[str, Any] = {"FULL_PATH": full_path, "ACCESS": access, "DESCRIPTION": description}
    if type_ is not None:
        node["TYPE"] = type_
    node.update({k: v for k, v in attrs.items() if v is not None})
    return node


def control_node(address: str, state: ControlState, snap: ControlSnapshot) -> dict[str, Any] | None:
    """The node of a numeric control address (/livevae/mix, /livevae/pc/3, /livevae/lfo/0/rate), or None."""
    t = canonical(address)
    try:
        lo, hi = state.check_target(t)
        v = snap.get(t)
    except ControlError:
        return None
    head, _, rest = t.partition("/")
    if head in _SCALAR_DOC:
        doc = _SCALAR_DOC[head]
    elif head in _VECTOR_DOC:
        doc = _VECTOR_DOC[head].format(i=rest)
    else:
        n, _, p = rest.partition("/")
        doc = f"LFO {n} {p}" + {"rate": " (Hz; cycles per beat when synced)", "sync": " (0/1)"}.get(p, "")
    is_int = t == "freeze" or t.endswith("/sync")
    value: Any = round(v) if is_int else v
    rng = {"MIN": int(lo), "MAX": int(hi)} if is_int else {"MIN": lo, "MAX": hi}
    return method(address, "i" if is_int else "f", READ_WRITE, doc, VALUE=[value], RANGE=[rng], CLIPMODE=["both"])


def _lfo_text_node(address: str, snap: ControlSnapshot) -> dict[str, Any] | None:
    parts = canonical(address).split("/")  # ["lfo", n, "target" | "shape"]
    if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(snap.lfos):
        return None
    lfo = snap.lfos[int(parts[1])]
    if parts[2] == "shape":
        return method(address, "s", READ_WRITE, f"LFO {parts[1]} shape", VALUE=[lfo.shape],
                      RANGE=[{"VALS": list(LFO_SHAPES)}])  # fmt: skip
    return method(address, "s", READ_WRITE, f"LFO {parts[1]} target: a control such as pc/0, mix, z/12 ('' = off)",
                  VALUE=[lfo.target])  # fmt: skip


def show_node(address: str, info: ShowInfo) -> dict[str, Any] | None:
    """The node of a show-state or action address (record, source, scene/save, reset, ...), or None."""
    name = address[len(PREFIX) + 1 :]
    if name == "record":
        return method(address, "i", READ_WRITE, "1 starts, 0 stops recording", VALUE=[int(info.recording)],
                      RANGE=[{"MIN": 0, "MAX": 1}])  # fmt: skip
    if name == "source":
        n = max(len(info.sources), 1)
        names = "; ".join(f"{i} = {s}" for i, s in enumerate(info.sources))
        return method(address, "i", READ_WRITE, f"switch source by index ({names})" if names else "switch source",
                      VALUE=[info.source_index], RANGE=[{"MIN": 0, "MAX": n - 1}])  # fmt: skip
    if name == "scene/save":
        return method(address, "s", WRITE, "save the current latent and controls as a scene of this name")
    if name in ("hello", "bye", "ping"):
        return method(address, "i", WRITE, _ACTION_DOC[name])
    if name in _ACTION_DOC:
        return method(address, None, WRITE, _ACTION_DOC[name])
    return None


def mapping_node(address: str, ms: Sequence[OscMapping], state: ControlState, snap: ControlSnapshot) -> dict[str, Any]:
    """A show mapping's address (TouchOSC's /1/fader3): one float per argument it reads, in its own in_range."""
    n = max(m.index for m in ms) + 1
    values: list[float] = [0.0] * n
    ranges: list[dict[str, float]] = [{"MIN": 0.0, "MAX": 1.0} for _ in range(n)]
    what = []
    for m in ms:
        ranges[m.index] = {"MIN": float(min(m.in_range)), "MAX": float(max(m.in_range))}
        if m.target:
            with contextlib.suppress(ControlError):
                values[m.index] = unmap_value(m, snap.get(m.target), state.check_target(m.target))
            what.append(m.target)
        else:
            what.append(m.action + (f" {m.arg}" if m.arg is not None else ""))
    access = READ_WRITE if any(m.target for m in ms) else WRITE
    return method(address, "f" * n, access, "show mapping: " + ", ".join(what), VALUE=values if access & READ else None,
                  RANGE=ranges)  # fmt: skip


def node_for(
    address: str,
    state: ControlState,
    snap: ControlSnapshot,
    info: ShowInfo,
    mappings: Mapping[str, Sequence[OscMapping]],
    doc: str = "",
    args: str = "",
) -> dict[str, Any] | None:
    """The method node of one registry address, or None when it is not a node of its own."""
    if address in _SKIP:
        return None
    if address in mappings:
        return mapping_node(address, mappings[address], state, snap)
    if address.startswith(PREFIX + "/lfo/") and address.rsplit("/", 1)[-1] in ("target", "shape"):
        return _lfo_text_node(address, snap)
    node = control_node(address, state, snap) if address.startswith(PREFIX + "/") else None
    if node is None:
        node = show_node(address, info) if address.startswith(PREFIX + "/") else None
    if node is None:  # a route another controller registered (MIDI learn): its own args and doc
        type_ = args.split("|")[0].strip().strip("[]").replace(" ", "") or None
        node = method(address, type_, WRITE, doc or "")
    return node


def addresses(
    routes: Iterable[tuple[str, str, str]], info: ShowInfo, mappings: Mapping[str, Sequence[OscMapping]]
) -> dict[str, tuple[str, str]]:
    """Every address the tree shows -> (args, doc): the registry's routes, one per scene, the show's mappings."""
    out: dict[str, tuple[str, str]] = {}
    for address, args, doc in routes:
        if address not in _SKIP:
            out[address] = (args, doc)
    for name in info.scenes:
        out.setdefault(f"{PREFIX}/scene/{name}", ("", f"recall scene {name!r}"))
    for address in mappings:
        out.setdefault(address, ("f", ""))
    return out


def default_routes(state: ControlState) -> list[tuple[str, str, str]]:
    """The addresses of a state when there is no OSC server to ask (OSC switched off): its numeric controls."""
    out = [(f"{PREFIX}/{t}", "f", "") for t in state.targets()]
    for n in range(state.n_lfos):
        out += [(f"{PREFIX}/lfo/{n}/target", "s", ""), (f"{PREFIX}/lfo/{n}/shape", "s", "")]
    return out


def build_tree(
    routes: Iterable[tuple[str, str, str]],
    state: ControlState,
    info: ShowInfo,
    mappings: Sequence[OscMapping] = (),
    name: str = "livevae",
) -> dict[str, Any]:
    """The root node: containers for every path segment, a method node per address, values as of now."""
    snap = state.snapshot()
    groups: dict[str, list[OscMapping]] = {}
    for m in mappings:
        groups.setdefault(m.address, []).append(m)
    root: dict[str, Any] = {"FULL_PATH": "/", "ACCESS": NO_VALUE, "DESCRIPTION": f"{name}: the OSC address space",
                            "CONTENTS": {}}  # fmt: skip
    for address, (args, doc) in addresses(routes, info, groups).items():
        node = node_for(address, state, snap, info, groups, doc, args)
        if node is None:
            continue
        parts = [p for p in address.split("/") if p]
        parent = root
        for depth, part in enumerate(parts[:-1]):
            contents = parent.setdefault("CONTENTS", {})
            child = contents.get(part)
            if child is None:
                path = "/" + "/".join(parts[: depth + 1])
                child = contents[part] = {"FULL_PATH": path, "ACCESS": NO_VALUE, "DESCRIPTION": _container_doc(path)}
            parent = child
        contents = parent.setdefault("CONTENTS", {})
        old = contents.get(parts[-1])
        if old is not None and "CONTENTS" in old:  # a node that is both: /livevae/scene/save under /livevae/scene
            node["CONTENTS"] = old["CONTENTS"]
        contents[parts[-1]] = node
    return root


def _container_doc(path: str) -> str:
    return {
        PREFIX: "livevae's controls, actions and scenes",
        f"{PREFIX}/z": "per-dimension latent offsets",
        f"{PREFIX}/gain": "per-dimension latent gains",
        f"{PREFIX}/pc": "principal directions of the film's latents",
        f"{PREFIX}/lfo": "LFOs",
        f"{PREFIX}/scene": "scenes: a press recalls one",
    }.get(path, "")


def find(tree: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The node at an OSC path ("/" is the root), or None."""
    node: Mapping[str, Any] | None = tree
    for part in (p for p in path.split("/") if p):
        if node is None:
            return None
        node = node.get("CONTENTS", {}).get(part)
    return node


def paths(tree: Mapping[str, Any]) -> set[str]:
    """Every FULL_PATH in a tree, containers included (what PATH_ADDED / PATH_REMOVED are worked out from)."""
    out = {str(tree["FULL_PATH"])}
    for child in tree.get("CONTENTS", {}).values():
        out |= paths(child)
    return out


def host_info(name: str, osc_ip: str, osc_port: int | None, ws_port: int) -> dict[str, Any]:
    """HOST_INFO: the server's name, extensions, where OSC goes (UDP) and the WebSocket (the HTTP port)."""
    out: dict[str, Any] = {"NAME": name, "EXTENSIONS": dict(EXTENSIONS), "OSC_TRANSPORT": "UDP"}
    if osc_port is not None:
        out["OSC_IP"], out["OSC_PORT"] = osc_ip, int(osc_port)
    out["WS_IP"], out["WS_PORT"] = osc_ip, int(ws_port)
    return out
