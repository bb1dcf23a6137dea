"""ONNX export: checked graphs, static/dynamic batch, fp16 vs fp32, the on-disk cache and the `export` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from livevae.backends import EngineError
from livevae.backends.onnx_export import TOLERANCE, NetSpec, check_export, export
from livevae.cli.export import specs_for
from livevae.cli.main import main
from livevae.model import ModelError, load_model
from tests.helpers.models import one_torch_thread, shared_tiny  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return shared_tiny(tmp_path_factory.getbasetemp())


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_static_export_is_checked_and_cached(tiny: tuple[Path, Path]) -> None:
    model, cache = tiny
    e = export(model, NetSpec("encoder", 1, "fp32"), cache)
    assert e.max_abs_diff <= TOLERANCE["fp32"]
    onnx.checker.check_model(str(e.path), full_check=True)
    g = onnx.load(str(e.path))
    dims = [d.dim_value for d in g.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 48, 64] and g.graph.input[0].name == "frames" and g.graph.output[0].name == "z"
    # The deterministic path only: z = mu, no logvar output; batch norm folded away by the exporter.
    assert len(g.graph.output) == 1 and "BatchNormalization" not in {n.op_type for n in g.graph.node}
    again = export(model, NetSpec("encoder", 1, "fp32"), cache)
    assert again.cached and again.path == e.path and again.sha256 == e.sha256


def test_dynamic_batch_export_runs_any_batch(tiny: tuple[Path, Path]) -> None:
    model, cache = tiny
    m = load_model(model)
    for net in ("encoder", "decoder"):
        spec = NetSpec(net, None, "fp32")  # type: ignore[arg-type]
        e = export(model, spec, cache)
        g = onnx.load(str(e.path))
        assert g.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a symbolic batch dimension
        sess = _session(e.path)
        for n in (1, 5):
            x = spec.sample(m.cfg, n, seed=n)
            (got,) = sess.run(None, {spec.input_name: x})
            with torch.inference_mode():
                ref = spec.module(m)(torch.from_numpy(x)).numpy()
            assert got.shape == spec.output_shape(m.cfg, n)
            assert np.abs(got - ref).max() <= 1e-4


def test_fp16_export_is_half_inside_with_float32_io(tiny: tuple[Path, Path]) -> None:
    model, cache = tiny
    m = load_model(model)
    for net in ("encoder", "decoder"):
        spec16, spec32 = NetSpec(net, 1, "fp16"), NetSpec(net, 1, "fp32")  # type: ignore[arg-type]
        e16, e32 = export(model, spec16, cache), export(model, spec32, cache)
        g = onnx.load(str(e16.path))
        assert g.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O
        assert g.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
        weights = [i for i in g.graph.initializer if i.data_type in floats and np.prod(i.dims) > 1]
        assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights)
        x = spec32.sample(m.cfg, 1, seed=7)
        (a,) = _session(e16.path).run(None, {spec16.input_name: x})
        (b,) = _session(e32.path).run(None, {spec32.input_name: x})
        # Stated tolerance: fp16 within 2e-2 of fp32, relative to the output's scale (z) or absolute (frames).
        scale = max(1.0, float(np.abs(b).max())) if net == "encoder" else 1.0
        assert np.abs(a - b).max() <= TOLERANCE["fp16"] * scale
        assert np.abs(a - b).max() > 0  # really computed in half precision, not a copy of the fp32 graph


def test_tampered_export_is_redone(tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    model, cache = tiny
    e = export(model, NetSpec("decoder", 1, "fp32"), cache)
    e.path.write_bytes(e.path.read_bytes() + b"junk")
    again = export(model, NetSpec("decoder", 1, "fp32"), cache)
    assert not again.cached and again.sha256 == e.sha256
    assert "does not match its sidecar" in capsys.readouterr().err


def test_parity_check_catches_a_wrong_graph(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    model, cache = tiny
    e = export(model, NetSpec("encoder", 1, "fp32"), cache)
    m = load_model(model)
    with torch.no_grad():
        m.encoder.fc.bias.add_(0.5)  # the graph on disk no longer matches this model
    with pytest.raises(EngineError, match="differs from PyTorch"):
        check_export(NetSpec("encoder", 1, "fp32"), m, e.path)


def test_bad_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        export(tmp_path / "missing.safetensors", NetSpec("encoder"), tmp_path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"junk\.safetensors"):
        export(junk, NetSpec("encoder"), tmp_path)


def test_specs_for() -> None:
    assert [s.name for s in specs_for("live", ["fp16"], 8)] == ["encoder-b1-fp16", "decoder-b1-fp16"]
    assert len(specs_for("both", ["fp32", "fp16"], 8)) == 8
    with pytest.raises(EngineError, match="precision 'int4'"):
        specs_for("live", ["int4"], 8)


def test_export_command(tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    model, cache = tiny
    assert main(["export", str(model), "--batch", "live", "--precision", "fp32", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "encoder-b1-fp32" in out and "decoder-b1-fp32" in out and "max |ORT - torch fp32|" in out
    assert main(["export", str(model), "--backend", "tensorrt", "--cache-dir", str(cache)]) in (0, 1)
    if not torch.cuda.is_available():
        assert "error:" in capsys.readouterr().err  # no TensorRT/CUDA here: one clear line, exit 1


def test_export_command_default_precisions_on_a_model_with_its_pca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trained model carries its latent PCA ([K, zdim] buffers): every default precision must export it
    (the fp16 copy once rebuilt the model empty-handed and failed on exactly those buffers)."""
    from livevae.model import save_model
    from livevae.offline.bench import random_model

    m = random_model("tiny")
    comps = torch.linalg.qr(torch.randn(m.cfg.zdim, 2))[0].t()  # [2, zdim], orthonormal rows
    m.set_pca(torch.zeros(m.cfg.zdim), comps, torch.tensor([2.0, 1.0]))
    path = save_model(m, tmp_path / "with-pca.safetensors")
    assert main(["export", str(path), "--batch", "live", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "encoder-b1-fp32" in out and "decoder-b1-fp16" in out
    assert "decoder-b1-int8-u8s8" in out  # every CPU: the scheme for it (-w7 without VNNI)
    assert "CPU choice (ONNX Runtime, live): " in out
