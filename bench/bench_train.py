"""Benchmark: VAE-GAN training throughput (img/s) per preset, livevae's step against a plain eager step.

The eager baseline is the textbook PyTorch VAE-GAN step with the same networks, losses and routing:
discriminator forward on real and detached fakes, its backward and optimizer step, then a second
discriminator forward for the encoder/decoder losses and `.backward(inputs=...)` per network; fp32,
contiguous tensors, no compile. livevae's step (train.loop.Trainer.train_step) runs the discriminator
once per batch and takes both phases' gradients from that forward; on CUDA it adds bf16 autocast and
channels_last (and torch.compile with --compile). Both are timed in the same run, interleaved.

  .venv/bin/python bench/bench_train.py                        # CPU: tiny, live, broad2016
  .venv/bin/python bench/bench_train.py --presets broad2016 --batch 64 --steps 20   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from livevae.train.batches import to_model_input
from livevae.train.config import TrainConfig
from livevae.train.discriminator import Discriminator
from livevae.train.loop import Trainer
from livevae.train.losses import feature_distance, kl_divergence

from livevae.model import VAE

# CPU defaults: broad2016 takes seconds per image on 2 cores, so it gets a small batch and few steps.
CPU_PLAN = {"tiny": (16, 10), "live": (12, 4), "broad2016": (4, 2)}


def write_dataset(path: Path, n: int, w: int, h: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(path / "frames.npy", rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8))
    (path / "meta.json").write_text(json.dumps({"frames": n, "width": w, "height": h}))
    return path


class EagerStep:
    """The plain two-pass step (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        torch.manual_seed(0)
        mc = cfg.model_config()
        self.cfg = cfg
        self.vae = VAE(mc).to(device).train()
        self.dis = Discriminator(mc, cfg.dis_widths, cfg.dis_head).to(device)
        b = cfg.betas
        self.oe = torch.optim.Adam(self.vae.encoder.parameters(), lr=cfg.lr, betas=b)
        self.od = torch.optim.Adam(self.vae.decoder.parameters(), lr=cfg.lr, betas=b)
        self.ox = torch.optim.Adam(self.dis.parameters(), lr=cfg.lr_dis, betas=b)
        self.device = device

    def __call__(self, frames: torch.Tensor) -> None:
        c = self.cfg
        x = to_model_input(frames, self.device, False)
        mu, logvar = self.vae.encoder(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        xr = self.vae.decoder(z)
        fakes = [xr]
        if c.prior_samples:
            fakes.append(self.vae.decoder(torch.randn_like(mu)))
        fake = torch.cat(fakes)
        rl, _ = self.dis(x)
        fl, _ = self.dis(fake.detach())
        ld = F.binary_cross_entropy_with_logits(rl, torch.ones_like(rl)) + F.binary_cross_entropy_with_logits(
            fl, torch.zeros_like(fl)
        )
        self.ox.zero_grad()
        ld.backward()
        self.ox.step()
        with torch.no_grad():
            _, real_feats = self.dis(x)
        fl, ff = self.dis(fake)
        n = x.shape[0]
        sim = feature_distance([f[:n] for f in ff], real_feats)
        pix = (xr - x).abs().mean()
        gan = F.binary_cross_entropy_with_logits(fl, torch.ones_like(fl))
        l_dec = c.gamma * c.sim_weight * sim + c.pixel_weight * pix + c.gan_weight * gan
        l_enc = c.kl_weight * kl_divergence(mu, logvar) + c.sim_weight * sim + c.pixel_weight * pix
        self.oe.zero_grad()
        self.od.zero_grad()
        l_dec.backward(inputs=list(self.vae.decoder.parameters()), retain_graph=True)
        l_enc.backward(inputs=list(self.vae.encoder.parameters()))
        self.oe.step()
        self.od.step()


def timed(fn: object, frames: torch.Tensor, steps: int, cuda: bool) -> float:
    """img/s over `steps` calls after one warm-up call."""
    f = fn  # type: ignore[assignment]
    f(frames)  # type: ignore[operator]
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        f(frames)  # type: ignore[operator]
    if cuda:
        torch.cuda.synchronize()
    return steps * frames.shape[0] / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="tiny,live,broad2016")
    ap.add_argument("--batch", type=int, help="batch for every preset (default: per-preset CPU plan)")
    ap.add_argument("--steps", type=int, help="timed steps per repeat (default: per-preset CPU plan)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--json", default="bench/results/train.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cuda = torch.cuda.is_available()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.presets.split(","):
            batch, steps = CPU_PLAN.get(name, (8, 3))
            batch, steps = a.batch or batch, a.steps or steps
            base = TrainConfig(
                preset=name, batch=batch, pixel_weight=1.0, gan_weight=0.1, adaptive_gan=True, max_steps=1
            )
            mc = base.model_config()
            data = write_dataset(Path(tmp) / name, max(batch * 2, 8), mc.width, mc.height)
            tr = Trainer(
                base.replace(compile=a.compile, held_out="every", held_out_every=0),
                data,
                Path(tmp) / f"run-{name}",
                progress=False,
            )
            eager = EagerStep(base, tr.device)
            frames = torch.from_numpy(tr.ds.get(np.arange(batch)))
            ours, plain = [], []
            for _ in range(a.repeats):  # interleaved, so machine noise hits both alike
                plain.append(timed(eager, frames, steps, cuda))
                ours.append(timed(tr.train_step, frames, steps, cuda))
            o, p = statistics.median(ours), statistics.median(plain)
            rows.append(
                {
                    "preset": name,
                    "device": str(tr.device),
                    "batch": batch,
                    "steps": steps * a.repeats,
                    "eager_img_s": round(p, 2),
                    "livevae_img_s": round(o, 2),
                    "ratio": round(o / p, 3),
                    "amp": tr.autocast is not None,
                    "channels_last": tr.channels_last,
                    "compile": a.compile,
                }
            )
    print(
        f"torch {torch.__version__}, {'CUDA ' + torch.cuda.get_device_name() if cuda else f'CPU, {a.threads} threads'}"
    )
    print("| preset | device | batch | eager img/s | livevae img/s | ratio |\n|---|---|---|---|---|---|")
    for r in rows:
        cells = [r["preset"], r["device"], r["batch"], r["eager_img_s"], r["livevae_img_s"], f"{r['ratio']:.2f}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": a.threads, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
