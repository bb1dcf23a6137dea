"""Loss phases route each term only to its networks; metrics behave; configs reject bad values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from livevae.model import VAE, preset
from train import metrics
from train.config import ConfigError, TrainConfig
from train.discriminator import Discriminator
from train.losses import VAEGANLoss, frozen_bn_stats


def setup(**kw: object) -> tuple[VAEGANLoss, torch.Tensor]:
    torch.manual_seed(0)
    base: dict[str, object] = {"preset": "tiny", "pixel_weight": 1.0, "kl_weight": 1e-3}
    base.update(kw)
    cfg = TrainConfig.from_dict(base)
    mc = cfg.model_config()
    vae = VAE(mc).train()
    dis = None if cfg.pixel_vae else Discriminator(mc, cfg.dis_widths, cfg.dis_head)
    return VAEGANLoss(cfg, vae, dis), torch.rand(4, 3, 48, 64) * 2 - 1


def grads(params: list[torch.nn.Parameter]) -> float:
    return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)


@pytest.mark.parametrize("head", ["linear", "patch"])
def test_phases_route_gradients_to_their_networks(head: str) -> None:
    loss, x = setup(dis_head=head, adaptive_gan=True)
    fw = loss.forward(x)
    loss.dis_phase(fw)
    assert grads(loss.dis_params) > 0
    assert all(p.grad is None for p in loss.enc_params + loss.dec_params)  # D's loss reaches only D
    dis_before = [p.grad.clone() for p in loss.dis_params if p.grad is not None]
    stats = loss.gen_phase(fw, step=0)
    assert grads(loss.enc_params) > 0 and grads(loss.dec_params) > 0
    dis_after = [p.grad for p in loss.dis_params if p.grad is not None]
    assert all(torch.equal(a, b) for a, b in zip(dis_before, dis_after, strict=True))  # E/D terms skip D
    assert stats["loss/decoder_gan_on"] == 1.0 and stats["loss/gan_weight"] > 0


def test_gan_term_never_reaches_the_encoder() -> None:
    # Only the GAN term on: the decoder learns from it, the encoder gets exactly nothing.
    loss, x = setup(pixel_weight=0.0, sim_weight=0.0, kl_weight=0.0, gan_weight=1.0)
    fw = loss.forward(x)
    loss.gen_phase(fw, step=0)
    assert grads(loss.dec_params) > 0
    assert grads(loss.enc_params) == 0.0


def test_gamma_weights_similarity_for_the_decoder_only() -> None:
    # With only the similarity term, gamma scales the decoder's gradient and leaves the encoder's alone.
    out = {}
    for gamma in (1.0, 3.0):
        loss, x = setup(pixel_weight=0.0, kl_weight=0.0, gan_weight=0.0, gamma=gamma)
        loss.gen_phase(loss.forward(x, torch.Generator().manual_seed(1)), step=0)
        out[gamma] = (grads(loss.enc_params), grads(loss.dec_params))
    assert out[3.0][0] == pytest.approx(out[1.0][0], rel=1e-5)
    assert out[3.0][1] == pytest.approx(3 * out[1.0][1], rel=1e-4)


def test_gradients_match_a_plain_backward() -> None:
    # The routed encoder gradient equals d(KL + sim + pixel)/d(encoder) computed the obvious way.
    loss, x = setup(gan_weight=0.0)
    g = torch.Generator().manual_seed(3)
    fw = loss.forward(x, g)
    loss.gen_phase(fw, step=0)
    routed = [p.grad.clone() for p in loss.enc_params if p.grad is not None]
    for p in loss.enc_params:
        p.grad = None
    fw = loss.forward(x, torch.Generator().manual_seed(3))
    from train.losses import feature_distance, kl_divergence

    assert fw.fake_feats is not None and fw.real_feats is not None
    sim = feature_distance([f[:4] for f in fw.fake_feats], [r.detach() for r in fw.real_feats])
    total = 1e-3 * kl_divergence(fw.mu, fw.logvar) + sim + (fw.xr - fw.x).abs().mean()
    plain = torch.autograd.grad(total, loss.enc_params)
    for a, b in zip(routed, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_pixel_vae_has_only_pixel_and_kl() -> None:
    loss, x = setup(pixel_vae=True)
    fw = loss.forward(x)
    assert fw.real_logits is None and fw.xp is None
    stats = loss.gen_phase(fw, step=0)
    assert set(stats) == {"loss/kl", "loss/pixel_l1", "loss/total"}
    assert grads(loss.enc_params) > 0 and grads(loss.dec_params) > 0


def test_equilibrium_gates() -> None:
    loss, _ = setup(equilibrium=True)
    loss.set_gates(0.2, 0.7)  # discriminator far ahead on reals: pause it
    assert (loss.train_dis, loss.train_dec_gan) == (False, True)
    loss.set_gates(1.2, 0.7)  # discriminator losing: pause the decoder's GAN term
    assert (loss.train_dis, loss.train_dec_gan) == (True, False)
    loss.set_gates(0.2, 1.2)  # both would stop: train both
    assert (loss.train_dis, loss.train_dec_gan) == (True, True)


def test_prior_samples_leave_bn_running_stats_alone() -> None:
    vae = VAE(preset("tiny")).train()
    before = {k: v.clone() for k, v in vae.decoder.state_dict().items() if "running" in k}
    with frozen_bn_stats(vae.decoder):
        vae.decoder(torch.randn(4, 16) * 5)
    after = vae.decoder.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    vae.decoder(torch.randn(4, 16))
    assert not all(torch.equal(v, vae.decoder.state_dict()[k]) for k, v in before.items())


def test_metrics() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 60) * 2 - 1
    assert float(metrics.ssim(x, x).min()) == pytest.approx(1.0, abs=1e-5)
    assert float(metrics.psnr(x, x).min()) > 90
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    # PSNR of Gaussian noise with std 0.05 in [0, 1] units is about 26 dB (a bit more: clamping).
    assert 25.5 < float(metrics.psnr(noisy, x).mean()) < 27.5
    blurred = F.avg_pool2d(x, 3, 1, 1)
    m = metrics.summarize(blurred, x)
    assert m["sharpness"] < 0.8 and metrics.summarize(noisy, x)["sharpness"] > 1.0
    assert metrics.score({"psnr": 25.0, "sharpness": 1.0}) == 25.0
    assert metrics.score({"psnr": 25.0, "sharpness": 0.5}) < metrics.score({"psnr": 25.0, "sharpness": 0.9})


def test_config_values_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"key 'held_out_every' is 1"):
        TrainConfig(held_out_every=1)
    with pytest.raises(ConfigError, match=r"key 'model'"):
        TrainConfig(model={"zdim": 0})
    with pytest.raises(ConfigError, match=r"key 'pixel_weight'"):
        TrainConfig(pixel_vae=True, pixel_weight=0.0)
    cfg = TrainConfig(preset="tiny", model={"zdim": 8})
    assert cfg.model_config().zdim == 8
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
