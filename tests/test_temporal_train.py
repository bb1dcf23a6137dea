"""Honest held-out segments, temporal figures per checkpoint, and temporal training with exact gradient routing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_train import make_dataset, tiny_cfg
from tests.test_train_losses import grads, setup
from train.config import ConfigError, TrainConfig
from train.dataset import DatasetError, FrameDataset
from train.losses import feature_distance, kl_divergence, temporal_terms

# --- the split -------------------------------------------------------------------------------------


def test_segments_are_contiguous_and_no_training_frame_neighbours_them(tmp_path: Path) -> None:
    ds = FrameDataset(make_dataset(tmp_path / "d", n=120), segments=(3, 10, 4))
    assert len(ds.val_segments) == 3
    for seg in ds.val_segments:
        assert len(seg) == 10 and np.array_equal(seg, np.arange(seg[0], seg[0] + 10))
    train = set(ds.train_idx.tolist())
    held = set(ds.val_idx.tolist())
    assert not train & held
    # Every training frame is at least gap + 1 frames from every held-out frame.
    dist = np.abs(ds.train_idx[:, None] - ds.val_idx[None, :]).min()
    assert dist >= 5
    assert len(train) == 120 - 3 * 10 - 3 * 8
    # Spread through the film: one block in each third.
    assert [int(s[0]) // 40 for s in ds.val_segments] == [0, 1, 2]


def test_every_kth_frame_split_is_kept_for_old_runs(tmp_path: Path) -> None:
    ds = FrameDataset(make_dataset(tmp_path / "d", n=20), held_out_every=5)
    assert ds.val_idx.tolist() == [2, 7, 12, 17]
    assert all(len(s) == 1 for s in ds.val_segments)


def test_short_film_gets_fewer_or_shorter_blocks_or_a_clear_error(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", n=40)
    ds = FrameDataset(data, segments=(10, 6, 2))  # 10 blocks of 10 in 40 frames: only 2 fit in half
    assert len(ds.val_segments) == 2 and "fit 2 held-out blocks" in ds.split_note
    ds = FrameDataset(data, segments=(10, 48, 24))  # the defaults on a 40-frame clip: shorter blocks
    assert [len(v) for v in ds.val_segments] == [5, 5] and "shortened to 5 frames, gaps to 2" in ds.split_note
    assert len(ds.train_idx) == 40 - 10 - 8 and np.abs(ds.train_idx[:, None] - ds.val_idx[None, :]).min() >= 3
    with pytest.raises(DatasetError, match=r"6 frames; too few to hold out .*expected at least 8 frames"):
        FrameDataset(make_dataset(tmp_path / "e", n=6), segments=(1, 48, 24))


def test_pairs_are_consecutive_training_frames_and_ranks_share_them(tmp_path: Path) -> None:
    ds = FrameDataset(make_dataset(tmp_path / "d", n=80), segments=(2, 8, 3))
    train = set(ds.train_idx.tolist())
    order = ds.pair_order(0, seed=0)
    a, b = order[0::2], order[1::2]
    assert np.array_equal(b, a + 1)
    assert set(order.tolist()) <= train
    assert not np.array_equal(order, ds.pair_order(1, seed=0))  # reshuffled per epoch
    assert np.array_equal(order, ds.pair_order(0, seed=0))  # fixed by (seed, epoch): resume sees the same
    r0, r1 = ds.pair_order(0, 0, rank=0, world=2), ds.pair_order(0, 0, rank=1, world=2)
    assert not set(zip(r0[0::2], r0[1::2], strict=True)) & set(zip(r1[0::2], r1[1::2], strict=True))


def test_config_split_keys(tmp_path: Path) -> None:
    assert TrainConfig().split() == {"segments": (10, 48, 24)}
    # A stored config or recipe from before segments (it names held_out_every only) keeps its split.
    old = TrainConfig.from_dict({"preset": "tiny", "held_out_every": 10, "pixel_weight": 1.0})
    assert old.held_out == "every" and old.split() == {"held_out_every": 10}
    with pytest.raises(ConfigError, match=r"key 'held_out' is 'random'; expected 'segments' or 'every'"):
        TrainConfig(held_out="random")
    with pytest.raises(ConfigError, match=r"key 'batch' is 5; expected an even number when temporal"):
        TrainConfig(temporal=True, batch=5)
    with pytest.raises(ConfigError, match=r"key 'held_out_segment' is 1"):
        TrainConfig(held_out_segment=1)


# --- the temporal loss ---------------------------------------------------------------------------


def test_temporal_term_is_zero_when_the_change_is_matched() -> None:
    loss, x = setup(temporal=True, batch=4)
    fw = loss.forward(x)
    fw.xr = fw.x + 0.3  # a reconstruction off by a constant: every frame-to-frame change is exact
    pix, feat = temporal_terms(fw)
    assert float(pix) == pytest.approx(0.0, abs=1e-6)
    assert feat is not None and float(feat.detach()) > 0  # the features were computed on the real xr, not this one


def test_temporal_pairs_share_their_noise() -> None:
    loss, x = setup(temporal=True, batch=4)
    x = torch.cat([x[:1], x[:1], x[2:3], x[2:3]])  # two pairs of identical frames
    fw = loss.forward(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(fw.xr[0], fw.xr[1])  # same frame, same noise: no change
    assert not torch.allclose(fw.xr[0], fw.xr[2])


def test_temporal_routing_is_exact() -> None:
    """With temporal on, the routed encoder and decoder gradients equal plain backwards of their terms, and the
    generator phase leaves the discriminator's gradients untouched."""
    kw = {"temporal": True, "batch": 4, "gan_weight": 0.0, "temporal_weight": 0.7, "temporal_feature_weight": 0.3}
    loss, x = setup(**kw)
    fw = loss.forward(x, torch.Generator().manual_seed(5))
    loss.dis_phase(fw)
    dis_before = [p.grad.clone() for p in loss.dis_params if p.grad is not None]
    stats = loss.gen_phase(fw, step=0)
    assert stats["loss/temporal_pixel"] > 0 and stats["loss/temporal_feature"] > 0
    assert all(torch.equal(a, p.grad) for a, p in zip(dis_before, loss.dis_params, strict=True))
    routed_enc = [p.grad.clone() for p in loss.enc_params if p.grad is not None]
    routed_dec = [p.grad.clone() for p in loss.dec_params if p.grad is not None]

    fw = loss.forward(x, torch.Generator().manual_seed(5))
    assert fw.fake_feats is not None and fw.real_feats is not None
    sim = feature_distance([f[:4] for f in fw.fake_feats], [r.detach() for r in fw.real_feats])
    t_pix, t_feat = temporal_terms(fw)
    assert t_feat is not None
    rec = (fw.xr - fw.x).abs().mean() + 0.7 * t_pix + 0.3 * t_feat
    enc_total = 1e-3 * kl_divergence(fw.mu, fw.logvar) + sim + rec
    dec_total = 2.5 * sim + rec  # gamma 2.5 on the similarity, the temporal term as it is
    for a, b in zip(routed_enc, torch.autograd.grad(enc_total, loss.enc_params, retain_graph=True), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    for a, b in zip(routed_dec, torch.autograd.grad(dec_total, loss.dec_params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_temporal_off_changes_nothing() -> None:
    a, x = setup()
    b, _ = setup(temporal=False, temporal_weight=5.0)
    sa = a.gen_phase(a.forward(x, torch.Generator().manual_seed(2)), step=0)
    sb = b.gen_phase(b.forward(x, torch.Generator().manual_seed(2)), step=0)
    assert "loss/temporal_pixel" not in sb and sa == sb
    assert grads(a.enc_params) == grads(b.enc_params)


# --- end to end ----------------------------------------------------------------------------------


def test_temporal_run_reports_temporal_figures_per_checkpoint(tmp_path: Path) -> None:
    from train.loop import train

    data = make_dataset(tmp_path / "d", n=60)
    other = make_dataset(tmp_path / "other", n=30)
    cfg = tiny_cfg(max_steps=4, checkpoint_every=2, batch=4).replace(
        held_out="segments", held_out_segments=2, held_out_segment=6, held_out_gap=2, temporal=True
    )
    cfg = cfg.replace(eval_clips=(str(other),), eval_clip_frames=12)
    res = train(cfg, data, tmp_path / "run", progress=False)
    lines = [json.loads(s) for s in (tmp_path / "run" / "validation.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines] == [2, 4]
    for key in ("psnr", "ssim", "sharpness", "motion_ratio", "temporal_error", "collapse_rate"):
        assert np.isfinite(lines[-1][key]), key
        assert np.isfinite(lines[-1][f"other/{key}"]), key
    assert lines[-1]["frames"] == 12.0  # two blocks of six
    assert 0.0 <= lines[-1]["collapse_rate"] <= 1.0 and lines[-1]["motion_ratio"] >= 0
    from livevae.model import read_model_header

    assert res.model is not None
    _, meta = read_model_header(res.model)
    assert meta["split"] == {"held_out": "segments", "segments": [2, 6, 2]} and meta["temporal"] is True
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(tmp_path / "run" / "tb"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"val/motion_ratio", "val/temporal_error", "val/collapse_rate", "val/other/motion_ratio"} <= tags
    assert "loss/temporal_pixel" in tags

    # train.report scores the model on the split stored in it, with the same figures, and draws the strip.
    import cv2

    from train import report

    strip, out = tmp_path / "strip.png", tmp_path / "report.json"
    args = [str(res.model), "--data", str(data), "--cross", str(other), "--strip", str(strip), "--json", str(out)]
    assert report.main([*args, "--strip-frames", "4", "--scale", "1"]) == 0
    rep = json.loads(out.read_text())[str(res.model)]
    assert rep["held_out"]["frames"] == 12.0 and set(FIG) <= set(rep["held_out"]) and set(FIG) <= set(rep["other"])
    best = max(lines, key=lambda ln: ln[cfg.best_metric])  # model.safetensors is the best checkpoint's
    for k in FIG:  # the same evaluation as the run's own
        assert rep["held_out"][k] == pytest.approx(best[k], rel=1e-4, abs=1e-6), k
    assert cv2.imread(str(strip)).shape == (2 * 48, 4 * 64, 3)  # rows: source, model; four consecutive frames


FIG = ("psnr", "ssim", "sharpness", "motion_ratio", "temporal_error", "collapse_rate")


def test_report_refuses_a_model_without_its_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from livevae.model import random_model, save_model
    from train import report

    data = make_dataset(tmp_path / "d", n=60)
    path = save_model(random_model("tiny"), tmp_path / "old.safetensors", meta={})
    with pytest.raises(SystemExit, match=r"old.safetensors: no held-out split in its metadata"):
        report.main([str(path), "--data", str(data)])
    with pytest.raises(SystemExit, match=r"--segments '3,x': expected COUNT,LENGTH,GAP"):
        report.main([str(path), "--data", str(data), "--segments", "3,x"])
    assert report.main([str(path), "--data", str(data), "--segments", "2,6,2"]) == 0
    assert report.main([str(path), "--data", str(tmp_path / "nowhere"), "--segments", "2,6,2"]) == 2
    short = make_dataset(tmp_path / "short", n=6)
    assert report.main([str(path), "--data", str(short), "--segments", "1,50,2"]) == 2  # too short: one line
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("livevae report: ") and "expected at least 8 frames" in err[-1] and len(err) == 2


def test_synthetic_pans_move_the_first_frame_and_augmentation_keeps_pairs_alike() -> None:
    from train.batches import augment, synthetic_motion, translate

    x = torch.rand(8, 3, 16, 20) * 2 - 1
    cfg = TrainConfig(temporal=True, batch=8, temporal_shift=3, temporal_shift_p=1.0)
    y = synthetic_motion(x, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(y[0::2], x[0::2])  # first frames untouched
    for i in range(1, 8, 2):  # every second frame is its first frame moved by a non-zero shift
        found = [
            (dx, dy)
            for dx in range(-3, 4)
            for dy in range(-3, 4)
            if torch.equal(y[i], translate(x[i - 1 : i], torch.tensor([[dx, dy]]), 3)[0])
        ]
        assert found and found[0] != (0, 0)
    none = synthetic_motion(x, cfg.replace(temporal_shift_p=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(none, x)
    # Augmentation of a temporal batch: a pair of identical frames stays identical (same flip, shift, jitter).
    pairs = torch.cat([x[:1], x[:1], x[2:3], x[2:3]])
    acfg = TrainConfig(temporal=True, batch=4, augment=True, aug_translate=3, aug_jitter=0.1)
    a = augment(pairs, acfg, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], a[1]) and torch.equal(a[2], a[3])
    plain = augment(pairs, acfg.replace(temporal=False), torch.Generator().manual_seed(1))
    assert not torch.equal(plain[0], plain[1])  # without temporal, frames are augmented independently
