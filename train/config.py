"""TrainConfig: every training choice in one typed dataclass, loaded from a recipe TOML plus overrides."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livevae.errors import LivevaeError
from livevae.model import PRESETS, ModelConfig, ModelError, preset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10 only
    import tomli as tomllib


class ConfigError(LivevaeError):
    """A recipe or a training option is malformed; the message names the file and key."""


@dataclass
class TrainConfig:
    """All training options. Loss weights are for per-element means (pixel L1, feature MSE) and the
    per-frame KL sum, so they do not change with the frame size."""

    # model
    preset: str = "live"
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig field overrides, e.g. {zdim = 128}
    # optimisation (2016: Adam 2e-4, beta1 0.5, batch 12, for all three networks)
    batch: int = 12
    lr: float = 2e-4
    lr_dis: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    # losses
    pixel_vae: bool = False  # baseline: pixel loss + KL only, no discriminator
    kl_weight: float = 1e-5  # on the per-frame KL sum (200 terms) vs per-pixel means
    sim_weight: float = 1.0  # learned similarity (discriminator feature MSE), encoder side
    gamma: float = 2.5  # decoder's weight on the similarity term relative to its GAN term
    pixel_weight: float = 0.0  # pixel L1; 0 = pure Larsen
    gan_weight: float = 1.0  # decoder's GAN term
    adaptive_gan: bool = False  # VQGAN: scale the GAN term by |grad rec| / |grad gan| at the last layer
    adaptive_max: float = 1e4
    gan_start: int = 0  # decoder GAN term off before this step (warm-up); the discriminator still learns
    prior_samples: bool = True  # the GAN also sees decoded prior samples z ~ N(0, I) (Larsen)
    equilibrium: bool = False  # Larsen's balance: skip whichever side is winning by too much
    eq_margin: float = 0.35
    dis_widths: tuple[int, ...] = ()  # () = the encoder's widths
    dis_head: str = "linear"  # "linear" (2016: one logit per frame) or "patch" (one logit per 16x16 cell)
    # data
    # Held-out frames (validation only). "segments" (the default): held_out_segments contiguous blocks of
    # held_out_segment frames spread evenly through the film, each with held_out_gap frames on both sides that
    # are used for neither training nor validation, so no held-out frame neighbours a training frame and the
    # held-out set measures generalisation, not memory, and has consecutive frames for the temporal figures.
    # "every": every held_out_every-th frame (the pre-0.4 split; each such frame sits between two near-identical
    # training frames, so its figures flatter the model).
    held_out: str = "segments"
    held_out_segments: int = 10
    held_out_segment: int = 48  # frames per block (2 s at 24 fps)
    held_out_gap: int = 24
    held_out_every: int = 10  # held_out = "every" only
    eval_clips: tuple[str, ...] = ()  # other prepped datasets scored at each checkpoint, for information (cross-film)
    eval_clip_frames: int = 64  # the first this many frames of each eval clip
    # Temporal training (issue: Broad's collapse of similar frames): batches of consecutive frame pairs, and a
    # loss that matches the reconstruction's frame-to-frame change to the source's, in pixels (L1) and in the
    # discriminator's feature space (normalised MSE, like the similarity). Off until it wins on held-out figures.
    temporal: bool = False
    temporal_weight: float = 1.0  # pixel term: mean |(xr_t+1 - xr_t) - (x_t+1 - x_t)|
    temporal_feature_weight: float = 0.1  # feature term, on the discriminator's activations
    # Steps before the temporal term starts; it then ramps up linearly over as many steps again. From step 0 its
    # frame-change gradients (sign-like, of an L1 term) swamp a reconstruction that does not yet resemble the
    # frames: at step 100 a temporal run held out 12.9 dB against its baseline's 19.5.
    temporal_start: int = 0
    # Synthetic pans (batches.synthetic_motion): this share of the pairs becomes (frame, frame moved by up to
    # temporal_shift pixels). 0 = real consecutive pairs only.
    temporal_shift: int = 0
    temporal_shift_p: float = 0.5
    augment: bool = False  # device-side translation / flip / colour jitter
    aug_translate: int = 4  # pixels
    aug_flip: bool = True
    aug_jitter: float = 0.05  # brightness/contrast amplitude in [-1, 1] units
    seed: int = 0
    # stopping (any that is set ends the run)
    epochs: int = 0
    max_steps: int = 0
    time_budget: float = 0.0  # seconds
    # bookkeeping
    checkpoint_every: int = 200  # steps; a checkpoint also validates
    checkpoint_seconds: float = 600.0  # and at least this often in wall time
    keep_last: int = 3
    best_metric: str = "psnr"  # "psnr" | "ssim" | "score" (psnr minus a penalty for sharpness far from 1)
    sample_every: int = 500  # sample-grid PNG every this many steps
    log_every: int = 10
    val_max: int = 256  # held-out frames used for validation metrics
    pca_components: int = 16
    pca_max_frames: int = 4096
    mirror_index: bool = True  # at the end, the film mirror's latent index of every frame beside the model
    # speed
    threads: int = 0  # torch CPU threads; 0 = leave as is
    compile: bool = False
    amp: str = "auto"  # "auto" (bf16 on CUDA), "bf16", "off"
    channels_last: str = "auto"  # "auto" (on CUDA), "on", "off"
    device: str = "auto"
    prefetch: int = 2
    deterministic: bool = False
    record_indices: bool = False  # write indices-rankN.txt (the frames each rank saw), for tests

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        self.dis_widths = tuple(int(w) for w in self.dis_widths)
        self.eval_clips = tuple(str(c) for c in self.eval_clips)
        self.validate()

    def validate(self, where: str = "TrainConfig") -> None:
        def bad(key: str, found: object, expected: str) -> ConfigError:
            return ConfigError(f"{where}: key {key!r} is {found!r}; expected {expected}")

        if self.preset not in PRESETS:
            raise bad("preset", self.preset, f"one of {sorted(PRESETS)}")
        try:
            self.model_config()
        except (ModelError, TypeError) as e:
            raise ConfigError(f"{where}: key 'model': {e}") from e
        for k in ("batch", "keep_last", "log_every", "checkpoint_every", "sample_every", "val_max", "eval_clip_frames"):
            if int(getattr(self, k)) < 1:
                raise bad(k, getattr(self, k), "an integer >= 1")
        for k in ("lr", "lr_dis"):
            if not getattr(self, k) > 0:
                raise bad(k, getattr(self, k), "a positive number")
        for k in (
            "kl_weight",
            "sim_weight",
            "gamma",
            "pixel_weight",
            "gan_weight",
            "weight_decay",
            "time_budget",
            "temporal_weight",
            "temporal_feature_weight",
        ):
            if getattr(self, k) < 0:
                raise bad(k, getattr(self, k), "a number >= 0")
        if self.held_out_every < 0 or self.held_out_every == 1:
            raise bad("held_out_every", self.held_out_every, "0 (no validation) or an integer >= 2")
        if self.held_out not in ("segments", "every"):
            raise bad("held_out", self.held_out, "'segments' or 'every'")
        for k in ("held_out_segments", "held_out_gap", "temporal_start", "temporal_shift"):
            if int(getattr(self, k)) < 0:
                raise bad(k, getattr(self, k), "an integer >= 0")
        if self.held_out_segment < 2:
            raise bad("held_out_segment", self.held_out_segment, "an integer >= 2 (pairs of frames)")
        if not 0.0 <= self.temporal_shift_p <= 1.0:
            raise bad("temporal_shift_p", self.temporal_shift_p, "a number in [0, 1]")
        if self.temporal and self.batch % 2:
            raise bad("batch", self.batch, "an even number when temporal is set (batches of frame pairs)")
        if self.dis_head not in ("linear", "patch"):
            raise bad("dis_head", self.dis_head, "'linear' or 'patch'")
        if self.best_metric not in ("psnr", "ssim", "score"):
            raise bad("best_metric", self.best_metric, "'psnr', 'ssim' or 'score'")
        if self.amp not in ("auto", "bf16", "off"):
            raise bad("amp", self.amp, "'auto', 'bf16' or 'off'")
        if self.channels_last not in ("auto", "on", "off"):
            raise bad("channels_last", self.channels_last, "'auto', 'on' or 'off'")
        if self.pixel_vae and self.pixel_weight == 0:
            raise bad("pixel_weight", 0, "> 0 when pixel_vae is set (the baseline has no other recon term)")

    def split(self) -> dict[str, Any]:
        """The held-out split's keyword arguments for FrameDataset (also stored in the model file's metadata)."""
        if self.held_out == "every":
            return {"held_out_every": self.held_out_every}
        return {"segments": (self.held_out_segments, self.held_out_segment, self.held_out_gap)}

    def model_config(self) -> ModelConfig:
        return preset(self.preset, **self.model)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["dis_widths"] = list(self.dis_widths)
        d["eval_clips"] = list(self.eval_clips)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "TrainConfig") -> TrainConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if "held_out_every" in d and "held_out" not in d:
            # A recipe or a stored config from before the segment split: it keeps the split it was written for
            # (a resumed run must see the same training frames).
            d = {**d, "held_out": "every"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
        defaults = cls.__new__(cls)
        for name, f in known.items():
            if f.default is not dataclasses.MISSING:
                setattr(defaults, name, f.default)
        out: dict[str, Any] = {}
        for k, v in d.items():
            out[k] = _coerce(k, v, getattr(defaults, k, None) if k != "model" else {}, where)
        try:
            return cls(**out)
        except ConfigError as e:
            raise ConfigError(str(e).replace("TrainConfig", where, 1)) from e

    def replace(self, **overrides: Any) -> TrainConfig:
        d = self.to_dict()
        d.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig.from_dict(d)


def _coerce(key: str, value: Any, default: Any, where: str) -> Any:
    """Check a recipe value's type against the field default's type (TOML ints are fine for floats)."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: key {key!r} is {value!r} ({type(value).__name__}); expected {expected}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        return tuple(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise bad("a table")
        return dict(value)
    return value


# Keys a recipe may hold besides TrainConfig's: notes for people (film, expected frames, prep command).
RECIPE_INFO_TABLES = ("film",)
RECIPES = Path(__file__).resolve().parent / "recipes"


def load_recipe(path: str | Path) -> tuple[TrainConfig, dict[str, Any]]:
    """(config, info) from a recipe TOML: top-level keys are TrainConfig fields, [model] overrides the
    preset, [film] is free-form information (expected frame count, aspect, prep command).
    Raises ConfigError naming the file and key."""
    path = Path(path)
    if not path.is_file():
        # A recipe that ships with livevae, by name ("bbb") or by its path in the repo ("train/recipes/bbb.toml"):
        # found from any folder and in a wheel install, where the recipes are package data beside this file.
        bundled = RECIPES / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
        if bundled.is_file() and (len(path.parts) == 1 or path.parent.as_posix().endswith("train/recipes")):
            path = bundled
        else:
            names = ", ".join(sorted(p.stem for p in RECIPES.glob("*.toml")))
            raise ConfigError(f"{path}: recipe not found; expected a TOML file or a bundled recipe ({names})")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e
    except RecursionError:  # tomllib recurses per nested array or inline table
        raise ConfigError(f"{path}: nested too deep to parse; expected a flat recipe") from None
    info: dict[str, Any] = {}
    for t in RECIPE_INFO_TABLES:
        if t in data:
            if not isinstance(data[t], dict):
                raise ConfigError(f"{path}: key {t!r} must be a table, got {type(data[t]).__name__}")
            info[t] = data.pop(t)
    return TrainConfig.from_dict(data, where=str(path)), info
