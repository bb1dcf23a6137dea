"""Audio features on synthetic signals and on Big Buck Bunny's soundtrack; mappings, OSC out, device errors."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from pythonosc.osc_packet import OscPacket

from livevae.control.state import ControlState
from livevae.controllers.audio import AudioController, AudioMapping, from_show, map_features
from livevae.controllers.audio_features import FeatureConfig, FeatureExtractor
from livevae.handle import FrameInfo
from livevae.media.audio import AudioError, FileAudio
from tests.helpers.handle import RecordingHandle

SR = 44100
FPS = 25
HOP = SR // FPS


def run_frames(x: np.ndarray, fe: FeatureExtractor | None = None) -> list[Any]:
    """Features once per video frame over a whole signal, as the controller does live."""
    fe = fe or FeatureExtractor()
    out = []
    for i in range(1, x.size // HOP + 1):
        end = i * HOP
        out.append(fe.process(x[max(0, end - fe.cfg.n_fft) : end], 1 / FPS))
    return out


def tone(freq: float, seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_100hz_tone_drives_low_band_not_high() -> None:
    f = run_frames(tone(100, 1.0))[-1]
    assert f.values["low"] > 0.95
    assert f.values["high"] < 0.05 and f.values["mid"] < 0.2
    assert f.bands_db[0] == pytest.approx(f.rms_db, abs=0.5)  # band levels read in dBFS like RMS
    g = run_frames(tone(8000, 1.0))[-1]
    assert g.values["high"] > 0.95 and g.values["low"] < 0.05


def test_clicks_drive_onsets() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros(SR * 3, np.float32)
    clicks = [0.3, 0.8, 1.3, 1.8, 2.3]
    for c in clicks:
        i = int(c * SR)
        x[i : i + 200] = 0.8 * rng.standard_normal(200) * np.exp(-np.arange(200) / 40)
    x += 0.001 * rng.standard_normal(x.size).astype(np.float32)  # a little room noise
    feats = run_frames(x)
    times = [(i + 1) / FPS for i, f in enumerate(feats) if f.onset]
    assert len(times) == len(clicks)
    for c, t in zip(clicks, times, strict=True):
        assert 0 <= t - c <= 2 / FPS  # detected in the frame that contains it (or the next)
    # the onset pulse jumps to ~1 and decays with the release time
    k = round(times[0] * FPS) - 1
    assert feats[k].values["onset"] > 0.99
    assert 0.2 < feats[k + 3].values["onset"] < 0.8
    assert not any(f.onset for f in run_frames(tone(100, 2.0)))  # a steady tone is no onset


def test_attack_release_and_autogain() -> None:
    x = np.concatenate([np.zeros(SR // 2, np.float32), tone(440, 1.0, amp=0.03), np.zeros(SR, np.float32)])
    feats = run_frames(x)
    on = round(0.5 * FPS) + 2
    off = round(1.5 * FPS) + 1
    assert feats[on].values["rms"] > 0.9  # fast attack, and auto-gain lifts a quiet (-33 dBFS) tone to the top
    assert feats[off - 2].values["rms"] > 0.9
    assert 0.5 < feats[off].values["rms"] < 0.95  # slow release
    assert feats[-1].values["rms"] < 0.05  # a second later: silence is not amplified into noise
    fixed = run_frames(x, FeatureExtractor(FeatureConfig(autogain=False)))
    assert fixed[on].values["rms"] < 0.3  # without auto-gain, -33 dBFS sits low in the 36 dB range


def test_map_features_range_and_curve() -> None:
    st = ControlState(zdim=4, n_pcs=2)
    ms = [AudioMapping("low", "pc/0", (-2.0, 2.0)), AudioMapping("rms", "mix", curve="exp")]
    assert map_features({"low": 0.75, "rms": 0.5}, ms, st.check_target) == {"pc/0": 1.0, "mix": 0.25}


def soundtrack_db(path: Path, times: list[float], n: int) -> list[float]:
    """Reference level: the whole track decoded at once (independently of FileAudio's seeking reader)."""
    with av.open(str(path)) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=SR)
        parts = [o.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for o in rs.resample(fr)]
    x = np.concatenate(parts)
    hop = SR // FPS
    return [10 * np.log10(np.mean(x[round(t * SR) - hop : round(t * SR)] ** 2) + 1e-12) for t in times]


def test_soundtrack_features_follow_the_film(bbb: Path) -> None:
    reader = FileAudio(bbb, SR, loop=True)
    assert reader.duration == pytest.approx(5.31, abs=0.05)
    # unsmoothed, and without auto-gain, so the normalised RMS is a fixed function of the level
    fe = FeatureExtractor(FeatureConfig(attack=0.0, release=0.0, autogain=False, range_db=60.0))
    times = [i / FPS for i in range(1, 132)]
    feats = [fe.process(reader.window(t, 2048), 1 / FPS) for t in times]
    ref = soundtrack_db(bbb, times, 2048)
    got = np.array([f.rms_db for f in feats])
    loud = np.array(ref) > -60
    assert loud.sum() > 50
    assert np.max(np.abs(got[loud] - np.array(ref)[loud])) < 1.0  # the reader delivers the right samples
    rms = np.array([f.values["rms"] for f in feats])
    assert rms.std() > 0.1  # the features move with the film
    assert np.corrcoef(rms[loud], np.array(ref)[loud])[0, 1] > 0.95  # and RMS tracks its level
    assert any(f.onset for f in feats)
    lows = np.array([f.values["low"] for f in feats])
    assert np.corrcoef(lows, rms)[0, 1] < 0.99  # the bands are not just the level again
    # jumping back (a loop, a cue) seeks and gives the same samples again
    a = reader.window(1.0, 2048)
    reader.window(4.5, 2048)
    assert np.allclose(reader.window(1.0, 2048), a, atol=1e-4)
    assert np.allclose(reader.window(1.0 + reader.duration, 2048), a, atol=1e-4)  # loops
    reader.close()


def recv_osc(sock: socket.socket, timeout: float = 2.0) -> list[tuple[str, list[Any]]]:
    sock.settimeout(timeout)
    out = []
    try:
        while True:
            data, _ = sock.recvfrom(65536)
            out += [(m.message.address, list(m.message.params)) for m in OscPacket(data).messages]
            sock.settimeout(0.05)
    except TimeoutError:
        pass
    return out


def test_controller_from_show_file_maps_and_sends_osc(bbb: Path, tmp_path: Path) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    st = ControlState(zdim=8, n_pcs=4)
    show = tmp_path / "show.toml"
    ctl = from_show(
        {
            "input": "file",
            "file": str(bbb),
            "osc": f"127.0.0.1:{rx.getsockname()[1]}",
            "map": [{"feature": "rms", "target": "pc/0", "range": [-2, 2]}, {"feature": "onset", "target": "noise"}],
        },
        st,
        show,
    )
    ctl.start(None)
    try:
        seen = set()
        for i in range(1, 60):  # the frame loop calls on_frame after each frame; the audio thread does the work
            ctl.on_frame(FrameInfo(index=i, t=i / FPS, fps=FPS, source=str(bbb), dropped=0, latency_ms=0.0))
            time.sleep(0.004)
            seen.add(round(st.get("pc/0"), 3))
        deadline = time.monotonic() + 3
        while ctl.stats.frames < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ctl.stats.frames >= 5
        assert len(seen) > 3  # the mapped control moves with the soundtrack
        assert st.last_origin == "audio"
        msgs = recv_osc(rx)
        addrs = {a for a, _ in msgs}
        assert {"/livevae/audio/rms", "/livevae/audio/low", "/livevae/audio/onset", "/livevae/audio"} <= addrs
        whole = [p for a, p in msgs if a == "/livevae/audio"]
        assert len(whole[0]) == 6 and all(0.0 <= v <= 1.0 for v in whole[0])
    finally:
        ctl.stop()
        rx.close()


def test_source_input_uses_the_playing_video(bbb: Path) -> None:
    st = ControlState(zdim=4)
    ctl = AudioController(st, [AudioMapping("rms", "mix")], input="source")
    handle = RecordingHandle(sources=("testcard", str(bbb)), source_index=1)
    ctl._loop = handle
    feats = [ctl.step(i / FPS, FPS, "bigbuckbunny.mp4") for i in range(1, 40)]
    assert all(f is not None for f in feats) and st.get("mix") > 0
    assert ctl._pos(1.0) == pytest.approx(1.0 - 1 / FPS)  # the track started with the first frame
    assert ctl.reader is not None and ctl.reader.period == pytest.approx(132 / 25)  # loops with the picture
    handle.update(source_index=0)  # the test card has no sound: a warning, no features, no exception
    assert ctl.step(2.0, FPS, "testcard") is None
    handle.update(source_index=1)  # switched back: the film restarts from its beginning, and so does its sound
    assert ctl.step(7.0, FPS, "bigbuckbunny.mp4") is not None
    assert ctl._pos(7.5) == pytest.approx(0.5)


def test_no_audio_device_warns_once_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    try:
        import sounddevice as sd

        sd.query_devices(None, "input")
        pytest.skip("this machine has an audio input; the no-device path is not reachable")
    except Exception:
        pass
    st = ControlState(zdim=4)
    ctl = AudioController(st, [AudioMapping("rms", "mix")], input="device")
    with caplog.at_level(logging.WARNING, logger="livevae.controllers.audio"):
        assert ctl.step(0.04, FPS) is None
        ctl._next_device_try = 0.0
        assert ctl.step(0.08, FPS) is None  # retried, still nothing
        ctl.start(None)
        ctl.on_frame(FrameInfo(index=1, t=0.12, fps=FPS, source="cam", dropped=0, latency_ms=0.0))
        time.sleep(0.05)
        ctl.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "expected an input device" in warnings[0]
    assert ctl.stats.device_failures >= 2 and st.get("mix") == 0.0


def test_from_show_errors_name_the_key(tmp_path: Path) -> None:
    st = ControlState(zdim=4)
    show = tmp_path / "show.toml"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"input": "mic"}, r"\[audio\] input: .*expected device, file or source"),
        ({"input": "file"}, "needs file ="),
        ({"input": "file", "file": "nope.wav"}, r"\[audio\] file: .*nope.wav not found"),
        ({"map": [{"feature": "bass", "target": "mix"}]}, r"map\[0\]: feature 'bass'; expected one of rms"),
        ({"map": [{"feature": "low", "target": "z/9"}]}, r"map\[0\].target: .*z/9"),
        ({"osc": "localhost"}, "expected HOST:PORT"),
        ({"bands": [4000, 250]}, "bands"),
        ({"n_fft": 1000}, "power of two"),
        ({"gain": 2}, "gain: Extra inputs are not permitted"),
    ]
    for section, pattern in bad:
        with pytest.raises(AudioError, match=pattern):
            from_show(section, st, show)
    with pytest.raises(AudioError, match="cannot open"):
        FileAudio(tmp_path / "missing.mp4")


def test_show_renders_with_the_films_soundtrack_repeatably(tmp_path: Path, tiny_model_file: Path, bbb: Path) -> None:
    """A show file with [audio] input = "source": build_show -> LiveLoop headless render; the soundtrack of the
    playing film moves z/0, in the loop's offline clock, identically on a second render."""
    from livevae.backends import create
    from livevae.loop import LiveLoop
    from livevae.show.showfile import build_show

    show = tmp_path / "show.toml"
    show.write_text(
        f'model = "{tiny_model_file}"\n[input]\nsources = ["{bbb}"]\n[osc]\nenabled = false\n'
        "[output]\nheadless = true\nframes = 8\n"
        '[audio]\ninput = "source"\n[[audio.map]]\nfeature = "rms"\ntarget = "z/0"\nrange = [-4.0, 4.0]\n'
    )
    runs = []
    for _ in range(2):
        cfg, state, controllers = build_show(show)
        (audio,) = [c for c in controllers if isinstance(c, AudioController)]
        seen: list[float] = []
        state.add_listener(lambda t, v, o, seen=seen: seen.append(v) if t == "z/0" else None)
        stats = LiveLoop(cfg, create(str(tiny_model_file), "torch"), state, controllers).run()
        assert stats.frames == 8 and audio.stats.frames == 8 and audio.sync
        runs.append(seen)
    assert len(set(runs[0])) > 5  # z/0 follows the film's sound
    assert runs[0] == runs[1]  # and an offline render repeats exactly


def test_player_stays_on_the_show_clock(bbb: Path) -> None:
    """Playback's FIFO and sync logic, pulled the way the PortAudio callback pulls (no sound card needed)."""
    from livevae.outputs.sound import FilePlayer

    p = FilePlayer(bbb, SR, loop=True)
    ref = FileAudio(bbb, SR, loop=True)
    p.seek(1.0)
    while p.feed_once():
        pass
    assert p._buffered >= p.AHEAD * SR  # decoded ahead, then it stops
    got = p.pull(4096)
    assert np.allclose(got, ref.window(1.0 + 4096 / SR, 4096), atol=1e-4)  # the samples at the clock's position
    assert p.heard == pytest.approx(1.0 + 4096 / SR)
    p.follow(1.0 + 0.05)  # within tolerance: no seek, no click
    assert p.seeks == 1
    p.follow(1.0 + 4096 / SR + p.reader.duration)  # the film looped, and so did the sound: still in step
    assert p.seeks == 1
    p.follow(3.0)  # a jump (a cue, a source switch): re-seek
    assert p.seeks == 2 and p._buffered == 0
    assert not p.pull(256).any() and p.underruns == 1  # nothing decoded yet: silence, counted
    p.feed_once()
    p.close()
    ref.close()


def test_playback_without_an_output_device_goes_on_silent(bbb: Path, caplog: pytest.LogCaptureFixture) -> None:
    try:
        import sounddevice as sd

        sd.query_devices(None, "output")
        pytest.skip("this machine has an audio output; the no-device path is not reachable")
    except Exception:
        pass
    st = ControlState(zdim=4)
    ctl = AudioController(st, [AudioMapping("rms", "mix")], input="file", file=bbb, play=True)
    ctl.start(None)
    try:
        with caplog.at_level(logging.WARNING, logger="livevae.controllers.audio"):
            feats = [ctl._step_safe(i / FPS, FPS, "") or ctl.stats.frames for i in range(1, 10)]
    finally:
        ctl.stop()
    assert feats[-1] == 9 and st.get("mix") > 0  # features still follow the file
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "expected an output device" in warnings[0] and "silent" in warnings[0]
