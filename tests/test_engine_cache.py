"""Engine/export cache: pure keys, verified sidecars that refuse foreign files, and TensorRT (skipped without it)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from livevae.backends import EngineError
from livevae.backends.cache import (
    cache_root,
    engine_key_fields,
    key_of,
    read_verified,
    sidecar_path,
    timing_cache_key_fields,
    write_verified,
)
from livevae.backends.onnx_export import NetSpec
from livevae.model import preset

BASE = {
    "onnx_sha256": "a" * 64,
    "trt_version": "10.13.0",
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "compute_capability": (9, 0),
    "precision": "fp16",
    "shapes": {"frames": ((1, 3, 144, 256),) * 3},
}


def _key(**changes: object) -> str:
    return key_of(engine_key_fields(**{**BASE, **changes}))  # type: ignore[arg-type]


def test_engine_key_is_stable() -> None:
    assert _key() == _key()
    assert len(_key()) == 24


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "b" * 64},
        {"trt_version": "10.13.1"},
        {"trt_version": "11.0.0"},
        {"gpu_name": "NVIDIA H200"},
        {"compute_capability": (8, 9)},
        {"precision": "fp32"},
        {"shapes": {"frames": ((1, 3, 144, 256),) * 2 + ((2, 3, 144, 256),)}},  # another profile max
        {"shapes": {"frames": ((1, 3, 288, 512),) * 3}},  # another resolution
        {"shapes": {"z": ((1, 3, 144, 256),) * 3}},  # another input name
    ],
)
def test_engine_key_changes_with_every_keyed_input(change: dict[str, object]) -> None:
    assert _key(**change) != _key()


def test_timing_cache_key_depends_on_trt_and_gpu_only() -> None:
    k = key_of(timing_cache_key_fields("10.13.0", "H100", (9, 0)))
    assert k == key_of(timing_cache_key_fields("10.13.0", "H100", (9, 0)))
    assert k != key_of(timing_cache_key_fields("10.13.1", "H100", (9, 0)))
    assert k != key_of(timing_cache_key_fields("10.13.0", "H200", (9, 0)))
    assert k != key_of(timing_cache_key_fields("10.13.0", "H100", (8, 0)))


def test_spec_profiles_static_and_dynamic() -> None:
    cfg = preset("live")
    assert NetSpec("encoder", 1).profile(cfg) == {"frames": ((1, 3, 144, 256),) * 3}
    lo, opt, hi = NetSpec("decoder", None, max_batch=32).profile(cfg)["z"]
    assert (lo, opt, hi) == ((1, 200), (32, 200), (32, 200))  # opt = the full chunks reconstruct sends
    precisions = ("fp32", "fp16", "int8")
    names = {NetSpec(n, b, p).name for n in ("encoder", "decoder") for b in (1, None) for p in precisions}
    assert (
        len(names) == 12
        and "encoder-b1-fp32" in names
        and "decoder-bN-fp16" in names
        and any(n.startswith("decoder-b1-int8-u8s8") for n in names)
    )
    with pytest.raises(EngineError, match="precision 'int4'"):
        NetSpec("encoder", 1, "int4")
    with pytest.raises(EngineError, match="net 'discriminator'"):
        NetSpec("discriminator", 1)  # type: ignore[arg-type]


def test_verified_roundtrip(tmp_path: Path) -> None:
    fields = engine_key_fields(**BASE)  # type: ignore[arg-type]
    p = write_verified(tmp_path / "e.plan", b"engine bytes", fields)
    assert read_verified(p, fields) == b"engine bytes"
    side = json.loads(sidecar_path(p).read_text())
    assert side["fields"]["gpu"] == BASE["gpu_name"] and len(side["sha256"]) == 64


def test_refuses_engine_the_cache_did_not_write(tmp_path: Path) -> None:
    fields = engine_key_fields(**BASE)  # type: ignore[arg-type]
    p = write_verified(tmp_path / "e.plan", b"engine bytes", fields)
    p.write_bytes(b"engine bytes, swapped by hand")
    with pytest.raises(EngineError, match=r"e\.plan: sha256 .* does not match"):
        read_verified(p, fields)
    q = tmp_path / "copied.plan"
    q.write_bytes(b"engine from elsewhere")
    with pytest.raises(EngineError, match=r"copied\.plan: no sidecar"):
        read_verified(q, fields)
    sidecar_path(q).write_text("{not json")
    with pytest.raises(EngineError, match="unreadable sidecar"):
        read_verified(q, fields)
    with pytest.raises(EngineError, match="not found"):
        read_verified(tmp_path / "missing.plan", fields)


def test_refuses_engine_built_for_other_fields(tmp_path: Path) -> None:
    fields = engine_key_fields(**BASE)  # type: ignore[arg-type]
    p = write_verified(tmp_path / "e.plan", b"engine bytes", fields)
    other = engine_key_fields(**{**BASE, "gpu_name": "NVIDIA RTX 4090"})  # type: ignore[arg-type]
    with pytest.raises(EngineError, match=r"other key fields \['gpu'\]"):
        read_verified(p, other)


def test_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIVEVAE_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("LIVEVAE_CACHE")
    assert cache_root() == Path.home() / ".cache" / "livevae"


HAVE_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
NO_TRT = "needs TensorRT 10/11 and a CUDA GPU (pip install 'livevae[tensorrt]'); neither is on this machine"


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here: the missing-library error cannot be shown")
def test_missing_tensorrt_is_a_clear_error() -> None:
    from livevae.backends.tensorrt_backend import require_tensorrt

    with pytest.raises(EngineError, match=r"tensorrt Python package is not installed|sees no CUDA device"):
        require_tensorrt()


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TRT, reason=NO_TRT)
def test_tensorrt_engine_builds_caches_and_matches_torch(tiny_model_file: Path, tmp_path: Path) -> None:
    from livevae.backends.tensorrt_backend import TensorRTBackend
    from livevae.backends.torch_backend import TorchBackend

    ref = TorchBackend.from_file(str(tiny_model_file))
    frames = np.random.default_rng(0).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    for precision, tol in (("fp32", 1e-3), ("fp16", 2e-2)):
        b = TensorRTBackend(tiny_model_file, batch=1, precision=precision, cache_dir=tmp_path)
        z, zr = b.encode(frames), ref.encode(frames)
        assert np.abs(z - zr).max() <= tol * max(1.0, float(np.abs(zr).max()))
        assert np.abs(b.decode(zr).astype(int) - ref.decode(zr).astype(int)).max() <= (2 if precision == "fp32" else 8)
    plans = sorted((tmp_path / "tensorrt").glob("*.plan"))
    assert len(plans) == 4 and all(p.name.split("-")[0] in ("encoder", "decoder") for p in plans)
    for p in plans:  # tamper: the next load must refuse them before TensorRT deserialises anything
        p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1]))
    with pytest.raises(EngineError, match="does not match"):
        TensorRTBackend(tiny_model_file, batch=1, precision="fp32", cache_dir=tmp_path)
