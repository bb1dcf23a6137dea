"""The training loop: data in order, the two loss phases, optimizers, DDP gradient averaging, validation,
checkpoints, TensorBoard, sample grids, and the eval-ready model.safetensors with its latent PCA.

Over 600 lines on purpose: the Trainer's phases share one optimizer/RNG/checkpoint state that a split would pass
around.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from livevae.errors import LivevaeError
from livevae.model import VAE, save_model

from . import metrics
from .batches import Loader, augment, synthetic_motion, to_model_input
from .checkpoint import (
    CheckpointError,
    CheckpointFolder,
    atomic_write_json,
    load_checkpoint,
    pack_optimizer,
    resolve_resume,
    restore_rng,
    rng_tensors,
    unpack_optimizer,
)
from .config import TrainConfig
from .dataset import DatasetError, FrameDataset
from .discriminator import Discriminator
from .dist import average_, enable_determinism, fast_fp32_matmul, init_distributed
from .losses import VAEGANLoss

MODEL_FILE = "model.safetensors"
log = logging.getLogger("livevae.train")


class TrainError(LivevaeError):
    """The run cannot start or continue (run folder in use, resume mismatch, ...)."""


@dataclass
class RunResult:
    out: Path
    step: int
    epoch: int
    seconds: float
    images_per_s: float
    val: dict[str, float] = field(default_factory=dict)
    model: Path | None = None
    stopped_by: str = ""


# --- images ----------------------------------------------------------------------------------------


def grid(rows: list[torch.Tensor]) -> np.ndarray:
    """Rows of frames [N, 3, H, W] in [-1, 1] -> one uint8 RGB image [rows*H, N*W, 3]."""
    out = torch.cat([torch.cat(list(r.float().cpu()), dim=2) for r in rows], dim=1)  # [3, rows*H, N*W]
    return ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if ok:
        from .checkpoint import atomic_write_bytes

        atomic_write_bytes(path, buf.tobytes())


# --- PCA -------------------------------------------------------------------------------------------


@torch.no_grad()
def latent_pca(
    vae: VAE, ds: FrameDataset, k: int, max_frames: int, device: torch.device, batch: int = 64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean [zdim], components [K, zdim] orthonormal rows, std [K]) of z = mean over training frames
    (evenly spaced, at most max_frames)."""
    idx = ds.train_idx if len(ds.train_idx) else np.arange(len(ds))
    if len(idx) > max_frames:
        idx = idx[np.linspace(0, len(idx) - 1, max_frames).round().astype(np.int64)]
    was = vae.training
    vae.eval()
    zs = []
    for i in range(0, len(idx), batch):
        x = to_model_input(torch.from_numpy(ds.get(idx[i : i + batch])), device, False)
        zs.append(vae.encoder(x)[0].float().cpu())
    vae.train(was)
    z = torch.cat(zs).double()  # [n, zdim]
    mean = z.mean(0)
    k = max(0, min(k, z.shape[0] - 1, z.shape[1]))
    if k == 0:
        return mean.float(), torch.zeros(0, z.shape[1]), torch.zeros(0)
    _, s, vt = torch.linalg.svd(z - mean, full_matrices=False)
    std = s[:k] / math.sqrt(max(z.shape[0] - 1, 1))
    return mean.float(), vt[:k].float().contiguous(), std.float()


# --- the trainer -----------------------------------------------------------------------------------


class Trainer:
    """One training run in one run folder; `run()` trains until a stopping rule fires."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: str | os.PathLike[str],
        out: str | os.PathLike[str],
        resume: str | os.PathLike[str] | None = None,
        progress: bool = True,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.out = Path(out)
        self.progress = progress
        self.info = info or {}
        resume_state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
        if resume is not None:
            resume = resolve_resume(resume)  # a run folder means its newest readable checkpoint
            tensors, state = load_checkpoint(resume)
            # The run's own config wins (same model, losses and data order); only stopping rules may change,
            # and the CPU thread count (--threads; 0 keeps the run's): a run moved to a bigger machine.
            stored = TrainConfig.from_dict(state["config"], where=f"{resume}: config")
            cfg = stored.replace(
                epochs=cfg.epochs,
                max_steps=cfg.max_steps,
                time_budget=cfg.time_budget,
                threads=cfg.threads or stored.threads,
            )
            resume_state = (tensors, state)
            self.resume_path: Path | None = Path(resume)
        else:
            self.resume_path = None
        self.cfg = cfg
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            enable_determinism()
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        )
        self.dist = init_distributed(self.device)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
            fast_fp32_matmul()
            torch.backends.cudnn.benchmark = not cfg.deterministic

        self.mcfg = cfg.model_config()
        self.ds = FrameDataset(data, **cfg.split())
        self.ds.check_size(self.mcfg.width, self.mcfg.height)
        if self.ds.split_note:
            log.warning("%s", self.ds.split_note)
        # Other films scored at each checkpoint, for information: how the model does on footage it never saw.
        self.eval_clips: dict[str, FrameDataset] = {}
        for c in cfg.eval_clips:
            clip = FrameDataset(c)
            clip.check_size(self.mcfg.width, self.mcfg.height)
            self.eval_clips[Path(c).name] = clip
        if len(self.ds.train_idx) < self.dist.world:
            raise DatasetError(f"{data}: {len(self.ds.train_idx)} training frames for {self.dist.world} ranks")
        self.data_path = Path(data)

        torch.manual_seed(cfg.seed)
        self.vae = VAE(self.mcfg).to(self.device)
        self.dis = None if cfg.pixel_vae else Discriminator(self.mcfg, cfg.dis_widths, cfg.dis_head).to(self.device)
        cuda = self.device.type == "cuda"
        self.channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and cuda)
        if self.channels_last:
            self.vae.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            if self.dis is not None:
                self.dis.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        use_amp = cfg.amp == "bf16" or (cfg.amp == "auto" and cuda)
        self.autocast: contextlib.AbstractContextManager[None] | None = (
            torch.autocast(self.device.type, dtype=torch.bfloat16) if use_amp else None
        )
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed + 7919 * self.dist.rank)  # noise and augmentation differ per rank

        b, wd = cfg.betas, cfg.weight_decay
        self.opt_enc = torch.optim.Adam(self.vae.encoder.parameters(), lr=cfg.lr, betas=b, weight_decay=wd)
        self.opt_dec = torch.optim.Adam(self.vae.decoder.parameters(), lr=cfg.lr, betas=b, weight_decay=wd)
        self.opt_dis = (
            torch.optim.Adam(self.dis.parameters(), lr=cfg.lr_dis, betas=b, weight_decay=wd)
            if self.dis is not None
            else None
        )
        self.loss = VAEGANLoss(cfg, self.vae, self.dis, self.autocast)
        if cfg.compile:
            self.loss.compile()

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best: float | None = None
        self.last_val: dict[str, float] = {}
        self.ckpts = CheckpointFolder(self.out / "checkpoints", cfg.keep_last)
        if resume_state is not None:
            self._load(*resume_state)
        elif self.dist.main and self.ckpts.steps():
            raise TrainError(
                f"{self.out}: run folder already has checkpoints; pass --resume {self.out} to continue it, "
                f"or choose a new --out"
            )
        if self.dist.world > 1:  # same starting weights everywhere, whatever each rank initialised
            for t in self._synced_tensors(params=True):
                dist.broadcast(t, 0)
        # Validation: whole held-out segments (consecutive frames: the temporal figures need pairs), spread through
        # the film, up to val_max frames; single frames under the "every" split. No split: the training frames.
        segs = self.ds.val_segments or [self.ds.train_idx]
        keep = len(segs) if sum(len(x) for x in segs) <= cfg.val_max else max(1, cfg.val_max // len(segs[0]))
        pick = np.linspace(0, len(segs) - 1, keep).round().astype(np.int64)
        self.val_segments = [segs[i][: cfg.val_max] for i in sorted(set(pick.tolist()))]
        self.val_idx = np.concatenate(self.val_segments)
        vi = self.val_idx
        self.grid_idx = vi[np.linspace(0, len(vi) - 1, min(6, len(vi))).round().astype(np.int64)]

    # --- state -------------------------------------------------------------------------------------

    def _synced_tensors(self, params: bool) -> list[torch.Tensor]:
        nets: list[torch.nn.Module] = [self.vae] + ([self.dis] if self.dis is not None else [])
        out: list[torch.Tensor] = []
        for n in nets:
            if params:
                out += [p.data for p in n.parameters()]
            out += [b for name, b in n.named_buffers() if b.is_floating_point() and "pca" not in name]
        return out

    def _opts(self) -> dict[str, torch.optim.Optimizer]:
        o: dict[str, torch.optim.Optimizer] = {"opt_enc": self.opt_enc, "opt_dec": self.opt_dec}
        if self.opt_dis is not None:
            o["opt_dis"] = self.opt_dis
        return o

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"vae.{k}": v for k, v in self.vae.state_dict().items()}
        if self.dis is not None:
            tensors.update({f"dis.{k}": v for k, v in self.dis.state_dict().items()})
        opt_info: dict[str, Any] = {}
        for name, opt in self._opts().items():
            t, info = pack_optimizer(opt, name)
            tensors.update(t)
            opt_info[name] = info
        tensors.update(rng_tensors({"noise": self.gen}))
        state = {
            "config": self.cfg.to_dict(),
            "model_config": self.mcfg.to_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "world": self.dist.world,
            "optimizers": opt_info,
            "dataset": {
                "path": str(self.data_path),
                "frames": len(self.ds),
                "size": list(self.ds.size),
                "fingerprint": self._fingerprint(),
            },
            "val": self.last_val,
            "best_value": self.best,
            "time": time.time(),
        }
        return tensors, state

    def _fingerprint(self) -> str:
        if getattr(self, "_fp", None) is None:
            from .resume_check import fingerprint

            self._fp = fingerprint(self.ds.frames)
        return str(self._fp)

    def _load(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        where = str(self.resume_path)
        if state.get("dataset", {}).get("frames") != len(self.ds):
            raise CheckpointError(
                f"{where}: trained on {state.get('dataset', {}).get('frames')} frames but {self.data_path} holds "
                f"{len(self.ds)}; the data order would not continue"
            )
        fp = state.get("dataset", {}).get("fingerprint")
        if fp is not None and fp != self._fingerprint():  # same frame count, other pictures: another film
            raise CheckpointError(
                f"{where}: trained on other frames than {self.data_path} holds (content fingerprint "
                f"{fp[:12]} vs {self._fingerprint()[:12]}); expected the run's own dataset"
            )
        if state.get("world", 1) != self.dist.world:
            raise CheckpointError(
                f"{where}: saved with {state.get('world')} ranks, resumed with {self.dist.world}; the per-rank "
                "data shares would change"
            )
        try:
            vae_sd = {k[4:]: v for k, v in tensors.items() if k.startswith("vae.")}
            if "pca_components" in vae_sd:
                self.vae.pca_components = torch.empty_like(vae_sd["pca_components"])
                self.vae.pca_std = torch.empty_like(vae_sd["pca_std"])
            self.vae.load_state_dict(vae_sd, strict=True)
            if self.dis is not None:
                self.dis.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("dis.")}, strict=True)
            for name, opt in self._opts().items():
                unpack_optimizer(opt, tensors, state["optimizers"][name], name)
        except (RuntimeError, KeyError, ValueError) as e:
            detail = " | ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())  # the key and shape too
            raise CheckpointError(f"{where}: does not fit this run ({detail})") from e
        self.vae.to(self.device)
        if self.dis is not None:
            self.dis.to(self.device)
        restore_rng(tensors, {"noise": self.gen})
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.best = state.get("best_value")
        self.last_val = state.get("val", {})

    # --- one step ----------------------------------------------------------------------------------

    def train_step(self, frames: torch.Tensor) -> dict[str, float]:
        x = to_model_input(frames, self.device, self.channels_last)  # [B, 3, H, W] in [-1, 1]
        if self.cfg.temporal and self.cfg.temporal_shift > 0:
            x = synthetic_motion(x, self.cfg, self.gen)
        if self.cfg.augment:
            x = augment(x, self.cfg, self.gen)
        self.vae.train()
        fw = self.loss.forward(x, self.gen)
        stats: dict[str, float] = {}
        if self.dis is not None:
            stats.update(self.loss.dis_phase(fw))
            if self.dist.world > 1 and self.cfg.equilibrium:  # gates from the mean losses: ranks decide alike
                lt = torch.tensor([stats["dis/real"], stats["dis/fake"]], device=self.device)
                average_([lt], self.dist)
                self.loss.set_gates(float(lt[0]), float(lt[1]))
        stats.update(self.loss.gen_phase(fw, self.step))
        del fw  # frees the graph before the optimizers touch the weights
        nets: list[torch.nn.Module] = [self.vae] + ([self.dis] if self.dis is not None else [])
        if self.dist.world > 1:
            average_([p.grad for n in nets for p in n.parameters() if p.grad is not None], self.dist)
        # All gradients come from one forward; only now may the weights change (see VAEGANLoss).
        if self.opt_dis is not None:
            if self.loss.train_dis:
                self.opt_dis.step()
            self.opt_dis.zero_grad(set_to_none=True)
            stats["dis/trained"] = float(self.loss.train_dis)
        self.opt_enc.step()
        self.opt_dec.step()
        self.opt_enc.zero_grad(set_to_none=True)
        self.opt_dec.zero_grad(set_to_none=True)
        if self.dist.world > 1:  # batch-norm running statistics: the mean over ranks
            average_(self._synced_tensors(params=False), self.dist)
        return stats

    # --- validation, images, model file ------------------------------------------------------------

    @torch.no_grad()
    def _reconstruct(self, ds: FrameDataset, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstructions, originals) [N, 3, H, W] in [-1, 1] of frames `idx`, eval mode (running BN
        statistics, z = mean): each frame's output is what batch-1 live playback gives."""
        recs, origs = [], []
        for i in range(0, len(idx), 32):
            x = to_model_input(torch.from_numpy(ds.get(idx[i : i + 32])), self.device, False)
            recs.append(self.vae(x).float().cpu())
            origs.append(x.cpu())
        return torch.cat(recs), torch.cat(origs)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Held-out figures: PSNR, SSIM, sharpness and score over the held-out segments' frames, the temporal
        figures (motion ratio, temporal error, collapse rate) over their consecutive pairs, and the same for each
        eval clip under "<clip>/<figure>"."""
        self.vae.eval()
        pairs = [self._reconstruct(self.ds, seg) for seg in self.val_segments]
        m = metrics.summarize_segments([r for r, _ in pairs], [o for _, o in pairs])
        m["score"] = metrics.score(m)
        for name, clip in self.eval_clips.items():
            r, o = self._reconstruct(clip, np.arange(min(len(clip), self.cfg.eval_clip_frames)))
            cm = metrics.summarize_segments([r], [o])
            m.update({f"{name}/{k}": v for k, v in cm.items() if k != "frames"})
        self.vae.train()
        return m

    @torch.no_grad()
    def sample_grid(self) -> np.ndarray:
        """Rows: held-out originals, their reconstructions, decoded prior samples."""
        self.vae.eval()
        x = to_model_input(torch.from_numpy(self.ds.get(self.grid_idx)), self.device, False)
        rec = self.vae(x)
        g = torch.Generator(device=self.device)
        g.manual_seed(1234)  # fixed samples across the run, and no draw from the training generator
        prior = self.vae.decode(torch.randn(len(x), self.mcfg.zdim, generator=g, device=self.device))
        self.vae.train()
        return grid([x, rec, prior])

    def write_model(self, val: dict[str, float]) -> Path:
        mean, comps, std = latent_pca(self.vae, self.ds, self.cfg.pca_components, self.cfg.pca_max_frames, self.device)
        # A copy, not a fresh VAE(...): building one would draw from the global RNG and shift it.
        model = copy.deepcopy(self.vae).float().cpu().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        model.set_pca(mean, comps, std)
        meta = {
            "step": self.step,
            "epoch": self.epoch,
            "val": val,
            "train": "pixel-vae" if self.cfg.pixel_vae else "vae-gan",
            "temporal": self.cfg.temporal,
            # The held-out split, so `train.report` scores the model on frames it never trained on.
            "split": {
                "held_out": self.cfg.held_out,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in self.cfg.split().items()},
            },
            "held_out_frames": len(self.ds.val_idx),
            "dataset": {"path": str(self.data_path), "frames": len(self.ds), "source": self.ds.meta.get("source")},
            "recipe": self.info.get("recipe"),
        }
        return save_model(model.eval(), self.out / MODEL_FILE, meta=meta)

    @torch.no_grad()
    def write_index(self, model_file: Path) -> Path:
        """The film mirror's latent index (livevae.mirror.index) of every dataset frame, encoded on the training
        device by exactly the weights in `model_file`, written beside it."""
        from livevae.mirror.index import build_index, index_path, model_sha256, open_film, save_index
        from livevae.model import load_model

        vae = load_model(model_file, device=self.device)  # eval mode: batch norm's running statistics

        def encode(frames: np.ndarray) -> np.ndarray:
            x = to_model_input(torch.from_numpy(frames), self.device, False)  # [B, 3, H, W] in [-1, 1]
            return vae.encoder(x)[0].float().cpu().numpy()  # [B, zdim] mean

        size = (self.mcfg.width, self.mcfg.height)
        idx = build_index(encode, open_film(self.data_path), model_sha256(model_file), size, 64, self.progress)
        return save_index(idx, index_path(model_file))

    def checkpoint(self, tb: Any) -> None:
        val = self.validate()
        self.last_val = val
        key = self.cfg.best_metric
        value = val[key]
        improved = self.best is None or value > self.best
        if improved:
            self.best = value
        tensors, state = self.state_tensors()
        self.ckpts.save(self.step, tensors, state)
        with open(self.out / "validation.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, "epoch": self.epoch, **val}) + "\n")
        if improved:
            self.ckpts.save_best(tensors, state)
            self.write_model(val)
        if tb is not None:
            for k, v in val.items():
                if k != "frames" and math.isfinite(v):
                    tb.add_scalar(f"val/{k}", v, self.step)
            tb.add_image("val/recon_grid", self.sample_grid(), self.step, dataformats="HWC")
            tb.flush()

    # --- the loop ----------------------------------------------------------------------------------

    def _stop_reason(self, t0: float) -> str:
        c = self.cfg
        if c.max_steps and self.step >= c.max_steps:
            return "max_steps"
        if c.epochs and self.epoch >= c.epochs:
            return "epochs"
        if c.time_budget and time.monotonic() - t0 >= c.time_budget:
            return "time_budget"
        return ""

    def _order(self, epoch: int) -> np.ndarray:
        """This rank's frame indices for one epoch: shuffled frames, or shuffled consecutive pairs (temporal)."""
        d, c = self.dist, self.cfg
        if c.temporal:
            return self.ds.pair_order(epoch, c.seed, d.rank, d.world)
        return self.ds.epoch_order(epoch, c.seed, d.rank, d.world)

    def _write_run_config(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            self.out / "config.json",
            {
                "config": self.cfg.to_dict(),
                "model_config": self.mcfg.to_dict(),
                "dataset": {"path": str(self.data_path.resolve()), "meta": self.ds.meta},
                "held_out_frames": len(self.ds.val_idx),
                "train_frames": len(self.ds.train_idx),
                "world": self.dist.world,
                "device": str(self.device),
                "torch": torch.__version__,
                "argv": sys.argv,
                "resumed_from": str(self.resume_path) if self.resume_path else None,
                **self.info,
            },
        )

    def run(self) -> RunResult:
        cfg, main = self.cfg, self.dist.main
        if not (cfg.epochs or cfg.max_steps or cfg.time_budget):
            raise TrainError("no stopping rule: set epochs, max_steps or time_budget (recipe or --epochs ...)")
        self.out.mkdir(parents=True, exist_ok=True)  # every rank: indices logs may be opened before rank 0 writes
        tb = None
        if main:
            self._write_run_config()
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(self.out / "tb"), purge_step=self.step or None)
        steps_per_epoch = math.ceil(len(self._order(0)) / cfg.batch)
        total = cfg.max_steps or (cfg.epochs * steps_per_epoch if cfg.epochs else None)
        bar = None
        if main and self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr)
        t0 = time.monotonic()
        last_ckpt_t, last_log_t, last_log_step = t0, t0, self.step
        start_step = self.step
        stopped = self._stop_reason(t0)
        indices_log = open(self.out / f"indices-rank{self.dist.rank}.txt", "a") if cfg.record_indices else None  # noqa: SIM115
        try:
            while not stopped:
                order = self._order(self.epoch)
                n_batches = math.ceil(len(order) / cfg.batch)

                def batches(
                    order: np.ndarray = order, skip: int = self.batch_in_epoch, n_batches: int = n_batches
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
                    for b in range(skip, n_batches):
                        idx = order[b * cfg.batch : (b + 1) * cfg.batch]
                        yield idx, self.ds.get(idx)

                loader = Loader(batches(), pin=self.device.type == "cuda", prefetch=cfg.prefetch)
                try:
                    for idx, frames in loader:
                        stats = self.train_step(frames)
                        if indices_log is not None:
                            indices_log.write(" ".join(str(int(i)) for i in idx) + "\n")
                        self.step += 1
                        self.batch_in_epoch += 1
                        if self.batch_in_epoch >= n_batches:
                            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                        now = time.monotonic()
                        if main and (self.step % cfg.log_every == 0 or self.step == start_step + 1):
                            ips = (
                                (self.step - last_log_step) * cfg.batch * self.dist.world / max(now - last_log_t, 1e-9)
                            )
                            last_log_t, last_log_step = now, self.step
                            if tb is not None:
                                for k, v in stats.items():
                                    tb.add_scalar(k, v, self.step)
                                tb.add_scalar("speed/img_per_s", ips, self.step)
                                tb.add_scalar("lr/encoder", self.opt_enc.param_groups[0]["lr"], self.step)
                                tb.add_scalar("lr/decoder", self.opt_dec.param_groups[0]["lr"], self.step)
                                if self.opt_dis is not None:
                                    tb.add_scalar("lr/discriminator", self.opt_dis.param_groups[0]["lr"], self.step)
                                tb.add_scalar("progress/epoch", self.epoch, self.step)
                            if bar is not None:
                                post = {
                                    "img/s": f"{ips:.1f}",
                                    "ep": self.epoch,
                                    **bar_losses(stats, cfg),
                                }
                                if cfg.time_budget:
                                    post["left"] = f"{max(0.0, cfg.time_budget - (now - t0)) / 60:.1f}m"
                                if self.last_val:
                                    post["val_psnr"] = f"{self.last_val['psnr']:.2f}"
                                bar.set_postfix(post, refresh=False)
                        if bar is not None:
                            bar.update(1)
                        stopped = self._stop_reason(t0)
                        due = self.step % cfg.checkpoint_every == 0 or now - last_ckpt_t >= cfg.checkpoint_seconds
                        if main and (due or stopped):
                            self.checkpoint(tb)
                            last_ckpt_t = time.monotonic()
                        if main and self.step % cfg.sample_every == 0:
                            write_png(self.out / "samples" / f"step-{self.step:09d}.png", self.sample_grid())
                        if stopped or self.batch_in_epoch == 0:
                            break
                finally:
                    loader.close()
        finally:
            if indices_log is not None:
                indices_log.close()
            if bar is not None:
                bar.close()
            if tb is not None:
                tb.close()
        seconds = time.monotonic() - t0
        done = self.step - start_step
        if main:
            write_png(self.out / "samples" / f"step-{self.step:09d}.png", self.sample_grid())
        if self.dist.world > 1:
            dist.barrier()
        model = self.out / MODEL_FILE
        if main and not model.is_file():  # e.g. zero steps this call: still leave an eval-ready model
            self.write_model(self.last_val)
        if main and cfg.mirror_index and model.is_file():
            self.write_index(model)
        return RunResult(
            out=self.out,
            step=self.step,
            epoch=self.epoch,
            seconds=seconds,
            images_per_s=done * cfg.batch * self.dist.world / max(seconds, 1e-9),
            val=self.last_val,
            model=model if model.is_file() else None,
            stopped_by=stopped,
        )


def train(
    cfg: TrainConfig,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    resume: str | os.PathLike[str] | None = None,
    progress: bool = True,
    info: dict[str, Any] | None = None,
) -> RunResult:
    """Train (or resume) one run; see Trainer. Deterministic mode is process-wide in torch: it is switched back
    off afterwards, so a caller (a test session, a notebook) is left as it was."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        return Trainer(cfg, data, out, resume=resume, progress=progress, info=info).run()
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


# the progress bar's loss terms: (short name, stats key, the config weight that switches the term on)
BAR_TERMS = (
    ("l1", "loss/pixel_l1", "pixel_weight"),
    ("sim", "loss/similarity", "sim_weight"),
    ("kl", "loss/kl", "kl_weight"),
)


def bar_losses(stats: dict[str, float], cfg: Any) -> dict[str, str]:
    """The loss terms the run trains with, for the progress bar: a term whose weight is 0 is not computed (it reads
    0.000 for the whole run, which says nothing), so it is left out."""
    return {
        name: f"{stats[key]:.3f}"
        for name, key, weight in BAR_TERMS
        if key in stats and float(getattr(cfg, weight, 1.0) or 0.0) != 0.0
    }
