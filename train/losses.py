"""VAE-GAN losses as one class with two phases (discriminator step, encoder/decoder step), each term's
gradient routed only to the networks it is meant for; plus the pixel-VAE baseline."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from livevae.model import VAE

from .config import TrainConfig
from .discriminator import Discriminator

EQUILIBRIUM = 0.68  # Larsen's centre: about ln 2, the BCE of a discriminator that cannot tell


@contextlib.contextmanager
def frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Batch norm normalises with the batch's statistics but leaves the running statistics alone.

    Used when decoding prior samples z ~ N(0, I): their statistics differ from those of encoded frames,
    and mixing them into the running statistics would shift the eval-mode reconstruction."""
    saved: list[tuple[nn.modules.batchnorm._BatchNorm, float | None]] = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum))
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, mom in saved:
            m.momentum = mom


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over z, mean over the batch; mu, logvar [N, zdim]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()


def feature_distance(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """Learned similarity: mean squared difference of discriminator activations, averaged over layers
    (the 2016 code averages all four conv layers; the paper uses one).

    Each layer's term is divided by the mean square of the real activations (a constant for the
    gradient): the term stays a relative error as the discriminator's activations grow. Unnormalised,
    a critic learning at 1e-3 grew it 500-fold within 80 steps and swamped the pixel term."""
    terms = [
        F.mse_loss(f.float(), r.float()) / (r.float().pow(2).mean().detach() + 1e-6)
        for f, r in zip(fake, real, strict=True)
    ]
    return torch.stack(terms).mean()


def temporal_terms(fw: Forward) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The temporal loss on a batch of consecutive pairs [a, a+1, b, b+1, ...]: (pixel term, feature term).

    pixel:   mean |(xr_t+1 - xr_t) - (x_t+1 - x_t)|, the temporal error of the training pairs;
    feature: the same change matched in the discriminator's activations, each layer's MSE divided by the mean
             square of the real activations (a constant for the gradient), as in feature_distance; None without
             a discriminator. The source's change is detached: only the reconstruction is moved."""
    n = fw.x.shape[0]
    dx = fw.x[1::2] - fw.x[0::2]  # [N/2, 3, H, W]
    dr = fw.xr[1::2] - fw.xr[0::2]
    pix = (dr - dx).abs().mean()
    if fw.fake_feats is None or fw.real_feats is None:
        return pix, None
    terms = []
    for f, r in zip(fw.fake_feats, fw.real_feats, strict=True):
        f, r = f[:n].float(), r.detach().float()
        df, drl = f[1::2] - f[0::2], r[1::2] - r[0::2]
        terms.append(F.mse_loss(df, drl) / (r.pow(2).mean() + 1e-6))
    return pix, torch.stack(terms).mean()


def temporal_ramp(start: int, step: int) -> float:
    """The temporal term's factor: 0 before `start`, then linear to 1 over `start` more steps (1 when start = 0)."""
    if start <= 0:
        return 1.0
    return min(1.0, max(0.0, (step - start) / start))


@dataclass
class Forward:
    """One batch's forward pass through all three networks, shared by both phases."""

    x: torch.Tensor  # [N, 3, H, W] in [-1, 1], real frames
    mu: torch.Tensor  # [N, zdim]
    logvar: torch.Tensor  # [N, zdim]
    xr: torch.Tensor  # [N, 3, H, W] reconstructions of x (z sampled from q(z|x))
    xp: torch.Tensor | None  # [N, 3, H, W] decoded prior samples z ~ N(0, I), or None
    real_logits: torch.Tensor | None = None  # discriminator on x
    real_feats: list[torch.Tensor] | None = None  # its activations (the similarity targets)
    fake_logits: torch.Tensor | None = None  # discriminator on cat(xr, xp)
    fake_feats: list[torch.Tensor] | None = None


class VAEGANLoss:
    """Owns the phases of one training step: forward, discriminator gradients, encoder/decoder gradients.

    Gradient routing (Larsen et al. 2016, section 2.2):
      discriminator  <- GAN loss on real / reconstructed / prior-sampled frames
      encoder        <- kl_weight * KL + sim_weight * similarity + pixel_weight * L1 + temporal   (no GAN term)
      decoder        <- gamma * sim_weight * similarity + pixel_weight * L1 + temporal + w_gan * GAN
    where temporal (cfg.temporal only) = temporal_weight * pixel change error + temporal_feature_weight * feature
    change error (temporal_terms), a reconstruction term like L1: it reaches the encoder and the decoder through
    xr, never the discriminator's weights.
    Every gradient is taken with torch.autograd.grad on an explicit list of inputs, so no term reaches a
    network it is not meant for (the generator terms never touch the discriminator's weights, the
    discriminator's loss never reaches the decoder, the GAN term never reaches the encoder).

    The discriminator runs once per batch on real and on fake frames, and both phases take their
    gradients from that one forward (simultaneous updates, as in Larsen's reference code). The loop
    therefore steps the optimizers only after both phases: stepping the discriminator between them
    would modify weights the encoder/decoder phase still backpropagates through (the classic PyTorch
    >= 1.5 "modified by an inplace operation" error).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        vae: VAE,
        dis: Discriminator | None,
        autocast: contextlib.AbstractContextManager[None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.vae = vae
        self.dis = dis
        self._autocast = autocast
        self.enc_params = [p for p in vae.encoder.parameters() if p.requires_grad]
        self.dec_params = [p for p in vae.decoder.parameters() if p.requires_grad]
        self.dis_params = list(dis.parameters()) if dis is not None else []
        self.train_dis = True
        self.train_dec_gan = True

    def _ac(self) -> contextlib.AbstractContextManager[None]:
        return self._autocast if self._autocast is not None else contextlib.nullcontext()

    @property
    def gan_on(self) -> bool:
        return not self.cfg.pixel_vae and self.dis is not None

    def set_gates(self, l_real: float, l_fake: float) -> None:
        """Larsen's equilibrium: stop whichever side is far ahead; if both would stop, train both."""
        self.train_dis, self.train_dec_gan = True, True
        if self.cfg.equilibrium:
            m = self.cfg.eq_margin
            if l_real < EQUILIBRIUM - m or l_fake < EQUILIBRIUM - m:
                self.train_dis = False
            if l_real > EQUILIBRIUM + m or l_fake > EQUILIBRIUM + m:
                self.train_dec_gan = False
            if not (self.train_dis or self.train_dec_gan):
                self.train_dis = self.train_dec_gan = True

    def compile(self, backend: str = "inductor") -> None:
        """torch.compile the three networks' forwards (the modules keep their state-dict names).

        Every gradient here is an autograd.grad(..., retain_graph=True) through the compiled graphs, which
        AOTAutograd's donated buffers forbid (torch >= 2.6 raises on CUDA: pytorch#130580, #139669), so
        they are switched off for this process. dynamic=False: the discriminator sees batches of N (real)
        and 2N (fakes) every step; with automatic dynamic shapes the second size would recompile it into
        one slower symbolic-shape graph, where two static graphs are what a GPU runs fastest.
        """
        import torch._functorch.config

        torch._functorch.config.donated_buffer = False
        opts: dict[str, Any] = {"backend": backend, "dynamic": False}
        self.vae.encoder.forward = torch.compile(self.vae.encoder.forward, **opts)  # type: ignore[method-assign]
        self.vae.decoder.forward = torch.compile(self.vae.decoder.forward, **opts)  # type: ignore[method-assign]
        if self.dis is not None:
            self.dis.forward = torch.compile(self.dis.forward, **opts)  # type: ignore[method-assign]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Forward:
        """Encode, sample z, decode; decode prior samples; run the discriminator on real and fake frames.
        x: [N, 3, H, W] in [-1, 1]."""
        with self._ac():
            mu, logvar = self.vae.encoder(x)
            mu, logvar = mu.float(), logvar.float().clamp(-30.0, 20.0)
            if self.cfg.temporal:
                # One noise draw per pair: the pair's change in xr is then the encoder's, not the sampling
                # noise's, which the temporal term would otherwise penalise. Each frame's own z ~ q(z|x) still.
                half = torch.randn((mu.shape[0] + 1) // 2, mu.shape[1], device=mu.device, generator=generator)
                eps = half.repeat_interleave(2, 0)[: mu.shape[0]]
            else:
                eps = torch.randn(mu.shape, device=mu.device, generator=generator)
            z = mu + eps * (0.5 * logvar).exp()  # reparameterisation; [N, zdim]
            xr = self.vae.decoder(z).float()
            fw = Forward(x, mu, logvar, xr, None)
            if not self.gan_on:
                return fw
            assert self.dis is not None
            if self.cfg.prior_samples:
                zp = torch.randn(mu.shape, device=mu.device, generator=generator)
                with frozen_bn_stats(self.vae.decoder):
                    fw.xp = self.vae.decoder(zp).float()
            fw.real_logits, fw.real_feats = self.dis(x)
            fakes = [xr] + ([fw.xp] if fw.xp is not None else [])
            fw.fake_logits, fw.fake_feats = self.dis(torch.cat(fakes))
        return fw

    def dis_phase(self, fw: Forward) -> dict[str, float]:
        """Set the discriminator's .grad from the GAN loss (real -> 1, reconstructions and samples -> 0)."""
        assert fw.real_logits is not None and fw.fake_logits is not None
        real_logits, fake_logits = fw.real_logits.float(), fw.fake_logits.float()
        l_real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        l_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        loss = l_real + l_fake
        grads = torch.autograd.grad(loss, self.dis_params, retain_graph=True)
        for p, g in zip(self.dis_params, grads, strict=True):
            p.grad = g
        lr_, lf_ = float(l_real.detach()), float(l_fake.detach())
        self.set_gates(lr_, lf_)
        return {
            "dis/loss": lr_ + lf_,
            "dis/real": lr_,
            "dis/fake": lf_,
            "dis/p_real": float(torch.sigmoid(real_logits.detach()).mean()),
            "dis/p_fake": float(torch.sigmoid(fake_logits.detach()).mean()),
        }

    def gen_phase(self, fw: Forward, step: int) -> dict[str, float]:
        """Set the encoder's and decoder's .grad (see the class docstring for the routing)."""
        cfg = self.cfg
        kl = kl_divergence(fw.mu, fw.logvar)
        pix = (fw.xr - fw.x).abs().mean() if cfg.pixel_weight else fw.xr.new_zeros(())
        stats = {"loss/kl": float(kl.detach()), "loss/pixel_l1": float(pix.detach())}
        tmp = fw.xr.new_zeros(())  # the weighted temporal term, a function of xr only
        ramp = temporal_ramp(cfg.temporal_start, step) if cfg.temporal else 0.0
        if cfg.temporal:
            t_pix, t_feat = temporal_terms(fw)
            tmp = cfg.temporal_weight * t_pix + (cfg.temporal_feature_weight * t_feat if t_feat is not None else 0.0)
            tmp = ramp * tmp
            stats["loss/temporal_ramp"] = ramp
            stats["loss/temporal_pixel"] = float(t_pix.detach())
            if t_feat is not None:
                stats["loss/temporal_feature"] = float(t_feat.detach())
        if not self.gan_on:
            loss = cfg.pixel_weight * pix + cfg.kl_weight * kl + tmp
            grads = torch.autograd.grad(loss, self.enc_params + self.dec_params)
            for p, g in zip(self.enc_params + self.dec_params, grads, strict=True):
                p.grad = g
            stats["loss/total"] = float(loss.detach())
            return stats

        assert fw.fake_logits is not None and fw.fake_feats is not None and fw.real_feats is not None
        n = fw.x.shape[0]
        # Targets are the real frames' activations, detached: the similarity moves fakes towards reals.
        sim = feature_distance([f[:n] for f in fw.fake_feats], [r.detach() for r in fw.real_feats])
        logits = fw.fake_logits.float()
        # Non-saturating generator loss, -log D(fake), for reconstructions and prior samples.
        gan_r = F.binary_cross_entropy_with_logits(logits[:n], torch.ones_like(logits[:n]))
        gan_p = (
            F.binary_cross_entropy_with_logits(logits[n:], torch.ones_like(logits[n:])) if fw.xp is not None else None
        )
        gan_active = step >= cfg.gan_start and cfg.gan_weight > 0 and self.train_dec_gan
        # d(term)/d(xr): backward through the discriminator only (its weights are not inputs: no grads there).
        g_sim = torch.autograd.grad(sim, fw.xr, retain_graph=True)[0]
        g_pix = torch.autograd.grad(pix, fw.xr, retain_graph=True)[0] if cfg.pixel_weight else torch.zeros_like(fw.xr)
        g_tmp = torch.autograd.grad(tmp, fw.xr, retain_graph=True)[0] if ramp > 0 else torch.zeros_like(fw.xr)
        # The adaptive GAN weight balances against the reconstruction terms without the temporal one, so a
        # temporal run's GAN pressure matches its baseline's.
        g_rec_dec = cfg.gamma * cfg.sim_weight * g_sim + cfg.pixel_weight * g_pix
        w_gan = torch.zeros((), device=fw.xr.device)
        g_gan_r = torch.zeros_like(fw.xr)
        g_gan_p: torch.Tensor | None = None
        if gan_active:
            gan_out = torch.autograd.grad(
                gan_r + (gan_p if gan_p is not None else 0.0),
                [fw.xr] + ([fw.xp] if fw.xp is not None else []),
                retain_graph=True,
            )
            g_gan_r = gan_out[0]
            g_gan_p = gan_out[1] if fw.xp is not None else None
            if cfg.adaptive_gan:
                # VQGAN's adaptive weight, measured at the decoder's output image rather than at its last
                # layer's weights: the same balance, without a backward through the full-resolution layer.
                w_gan = (g_rec_dec.norm() / (g_gan_r.norm() + 1e-8)).clamp(max=cfg.adaptive_max).detach()
            else:
                w_gan = torch.ones((), device=fw.xr.device)
            w_gan = w_gan * cfg.gan_weight
        # Decoder: its own upstream gradient at xr (and xp), one backward through the decoder.
        outs, g_outs = [fw.xr], [g_rec_dec + g_tmp + w_gan * g_gan_r]
        if fw.xp is not None and g_gan_p is not None:
            outs.append(fw.xp)
            g_outs.append(w_gan * g_gan_p)
        dec_grads = torch.autograd.grad(outs, self.dec_params, g_outs, retain_graph=True)
        # Encoder: similarity + pixel through the decoder (decoder weights are not inputs), plus KL.
        g_rec_enc = cfg.sim_weight * g_sim + cfg.pixel_weight * g_pix + g_tmp
        enc_grads = torch.autograd.grad([fw.xr, cfg.kl_weight * kl], self.enc_params, [g_rec_enc, torch.ones_like(kl)])
        for p, g in zip(self.dec_params, dec_grads, strict=True):
            p.grad = g
        for p, g in zip(self.enc_params, enc_grads, strict=True):
            p.grad = g
        stats.update(
            {
                "loss/similarity": float(sim.detach()),
                "loss/gan_recon": float(gan_r.detach()),
                "loss/gan_weight": float(w_gan),
                "loss/decoder_gan_on": float(gan_active),
            }
        )
        if gan_p is not None:
            stats["loss/gan_prior"] = float(gan_p.detach())
        stats["loss/encoder"] = float(
            (cfg.kl_weight * kl + cfg.sim_weight * sim + cfg.pixel_weight * pix + tmp).detach()
        )
        return stats
