"""PyTorch backend: eager on CPU; the reference every other backend is measured against."""

from __future__ import annotations

import numpy as np
import torch

from livevae.model import VAE, load_model
from livevae.preprocess import to_tensor, to_uint8


class TorchBackend:
    def __init__(self, model: VAE, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.cfg = model.cfg
        self.device = torch.device(device)
        self.name = f"torch-{self.device.type}"

    @classmethod
    def from_file(cls, path: str, device: str = "cpu") -> TorchBackend:
        return cls(load_model(path, device=device), device=device)

    def _input(self, frames: np.ndarray) -> torch.Tensor:
        if frames.dtype == np.uint8:
            return to_tensor(frames, self.device)  # [N, 3, H, W] in [-1, 1]
        return torch.as_tensor(frames, dtype=torch.float32, device=self.device)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        mu, _ = self.model.encode(self._input(frames))
        return mu.float().cpu().numpy()  # [N, zdim]; .cpu() is the sync point on CUDA

    @torch.inference_mode()
    def decode(self, z: np.ndarray) -> np.ndarray:
        x = self.model.decode(torch.as_tensor(z, dtype=torch.float32, device=self.device))
        return to_uint8(x)  # [N, H, W, 3]
