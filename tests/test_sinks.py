"""Several outputs at once (each its own size, one resize per size per frame, listed in HUD and status), output
scaling filters, dry/wet, Syphon/Spout/virtual camera where the platform has them."""

from __future__ import annotations

import glob
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from livevae.backends import create
from livevae.control.state import ControlState
from livevae.handle import FrameInfo, LoopHandle, LoopStatus, Watcher
from livevae.loop import LiveConfig, LiveLoop
from livevae.outputs import scaling
from livevae.outputs.scaling import SCALE_FILTERS, ScaledFrame, ScaleError, scale
from livevae.outputs.sinks import OutputSpec, SinkError, parse_output
from livevae.outputs.threaded import NewestFrameOutput


class Recording(NewestFrameOutput):
    """An output that keeps every frame it is sent (the test's stand-in for a device)."""

    kind = "rec"

    def __init__(self, name: str, size: tuple[int, int]) -> None:
        super().__init__(name, size)
        self.frames: list[np.ndarray] = []

    def _send(self, rgb: np.ndarray, captured: float | None) -> None:
        self.frames.append(rgb)


def fake_outputs(
    monkeypatch: pytest.MonkeyPatch, ndi: type[Recording] = Recording
) -> tuple[list[Recording], list[tuple[int, int]]]:
    """The loop opens Recordings instead of devices (`ndi` for kind ndi) and counts every RGB resize: returns
    (the outputs made, the sizes resized to), both filled as the show runs."""
    made: list[Recording] = []
    resizes: list[tuple[int, int]] = []
    real_scale = scaling.scale

    def fake_open(spec: OutputSpec, fps: float, filter: str = "bilinear") -> Recording:
        cls = ndi if spec.kind == "ndi" else Recording
        made.append(cls(f"{spec.kind}:{spec.name}", spec.size).start())
        return made[-1]

    def counting(rgb: np.ndarray, size: tuple[int, int], filter: str = "bilinear") -> np.ndarray:
        resizes.append(size)
        return real_scale(rgb, size, filter)

    monkeypatch.setattr("livevae.loop.open_output", fake_open)
    monkeypatch.setattr(scaling, "scale", counting)
    return made, resizes


def test_three_outputs_each_get_their_own_size_from_one_resize_per_size(
    tiny_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made, resizes = fake_outputs(monkeypatch)
    status: list[LoopStatus] = []

    class Look(Watcher):
        def start(self, loop: LoopHandle | None) -> None:
            self.loop = loop

        def on_frame(self, info: FrameInfo) -> None:
            if info.index == 4:
                status.append(self.loop.status())

    specs = [
        OutputSpec("ndi", "a", (320, 240)),
        OutputSpec("spout", "b", (320, 240)),
        OutputSpec("ndi", "c", (128, 96)),
    ]
    cfg = LiveConfig(model=str(tiny_model_file), sources=["testcard"], headless=True, frames=5, outputs=specs)
    loop = LiveLoop(cfg, create(str(tiny_model_file), "torch"), controllers=[Look()])
    stats = loop.run()
    assert stats.frames == 5
    # two distinct sizes: two resizes a frame, though three outputs
    assert len(resizes) == 10 and set(resizes) == {(320, 240), (128, 96)}
    for o in made:
        assert o.sent + o.dropped == 5 and o.sent >= 1
        assert all(f.shape == (o.size[1], o.size[0], 3) for f in o.frames)
    hud = loop.hud_info({}).extra
    assert [line.split()[2] for line in hud if line.startswith("out ")] == ["ndi:a", "spout:b", "ndi:c"]
    assert len(status[0].outputs) == 3 and "320x240" in status[0].outputs[0]
    assert len(stats.sinks) == 3 and "sent" in stats.sinks[2]


def test_scaled_frame_computes_each_size_once_and_shares_a_read_only_copy() -> None:
    rgb = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
    f = ScaledFrame(rgb, "nearest")
    a, b = f.at((128, 96)), f.at((128, 96))
    assert a is b and f.computed == 1 and not a.flags.writeable
    assert f.at(None) is rgb and f.at((64, 48)) is rgb
    assert np.array_equal(a[::2, ::2], rgb)  # nearest at 2x: every source pixel is a 2x2 block


@pytest.mark.parametrize("name", SCALE_FILTERS)
def test_every_filter_upscales_and_keeps_a_flat_picture_flat(name: str) -> None:
    out = scale(np.full((48, 64, 3), 77, np.uint8), (1280, 720), name)
    assert out.shape == (720, 1280, 3) and int(out.min()) == int(out.max()) == 77


def test_sharp_is_sharper_than_bilinear_on_an_edge() -> None:
    edge = np.zeros((48, 64, 3), np.uint8)
    edge[:, 32:] = 255

    def steepest(name: str) -> int:
        row = scale(edge, (256, 192), name)[96, :, 0].astype(int)
        return int(np.abs(np.diff(row)).max())

    assert steepest("sharp") > steepest("bilinear")


def test_bad_filters_sizes_and_kinds_are_one_line_naming_them() -> None:
    with pytest.raises(ScaleError, match=r"scale filter 'blurry': unknown; expected one of nearest, bilinear"):
        scale(np.zeros((4, 4, 3), np.uint8), (8, 8), "blurry")
    with pytest.raises(SinkError, match=r"output kind 'hdmi': unknown; expected one of ndi, syphon, spout"):
        parse_output("hdmi:main")
    with pytest.raises(SinkError, match=r"output ndi:big size 9000x9000; expected 16x16 .. 7680x4320"):
        parse_output("ndi:big@9000x9000")
    assert parse_output("ndi:Stage Left@1920x1080") == OutputSpec("ndi", "Stage Left", (1920, 1080))
    assert parse_output("ndi") == OutputSpec("ndi", "livevae", (1280, 720))


def test_a_missing_extra_skips_that_output_and_the_show_goes_on(
    tiny_model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    specs = [OutputSpec("syphon", "s"), OutputSpec("spout", "p")] if sys.platform == "linux" else []
    if not specs:
        pytest.skip("checks the Linux case: Syphon and Spout are absent here by platform")
    cfg = LiveConfig(model=str(tiny_model_file), sources=["testcard"], headless=True, frames=3, outputs=specs)
    loop = LiveLoop(cfg, create(str(tiny_model_file), "torch"))
    assert loop.run().frames == 3 and loop.sinks == []
    assert "output syphon:s: Syphon is macOS only" in caplog.text
    assert "output spout:p: Spout is Windows only" in caplog.text


# --- dry/wet --------------------------------------------------------------------------------------------------
class Keep(Watcher):
    def __init__(self) -> None:
        self.out: list[np.ndarray] = []

    def on_frame(self, info: FrameInfo) -> None:
        assert info.output is not None
        self.out.append(info.output.copy())


def _render(model: Path, wet: float | None) -> tuple[np.ndarray, LiveLoop]:
    state = ControlState(16)
    if wet is not None:
        state.set("wet", wet, origin="osc")
    keep = Keep()
    cfg = LiveConfig(model=str(model), sources=["testcard"], headless=True, frames=2)
    loop = LiveLoop(cfg, create(str(model), "torch"), state=state, controllers=[keep])
    loop.run()
    return keep.out[-1], loop


def test_dry_wet_fades_from_the_input_to_the_dream(tiny_model_file: Path) -> None:
    from livevae.media.source import test_card

    dream, _ = _render(tiny_model_file, None)
    dry, loop = _render(tiny_model_file, 0.0)
    half, _ = _render(tiny_model_file, 0.5)
    card = loop.pre(test_card(640, 480, 1 / 30))  # the second frame's input, as the model saw it
    assert np.array_equal(dry, card)  # wet 0: the input picture, untouched
    expect = (0.5 * card.astype(np.float32) + 0.5 * dream.astype(np.float32)).round()
    assert np.abs(half.astype(np.float32) - expect).max() <= 1.0
    assert not np.array_equal(dream, card)
    assert any(line.startswith("wet 0.50") for line in _render(tiny_model_file, 0.5)[1].hud_info({}).extra)


def test_wet_over_real_osc_udp() -> None:
    from pythonosc.udp_client import SimpleUDPClient

    from livevae.controllers.osc import OscServer

    st = ControlState(8)
    srv = OscServer(st, port=0)
    srv.start()
    try:
        SimpleUDPClient("127.0.0.1", srv.port).send_message("/livevae/wet", 0.25)
        deadline = time.monotonic() + 5
        while st.get("wet") == 1.0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        srv.stop()
    assert st.get("wet") == 0.25


def test_a_midi_fader_drives_wet() -> None:
    import mido

    from livevae.controllers.midi_mapping import MidiMapper, MidiMapping, SetControl

    st = ControlState(8)
    mapper = MidiMapper([MidiMapping("cc", 7, target="wet")], st.check_target, st.get)
    (down,) = mapper.handle(mido.Message("control_change", control=7, value=0))
    (up,) = mapper.handle(mido.Message("control_change", control=7, value=127))
    assert isinstance(down, SetControl) and (down.target, down.value) == ("wet", 0.0)
    assert isinstance(up, SetControl) and (up.target, up.value) == ("wet", 1.0)


# --- platform outputs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["syphon", "spout"])
def test_syphon_on_macos_and_spout_on_windows_serve_frames(kind: str) -> None:
    from livevae.outputs.spout import SpoutOutput, spout_available
    from livevae.outputs.syphon import SyphonOutput, syphon_available

    cls, why = (SyphonOutput, syphon_available()) if kind == "syphon" else (SpoutOutput, spout_available())
    if why:
        pytest.skip(why)
    out = cls("livevae-test", (128, 96)).start()
    try:
        for _ in range(5):
            out.write(np.full((96, 128, 3), 90, np.uint8))
            time.sleep(0.02)
    finally:
        out.close()
    assert not out.failed and out.sent >= 1, out.describe()


def test_virtual_camera_output_where_a_loopback_device_exists() -> None:
    pytest.importorskip("pyvirtualcam", reason="the virtual camera needs the `virtualcam` extra (pyvirtualcam)")
    if sys.platform == "linux" and not glob.glob("/dev/video*"):
        pytest.skip("no /dev/video* here: load v4l2loopback (modprobe v4l2loopback exclusive_caps=1)")
    from livevae.outputs.sinks import open_output

    out = open_output(OutputSpec("virtualcam", "camera", (320, 240)), 30.0)
    if out is None:
        pytest.skip("pyvirtualcam found no virtual camera device (v4l2loopback / OBS Virtual Camera)")
    try:
        for _ in range(5):
            out.write(np.full((48, 64, 3), 90, np.uint8))
            time.sleep(0.05)
    finally:
        out.close()
    assert not out.failed and out.sent >= 1


def test_a_show_file_sends_to_several_outputs_and_names_its_tempo_lead(tiny_model_file: Path, tmp_path: Path) -> None:
    from livevae.controllers.tempo import TempoController
    from livevae.show.schema import ShowError
    from livevae.show.showfile import build_show

    show = tmp_path / "rig.toml"
    show.write_text(
        f'model = "{tiny_model_file}"\n[osc]\nenabled = false\n[output]\nscale_filter = "sharp"\n'
        '[[output.send]]\nkind = "ndi"\nname = "Stage"\nsize = "1920x1080"\n'
        '[[output.send]]\nkind = "virtualcam"\n[tempo]\nlead = "midi"\nmidi_port = "listen:127.0.0.1:5999"\n'
    )
    cfg, _, controllers = build_show(show)
    assert cfg.outputs == [OutputSpec("ndi", "Stage", (1920, 1080)), OutputSpec("virtualcam", "livevae", (1280, 720))]
    assert cfg.scale_filter == "sharp"
    (tempo,) = [c for c in controllers if isinstance(c, TempoController)]
    assert tempo.cfg.lead == "midi"
    show.write_text(f'model = "{tiny_model_file}"\n[[output.send]]\nkind = "ndi"\nsize = "8x8"\n')
    with pytest.raises(ShowError, match=r"output ndi:livevae size 8x8; expected 16x16"):
        build_show(show)


def test_an_output_that_scales_itself_gets_the_model_picture_and_the_others_keep_one_resize_per_size(
    tiny_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NDI scales in YUV planes on its own thread: the loop hands it the model-size picture and does no RGB resize
    for it; a window-side output of another size still gets its one shared resize a frame."""

    class ScalesItself(Recording):
        takes_model_size = True

    made, resizes = fake_outputs(monkeypatch, ndi=ScalesItself)
    specs = [OutputSpec("ndi", "a", (1280, 720)), OutputSpec("spout", "b", (320, 240))]
    cfg = LiveConfig(model=str(tiny_model_file), sources=["testcard"], headless=True, frames=5, outputs=specs)
    assert LiveLoop(cfg, create(str(tiny_model_file), "torch")).run().frames == 5
    assert resizes == [(320, 240)] * 5  # none at 1280x720: NDI's scale is its own
    ndi, spout = made
    assert ndi.frames and all(f.shape == (48, 64, 3) for f in ndi.frames)
    assert spout.frames and all(f.shape == (240, 320, 3) for f in spout.frames)


def test_an_ndi_output_of_odd_size_is_one_line_naming_it() -> None:
    with pytest.raises(SinkError, match=r"output ndi:Stage size 1281x720; expected an even width and height"):
        parse_output("ndi:Stage@1281x720")
    assert parse_output("spout:x@1281x721").size == (1281, 721)  # RGBA outputs take any size
