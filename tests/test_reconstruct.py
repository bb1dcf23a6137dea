"""reconstruct: frame counts, timing, audio, layouts, batch invariance, errors, Ctrl-C, shards."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from livevae.backends import create
from livevae.cli.main import main
from livevae.media.preprocess import centre_crop
from livevae.media.video import iter_frames, read_comment
from livevae.model import VAE, ModelError, preset, save_model
from livevae.offline.layout import Layout
from livevae.offline.prep import iter_scaled
from livevae.offline.reconstruct import Options, ReconstructError, parse_shard, parse_time, reconstruct, shard_path
from livevae.offline.runners import protocol_runner
from tests.helpers.media import pattern_frames, write_video


def _frames(path: Path) -> np.ndarray:
    return np.stack([f for f, _ in iter_frames(path)])


def _times(path: Path) -> list[float]:
    return [t for _, t in iter_frames(path)]


def _stream_end(path: Path, kind: str) -> tuple[int, float]:
    """(packets, end time in s = last pts + its duration) of the first stream of `kind`, read with PyAV."""
    with av.open(str(path)) as c:
        s = next(st for st in c.streams if st.type == kind)
        n, end = 0, 0.0
        for p in c.demux(s):
            if p.pts is None:
                continue
            n += 1
            end = max(end, float((p.pts + (p.duration or 0)) * p.time_base))
        return n, end


def _opts(model: Path, film: Path, out: Path, **kw: object) -> Options:
    kw.setdefault("progress", False)
    kw.setdefault("backend", "torch-cpu")  # the reference backend; `auto` (ONNX export) is covered once below
    return Options(models=[str(model)], input=str(film), out=str(out), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [1, 13, 25])
def test_frame_count_and_duration(tmp_path: Path, tiny_model_file: Path, n: int) -> None:
    film = write_video(tmp_path / "in.mp4", pattern_frames(n, 96, 64))
    out = tmp_path / "out.mp4"
    s = reconstruct(_opts(tiny_model_file, film, out, batch=12))
    got = _frames(out)
    assert s["frames"] == got.shape[0] == n  # the last partial batch (1, 13 = 12 + 1, 25 = 2*12 + 1) is kept
    assert got.shape[1:] == (48, 64, 3)
    fd = 1 / 25
    assert abs(_stream_end(out, "video")[1] - _stream_end(film, "video")[1]) <= fd + 1e-6
    assert _times(out) == pytest.approx(_times(film), abs=1e-3)
    assert not list(tmp_path.glob(".*partial*"))


def test_bbb_audio_side_by_side_cli(
    tmp_path: Path, tiny_model_file: Path, bbb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bbb.mp4"
    # The default backend (`auto`: the fastest that runs here, e.g. ONNX Runtime on a CPU).
    rc = main(["reconstruct", str(tiny_model_file), str(bbb), "-o", str(out), "--side-by-side", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert "audio copy" in capsys.readouterr().out
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (2 * 64, 48)  # original | reconstruction
        assert v.codec_context.pix_fmt == "yuv420p"
        assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.name == "aac"
    n_in, a_in = _stream_end(bbb, "audio")
    n_out, a_out = _stream_end(out, "audio")
    assert n_out == n_in and a_out == pytest.approx(a_in, abs=1e-3)  # stream copy: every packet, same length
    assert _stream_end(out, "video")[1] == pytest.approx(_stream_end(bbb, "video")[1], abs=1 / 25 + 1e-6)
    frames = _frames(out)
    assert frames.shape == (132, 48, 128, 3)
    left, right = frames[:, :, :64].astype(int), frames[:, :, 64:].astype(int)
    assert np.abs(left - right).mean() > 5  # two different pictures: the source and the (untrained) model


def test_audio_transcoded_when_container_refuses_copy(tmp_path: Path, tiny_model_file: Path) -> None:
    # PCM audio in Matroska cannot be copied into MP4: it is transcoded to AAC, same length within one AAC frame.
    film = tmp_path / "pcm.mkv"
    with av.open(str(film), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 96, 64, "yuv420p"
        a = c.add_stream("pcm_s16le", rate=16000)
        a.layout = "mono"
        for i, f in enumerate(pattern_frames(10, 96, 64)):
            fr = av.VideoFrame.from_ndarray(f, format="rgb24")
            fr.pts = i
            c.mux(vs.encode(fr))
        c.mux(vs.encode())
        for k in range(0, 6400, 640):  # 0.4 s of noise
            af = av.AudioFrame.from_ndarray(
                (np.random.randn(1, 640) * 3000).astype(np.int16), format="s16", layout="mono"
            )
            af.sample_rate, af.pts = 16000, k
            c.mux(a.encode(af))
        c.mux(a.encode())
    out = tmp_path / "out.mp4"
    s = reconstruct(_opts(tiny_model_file, film, out))
    assert s["audio"] == ["aac"]
    _, a_out = _stream_end(out, "audio")
    assert a_out == pytest.approx(0.4, abs=1024 / 16000 + 1e-3)
    # Into Matroska the PCM stream is copied as it is.
    s2 = reconstruct(_opts(tiny_model_file, film, tmp_path / "out.mkv"))
    assert s2["audio"] == ["copy"]
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert c.streams.audio[0].codec_context.name == "pcm_s16le"
    s3 = reconstruct(_opts(tiny_model_file, film, tmp_path / "silent.mp4", audio="none"))
    assert s3["audio"] == []
    with av.open(str(tmp_path / "silent.mp4")) as c:
        assert not c.streams.audio


def test_batch_one_equals_batched(tmp_path: Path, tiny_model_file: Path) -> None:
    frames = pattern_frames(13, 64, 48)
    run = protocol_runner(create(str(tiny_model_file), "torch-cpu", batch=None))
    whole = run(frames)  # [13, 48, 64, 3] in one batch
    single = np.concatenate([run(frames[i : i + 1]) for i in range(13)])
    # Eval-mode batch norm: a frame's output does not depend on its neighbours (float summation
    # order may move a pixel by one level at most).
    assert np.abs(whole.astype(int) - single.astype(int)).max() <= 1
    assert (whole != single).mean() < 1e-3
    film = write_video(tmp_path / "in.mp4", pattern_frames(13, 96, 64))
    # Through the whole pipeline, lossless (x264 CRF 0, 4:4:4): x264's threaded rate control may choose
    # differently from run to run under load, so lossy files are not comparable bit for bit.
    lossless = {"crf": 0, "pix_fmt": "yuv444p"}
    reconstruct(_opts(tiny_model_file, film, tmp_path / "b1.mp4", batch=1, **lossless))
    reconstruct(_opts(tiny_model_file, film, tmp_path / "b12.mp4", batch=12, **lossless))
    a, b = _frames(tmp_path / "b1.mp4"), _frames(tmp_path / "b12.mp4")
    assert a.shape == (13, 48, 64, 3) and np.array_equal(a, b)
    box = centre_crop(96, 64, 64 / 48)
    expected = run(np.stack([f for f, _ in iter_scaled(film, box, (64, 48))]))
    assert np.abs(a.astype(int) - expected.astype(int)).max() <= 3  # written = the model's output (+ YUV rounding)


def test_model_sees_frames_as_prep_makes_them(
    tmp_path: Path, tiny_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import livevae.offline.reconstruct as rec
    from livevae.offline.prep import FRAMES_FILE, prep

    film = write_video(tmp_path / "in.mp4", pattern_frames(9, 160, 90))  # 16:9 source, 4:3 model: cropped
    seen: list[np.ndarray] = []

    def recording(backend: object, precision: str = "auto") -> rec.Runner:
        def run(x: np.ndarray) -> np.ndarray:
            seen.append(x.copy())
            return x  # an identity "model": the output is what the model was given

        return run

    monkeypatch.setattr(rec, "make_runner", recording)
    # One inference worker, so the runner is called in film order (two may finish in either order; the
    # file is written in order either way: test_two_workers_write_batches_in_film_order).
    reconstruct(_opts(tiny_model_file, film, tmp_path / "id.mp4", batch=4, crf=0, pix_fmt="yuv444p", workers=1))
    prep(film, tmp_path / "ds", size=(64, 48), progress=False)
    want = np.load(tmp_path / "ds" / FRAMES_FILE)
    assert [len(x) for x in seen] == [4, 4, 1]
    assert np.array_equal(np.concatenate(seen), want)  # same crop, same scaler, same order
    assert np.abs(_frames(tmp_path / "id.mp4").astype(int) - want.astype(int)).max() <= 3
    # A model trained on a hand-cropped prep of this film: reconstructing the film uses that crop again.
    prep(film, tmp_path / "ds2", size=(64, 48), crop="8,4,96,72", progress=False)
    trained = save_model(
        VAE(preset("tiny")).eval(), tmp_path / "m.safetensors", meta={"dataset": {"path": str(tmp_path / "ds2")}}
    )
    seen.clear()
    reconstruct(_opts(trained, film, tmp_path / "id2.mp4", batch=16, workers=1))
    assert np.array_equal(np.concatenate(seen), np.load(tmp_path / "ds2" / FRAMES_FILE))
    seen.clear()
    reconstruct(_opts(trained, film, tmp_path / "id3.mp4", batch=16, crop="centre", workers=1))
    assert np.array_equal(np.concatenate(seen), want)


def test_two_workers_write_batches_in_film_order(
    tmp_path: Path, tiny_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    import livevae.offline.reconstruct as rec

    film = write_video(tmp_path / "in.mp4", pattern_frames(21, 96, 64))
    lossless = {"crf": 0, "pix_fmt": "yuv444p", "batch": 4}
    reconstruct(_opts(tiny_model_file, film, tmp_path / "one.mp4", workers=1, **lossless))
    real = rec.make_runner
    who: dict[int, str] = {}

    def uneven(backend: object, precision: str = "auto") -> rec.Runner:
        inner = real(backend, precision)
        calls = [0]

        def run(x: np.ndarray) -> np.ndarray:
            calls[0] += 1
            who[calls[0]] = threading.current_thread().name
            if calls[0] == 1:
                time.sleep(0.3)  # the first batch finishes last: the second worker runs ahead of it
            return inner(x)

        return run

    monkeypatch.setattr(rec, "make_runner", uneven)
    summary = reconstruct(_opts(tiny_model_file, film, tmp_path / "two.mp4", workers=2, **lossless))
    assert summary["frames"] == 21
    assert len(set(who.values())) == 2  # both workers ran batches
    assert np.array_equal(_frames(tmp_path / "two.mp4"), _frames(tmp_path / "one.mp4"))
    assert _times(tmp_path / "two.mp4") == _times(tmp_path / "one.mp4")


def test_workers_share_the_threads_on_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from livevae.offline.reconstruct import inference_workers

    def opts(backend: str, threads: int | None, workers: int = 0) -> Options:
        return Options(models=["m"], input="i", out="o", backend=backend, threads=threads, workers=workers)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert inference_workers(opts("auto", 2)) == (2, 1)
    assert inference_workers(opts("onnxruntime", 8)) == (2, 4)
    assert inference_workers(opts("torch-cpu", 1)) == (1, 1)
    assert inference_workers(opts("torch-cpu", 4, workers=1)) == (1, 4)
    assert inference_workers(opts("torch-cpu", 6, workers=3)) == (3, 2)
    for gpu in ("torch-cuda", "tensorrt", "onnxruntime-cuda"):
        assert inference_workers(opts(gpu, 2)) == (1, 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert inference_workers(opts("auto", 2)) == (1, 2)
    with pytest.raises(ReconstructError, match="--workers -1"):
        reconstruct(opts("torch-cpu", 2, workers=-1))


def test_decoder_runs_on_one_thread_where_inference_takes_every_core(
    tmp_path: Path, tiny_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU whose cores all run inference, FFmpeg's frame threads only add coordination (1.45 against 1.26
    CPU ms a 720p frame): the film is decoded on the decode thread alone. With cores to spare, or a GPU
    inferring, frame threads stay. Either way the same frames, in the same order, reach the file."""
    import livevae.offline.reconstruct as rec
    from livevae.offline.reconstruct import decoder_threads

    assert decoder_threads(False, 2, cores=2) == 1  # the 2-core machine: 2 inference threads, none spare
    assert decoder_threads(False, 2, cores=3) == 1
    assert decoder_threads(False, 2, cores=4) is None  # two cores spare: frame threads keep decoding ahead
    assert decoder_threads(True, 1, cores=2) is None  # a GPU infers: the CPU is the decoder's
    film = write_video(tmp_path / "in.mp4", pattern_frames(21, 96, 64))
    lossless = {"crf": 0, "pix_fmt": "yuv444p", "batch": 4, "threads": 2}
    monkeypatch.setattr(rec.os, "cpu_count", lambda: 2)
    one = reconstruct(_opts(tiny_model_file, film, tmp_path / "one.mp4", **lossless))
    monkeypatch.setattr(rec.os, "cpu_count", lambda: 16)
    many = reconstruct(_opts(tiny_model_file, film, tmp_path / "many.mp4", **lossless))
    assert one["decode_threads"] == 1 and many["decode_threads"] == "auto"
    assert np.array_equal(_frames(tmp_path / "one.mp4"), _frames(tmp_path / "many.mp4"))
    assert _times(tmp_path / "one.mp4") == _times(tmp_path / "many.mp4")


@pytest.mark.parametrize("crop", ["centre", "train", "8,4,80,60"])
def test_reconstruct_probes_the_film_once(
    tmp_path: Path, tiny_model_file: Path, monkeypatch: pytest.MonkeyPatch, crop: str
) -> None:
    """A probe opens the film and decodes a frame (~19 ms of 720p): the crop is resolved with reconstruct's own."""
    import livevae.offline.prep as prep_module
    import livevae.offline.reconstruct as rec

    film = write_video(tmp_path / "in.mp4", pattern_frames(5, 96, 64))
    calls: list[str] = []
    for module in (rec, prep_module):
        real = module.probe
        monkeypatch.setattr(module, "probe", lambda path, real=real: calls.append(str(path)) or real(path))
    assert reconstruct(_opts(tiny_model_file, film, tmp_path / "o.mp4", crop=crop))["frames"] == 5
    assert calls == [str(film)], calls


def test_start_end_grid_size_labels(tmp_path: Path, tiny_model_file: Path) -> None:
    film = write_video(tmp_path / "in.mp4", pattern_frames(25, 96, 64), audio_seconds=1.0)
    torch.manual_seed(1)
    other = save_model(VAE(preset("tiny")).eval(), tmp_path / "other.safetensors")
    out = tmp_path / "grid.mp4"
    o = _opts(tiny_model_file, film, out, start=0.2, end=0.6, side_by_side=True, grid=True, labels=True)
    o.models.append(str(other))
    s = reconstruct(o)
    assert s["frames"] == 10 and s["size"] == [128, 96]  # 3 tiles in a 2x2 grid
    assert _times(out)[0] == pytest.approx(0.0, abs=1e-3)  # --start becomes time 0
    _, a_end = _stream_end(out, "audio")
    assert a_end == pytest.approx(0.4, abs=0.05)
    big = reconstruct(_opts(tiny_model_file, film, tmp_path / "big.mp4", size=(128, 96), side_by_side=True, end=0.2))
    assert big["size"] == [256, 96] and big["frames"] == 5


def test_variable_frame_rate_timestamps_kept(tmp_path: Path, tiny_model_file: Path) -> None:
    pts = [0, 40, 80, 200, 240, 400, 440]  # ms: gaps, as in screen recordings
    film = write_video(tmp_path / "vfr.mp4", pattern_frames(7, 96, 64), pts=pts)
    out = tmp_path / "out.mp4"
    reconstruct(_opts(tiny_model_file, film, out))
    assert _times(out) == pytest.approx([p / 1000 for p in pts], abs=1e-3)


def _bad_models(tmp_path: Path, tiny_model_file: Path) -> dict[str, Path]:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00not a model" * 10)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(tiny_model_file.read_bytes()[:500])
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_model_file), framework="pt") as f:
        md = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    md["config"] = json.dumps(preset("live").to_dict())  # header says `live`, weights are `tiny`
    mismatched = tmp_path / "mismatched.safetensors"
    save_file(tensors, str(mismatched), metadata=md)
    return {
        "missing": tmp_path / "nope.safetensors",
        "garbage": garbage,
        "truncated": truncated,
        "mismatch": mismatched,
    }


def test_errors_are_one_clear_line(tmp_path: Path, tiny_model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    film = write_video(tmp_path / "in.mp4", pattern_frames(3, 96, 64))
    out = tmp_path / "out.mp4"
    for kind, model in _bad_models(tmp_path, tiny_model_file).items():
        assert (
            main(["reconstruct", str(model), str(film), "-o", str(out), "--no-progress", "--backend", "torch-cpu"]) == 1
        ), kind
        err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(err) == 1 and err[0].startswith("livevae reconstruct: error: ") and str(model) in err[0], (kind, err)
    audio_only = tmp_path / "sound.m4a"
    with av.open(str(audio_only), "w") as c:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = 16000, 0
        c.mux(a.encode(af))
        c.mux(a.encode())
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    cases = {
        "no video stream": [str(tiny_model_file), str(audio_only), "-o", str(out)],
        "missing input": [str(tiny_model_file), str(tmp_path / "none.mp4"), "-o", str(out)],
        "unwritable": [str(tiny_model_file), str(film), "-o", str(blocker / "out.mp4")],
        "output is a folder": [str(tiny_model_file), str(film), "-o", str(tmp_path)],
        "bad shard": [str(tiny_model_file), str(film), "-o", str(out), "--shard", "2/2"],
    }
    for kind, argv in cases.items():
        assert main(["reconstruct", *argv, "--no-progress", "--backend", "torch-cpu"]) == 1, kind
        err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(err) == 1 and err[0].startswith("livevae reconstruct: error: "), (kind, err)
    assert "no video stream" in _last_error(capsys, [str(tiny_model_file), str(audio_only), "-o", str(out)])
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def _last_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    main(["reconstruct", *argv, "--no-progress", "--backend", "torch-cpu"])
    return capsys.readouterr().err


def test_interrupt_leaves_no_output(tmp_path: Path, tiny_model_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import livevae.offline.reconstruct as rec

    film = write_video(tmp_path / "in.mp4", pattern_frames(30, 96, 64), audio_seconds=1.2)
    calls = [0]
    real = rec.make_runner

    def interrupted(backend: object, precision: str = "auto") -> rec.Runner:
        inner = real(backend, precision)

        def run(x: np.ndarray) -> np.ndarray:
            calls[0] += 1
            if calls[0] == 3:
                raise KeyboardInterrupt  # Ctrl-C in the middle of the film
            return inner(x)

        return run

    monkeypatch.setattr(rec, "make_runner", interrupted)
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        reconstruct(_opts(tiny_model_file, film, out, batch=4))
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "tiny.safetensors"]


def test_shards_then_concat_equal_single_run(
    tmp_path: Path, tiny_model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    film = write_video(tmp_path / "in.mp4", pattern_frames(13, 96, 64), audio_seconds=0.52)
    single = tmp_path / "single.mp4"
    reconstruct(_opts(tiny_model_file, film, single, batch=4))
    out = tmp_path / "joined.mp4"
    for i in range(2):  # as two GPUs would, one after the other on the CPU
        reconstruct(_opts(tiny_model_file, film, out, batch=4, shard=(i, 2)))
    parts = [shard_path(out, i, 2) for i in range(2)]
    shard_frames = [_frames(p) for p in parts]
    assert [len(f) for f in shard_frames] == [6, 7] or [len(f) for f in shard_frames] == [7, 6]
    assert main(["reconstruct", "--concat", "-o", str(out), "--keep-shards"]) == 0, capsys.readouterr().err
    joined = _frames(out)
    assert len(joined) == len(_frames(single)) == 13
    assert np.array_equal(joined, np.concatenate(shard_frames))  # packet copy: bit-exact, no re-encode
    assert _times(out) == pytest.approx(_times(single), abs=1e-3)
    n_single, a_single = _stream_end(single, "audio")
    n_joined, a_joined = _stream_end(out, "audio")
    assert n_joined == n_single and a_joined == pytest.approx(a_single, abs=1e-3)  # audio split with no gap
    assert "shard" not in json.loads(read_comment(out))
    # A missing shard is refused with one line.
    parts[1].unlink()
    assert main(["reconstruct", "--concat", "-o", str(tmp_path / "x.mp4"), str(parts[0])]) == 1
    assert "expected each of 0..1" in capsys.readouterr().err


def test_torchrun_ranks_shard_and_join(tmp_path: Path, tiny_model_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    film = write_video(tmp_path / "in.mp4", pattern_frames(9, 96, 64))
    out = tmp_path / "out.mp4"
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (1, 0):  # rank 0 joins once every shard file is there
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        assert (
            main(
                [
                    "reconstruct",
                    str(tiny_model_file),
                    str(film),
                    "-o",
                    str(out),
                    "--no-progress",
                    "--backend",
                    "torch-cpu",
                ]
            )
            == 0
        )
    assert len(_frames(out)) == 9
    assert not list(tmp_path.glob("out.shard-*"))


def test_parsers_and_layout() -> None:
    assert parse_time("90") == 90 and parse_time("1:30.5") == 90.5 and parse_time("01:00:01") == 3601
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "x"):
        with pytest.raises(ReconstructError):
            parse_shard(bad)
    with pytest.raises(ReconstructError):
        parse_time("1:xx")
    assert Layout.for_tiles(2, (64, 48), grid=True).size == (128, 48)
    assert Layout.for_tiles(5, (64, 48), grid=True).size == (192, 96)
    assert Layout.for_tiles(3, (64, 48), grid=False).size == (192, 48)
    tiles = [np.full((48, 64, 3), v, np.uint8) for v in (10, 20, 30)]
    canvas = Layout.for_tiles(3, (64, 48), grid=True).compose(tiles)
    assert canvas[0, 0, 0] == 10 and canvas[0, 64, 0] == 20 and canvas[48, 0, 0] == 30 and canvas[48, 64, 0] == 0
    assert shard_path(Path("/a/film.mp4"), 1, 2) == Path("/a/film.shard-1-of-2.mp4")


def test_model_error_type(tiny_model_file: Path, tmp_path: Path) -> None:
    film = write_video(tmp_path / "in.mp4", pattern_frames(2, 96, 64))
    with pytest.raises(ModelError, match="not found"):
        reconstruct(_opts(tmp_path / "none.safetensors", film, tmp_path / "o.mp4"))
