"""Reconstruction quality: PSNR, SSIM and the sharpness ratio, on frames in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1.0) * 0.5).clamp(0.0, 1.0)  # [-1, 1] -> [0, 1]


def psnr(recon: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR in dB over [0, 1] pixels; recon, orig [N, 3, H, W] in [-1, 1] -> [N]."""
    mse = (_unit(recon) - _unit(orig)).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp(min=1e-10))


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # [1, 1, 11, 11]


def ssim(recon: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
    """Per-frame SSIM (Wang et al. 2004: 11x11 Gaussian, sigma 1.5, per channel, averaged) -> [N]."""
    a, b = _unit(recon), _unit(orig)
    c = a.shape[1]
    w = _gauss().to(a.device).expand(c, 1, 11, 11)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, groups=c)  # valid region only, as in the reference implementation

    mu_a, mu_b = blur(a), blur(b)
    saa = blur(a * a) - mu_a**2
    sbb = blur(b * b) - mu_b**2
    sab = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return m.flatten(1).mean(1)


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Mean |grad| per frame from forward differences of the luma; x [N, 3, H, W] in [-1, 1] -> [N]."""
    u = _unit(x)
    y = 0.299 * u[:, 0] + 0.587 * u[:, 1] + 0.114 * u[:, 2]  # [N, H, W]
    gx = y[:, :, 1:] - y[:, :, :-1]
    gy = y[:, 1:, :] - y[:, :-1, :]
    return torch.sqrt(gx[:, :-1, :] ** 2 + gy[:, :, :-1] ** 2 + 1e-12).flatten(1).mean(1)


def sharpness_ratio(recon: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
    """Mean gradient magnitude of the reconstruction over that of the original, per frame -> [N].
    Below 1: blur; above 1: invented detail or noise."""
    return gradient_magnitude(recon) / gradient_magnitude(orig).clamp(min=1e-6)


def summarize(recon: torch.Tensor, orig: torch.Tensor) -> dict[str, float]:
    """Dataset-level figures: mean PSNR, SSIM; sharpness as the ratio of the summed gradient magnitudes."""
    return {
        "psnr": float(psnr(recon, orig).mean()),
        "ssim": float(ssim(recon, orig).mean()),
        "sharpness": float(gradient_magnitude(recon).sum() / gradient_magnitude(orig).sum().clamp(min=1e-6)),
    }


def summarize_segments(recs: list[torch.Tensor], origs: list[torch.Tensor]) -> dict[str, float]:
    """summarize() over all frames of the segments, plus the temporal figures (livevae.offline.temporal) pooled
    over the pairs inside each segment; recs[i], origs[i] [T_i, 3, H, W] in [-1, 1], consecutive frames.
    Segments of one frame (the "every" split) have no pairs: the temporal keys are then left out."""
    from livevae.offline.temporal import pool_summaries, temporal_summary

    out = summarize(torch.cat(recs), torch.cat(origs))
    parts = [temporal_summary(_unit(r), _unit(o)) for r, o in zip(recs, origs, strict=True) if len(r) > 1]
    if parts:
        pooled = pool_summaries(parts)
        out.update({k: pooled[k] for k in ("motion_ratio", "temporal_error", "collapse_rate")})
    out["frames"] = float(sum(len(r) for r in recs))
    return out


def score(m: dict[str, float]) -> float:
    """One number for choosing the best checkpoint: PSNR minus 10 dB per unit of |log sharpness|, so a
    blurred (0.7) or noisy (1.4) checkpoint loses about 3.5 dB against one with sharpness 1."""
    import math

    return m["psnr"] - 10.0 * abs(math.log(max(m["sharpness"], 1e-6)))
