"""bench/gpu_check: its dry run on a CPU machine, and the safetensors stand-in it uses on a bare GPU machine."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mini_safetensors_reads_and_writes_the_real_format(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import safetensors
    import safetensors.torch as real

    tensors = {
        "w": torch.randn(3, 5),
        "h": torch.randn(4).half(),
        "b": torch.randn(2, 2).bfloat16(),
        "n": torch.tensor(7),
        "e": torch.zeros(0, 3),
        "i": torch.arange(6, dtype=torch.int64).reshape(2, 3),
    }
    meta = {"config": json.dumps({"preset": "tiny"})}
    real.save_file(tensors, tmp_path / "real.safetensors", metadata=meta)
    monkeypatch.setitem(sys.modules, "safetensors", safetensors)  # restored after the stand-in replaces them
    monkeypatch.setitem(sys.modules, "safetensors.torch", real)
    _gpu_check()._mini_safetensors()
    mini = sys.modules["safetensors.torch"]
    assert mini is not real
    loaded = mini.load_file(tmp_path / "real.safetensors")
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    with sys.modules["safetensors"].safe_open(str(tmp_path / "real.safetensors"), framework="pt") as f:
        assert f.metadata() == meta
    mini.save_file(tensors, tmp_path / "mini.safetensors", metadata=meta)
    back = real.load_file(tmp_path / "mini.safetensors")
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)
    with safetensors.safe_open(str(tmp_path / "mini.safetensors"), framework="pt") as f:
        assert f.metadata() == meta


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs these steps instead of skipping them")
def test_dry_run_skips_each_gpu_step_by_name_and_writes_one_json(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    steps = "torch_cuda_precisions,latency_b1,train_broad2016,nccl_one_rank,gpu_tests"
    r = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), str(out), "--steps", steps],
        capture_output=True,
        text=True,
        timeout=120,
        env={"GPU_CHECK_PRETEND_MISSING": "av,cv2,tqdm", "PATH": "/usr/bin:/bin", "PY": sys.executable},
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert list(report["steps"]) == steps.split(",")
    for name, step in report["steps"].items():
        assert step["status"] == "skipped" and "no CUDA device" in step["reason"], name
        assert f"gpu_check: {name}: skipped" in r.stderr
    assert report["machine"]["av"] == "stub" and "cv2" in report["machine"]["stubbed"]
    assert report["frames"].startswith("synthetic")  # said plainly: no PyAV here, so no real frames
    bad = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), str(tmp_path / "x.json"), "--steps", "warp_drive"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PY": sys.executable},
    )
    assert bad.returncode == 2 and "warp_drive" in bad.stderr and not (tmp_path / "x.json").exists()
