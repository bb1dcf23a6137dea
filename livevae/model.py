"""The VAE-GAN's encoder and decoder, their typed config and presets, and the safetensors model file."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from livevae.errors import LivevaeError

FORMAT_VERSION = 1


class ModelError(LivevaeError):
    """A model file is missing, corrupt or does not match what was asked for."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one encoder/decoder pair; stored inside every model and checkpoint file."""

    preset: str = "live"
    width: int = 256  # frame width in pixels; must be divisible by 2 ** len(widths)
    height: int = 144
    zdim: int = 200
    widths: tuple[int, ...] = (32, 64, 128, 128)  # encoder conv widths; the decoder mirrors them
    kernel: int = 5  # encoder conv kernel (stride 2, "same" padding)
    dec_kernel: int = 4  # decoder transposed-conv kernel; 4 with stride 2 has no checkerboard overlap
    bottleneck: int = 0  # 1x1 conv to this many channels before the dense layer; 0 = none (2016 layout)

    def __post_init__(self) -> None:
        f = 2 ** len(self.widths)
        if self.width <= 0 or self.height <= 0 or self.width % f or self.height % f:
            raise ModelError(
                f"ModelConfig: size {self.width}x{self.height} must be positive and divisible by {f} "
                f"(2 ** number of conv layers {len(self.widths)})"
            )
        if self.zdim <= 0:
            raise ModelError(f"ModelConfig: zdim must be positive, got {self.zdim}")

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the innermost feature map, e.g. (9, 16) for 144x256 with 4 convs."""
        f = 2 ** len(self.widths)
        return self.height // f, self.width // f

    @property
    def flat_channels(self) -> int:
        return self.bottleneck or self.widths[-1]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ModelError(f"ModelConfig: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
        d = dict(d)
        if "widths" in d:
            d["widths"] = tuple(int(w) for w in d["widths"])
        return cls(**d)


PRESETS: dict[str, ModelConfig] = {
    # The 2016 Blade Runner model (../shared/VAEGAN.md): 80/160/320/640, 5x5 convs, dense 92,160 -> 200.
    "broad2016": ModelConfig(preset="broad2016", widths=(80, 160, 320, 640), kernel=5, dec_kernel=5),
    # Slim enough for >= 30 fps end to end on 2 CPU cores; the 1x1 bottleneck shrinks the dense layer
    # from 9*16*128 -> 200 to 9*16*32 -> 200, which dominated the parameter count.
    "live": ModelConfig(preset="live", widths=(32, 64, 128, 128), kernel=5, dec_kernel=4, bottleneck=32),
    # For tests: small and fast, still the same code paths (bottleneck, BN, all four stages).
    "tiny": ModelConfig(
        preset="tiny", width=64, height=48, zdim=16, widths=(8, 16, 16, 32), kernel=3, dec_kernel=4, bottleneck=8
    ),
}


def preset_sizes() -> str:
    """Each preset with the frame size it needs, for help texts: "broad2016 256x144, live 256x144, tiny 64x48"."""
    return ", ".join(f"{name} {c.width}x{c.height}" for name, c in PRESETS.items())


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The named preset with optional field overrides; raises ModelError for an unknown name."""
    if name not in PRESETS:
        raise ModelError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def _up(cin: int, cout: int, k: int) -> nn.ConvTranspose2d:
    # Exact 2x upsampling for k=4 (p=1) and k=5 (p=2, output_padding=1, the 2016 "same" layout).
    pad = (k - 1) // 2
    return nn.ConvTranspose2d(cin, cout, k, stride=2, padding=pad, output_padding=2 * pad + 2 - k)


class Encoder(nn.Module):
    """Frames [N, 3, H, W] in [-1, 1] -> (mu, logvar), each [N, zdim]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = 3
        for i, w in enumerate(cfg.widths):
            layers.append(nn.Conv2d(cin, w, cfg.kernel, stride=2, padding=cfg.kernel // 2, bias=i == 0))
            if i > 0:  # 2016 layout: batch norm on all but the first conv
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.LeakyReLU(0.2))
            cin = w
        if cfg.bottleneck:
            layers += [nn.Conv2d(cin, cfg.bottleneck, 1, bias=False), nn.BatchNorm2d(cfg.bottleneck), nn.LeakyReLU(0.2)]
        self.convs = nn.Sequential(*layers)
        gh, gw = cfg.grid
        self.fc = nn.Linear(gh * gw * cfg.flat_channels, 2 * cfg.zdim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.convs(x)  # [N, C, H/16, W/16]
        mu, logvar = self.fc(h.flatten(1)).chunk(2, dim=1)  # [N, zdim] each
        return mu, logvar


class Decoder(nn.Module):
    """Latents [N, zdim] -> frames [N, 3, H, W] in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        gh, gw = cfg.grid
        c0 = cfg.flat_channels
        self.fc = nn.Sequential(nn.Linear(cfg.zdim, gh * gw * c0, bias=False), nn.BatchNorm1d(gh * gw * c0), nn.ReLU())
        layers: list[nn.Module] = []
        cin = c0
        if cfg.bottleneck:
            layers += [nn.Conv2d(c0, cfg.widths[-1], 1, bias=False), nn.BatchNorm2d(cfg.widths[-1]), nn.ReLU()]
            cin = cfg.widths[-1]
        for w in reversed(cfg.widths[:-1]):
            layers += [_up(cin, w, cfg.dec_kernel), nn.BatchNorm2d(w), nn.ReLU()]
            cin = w
        layers += [_up(cin, 3, cfg.dec_kernel), nn.Tanh()]
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        gh, gw = self.cfg.grid
        h = self.fc(z).view(-1, self.cfg.flat_channels, gh, gw)  # [N, C, H/16, W/16]
        return self.convs(h)  # [N, 3, H, W] in [-1, 1]


class VAE(nn.Module):
    """Encoder + decoder. Call .eval() before inference: batch norm then uses running statistics,
    so a frame's reconstruction never depends on the frames batched beside it (a 2016 defect)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        # Latent PCA of the training film (set by `train`/`pca`); zeros until computed.
        self.register_buffer("pca_mean", torch.zeros(cfg.zdim))
        self.register_buffer("pca_components", torch.zeros(0, cfg.zdim))  # [K, zdim], rows orthonormal
        self.register_buffer("pca_std", torch.zeros(0))  # [K] std of the latents along each direction

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction: z = mean, no sampling noise."""
        mu, _ = self.encoder(x)
        return self.decoder(mu)

    def set_pca(self, mean: torch.Tensor, components: torch.Tensor, std: torch.Tensor) -> None:
        self.pca_mean = mean.detach().float().clone()
        self.pca_components = components.detach().float().clone()
        self.pca_std = std.detach().float().clone()


def random_model(name: str = "tiny", seed: int = 0, warm_batches: int = 3) -> VAE:
    """An untrained model of a preset, in eval mode, with batch-norm running statistics warmed on random frames
    (fresh BN statistics would make eval outputs degenerate). For tests and benchmarks that measure the
    machinery, not the picture."""
    torch.manual_seed(seed)
    m = VAE(preset(name))
    m.train()
    with torch.no_grad():
        for _ in range(warm_batches):
            m(torch.rand(8, 3, m.cfg.height, m.cfg.width) * 2 - 1)
    return m.eval()


MODEL_MODE = 0o644


def save_model(model: VAE, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
    """Write the model as one safetensors file (weights, buffers, config JSON in its metadata), atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {
        "format": "livevae-model",
        "version": str(FORMAT_VERSION),
        "config": json.dumps(model.cfg.to_dict()),
        "meta": json.dumps(meta or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=header)
    # readable by everyone whatever the umask: a show often runs as another user (a kiosk account, a service)
    os.chmod(tmp, MODEL_MODE)
    os.replace(tmp, path)
    return path


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a model of this config holds and its shape, computed on the meta device (no memory)."""
    with torch.device("meta"):
        m = VAE(cfg)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def read_model_header(path: str | os.PathLike[str]) -> tuple[ModelConfig, dict[str, Any]]:
    """(config, meta) from a model file without loading weights; raises ModelError naming the file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found; expected a livevae .safetensors model")
    from livevae.modelcheck import check_config_dict, check_tensors

    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
            slices = {k: f.get_slice(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a mapping
            shapes = {k: tuple(s.get_shape()) for k, s in slices.items()}
            dtypes = {k: str(s.get_dtype()) for k, s in slices.items()}
    except Exception as e:  # safetensors raises several types for truncated/garbage files
        raise ModelError(f"{path}: not a readable safetensors file ({e}); expected a livevae model") from e
    if md.get("format") != "livevae-model":
        raise ModelError(f"{path}: metadata format={md.get('format')!r}; expected 'livevae-model'")
    try:
        raw = json.loads(md["config"])
        meta = json.loads(md.get("meta", "{}"))
        if not isinstance(raw, dict) or not isinstance(meta, dict):
            raise ValueError("expected JSON objects")
        # A downloaded file is untrusted: bounds first, then the network's shapes on the meta device against the
        # file's own tensors, so nothing is allocated from a config the weights do not back.
        check_config_dict(raw, str(path))
        cfg = ModelConfig.from_dict(raw)
        check_tensors(cfg, shapes, dtypes, str(path), expected_shapes(cfg))
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from e
    except (KeyError, ValueError, TypeError, RecursionError) as e:
        raise ModelError(f"{path}: bad 'config' metadata ({e})" if not str(e).startswith(str(path)) else str(e)) from e
    return cfg, meta


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> VAE:
    """Load a model file written by save_model, in eval mode. Never unpickles anything."""
    from safetensors.torch import load_file

    cfg, _ = read_model_header(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as e:
        raise ModelError(f"{path}: corrupt tensor data ({e})") from e
    model = VAE(cfg)
    # PCA buffers change shape once computed; size them from the file before loading.
    if "pca_components" in tensors:
        model.pca_components = torch.empty_like(tensors["pca_components"])
        model.pca_std = torch.empty_like(tensors["pca_std"])
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:  # the header check makes this rare; say every line, the key and shape come last
        detail = " | ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())
        raise ModelError(f"{path}: weights do not match config {cfg.preset!r}: {detail}") from e
    for k, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ModelError(f"{path}: tensor {k!r} holds {bad} NaN/inf of {t.numel()} values; expected finite weights")
    return model.to(device).eval()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
