"""The discriminator: the encoder's conv stack plus a real/fake head; its activations are the learned
similarity metric of the VAE-GAN."""

from __future__ import annotations

import torch
from torch import nn

from livevae.model import ModelConfig


class Discriminator(nn.Module):
    """Frames [N, 3, H, W] in [-1, 1] -> (logits, features).

    logits: [N, 1] for the "linear" head (2016: one verdict per frame) or [N, 1, H/16, W/16] for "patch".
    features: the activation after each conv layer, the similarity metric's layers.
    No batch norm: real and fake batches go through separately, and batch statistics that mix them would
    leak a batch-level real/fake signal (the 2016 code's BN is left out here on purpose).
    """

    def __init__(self, cfg: ModelConfig, widths: tuple[int, ...] = (), head: str = "linear") -> None:
        super().__init__()
        widths = widths or cfg.widths
        self.head_kind = head
        self.convs = nn.ModuleList()
        cin = 3
        for w in widths:
            self.convs.append(
                nn.Sequential(nn.Conv2d(cin, w, cfg.kernel, stride=2, padding=cfg.kernel // 2), nn.LeakyReLU(0.2))
            )
            cin = w
        f = 2 ** len(widths)
        gh, gw = cfg.height // f, cfg.width // f
        self.head: nn.Module = nn.Linear(gh * gw * cin, 1) if head == "linear" else nn.Conv2d(cin, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats: list[torch.Tensor] = []
        h = x
        for conv in self.convs:
            h = conv(h)  # [N, C_i, H/2^i, W/2^i]
            feats.append(h)
        logits = self.head(h.flatten(1)) if self.head_kind == "linear" else self.head(h)
        return logits, feats
