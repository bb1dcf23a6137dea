"""ONNX export of the encoder and decoder: one NetSpec per sub-network drives export, checks and engine builds."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from livevae.backends import EngineError, log
from livevae.backends.cache import cache_root, file_sha256, key_of
from livevae.model import VAE, Encoder, ModelConfig, load_model, read_model_header

OPSET = 18
# What the wrappers put in a graph besides the model (part of every export's cache key): "mu-rows" = the encoder
# computes mu's rows of its last layer only, so exports made before that are made again, not reused.
GRAPH = "mu-rows"
PRECISIONS = ("fp32", "fp16", "int8")
# Parity with PyTorch fp32, checked on every export (max abs difference over the sample batch).
# fp32: ORT and PyTorch run the same fp32 arithmetic in a different order -> ~1e-6 in practice.
# fp16: 10 mantissa bits; z is compared relative to its own scale, frames absolutely in [-1, 1].
# int8 (ONNX Runtime CPU only): 256 levels per activation, so single pixels may move by a few
# output steps (1 step = 2/255 in [-1, 1]) while the mean error stays well under one step; it is
# checked on calibration-like frames (uniform noise is nothing like footage to an int8 range).
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.25}
INT8_MEAN_TOLERANCE = 2e-2  # mean |int8 - fp32|, z relative to its scale, frames in [-1, 1] (2.5 output steps)
DEFAULT_MAX_BATCH = 64  # the largest batch a dynamic-batch TensorRT profile accepts


class _EncoderMu(nn.Module):
    """frames [N, 3, H, W] float32 in [-1, 1] -> z = mu [N, zdim] float32: the deterministic path.

    logvar is dropped: live and offline reconstruction both use z = mean (no sampling noise).
    For fp16 the weights are half and the casts sit inside the graph, so the I/O stays float32.
    """

    def __init__(self, model: VAE, dtype: torch.dtype) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.dtype = dtype

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return encoder_mu(self.encoder, frames.to(self.dtype)).float()


def encoder_mu(encoder: Encoder, x: torch.Tensor) -> torch.Tensor:
    """mu alone, [N, zdim]: the rows of the last linear layer that make it. Exact, and half the work of that
    layer, which is memory-bound at batch 1 (the demo encoder's 4608 x 400 weights do not fit a core's L2)."""
    fc = encoder.fc
    zdim = fc.out_features // 2
    h = encoder.convs(x).flatten(1)  # [N, C * H/16 * W/16]
    return F.linear(h, fc.weight[:zdim], fc.bias[:zdim])


class _DecoderFrames(nn.Module):
    """z [N, zdim] float32 -> frames [N, 3, H, W] float32 in [-1, 1] (tanh output)."""

    def __init__(self, model: VAE, dtype: torch.dtype) -> None:
        super().__init__()
        self.decoder = model.decoder
        self.dtype = dtype

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.to(self.dtype)).float()


class _EncoderPixelsMu(nn.Module):
    """int8 graphs: x' [N, H/2, W/2, 12] float32, the dequantized pixel in 2x2 blocks (quantize.frames_to_pixel_input)
    -> mu [N, zdim].

    Exported in fp32 from quantize.int8_friendly(model, pixel_io=True), then quantized; the quantized graph
    takes the uint8 pixels in blocks [N, H/2, W/2, 12] (quantize.uint8_input, quantize.to_blocks)."""

    def __init__(self, model: VAE) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return encoder_mu(self.encoder, frames.permute(0, 3, 1, 2))


class _DecoderPhases(nn.Module):
    """int8 graphs: z [N, zdim] -> the last conv's output before tanh, in phases [N, H/2 + 1, W/2 + 1, 2, 2, 3] that
    overhang the frame by the layer's crop; quantized, uint8 levels that frames.pixel_phases_to_frames turns into
    pixels with the graph's table and crop."""

    def __init__(self, model: VAE) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


@dataclass(frozen=True)
class NetSpec:
    """One exported sub-network: which net, batch (an int = static, None = dynamic), precision.

    The same spec names the ONNX file, its inputs/outputs, and the TensorRT optimisation profile,
    so export and engine build can never disagree about shapes.
    """

    net: Literal["encoder", "decoder"]
    batch: int | None = 1
    precision: str = "fp32"
    max_batch: int = DEFAULT_MAX_BATCH
    scheme: str | None = None  # int8 only: a quantize.SCHEMES name; None = the one for this CPU

    def __post_init__(self) -> None:
        if self.net not in ("encoder", "decoder"):
            raise EngineError(f"NetSpec: net {self.net!r}; expected 'encoder' or 'decoder'")
        if self.precision not in PRECISIONS:
            raise EngineError(f"NetSpec: precision {self.precision!r}; expected one of {PRECISIONS}")
        if self.batch is not None and not 1 <= self.batch <= self.max_batch:
            raise EngineError(f"NetSpec: batch {self.batch}; expected 1..{self.max_batch} or None (dynamic)")
        if self.precision == "int8":
            from livevae.backends.quantize import SCHEMES, read_cpu, scheme_for

            if self.scheme is None:  # resolved once here, so the file name and cache key say which it is
                object.__setattr__(self, "scheme", scheme_for(read_cpu()).name)
            elif self.scheme not in SCHEMES:
                raise EngineError(f"NetSpec: int8 scheme {self.scheme!r}; expected one of {', '.join(SCHEMES)}")
        elif self.scheme is not None:
            raise EngineError(f"NetSpec: scheme {self.scheme!r} with precision {self.precision!r}; only int8 has one")

    @property
    def name(self) -> str:
        """File stem: 'encoder-b1-fp32' (static batch 1), 'decoder-bN-fp16' (dynamic), 'decoder-b1-int8-u8s8'."""
        scheme = f"-{self.scheme}" if self.scheme else ""
        return f"{self.net}-b{self.batch if self.batch is not None else 'N'}-{self.precision}{scheme}"

    @property
    def input_name(self) -> str:
        return "frames" if self.net == "encoder" else "z"

    @property
    def output_name(self) -> str:
        return "z" if self.net == "encoder" else "frames"

    @property
    def pixel_io(self) -> bool:
        """int8 graphs take uint8 pixels in 2x2 blocks [N, H/2, W/2, 12], give uint8 phases [N, H/2, W/2, 2, 2, 3]."""
        return self.precision == "int8"

    def input_shape(self, cfg: ModelConfig, batch: int) -> tuple[int, ...]:
        if self.net == "decoder":
            return (batch, cfg.zdim)
        return (batch, cfg.height // 2, cfg.width // 2, 12) if self.pixel_io else (batch, 3, cfg.height, cfg.width)

    def output_shape(self, cfg: ModelConfig, batch: int) -> tuple[int, ...]:
        if self.net == "encoder":
            return (batch, cfg.zdim)
        if self.pixel_io:
            return (batch, cfg.height // 2, cfg.width // 2, 2, 2, 3)
        return (batch, 3, cfg.height, cfg.width)

    def profile(self, cfg: ModelConfig) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """TensorRT optimisation profile: input name -> (min, opt, max) shapes."""
        if self.batch is not None:
            s = self.input_shape(cfg, self.batch)
            return {self.input_name: (s, s, s)}
        # opt = max: offline runs send full chunks of max_batch (only the last is shorter), and TensorRT
        # tunes its kernels for the opt shape.
        opt = self.max_batch
        return {
            self.input_name: (
                self.input_shape(cfg, 1),
                self.input_shape(cfg, opt),
                self.input_shape(cfg, self.max_batch),
            )
        }

    def module(self, model: VAE) -> nn.Module:
        """The wrapper to export. For fp16 the caller passes a half copy of the model, for int8 the
        int8-friendly rewrite (quantize.int8_friendly), exported in fp32 and then quantized."""
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        wrap = _EncoderMu(model, dtype) if self.net == "encoder" else _DecoderFrames(model, dtype)
        return wrap.eval()

    def sample(self, cfg: ModelConfig, batch: int, seed: int = 0) -> np.ndarray:
        """A deterministic input for parity checks: frames uniform in [-1, 1] (uint8 pixels for int8), z ~ N(0, 1)."""
        rng = np.random.default_rng(seed)
        shape = self.input_shape(cfg, batch)
        if self.net == "encoder" and self.pixel_io:
            return rng.integers(0, 256, shape, dtype=np.uint8)
        if self.net == "encoder":
            return rng.uniform(-1, 1, shape).astype(np.float32)
        return rng.standard_normal(shape).astype(np.float32)


def live_specs(precision: str = "fp32") -> list[NetSpec]:
    """Static batch 1: what the live loop runs."""
    return [NetSpec("encoder", 1, precision), NetSpec("decoder", 1, precision)]


def offline_specs(precision: str = "fp32", max_batch: int = DEFAULT_MAX_BATCH) -> list[NetSpec]:
    """Dynamic batch: what reconstruct and bench throughput runs use."""
    return [NetSpec("encoder", None, precision, max_batch), NetSpec("decoder", None, precision, max_batch)]


@dataclass(frozen=True)
class Exported:
    """One exported graph on disk and what was checked about it."""

    spec: NetSpec
    path: Path
    sha256: str
    max_abs_diff: float  # ONNX Runtime vs PyTorch fp32 on the parity sample
    cached: bool


def export_dir(model_sha256: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(cache_dir) / "onnx" / model_sha256[:24]


def _export_graph(spec: NetSpec, model: VAE, path: Path) -> None:
    """torch.onnx.export with the dynamo exporter (torch.export + onnxscript).

    Chosen over the TorchScript exporter: its optimiser folds eval-mode batch norm into the convs and
    emits Split for mu/logvar, giving a 13-node encoder with no Shape/Gather/Slice arithmetic, which
    TensorRT and ORT both take as is. It costs ~3 s per graph, paid once: exports are cached.
    """
    if spec.precision == "int8":
        _export_int8(spec, model, path)
        return
    export_model = model
    if spec.precision == "fp16":
        # A copy, not VAE(cfg) + load_state_dict: a trained model's PCA buffers are [K, zdim], a fresh one's [0, zdim].
        export_model = copy.deepcopy(model).half().eval()
    _export_module(spec, spec.module(export_model), spec.sample(model.cfg, spec.batch or 2), path)


def _export_module(spec: NetSpec, wrapper: nn.Module, example_np: np.ndarray, path: Path) -> None:
    """One wrapper module to one ONNX file, atomically, with the spec's input/output names and batch."""
    example = torch.from_numpy(example_np)
    kw: dict[str, Any] = {}
    if spec.batch is None:
        # torch.export specialises a dimension whose example size is 1, hence the batch-2 example.
        kw["dynamic_shapes"] = {spec.input_name: {0: torch.export.Dim("batch", min=1)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.onnx")
    # The exporter logs one warning per torchvision op it cannot register (torchvision is not a dependency);
    # a show's first start should not print eight lines about operators the model never uses.
    reg_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    old_level = reg_log.level
    reg_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation chatter from torch.export internals
            torch.onnx.export(
                wrapper,
                (example,),
                str(tmp),
                dynamo=True,
                opset_version=OPSET,
                input_names=[spec.input_name],
                output_names=[spec.output_name],
                external_data=False,  # one self-contained file (broad2016 is ~190 MB, under the 2 GB limit)
                verbose=False,
                **kw,
            )
    finally:
        reg_log.setLevel(old_level)
    os.replace(tmp, path)


def _export_int8(spec: NetSpec, model: VAE, path: Path) -> None:
    """The fp32 export of the int8-friendly rewrite, quantized with calibration data from the model itself."""
    from livevae.backends.quantize import (
        SCHEMES,
        SubpixelConvTranspose,
        calibration_data,
        frames_to_pixel_input,
        int8_friendly,
        quantize_graph,
    )

    friendly = int8_friendly(model, pixel_io=True)
    frames, z = calibration_data(model)
    wrapper: nn.Module
    if spec.net == "encoder":
        wrapper, data = _EncoderPixelsMu(friendly), frames_to_pixel_input(frames)  # x' [N, H/2, W/2, 12]
    else:
        wrapper, data = _DecoderPhases(friendly), z
    fp32_path = path.with_name(path.stem + ".fp32.onnx")
    try:
        _export_module(spec, wrapper.eval(), data[: spec.batch or 2], fp32_path)
        enc = spec.net == "encoder"
        last = friendly.decoder.convs[-1]
        crop = last.crop if isinstance(last, SubpixelConvTranspose) and not enc else 0  # the phases' overhang
        quantize_graph(
            fp32_path, path, spec.input_name, data, spec.batch or 8, SCHEMES[str(spec.scheme)], enc, not enc, crop
        )
    finally:
        fp32_path.unlink(missing_ok=True)


def check_export(spec: NetSpec, model: VAE, path: Path, batch: int | None = None) -> float:
    """onnx.checker plus ONNX Runtime vs PyTorch fp32 parity; returns max abs diff, raises EngineError.

    fp16 graphs are compared with the fp32 PyTorch model: the difference is the real precision loss.
    """
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise EngineError(f"{path}: onnx.checker rejected the export: {e}") from e
    n = batch or spec.batch or 3
    x = spec.sample(model.cfg, n)
    ref_in = x
    if spec.precision == "int8":
        from livevae.backends.frames import to_input, to_uint8
        from livevae.backends.quantize import calibration_data, to_blocks

        frames, z = calibration_data(model, n=8, seed=1)  # not the calibration set (seed 0)
        if spec.net == "encoder":  # the pixels of those frames, and PyTorch fp32 on exactly those pixels
            pixels = to_uint8(frames[: spec.batch or 8])  # [n, H, W, 3]
            x, ref_in = to_blocks(pixels), to_input(pixels, model.cfg)
        else:
            x = ref_in = z[: spec.batch or 8]
    ref_mod = spec.module(model) if spec.precision == "fp32" else NetSpec(spec.net, spec.batch).module(model)
    with torch.inference_mode():
        ref = ref_mod(torch.from_numpy(ref_in)).numpy()
    so = ort.SessionOptions()
    so.intra_op_num_threads = min(2, os.cpu_count() or 1)
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    got = sess.run([spec.output_name], {spec.input_name: x})[0]
    if spec.pixel_io and spec.net == "decoder":  # uint8 phases -> frames [N, 3, H, W] in [-1, 1], like PyTorch's
        from livevae.backends.frames import pixel_phases_to_frames, to_input
        from livevae.backends.quantize import output_crop, output_lut

        meta = sess.get_modelmeta().custom_metadata_map
        got = to_input(pixel_phases_to_frames(got, output_lut(meta, path), output_crop(meta, path)), model.cfg)
    if got.shape != ref.shape:
        raise EngineError(f"{path}: ONNX output shape {got.shape}; expected {ref.shape} like PyTorch")
    diff = float(np.abs(got - ref).max())
    scale = max(1.0, float(np.abs(ref).max())) if spec.net == "encoder" else 1.0
    if diff > TOLERANCE[spec.precision] * scale:
        raise EngineError(
            f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g}; "
            f"expected <= {TOLERANCE[spec.precision] * scale:.3g} ({spec.precision})"
        )
    mean = float(np.abs(got - ref).mean())
    if spec.precision == "int8" and mean > INT8_MEAN_TOLERANCE * scale:
        raise EngineError(
            f"{path}: int8 graph differs from PyTorch fp32 by {mean:.3g} on average; "
            f"expected <= {INT8_MEAN_TOLERANCE * scale:.3g} (calibration failed for this model: use fp32)"
        )
    return diff


def _base_scheme(spec: NetSpec) -> str | None:
    """The scheme an int8 spec's graph is derived from (quantize.Int8Scheme.base), else None."""
    if spec.precision != "int8":
        return None
    from livevae.backends.quantize import SCHEMES

    return SCHEMES[str(spec.scheme)].base


def export(
    model_path: str | os.PathLike[str],
    spec: NetSpec,
    cache_dir: str | os.PathLike[str] | None = None,
    model: VAE | None = None,
    force: bool = False,
) -> Exported:
    """Export one sub-network of a model file to ONNX, cached on the model file's sha256 and the spec.

    Returns the cached file when its sidecar matches; otherwise exports, checks (onnx.checker and ORT
    parity) and records the check in the sidecar. Raises ModelError for a bad model file and
    EngineError when the export fails its checks.
    """
    model_path = Path(model_path)
    read_model_header(model_path)  # raises ModelError naming the file when it is missing or bad
    model_sha = file_sha256(model_path)
    fields: dict[str, Any] = {
        "model_sha256": model_sha,
        "spec": spec.name,
        "max_batch": spec.max_batch,
        "opset": OPSET,
        "graph": GRAPH,
    }
    if spec.precision == "int8":
        from livevae.backends.quantize import SCHEMES, recipe

        # a change of rewrite, calibration or scheme makes a new graph, not a stale hit
        fields["int8"] = recipe(SCHEMES[str(spec.scheme)])
    key = key_of(fields)
    path = export_dir(model_sha, cache_dir) / f"{spec.name}-{key[:8]}.onnx"
    side = path.with_name(path.name + ".json")
    if path.is_file() and side.is_file() and not force:
        try:
            info = json.loads(side.read_text())
            if info.get("key") == key and info.get("sha256") == file_sha256(path):
                return Exported(spec, path, info["sha256"], float(info["max_abs_diff"]), cached=True)
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable sidecar means a broken entry: export again below
        log.info(f"{path}: cached export does not match its sidecar; exporting again")
    if model is None:
        model = load_model(model_path)
    base = _base_scheme(spec)
    if base is not None:  # the base scheme's graph (exported or cached) with its weights moved: no calibration
        from livevae.backends.quantize import gemm_weights

        src = export(model_path, dataclasses.replace(spec, scheme=base), cache_dir, model, force)
        log.info(f"deriving {spec.name} from {src.path.name} (once; cached in {path.parent})")
        gemm_weights(src.path, path)
    else:
        # Seconds per graph (int8: ~10 s on 2 cores): say so, or a show's first start looks hung.
        log.info(f"exporting {spec.name} for {model_path.name} (once; cached in {path.parent})")
        _export_graph(spec, model, path)
    diff = check_export(spec, model, path)
    sha = file_sha256(path)
    side.write_text(
        json.dumps(
            {
                "key": key,
                "sha256": sha,
                "model": str(model_path),
                "model_sha256": model_sha,
                "spec": spec.name,
                "opset": OPSET,
                "torch": torch.__version__,
                "exporter": "torch.onnx.export(dynamo=True)",
                "max_abs_diff": diff,
            },
            indent=1,
        )
    )
    return Exported(spec, path, sha, diff, cached=False)
