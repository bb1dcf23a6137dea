"""Adversarial model files: hostile configs and tensors are refused in one line before any network is built."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hst
from safetensors.torch import save_file

from livevae.model import VAE, ModelError, load_model, random_model, read_model_header


@pytest.fixture(scope="module")
def tiny() -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in random_model("tiny").state_dict().items()}


def _write(path: Path, tensors: dict[str, torch.Tensor], config: Any, fmt: str = "livevae-model") -> Path:
    cfg = config if isinstance(config, str) else json.dumps(config)
    save_file(tensors, str(path), metadata={"format": fmt, "version": "1", "config": cfg, "meta": "{}"})
    return path


TINY_CFG = random_model("tiny").cfg.to_dict()


def _built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every VAE built on a real device (the meta device costs no memory and is allowed)."""
    built: list[str] = []
    orig = VAE.__init__

    def spy(self: VAE, cfg: Any) -> None:
        dev = torch.empty(0).device.type
        if dev != "meta":
            built.append(dev)
        orig(self, cfg)

    monkeypatch.setattr(VAE, "__init__", spy)
    return built


HOSTILE_CONFIGS = [
    ({"width": 0}, "width"),
    ({"width": -64}, "width"),
    ({"width": 1 << 30, "height": 1 << 30}, "width"),
    ({"zdim": -1}, "zdim"),
    ({"zdim": 10**9}, "zdim"),
    ({"zdim": 4000}, "shape"),  # in bounds, but the file's tensors do not back it: refused before building
    ({"width": 4096, "height": 4096}, "shape"),
    ({"widths": []}, "widths"),
    ({"widths": [1 << 20, 8, 8, 8]}, r"widths\[0\]"),
    ({"widths": [8] * 100}, "widths"),
    ({"widths": "8,16"}, "widths"),
    ({"kernel": 10**6}, "kernel"),
    ({"dec_kernel": 9}, "dec_kernel"),
    ({"bottleneck": -3}, "bottleneck"),
    ({"zdim": "16"}, "zdim"),
    ({"zdim": True}, "zdim"),
    ({"surprise": 1}, "unknown keys"),
]


@pytest.mark.parametrize("change,key", HOSTILE_CONFIGS)
def test_hostile_configs_are_refused_before_building(
    tmp_path: Path, tiny: dict[str, torch.Tensor], change: dict[str, Any], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _write(tmp_path / "m.safetensors", tiny, {**TINY_CFG, **change})
    built = _built(monkeypatch)
    with pytest.raises(ModelError, match=key) as e:
        load_model(p)
    assert built == []  # no network was ever built from the file's config
    assert str(p) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "config,why",
    [("{not json", "bad 'config'"), ("[1, 2]", "expected JSON objects"), ("[" * 5000 + "]" * 5000, "bad .config")],
)
def test_malformed_config_metadata(tmp_path: Path, tiny: dict[str, torch.Tensor], config: str, why: str) -> None:
    p = _write(tmp_path / "m.safetensors", tiny, config)
    with pytest.raises(ModelError, match=why):
        read_model_header(p)


def test_tensor_shapes_dtypes_and_names_are_checked_with_the_key(tmp_path: Path, tiny: dict[str, torch.Tensor]) -> None:
    k = "encoder.fc.weight"
    cases: list[tuple[dict[str, torch.Tensor], str]] = [
        ({**tiny, k: torch.zeros(3, 3)}, rf"'{k}' has shape \[3, 3\]; expected \[32, "),
        ({kk: v for kk, v in tiny.items() if kk != k}, f"'{k}' missing"),
        ({**tiny, "backdoor": torch.zeros(1)}, "'backdoor' unexpected"),
        ({**tiny, k: tiny[k].to(torch.int32)}, f"'{k}' is I32"),
        ({**tiny, "pca_components": torch.zeros(99, 16), "pca_std": torch.zeros(99)}, "PCA tensors"),
    ]
    for i, (tensors, why) in enumerate(cases):
        p = _write(tmp_path / f"m{i}.safetensors", tensors, TINY_CFG)
        with pytest.raises(ModelError, match=why):
            load_model(p)


def test_nan_weights_are_refused_by_name(tmp_path: Path, tiny: dict[str, torch.Tensor]) -> None:
    bad = {**tiny, "decoder.fc.0.weight": torch.full_like(tiny["decoder.fc.0.weight"], float("nan"))}
    p = _write(tmp_path / "nan.safetensors", bad, TINY_CFG)
    with pytest.raises(ModelError, match=r"'decoder.fc.0.weight' holds \d+ NaN/inf"):
        load_model(p)


def test_a_hostile_model_is_one_line_from_the_command_line(
    tmp_path: Path, tiny: dict[str, torch.Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    from livevae.cli.main import main
    from tests.conftest import pattern_frames, write_video

    film = write_video(tmp_path / "f.mp4", pattern_frames(3, 64, 48))
    p = _write(tmp_path / "m.safetensors", tiny, {**TINY_CFG, "zdim": 10**9})
    rc = main(["reconstruct", str(p), str(film), "-o", str(tmp_path / "o.mp4"), "--no-progress", "--backend", "torch"])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "zdim" in err[0] and "expected an integer in 1..4096" in err[0]


@given(
    change=hst.dictionaries(
        hst.sampled_from(["width", "height", "zdim", "kernel", "dec_kernel", "bottleneck", "widths"]),
        hst.one_of(
            hst.integers(-(1 << 40), 1 << 40),
            hst.lists(hst.integers(-10, 1 << 20), max_size=12),
            hst.text(max_size=5),
            hst.none(),
        ),
        min_size=1,
    )
)
@settings(max_examples=60, deadline=None)
def test_any_config_is_loaded_exactly_or_refused_with_model_error(
    tmp_path_factory: pytest.TempPathFactory, tiny: dict[str, torch.Tensor], change: dict[str, Any]
) -> None:
    p = _write(tmp_path_factory.mktemp("m") / "m.safetensors", tiny, {**TINY_CFG, **change})
    try:
        cfg, _ = read_model_header(p)
    except ModelError:
        return
    assert cfg.to_dict() == {**TINY_CFG, **change} or cfg.to_dict() == TINY_CFG  # only the file's own shapes pass
