"""Latent modulation: pure function of (z, snapshot, t), PCA directions, and the Modulator's memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from livevae.control.modulate import ModulateError, Modulator, Pca, load_pca, modulate, modulate_latent
from livevae.control.state import ControlState, LfoSettings


def _pca(zdim: int = 6, k: int = 2) -> Pca:
    comps = np.eye(k, zdim, dtype=np.float32)
    return Pca(np.full(zdim, 0.5, np.float32), comps, np.array([2.0, 3.0][:k], np.float32))


def test_identity_by_default_returns_same_array() -> None:
    z = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    assert modulate(z, ControlState(zdim=6).snapshot(), 0.0) is z


def test_gain_offset_mix_pc() -> None:
    z = np.ones((1, 6), np.float32)
    s = ControlState(zdim=6, n_pcs=2)
    s.set("gain/0", 2.0)
    s.set("z/1", -1.0)
    s.set("pc/1", 1.0)
    out = modulate(z, s.snapshot(), 0.0, _pca())
    # dim 0 doubled, dim 1 offset to 0, pc 1 moves dim 1 by 1 std = 3
    assert out[0].tolist() == pytest.approx([2.0, 3.0, 1, 1, 1, 1])
    s2 = ControlState(zdim=6)
    s2.set("mix", 1.0)
    assert modulate(z, s2.snapshot(), 0.0, _pca())[0].tolist() == pytest.approx([0.5] * 6)  # film mean
    s2.set_vector("anchor", [3, 3, 3, 3, 3, 3])
    s2.set("mix", 0.5)
    assert modulate(z, s2.snapshot(), 0.0)[0].tolist() == pytest.approx([2.0] * 6)


def test_noise_is_deterministic_in_t_and_scaled() -> None:
    z = np.zeros((1, 200), np.float32)
    s = ControlState(zdim=200)
    s.set("noise", 2.0)
    a, b, c = (modulate(z, s.snapshot(), t) for t in (1.0, 1.0, 1.04))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.std() == pytest.approx(2.0, rel=0.2)


def test_shape_errors() -> None:
    with pytest.raises(ModulateError, match=r"expected \[N, 6\]"):
        modulate_latent(np.zeros((1, 5), np.float32), ControlState(zdim=6).snapshot(), 0.0)


def test_modulator_freeze_holds_input_but_follows_controls() -> None:
    s = ControlState(zdim=4)
    m = Modulator(4)
    z0 = np.zeros((1, 4), np.float32)
    z1 = np.ones((1, 4), np.float32)
    m(z0, s.snapshot(), 0.0)
    s.set("freeze", 1)
    assert m(z0, s.snapshot(), 0.04).tolist() == [[0, 0, 0, 0]]
    assert m(z1, s.snapshot(), 0.08).tolist() == [[0, 0, 0, 0]]  # new input ignored
    s.set("z/2", 1.0)
    assert m(z1, s.snapshot(), 0.12).tolist() == [[0, 0, 1, 0]]  # controls still act on the frozen z
    s.set("freeze", 0)
    assert m(z1, s.snapshot(), 0.16).tolist() == [[1, 1, 2, 1]]


def test_modulator_ema_smooths_encoder_z() -> None:
    s = ControlState(zdim=2)
    s.set("smooth", 0.5)
    m = Modulator(2)
    m(np.zeros((1, 2), np.float32), s.snapshot(), 0.0)
    out = m(np.ones((1, 2), np.float32), s.snapshot(), 0.04)
    assert out.tolist() == [[0.5, 0.5]]
    out = m(np.ones((1, 2), np.float32), s.snapshot(), 0.08)
    assert out.tolist() == [[0.75, 0.75]]


def test_modulator_slew_global_and_per_control() -> None:
    s = ControlState(zdim=2)
    m = Modulator(2)
    z = np.zeros((1, 2), np.float32)
    m(z, s.snapshot(), 0.0)
    s.set("slew", 1.0)
    s.set_slew("z/1", 0.1)
    s.set_vector("z", [1.0, 1.0])
    out = m(z, s.snapshot(), 0.1)
    # one frame later each control has moved, by 1 - exp(-dt / tau)
    assert out[0, 0] == pytest.approx(1 - np.exp(-0.1), rel=1e-4)
    assert out[0, 1] == pytest.approx(1 - np.exp(-1.0), rel=1e-4)
    for i in range(2, 300):
        out = m(z, s.snapshot(), i * 0.1)
    assert out.tolist() == [[1.0, 1.0]]  # converges and snaps to the target


def test_modulator_lfo_moves_target_over_time() -> None:
    s = ControlState(zdim=2, n_lfos=1)
    s.set_lfo(0, LfoSettings(rate=1.0, depth=1.0, target="z/0"))
    m = Modulator(2)
    z = np.zeros((1, 2), np.float32)
    vals = [float(m(z, s.snapshot(), i / 8)[0, 0]) for i in range(9)]
    assert vals == pytest.approx([np.sin(2 * np.pi * i / 8) for i in range(9)], abs=1e-6)


def test_load_pca_from_model_file(tmp_path: Path, tiny_model_file: Path) -> None:
    from livevae.model import load_model, save_model

    assert load_pca(tiny_model_file) is None  # untrained: no PCA yet
    m = load_model(tiny_model_file)
    comps = torch.eye(3, m.cfg.zdim)
    m.set_pca(torch.full((m.cfg.zdim,), 0.1), comps, torch.tensor([1.0, 2.0, 3.0]))
    p = load_pca(save_model(m, tmp_path / "pca.safetensors"))
    assert p is not None and p.k == 3 and p.zdim == m.cfg.zdim
    assert p.std.tolist() == [1.0, 2.0, 3.0]


def test_modulator_recovers_from_a_nan_frame() -> None:
    s = ControlState(zdim=2)
    s.set("smooth", 0.9)
    m = Modulator(2)
    m(np.zeros((1, 2), np.float32), s.snapshot(), 0.0)
    m(np.full((1, 2), np.nan, np.float32), s.snapshot(), 0.04)  # a backend glitch
    out = m(np.ones((1, 2), np.float32), s.snapshot(), 0.08)
    assert np.isfinite(out).all()
