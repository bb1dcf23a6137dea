"""Input fuzz, short forms: random and mutated OSC datagrams over real UDP, random MIDI bytes, fuzzed show files
and [installation] sections. No crash; bad input gives clear errors. The 100k-datagram form: bench/soak/fuzz_osc.py.
Also the security properties of the inputs: OSC binds 127.0.0.1 by default, controller input is never eval'd,
models load through safetensors/JSON only, TensorRT engines only from livevae's cache with a hash check."""

from __future__ import annotations

import ast
import importlib.util
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livevae.control.state import ControlState
from livevae.installation.section import InstallationError, parse_section

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The conftest's tiny model, built once for this module (its tests only read it)."""

    from livevae.model import random_model, save_model

    m = random_model("tiny", seed=0)
    return save_model(m, tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


def load_bench(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "soak" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def finite_state(state: ControlState) -> bool:
    s = state.snapshot()
    return all(np.isfinite(a).all() for a in (s.offset, s.gain, s.pc)) and all(
        np.isfinite(v) for v in (s.mix, s.noise, s.smooth, s.slew, s.bpm)
    )


# --- OSC ----------------------------------------------------------------------------------------------------


def test_osc_flood_of_random_and_mutated_datagrams() -> None:
    """15k datagrams at full rate over real UDP on 127.0.0.1, then 5k in paced bursts (all parsed): the server
    survives, counts what it could not use, keeps every control finite and in range, still answers afterwards."""
    fuzz = load_bench("fuzz_osc")
    for r, least in ((fuzz.run(15_000, seed=1), 1), (fuzz.run(5_000, seed=2, paced=True), 1000)):
        print(r)
        assert r["alive"] and r["after_flood_ok"]
        assert r["state_finite"] and r["in_range"]
        # full rate: the kernel drops what the socket cannot hold, and how much depends on how busy the machine is
        # (961 of 15,000 on a loaded 2-core box), so only the paced run is held to a count
        assert r["received"] >= least
        assert r["malformed"] + r["unknown"] + r["bad_args"] + r["handled"] >= r["received"] * 0.9
        assert r["distinct_bad_addresses_kept"] <= 1000  # bounded bookkeeping
    assert r["received"] == 5_000  # paced: every datagram reached the parser


def test_osc_binds_localhost_by_default() -> None:
    from livevae.controllers.osc import OscServer
    from livevae.controllers.osc_mapping import DEFAULT_HOST
    from livevae.show.schema import OscSection

    assert DEFAULT_HOST == "127.0.0.1" and OscSection().host == "127.0.0.1"
    srv = OscServer(ControlState(16), port=0)
    srv.start()
    try:
        assert srv._sock is not None and srv._sock.getsockname()[0] == "127.0.0.1"
    finally:
        srv.stop()


# --- MIDI ---------------------------------------------------------------------------------------------------


def test_random_midi_bytes(tmp_path: Path) -> None:
    """200k random bytes through mido's parser into the show's MIDI mappings: no exception, finite controls."""
    import mido

    from livevae.controllers.midi import from_show

    state = ControlState(16, 4)
    section = {
        "map": [
            {"cc": 1, "target": "mix"},
            {"cc": 2, "target": "z/3"},
            {"cc14": 3, "target": "pc/0"},
            {"note": 60, "action": "scene.recall", "arg": "a"},
            {"pitchbend": True, "target": "noise"},
        ]
    }
    ctl = from_show(section, state, tmp_path / "show.toml")  # not started: no MIDI ports here
    rng = random.Random(7)
    parser = mido.Parser()
    n = 0
    for _ in range(200):
        chunk = bytes(rng.getrandbits(8) for _ in range(1000))
        parser.feed(chunk)
        for msg in parser:
            ctl.feed(msg, "fuzz")
            n += 1
    # and every message type built from random valid fields
    for _ in range(2000):
        kind = rng.choice(["note_on", "note_off", "control_change", "pitchwheel", "sysex", "program_change"])
        if kind == "control_change":
            msg = mido.Message(kind, channel=rng.randrange(16), control=rng.randrange(128), value=rng.randrange(128))
        elif kind in ("note_on", "note_off"):
            msg = mido.Message(kind, channel=rng.randrange(16), note=rng.randrange(128), velocity=rng.randrange(128))
        elif kind == "pitchwheel":
            msg = mido.Message(kind, channel=rng.randrange(16), pitch=rng.randrange(-8192, 8192))
        elif kind == "sysex":
            msg = mido.Message(kind, data=[rng.randrange(128) for _ in range(rng.randrange(20))])
        else:
            msg = mido.Message(kind, program=rng.randrange(128))
        ctl.feed(msg, "fuzz")
        n += 1
    assert n > 10_000
    assert ctl.stats.messages == n and ctl.stats.handled > 100
    assert finite_state(state)
    assert 0.0 <= state.get("mix") <= 1.0


# --- show files and the [installation] section ---------------------------------------------------------------

VALID_SHOW = """
name = "fuzz"
model = "{model}"
backend = "torch"
[input]
sources = ["testcard"]
[osc]
port = 0
[controls]
smooth = 0.3
[scenes.a]
controls = {{ mix = 0.3 }}
[[lfo]]
target = "z/1"
rate = 0.5
[installation]
display = 0
[installation.autopilot]
idle_timeout = 60
scenes = ["a"]
[installation.schedule]
open = ["mon-fri 10:00-18:00"]
timezone = "UTC"
nightly_restart = "04:00"
[installation.health]
heartbeat = "hb.json"
[installation.watchdog]
source_timeout = 10
"""


BAD_VALUES = ["-1", "1e400", '"x"', "[]", "{}", "true", '"mon-fry 25:00-1"', "nan", '"../../etc"', "0",
              "\"__import__('os').system('x')\"", "99999999999999999999", '"\\u0000"']  # fmt: skip


def _mutate(text: str, rng: random.Random) -> str:
    """A damaged show: lines dropped, duplicated or swapped, values replaced, characters flipped."""
    lines = text.splitlines()
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(lines))
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 2 and "=" in lines[i]:
            k = lines[i].split("=", 1)[0]
            v = rng.choice(BAD_VALUES)
            lines[i] = f"{k}= {v}"
        elif op == 3:
            s = lines[i]
            if s:
                j = rng.randrange(len(s))
                lines[i] = s[:j] + rng.choice("[]{}=\"'#\\\n\x00é,.") + s[j + 1 :]
        elif op == 4:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines[i] = lines[i].replace("installation", rng.choice(["installation.x", "instalation", "installation"]))
    return "\n".join(lines)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_fuzzed_show_files_give_show_errors(tmp_path_factory: pytest.TempPathFactory, seed: int) -> None:
    """build_show on a mutated show: a valid show, or ShowError with the file named; never another exception."""
    from livevae.show.schema import ShowError
    from livevae.show.showfile import build_show

    folder = _show_folder(tmp_path_factory)
    text = _mutate(VALID_SHOW.format(model=folder / "tiny.safetensors"), random.Random(seed))
    path = folder / f"s{seed}.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        _cfg, state, controllers = build_show(path, osc_port=0)
    except ShowError as e:
        msg = str(e)
        assert str(path) in msg, msg
        assert "Traceback" not in msg
    else:
        for c in controllers:
            c.stop()
        assert finite_state(state)
    finally:
        path.unlink()


_FOLDER: dict[str, Path] = {}


def _show_folder(factory: pytest.TempPathFactory) -> Path:
    if "f" not in _FOLDER:
        from livevae.model import random_model, save_model

        f = factory.mktemp("fuzzshow")
        save_model(random_model("tiny", seed=0, warm_batches=0), f / "tiny.safetensors")
        _FOLDER["f"] = f
    return _FOLDER["f"]


toml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["mon-fri 10:00-18:00", "24:00-01:00", "Europe/Berlin", "z/3", "z/-1", "still", "04:00"]),
)
keys = st.sampled_from(
    [
        "display",
        "fullscreen",
        "cursor",
        "hud",
        "enabled",
        "autopilot",
        "schedule",
        "health",
        "watchdog",
        "open",
        "timezone",
        "closed",
        "still",
        "closed_fps",
        "nightly_restart",
        "idle_timeout",
        "drift",
        "scenes",
        "lfos",
        "target",
        "rate",
        "heartbeat",
        "log_file",
        "hang_exit",
        "call_timeout",
        "x",
    ]
)
sections = st.recursive(
    toml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=10,
)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(raw=st.dictionaries(keys, sections, max_size=6))
def test_fuzzed_installation_sections(raw: dict[str, Any]) -> None:
    try:
        sec = parse_section(raw)
    except InstallationError as e:
        msg = str(e)
        assert msg.startswith("installation"), msg
        assert re.match(r"installation[\w.\[\]]*", msg)
    else:
        assert sec.schedule.closed_fps > 0


# --- security -----------------------------------------------------------------------------------------------


def _calls(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                out.add(f.id)
            elif isinstance(f, ast.Attribute):
                base = f.value.id if isinstance(f.value, ast.Name) else "?"
                out.add(f"{base}.{f.attr}")
    return out


def test_no_eval_of_controller_input_and_no_pickle() -> None:
    """No eval/exec/pickle anywhere in the runtime; torch.load only with weights_only (never for model files)."""
    bad: list[str] = []
    for p in sorted((ROOT / "livevae").rglob("*.py")):
        calls = _calls(p)
        for name in ("eval", "exec", "compile", "pickle.load", "pickle.loads", "marshal.loads", "yaml.load",
                     "os.system", "subprocess.call", "numpy.load", "np.load"):  # fmt: skip
            if name in calls:
                if name in ("np.load", "numpy.load") and "allow_pickle=True" not in p.read_text():
                    continue  # numpy refuses pickles unless allow_pickle=True
                bad.append(f"{p.relative_to(ROOT)}: {name}(")
        text = p.read_text()
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                bad.append(f"{p.relative_to(ROOT)}: torch.load without weights_only=True")
    assert not bad, bad


def test_models_load_through_safetensors_and_json_only(tmp_path: Path, tiny_model_file: Path) -> None:
    from livevae.model import ModelError, load_model

    src = (ROOT / "livevae" / "model.py").read_text()
    assert "safetensors" in src and "torch.load(" not in src
    # a pickle disguised as a model file is refused, not unpickled
    evil = tmp_path / "evil.safetensors"
    import pickle

    evil.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises((ModelError, Exception)) as e:
        load_model(evil)
    assert "pickle" not in type(e.value).__name__.lower()
    load_model(tiny_model_file)


def test_tensorrt_engines_load_only_from_the_cache_with_a_hash_check(tmp_path: Path) -> None:
    """An engine whose bytes no longer match the SHA-256 recorded when livevae built it is refused."""
    cache = pytest.importorskip("livevae.backends.cache")
    from livevae.backends import EngineError

    fields = {"onnx_sha256": "a" * 64, "trt": "10.0", "gpu": "test"}
    art = tmp_path / "decoder.engine"
    cache.write_verified(art, b"engine bytes", fields)
    assert cache.read_verified(art, fields) == b"engine bytes"
    art.write_bytes(b"engine bytes, swapped by hand")
    with pytest.raises(EngineError):
        cache.read_verified(art, fields)
    trt = (ROOT / "livevae" / "backends" / "tensorrt_backend.py").read_text()
    assert "read_verified" in trt and "cache_root" in trt  # engines come from livevae's cache, verified
