"""Latent modulation between encode and decode: a pure function of z, the control snapshot and t, plus a small
stateful wrapper for what needs memory across frames (freeze, EMA on z, slew of controls, LFO phase)."""

from __future__ import annotations

import dataclasses
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livevae.control.lfo import LfoClock, apply_lfos
from livevae.control.state import ControlSnapshot
from livevae.errors import LivevaeError


class ModulateError(LivevaeError):
    """A latent or PCA does not have the shape the model expects."""


@dataclass(frozen=True)
class Pca:
    """Principal directions of the training film's latents, stored in the model file."""

    mean: np.ndarray  # [zdim] float32
    components: np.ndarray  # [K, zdim] float32, rows orthonormal
    std: np.ndarray  # [K] float32, std of the film's latents along each row

    @property
    def k(self) -> int:
        return int(self.components.shape[0])

    @property
    def zdim(self) -> int:
        return int(self.mean.shape[0])


def load_pca(path: str | os.PathLike[str]) -> Pca | None:
    """The PCA buffers of a livevae model file (pca_mean, pca_components [K, zdim], pca_std [K]); None when the
    model has none computed (K = 0 or all-zero std). Reads the tensors with safetensors, without building a model."""
    from safetensors import safe_open

    from livevae.model import read_model_header

    read_model_header(path)  # raises ModelError naming the file when it is not a livevae model
    with safe_open(str(path), framework="np") as f:
        keys = set(f.keys())
        if not {"pca_mean", "pca_components", "pca_std"} <= keys:
            return None
        mean = np.asarray(f.get_tensor("pca_mean"), np.float32)
        comps = np.asarray(f.get_tensor("pca_components"), np.float32)
        std = np.asarray(f.get_tensor("pca_std"), np.float32)
    if comps.ndim != 2 or comps.shape[0] == 0 or not np.any(std > 0):
        return None
    if comps.shape[1] != mean.shape[0] or std.shape[0] != comps.shape[0]:
        raise ModulateError(
            f"{Path(path)}: PCA shapes mean {mean.shape}, components {comps.shape}, std {std.shape}; "
            "expected [zdim], [K, zdim], [K]"
        )
    return Pca(mean, comps, std)


def _noise(shape: tuple[int, ...], t: float, seed: int) -> np.ndarray:
    # Deterministic from (seed, t): a headless render with t = index / fps repeats exactly.
    key = zlib.crc32(np.float64(t).tobytes()) ^ (seed * 2654435761 & 0xFFFFFFFF)
    return np.random.default_rng(key).standard_normal(shape).astype(np.float32)


def is_identity(snap: ControlSnapshot) -> bool:
    """True when the snapshot changes nothing (defaults, no noise/mix/pc), so modulation can be skipped."""
    return (
        snap.mix == 0.0
        and snap.noise == 0.0
        and not np.any(snap.offset)
        and bool(np.all(snap.gain == 1.0))
        and not np.any(snap.pc)
    )


def modulate_latent(
    z: np.ndarray, snap: ControlSnapshot, t: float, pca: Pca | None = None, seed: int = 0
) -> np.ndarray:
    """z [N, zdim] float32 -> modulated z [N, zdim] float32, from the snapshot as given (LFOs already applied).

    In order: gain; mix toward the anchor (the scene latent; the film's mean latent without one; zeros without a
    PCA); offsets; principal directions (pc[k] standard deviations along row k); Gaussian noise of std `noise`.
    Offsets and directions come after the mix so that they still move a fully recalled scene.
    """
    if z.ndim != 2 or z.shape[1] != snap.zdim:
        raise ModulateError(f"modulate: z has shape {z.shape}; expected [N, {snap.zdim}]")
    if is_identity(snap):
        return z
    out = z.astype(np.float32, copy=True)
    if not np.all(snap.gain == 1.0):
        out *= snap.gain
    if snap.mix > 0.0:
        anchor = snap.anchor if snap.anchor is not None else (pca.mean if pca is not None else None)
        target = anchor if anchor is not None else np.zeros(snap.zdim, np.float32)
        out += snap.mix * (target - out)  # [N, zdim]; lerp toward one latent, broadcast over the batch
    if np.any(snap.offset):
        out += snap.offset
    if pca is not None and np.any(snap.pc):
        k = min(pca.k, snap.pc.shape[0])
        out += (snap.pc[:k] * pca.std[:k]) @ pca.components[:k]  # [K] @ [K, zdim] -> [zdim]
    if snap.noise > 0.0:
        out += snap.noise * _noise(out.shape, t, seed)
    return out


def modulate(z: np.ndarray, snap: ControlSnapshot, t: float, pca: Pca | None = None, seed: int = 0) -> np.ndarray:
    """The pure modulation: LFOs at their constant-settings phase at t, then modulate_latent. No freeze, EMA or
    slew (those need memory; see Modulator)."""
    return modulate_latent(z, apply_lfos(snap, t, seed=seed), t, pca, seed)


def _alpha(dt: float, tau: np.ndarray | float) -> np.ndarray | float:
    """How far an exponential slew of time constant tau moves in dt: 1 - exp(-dt / tau), 1 where tau = 0."""
    tau_a = np.asarray(tau, np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        a = np.where(tau_a > 0, 1.0 - np.exp(-dt / np.maximum(tau_a, 1e-9)), 1.0)
    return a if a.ndim else float(a)


class Modulator:
    """Per-frame modulation with memory: slews the controls, integrates LFO phases, freezes and smooths the
    encoder's z, then calls modulate_latent. Call it once per frame, from the frame thread only.

    Freeze and the EMA act on the encoder's z (the input), not the output: a frozen image still answers the
    faders, and smoothing tames the encoder's flicker without lagging the performer's moves.
    """

    def __init__(self, zdim: int, pca: Pca | None = None, seed: int = 0) -> None:
        if pca is not None and pca.zdim != zdim:
            raise ModulateError(f"Modulator: PCA is for zdim {pca.zdim}; expected {zdim}")
        self.zdim, self.pca, self.seed = zdim, pca, seed
        self.clock = LfoClock()
        self._t: float | None = None
        self._cur: ControlSnapshot | None = None  # slewed controls
        self._ema: np.ndarray | None = None  # [N, zdim] smoothed encoder z
        self._held: np.ndarray | None = None  # [N, zdim] frozen encoder z
        self._fade = 0.0  # seconds of a scene fade in progress
        self._fade_start: float | None = None

    def reset(self) -> None:
        self.clock.reset()
        self._t = self._cur = self._ema = self._held = None
        self._fade, self._fade_start = 0.0, None

    def fade(self, seconds: float) -> None:
        """Glide every control (and the anchor) toward its new value over about `seconds` from the next frame:
        a scene recall with a fade. Slower per-control slews still apply."""
        self._fade, self._fade_start = max(0.0, float(seconds)), None

    def _fade_tau(self, t: float) -> float:
        if self._fade <= 0.0:
            return 0.0
        if self._fade_start is None:
            self._fade_start = t
        if t - self._fade_start > 2.0 * self._fade:  # 1 - exp(-6): done; back to the plain slews
            self._fade = 0.0
            return 0.0
        return self._fade / 3.0  # 95 % of the way after `seconds`

    def _slew(self, snap: ControlSnapshot, dt: float, fade_tau: float = 0.0) -> ControlSnapshot:
        cur = self._cur
        if cur is None or (snap.slew == 0.0 and not snap.slews and fade_tau == 0.0):
            return snap
        fields: dict[str, object] = {}
        for name, prefix in (("offset", "z"), ("gain", "gain"), ("pc", "pc")):
            target = getattr(snap, name)
            now = getattr(cur, name)
            if now.shape != target.shape:
                fields[name] = target
                continue
            tau = np.full(target.shape, snap.slew)
            for key, s in snap.slews.items():
                p, _, i = key.partition("/")
                if p == prefix and i.isdigit() and int(i) < tau.size:
                    tau[int(i)] = s
            tau = np.maximum(tau, fade_tau)
            fields[name] = (now + _alpha(dt, tau) * (target - now)).astype(np.float32)
        for name in ("mix", "noise"):
            a = _alpha(dt, max(snap.slews.get(name, snap.slew), fade_tau))
            fields[name] = float(getattr(cur, name) + a * (getattr(snap, name) - getattr(cur, name)))
        if snap.anchor is not None and cur.anchor is not None and snap.anchor is not cur.anchor:
            a = _alpha(dt, max(snap.slews.get("mix", snap.slew), fade_tau))  # a scene glides at the mix's pace
            fields["anchor"] = (cur.anchor + a * (snap.anchor - cur.anchor)).astype(np.float32)
        out = dataclasses.replace(snap, **fields)  # type: ignore[arg-type]
        # snap to the target when close, so an idle show goes back to the cheap identity path
        arrays_close = all(
            np.allclose(getattr(out, f), getattr(snap, f), atol=1e-4, rtol=0) for f in ("offset", "gain", "pc")
        )
        scalars_close = all(abs(getattr(out, f) - getattr(snap, f)) < 1e-4 for f in ("mix", "noise"))
        anchor_close = out.anchor is None or snap.anchor is None or np.allclose(out.anchor, snap.anchor, atol=1e-4)
        if arrays_close and scalars_close and anchor_close:
            out = snap
        return out

    def __call__(self, z: np.ndarray, snap: ControlSnapshot, t: float) -> np.ndarray:
        """z [N, zdim] float32 from the encoder -> modulated z [N, zdim]."""
        if z.ndim != 2 or z.shape[1] != self.zdim:
            raise ModulateError(f"modulate: z has shape {z.shape}; expected [N, {self.zdim}]")
        dt = 0.0 if self._t is None else max(0.0, t - self._t)
        self._t = t
        cur = self._slew(snap, dt, self._fade_tau(t))
        self._cur = cur
        cycles = self.clock.advance(cur.lfos, cur.bpm, t)
        eff = apply_lfos(cur, t, cycles, self.seed)
        zin = z
        if eff.freeze:
            if self._held is None or self._held.shape != z.shape:
                self._held = (self._ema if self._ema is not None and self._ema.shape == z.shape else z).copy()
            zin = self._held
        else:
            self._held = None
            if eff.smooth > 0.0 and self._ema is not None and self._ema.shape == z.shape:
                self._ema = (eff.smooth * self._ema + (1.0 - eff.smooth) * z).astype(np.float32)
                zin = self._ema
            else:
                self._ema = z.astype(np.float32, copy=True)
        if not np.isfinite(zin).all():  # one NaN frame from a backend must not poison the EMA or a freeze forever
            self._ema = self._held = None
        return modulate_latent(zin, eff, t, self.pca, self.seed)
