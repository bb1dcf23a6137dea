"""Audio features, pure: per-frame level, low/mid/high bands, onsets and spectral flux from a block of samples."""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from livevae.media.audio import AudioError

log = logging.getLogger("livevae.controllers.audio")  # one logger for all of audio, as users filter it

FEATURES = ("rms", "low", "mid", "high", "onset", "flux")
EPS = 1e-12


# --- features (pure) ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureConfig:
    """How features are measured. Times in seconds, levels in dB."""

    sample_rate: int = 44100
    n_fft: int = 2048  # analysis window: ~46 ms at 44.1 kHz, ~10 bins below 250 Hz
    low_mid: float = 250.0  # Hz: low band = 20..low_mid, mid = low_mid..mid_high, high = mid_high..Nyquist
    mid_high: float = 4000.0
    attack: float = 0.01  # smoothing when a feature rises
    release: float = 0.25  # and when it falls (onset pulses decay with this too)
    autogain: bool = True  # normalise to the recent peak, so quiet and loud rooms both use the full 0..1
    autogain_fall: float = 1.0  # dB/s the remembered peak sinks by, so the gain recovers after a loud passage
    range_db: float = 36.0  # dynamic range below the peak mapped onto 0..1
    gate_db: float = -70.0  # dBFS below which a feature is 0 (silence is not amplified into noise)
    onset_k: float = 1.5  # an onset is spectral flux above mean + k * std of the last onset_window seconds
    onset_window: float = 0.5
    onset_min_gap: float = 0.08  # s between onsets (refractory)


@dataclass
class Features:
    """One frame's features: normalised 0..1 values (what mappings and OSC see) and raw measurements."""

    values: dict[str, float]
    rms_db: float  # dBFS of the last frame period
    bands_db: tuple[float, float, float]  # low, mid, high band power in dB
    flux: float  # raw spectral flux
    onset: bool  # an onset fired this frame


class _Peak:
    """A peak follower in dB: jumps up, sinks at `fall` dB/s, never below floor."""

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self.db = floor

    def update(self, db: float, dt: float, fall: float) -> float:
        self.db = max(db, self.db - fall * dt, self.floor)
        return self.db


class FeatureExtractor:
    """Turns blocks of mono samples into features, once per video frame. Pure apart from its smoothing and
    auto-gain memory: the same blocks in the same order give the same features (offline renders repeat)."""

    def __init__(self, cfg: FeatureConfig | None = None) -> None:
        self.cfg = c = cfg or FeatureConfig()
        if c.n_fft < 64 or c.n_fft & (c.n_fft - 1):
            raise AudioError(f"FeatureConfig n_fft {c.n_fft}; expected a power of two >= 64")
        if not 20.0 < c.low_mid < c.mid_high < c.sample_rate / 2:
            raise AudioError(
                f"FeatureConfig bands {c.low_mid:g}/{c.mid_high:g} Hz; expected 20 < low_mid < mid_high < "
                f"{c.sample_rate / 2:g} (Nyquist)"
            )
        self.window = np.hanning(c.n_fft).astype(np.float32)  # [n_fft]
        freqs = np.fft.rfftfreq(c.n_fft, 1.0 / c.sample_rate)  # [n_fft // 2 + 1]
        self.bands = (
            (freqs >= 20.0) & (freqs < c.low_mid),
            (freqs >= c.low_mid) & (freqs < c.mid_high),
            freqs >= c.mid_high,
        )
        # Parseval: a band's summed power equals the mean square of its part of the signal, so band levels read
        # in dBFS like the RMS level (a sine of amplitude A gives A^2 / 2 in its band)
        self._pnorm = 2.0 / (c.n_fft * float(np.sum(self.window**2)))
        self._prev_mag: np.ndarray | None = None
        floor = c.gate_db + c.range_db  # auto-gain never amplifies a peak quieter than this
        self._peak_rms = _Peak(floor if c.autogain else 0.0)
        self._peak_band = _Peak(floor if c.autogain else 0.0)
        self._peak_flux = 0.0
        self._flux_hist: deque[float] = deque()
        self._since_onset = math.inf
        self.smoothed = dict.fromkeys(FEATURES, 0.0)

    def _norm(self, db: float, peak: float) -> float:
        if db <= self.cfg.gate_db:
            return 0.0
        return float(min(max((db - (peak - self.cfg.range_db)) / self.cfg.range_db, 0.0), 1.0))

    def _smooth(self, name: str, x: float, dt: float, attack: float | None = None) -> float:
        c = self.cfg
        y = self.smoothed[name]
        tau = (c.attack if attack is None else attack) if x > y else c.release
        a = 1.0 if tau <= 0 else 1.0 - math.exp(-dt / tau)
        y += a * (x - y)
        self.smoothed[name] = y
        return y

    def process(self, block: np.ndarray, dt: float) -> Features:
        """block: float32 [n] mono samples ending now (n_fft of them; fewer are zero-padded in front); dt: seconds
        since the previous call (one video frame). Returns this frame's features."""
        c = self.cfg
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        if x.size < c.n_fft:
            x = np.concatenate([np.zeros(c.n_fft - x.size, np.float32), x])
        x = x[-c.n_fft :]
        dt = max(float(dt), 1e-4)
        hop = int(min(max(dt * c.sample_rate, 64), c.n_fft))
        recent = x[-hop:]  # the frame period's samples, for the level
        rms_db = 10.0 * math.log10(float(np.mean(recent * recent)) + EPS)
        mag = np.abs(np.fft.rfft(x * self.window))  # [n_fft // 2 + 1]
        power = mag * mag * self._pnorm
        bands_db = tuple(10.0 * math.log10(float(np.sum(power[b])) + EPS) for b in self.bands)
        # spectral flux on log-compressed magnitudes: loudness-independent, so soft and loud hits both count
        logmag = np.log1p(100.0 * mag / (np.sum(self.window) / 2))
        flux = 0.0 if self._prev_mag is None else float(np.sum(np.maximum(logmag - self._prev_mag, 0.0)))
        self._prev_mag = logmag
        # adaptive threshold over the recent past (not including this frame)
        hist = self._flux_hist
        n_hist = max(3, round(c.onset_window / dt))
        mean = float(np.mean(hist)) if hist else 0.0
        std = float(np.std(hist)) if len(hist) > 1 else 0.0
        self._since_onset += dt
        onset = (
            len(hist) >= 2
            and flux > mean + c.onset_k * std
            and flux > 1.5 * mean + 1e-3
            and self._since_onset >= c.onset_min_gap
        )
        if onset:
            self._since_onset = 0.0
        hist.append(flux)
        while len(hist) > n_hist:
            hist.popleft()
        if c.autogain:
            pr = self._peak_rms.update(rms_db, dt, c.autogain_fall)
            pb = self._peak_band.update(max(bands_db), dt, c.autogain_fall)
        else:
            pr = pb = 0.0
        self._peak_flux = max(flux, self._peak_flux * math.exp(-dt * c.autogain_fall / 8.686))  # dB/s -> ln
        raw = {
            "rms": self._norm(rms_db, pr),
            "low": self._norm(bands_db[0], pb),
            "mid": self._norm(bands_db[1], pb),
            "high": self._norm(bands_db[2], pb),
            "flux": flux / self._peak_flux if self._peak_flux > 1e-6 else 0.0,
        }
        values = {k: self._smooth(k, v, dt) for k, v in raw.items()}
        values["onset"] = self._smooth("onset", 1.0 if onset else 0.0, dt, attack=0.0)  # instant rise, slow fall
        return Features(
            values={k: values[k] for k in FEATURES},
            rms_db=rms_db,
            bands_db=(bands_db[0], bands_db[1], bands_db[2]),
            flux=flux,
            onset=onset,
        )
