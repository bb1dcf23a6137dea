"""Show files: shipped shows validate, errors name file and key, build_show, hot reload, check-show, extensions."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from pythonosc.osc_message_builder import build_msg

from livevae.show.controller import ShowController
from livevae.show.resolve import check_targets
from livevae.show.schema import EXTENSIONS, ShowError, load_show
from livevae.show.showfile import build_show, check_show, default_controllers

SHOWS = Path(__file__).resolve().parent.parent / "shows"


@pytest.fixture(scope="module")
def pca_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (64x48, z=16, BN warmed) with a 6-direction PCA along the first dimensions; built once
    per module, since building it costs about a second on a busy 2-core machine."""
    from livevae.model import random_model, save_model

    m = random_model("tiny", seed=0)
    m.set_pca(torch.zeros(m.cfg.zdim), torch.eye(6, m.cfg.zdim), torch.ones(6))
    return save_model(m, tmp_path_factory.mktemp("model") / "pca.safetensors")


def _write(tmp_path: Path, text: str, name: str = "show.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


BASE = """
model = "{model}"
[input]
sources = ["testcard"]
[osc]
port = 0
[controls]
smooth = 0.25
[[mapping]]
address = "/1/fader1"
target = "pc/0"
range = [-2.0, 2.0]
smoothing = 0.2
[[lfo]]
target = "pc/1"
depth = 0.5
[scenes.a]
controls = {{ mix = 0.5 }}
"""


@pytest.mark.parametrize("name", ["demo.toml", "blade_runner.toml", "scanner_darkly.toml"])
def test_shipped_shows_validate(name: str) -> None:
    show = load_show(SHOWS / name)
    check_targets(show, 200, 16)  # the live preset's latent size and PCA depth
    assert show.mapping and show.scenes and show.lfo  # each is a reference for users: it shows every part
    text = (SHOWS / name).read_text()
    assert text.count("#") > 20  # and it is commented


@pytest.mark.parametrize(
    ("body", "key", "expect"),
    [
        ('model = "m"\n[osc]\nprot = 9000\n', "osc.prot", "unknown key"),
        ('model = "m"\n[osc]\nport = "nine"\n', "osc.port", "valid integer"),
        ('model = "m"\n[osc]\nport = 70000\n', "osc.port", "less than or equal to 65535"),
        ('model = "m"\n[osc]\nfeedback = "tablet"\n', "osc.feedback", "host:port"),
        ("[osc]\nport = 1\n", "model", "missing"),
        ('model = "m"\n[[mapping]]\naddress = "/a"\ntarget = "mix"\naction = "quit"\n', "mapping[0]", "exactly one"),
        ('model = "m"\n[[mapping]]\naddress = "/a"\ntarget = "mix"\ncurve = "wobbly"\n', "mapping[0].curve", "linear"),
        ('model = "m"\n[[mapping]]\naddress = "a/b"\ntarget = "mix"\n', "mapping[0].address", "starts with /"),
        ('model = "m"\n[[lfo]]\ntarget = "mix"\nshape = "saw"\n', "lfo[0].shape", "sine"),
        ('model = "m"\n[scenes.x]\nfade = -1\n', "scenes.x.fade", "greater than or equal to 0"),
        ('model = "m"\n[input]\nfallback = "grey"\n', "input.fallback", "hold"),
        ('model = "m"\n[input]\nsources = [{a = 1}]\n', "input.sources[0]", "a valid string or a valid integer"),
        ('model = "m"\n[[mapping]]\naddress = "/a"\ntarget = "mix"\nrange = [1]\n', "mapping[0].range", "two values"),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path: Path, body: str, key: str, expect: str) -> None:
    p = _write(tmp_path, body)
    with pytest.raises(ShowError) as e:
        load_show(p)
    msg = str(e.value)
    assert str(p) in msg and f": {key}" in msg and expect in msg, msg


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, 'model = "m"\n[osc\nport = 1\n')
    with pytest.raises(ShowError, match=r"show.toml: TOML syntax error: .*line 2"):
        load_show(p)


def test_semantic_errors_name_the_key(tmp_path: Path, pca_model: Path) -> None:
    cases = [
        ('[[mapping]]\naddress = "/a"\ntarget = "pc/9"\n', "mapping[0].target", "expected 0..5"),
        ('[[mapping]]\naddress = "/a"\ntarget = "mix"\nrange = [0, 3]\n', "mapping[0].range", "expected 0..1"),
        ('[[mapping]]\naddress = "/a"\naction = "scene.recall"\n', "mapping[0].arg", "scene's name"),
        ('[controls]\nwarp = 1\n', "controls.warp", "unknown target"),
        ('[scenes.x]\nanchor = [1.0, 2.0]\n', "scenes.x.anchor", "expected 16"),
        ('[scenes.save]\n', "scenes.save", "reserved"),
        ('[[lfo]]\ntarget = "lfo/0/rate"\n', "lfo[0].target", "non-LFO"),
        ('[input]\nsources = ["testcard"]\nsource = 3\n', "input.source", "expected 0..0"),
    ]  # fmt: skip
    for body, key, expect in cases:
        p = _write(tmp_path, f'model = "{pca_model}"\n{body}')
        with pytest.raises(ShowError) as e:
            build_show(p)
        assert f"{p}: {key}: " in str(e.value) and expect in str(e.value), str(e.value)
    p = _write(tmp_path, f'model = "{pca_model}"\n[scenes.x]\nframes = {{ video = "nope.mp4" }}\n')
    with pytest.raises(ShowError, match=r"show.toml: scenes.x.frames.video: .*nope.mp4 not found"):
        check_show(p)
    p = _write(tmp_path, 'model = "missing.safetensors"\n')
    with pytest.raises(ShowError, match=r"show.toml: model: .*missing.safetensors.*not found"):
        build_show(p)


def test_build_show(tmp_path: Path, pca_model: Path, make_video: object) -> None:
    film = make_video("film.mp4", n=6)  # type: ignore[operator]
    p = _write(
        tmp_path,
        BASE.format(model=pca_model).replace('sources = ["testcard"]', 'sources = ["film.mp4", "clip:nope.mp4", 0]')
        + '[window]\nsize = "800x600"\nfilter = "pixelated"\n[output]\nrecord_dir = "rec"\n',
    )
    cfg, state, controllers = build_show(p)
    assert cfg.model == str(pca_model)
    assert cfg.sources == [str(film), "testcard", "0"]  # relative to the show; a missing clip plays the test card
    assert cfg.window.size == (800, 600) and cfg.window.filter == "pixelated"
    assert cfg.record_dir == str(tmp_path / "rec")
    assert state.zdim == 16 and state.n_pcs == 6
    snap = state.snapshot()
    assert snap.smooth == 0.25 and snap.lfos[0].target == "pc/1" and snap.lfos[0].depth == 0.5
    assert snap.slews == {"pc/0": 0.2}  # the mapping's smoothing
    (ctrl,) = controllers
    assert isinstance(ctrl, ShowController) and ctrl.scenes.names() == ["a"]
    ctrl.server.handle_datagram(build_msg("/1/fader1", [1.0]).dgram)  # type: ignore[union-attr]
    assert state.snapshot().pc[0] == 2.0


def test_hot_reload_broken_file_keeps_the_old_show(
    tmp_path: Path, pca_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = _write(tmp_path, BASE.format(model=pca_model))
    _, state, (ctrl,) = build_show(p)
    assert isinstance(ctrl, ShowController)
    p.write_text(p.read_text().replace('target = "pc/0"', 'target = "pc/99"'))  # broken: no such direction
    assert not ctrl.reload()
    err = capsys.readouterr().err
    assert "reload failed, the show goes on unchanged" in err and "mapping[0].target" in err
    assert len([ln for ln in err.splitlines() if "reload failed" in ln]) == 1  # one line
    ctrl.server.handle_datagram(build_msg("/1/fader1", [1.0]).dgram)  # type: ignore[union-attr]
    assert state.snapshot().pc[0] == 2.0  # the old mapping still plays
    p.write_text("model = [unclosed\n")
    assert not ctrl.reload()
    assert "TOML syntax error" in capsys.readouterr().err
    assert ctrl.reload_errors == 2 and ctrl.reloads == 0 and ctrl.show.mapping[0].target == "pc/0"


def test_hot_reload_applies_mappings_scenes_lfos_and_changed_controls(tmp_path: Path, pca_model: Path) -> None:
    p = _write(tmp_path, BASE.format(model=pca_model))
    _, state, (ctrl,) = build_show(p)
    assert isinstance(ctrl, ShowController)
    state.set("noise", 0.5, origin="osc")  # the performer's move, not in the file: kept
    state.set("smooth", 0.6, origin="osc")  # in the file but unchanged there: kept
    new = (
        BASE.format(model=pca_model)
        .replace('address = "/1/fader1"', 'address = "/2/rotary1"')
        .replace('target = "pc/1"', 'target = "mix"')
        .replace("[scenes.a]", "[scenes.b]")
        + "[controls.more]\n"
    ).replace("[controls.more]\n", "")
    new = new.replace("smooth = 0.25", "smooth = 0.25\nbpm = 90")
    p.write_text(new)
    assert ctrl.reload()
    snap = state.snapshot()
    assert snap.lfos[0].target == "mix"
    assert snap.bpm == 90 and snap.noise == 0.5 and snap.smooth == 0.6
    assert ctrl.scenes.names() == ["b"]
    srv = ctrl.server
    assert srv is not None
    srv.handle_datagram(build_msg("/1/fader1", [1.0]).dgram)  # the old address is gone
    assert srv.stats.unknown == 1 and snap.pc[0] == 0.0
    srv.handle_datagram(build_msg("/2/rotary1", [0.0]).dgram)
    assert state.snapshot().pc[0] == -2.0


def test_watcher_picks_up_a_save(tmp_path: Path, pca_model: Path) -> None:
    p = _write(tmp_path, BASE.format(model=pca_model))
    _, state, (ctrl,) = build_show(p)
    assert isinstance(ctrl, ShowController)
    ctrl.start(None)
    try:
        time.sleep(0.05)
        p.write_text(BASE.format(model=pca_model).replace("depth = 0.5", "depth = 0.75"))
        end = time.monotonic() + 5
        while time.monotonic() < end and state.snapshot().lfos[0].depth != 0.75:
            time.sleep(0.05)
        assert state.snapshot().lfos[0].depth == 0.75 and ctrl.reloads == 1
    finally:
        ctrl.stop()


def test_check_show_command(tmp_path: Path, pca_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from livevae.cli.main import main

    good = _write(tmp_path, BASE.format(model=pca_model), "good.toml")
    bad = _write(tmp_path, BASE.format(model=pca_model).replace("pc/1", "pc/77"), "bad.toml")
    assert main(["check-show", str(good)]) == 0
    assert "good.toml: ok (1 mappings, 1 scenes, 1 LFOs" in capsys.readouterr().out
    assert main(["check-show", str(good), str(bad)]) == 1
    assert "bad.toml: lfo[0].target: " in capsys.readouterr().err
    assert check_show(good).name == ""


def test_extension_sections_are_delegated_and_their_errors_wrapped(
    tmp_path: Path, pca_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = types.ModuleType("livevae_fake_ext")

    from livevae.errors import LivevaeError

    class FakeError(LivevaeError):  # an extension's own error type, as MidiError and AudioError are
        pass

    class FakeController:
        def __init__(self, section: dict[str, object]) -> None:
            self.section = section

    def from_show(section: dict[str, object], state: object, show_path: Path) -> FakeController:
        if "bad" in section:
            raise FakeError("midi.bad: 'x'; expected a port name")
        return FakeController(section)

    fake.from_show = from_show  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "livevae_fake_ext", fake)
    monkeypatch.setitem(EXTENSIONS, "midi", "livevae_fake_ext")
    p = _write(tmp_path, BASE.format(model=pca_model) + '[midi]\nport = "nanoKONTROL2"\n')
    _, _, controllers = build_show(p)
    assert isinstance(controllers[1], FakeController) and controllers[1].section == {"port": "nanoKONTROL2"}
    p.write_text(BASE.format(model=pca_model) + '[midi]\nbad = "x"\n')
    with pytest.raises(ShowError, match=r"show.toml: \[midi\]: midi.bad: 'x'; expected a port name"):
        build_show(p)


def test_default_controllers_for_flag_form(pca_model: Path) -> None:
    from livevae.control.state import ControlState
    from livevae.loop import LiveConfig

    state = ControlState(16, 6)
    (ctrl,) = default_controllers(LiveConfig(model=str(pca_model)), state)
    assert isinstance(ctrl, ShowController) and ctrl.pca is not None and ctrl.server is not None
    assert ctrl.server.port == 9000 and ctrl.server.host == "127.0.0.1"
    state.set("pc/0", 1.0)
    z = np.zeros((1, 16), np.float32)
    assert ctrl.modulate(z, 0.0)[0, 0] == 1.0


def test_osc_flags_override_the_show(tmp_path: Path, pca_model: Path) -> None:
    p = _write(tmp_path, BASE.format(model=pca_model))
    _, _, (ctrl,) = build_show(p, osc_port=0, osc_host="0.0.0.0", osc_feedback="127.0.0.1:9999")
    assert isinstance(ctrl, ShowController) and ctrl.server is not None and ctrl.feedback is not None
    assert (ctrl.server.host, ctrl.server.port) == ("0.0.0.0", 0) and ctrl.feedback.target == ("127.0.0.1", 9999)
    with pytest.raises(ShowError, match=r"--osc-\* flags: feedback: .*host:port"):
        build_show(p, osc_feedback="nowhere")
    ctrl.feedback.stop()


def test_check_show_without_model_still_checks_extension_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from livevae.cli.main import main

    text = 'model = "missing.safetensors"\n\n[installation]\nno_such_key = 1\n'
    bad = _write(tmp_path, text, "inst.toml")
    assert main(["check-show", str(bad), "--no-model"]) == 1
    err = capsys.readouterr().err
    assert "[installation]" in err and "no_such_key" in err


def test_a_broken_section_module_is_a_bug_not_a_missing_feature(
    tmp_path: Path, pca_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ImportError in livevae's own MIDI module used to become "this build has no livevae.midi" and read
    like an optional feature; it is a bug, and keeps its traceback."""
    monkeypatch.setitem(EXTENSIONS, "midi", "livevae_broken_ext_that_does_not_import")
    p = _write(tmp_path, BASE.format(model=pca_model) + '[midi]\nport = "nanoKONTROL2"\n')
    with pytest.raises(ModuleNotFoundError, match="livevae_broken_ext_that_does_not_import"):
        build_show(p)
