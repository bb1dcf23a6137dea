"""int8 graphs for ONNX Runtime on CPU: an int8-friendly rewrite of the decoder, calibration, QDQ quantization."""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from livevae.backends import EngineError
from livevae.backends.cpuchoice import CpuInfo, read_cpu
from livevae.model import VAE

if TYPE_CHECKING:
    import onnx

# Calibration: frames decoded from the film's own latent distribution (the model file's PCA), then
# re-encoded, so the activation ranges are those of footage the model knows, with no dataset at hand.
CALIBRATION_FRAMES = 64
# Latents reach the decoder from OSC/MIDI/LFO modulation as well as from the encoder: calibrate on
# PCA samples up to this many standard deviations wide. Wider keeps far-out modulation from clipping
# but coarsens every step; 1.5 measured 39-42 dB against fp32 on the film's own frames, 3.0 only 36.
MODULATION_SPAN = 1.5
# Range per activation: the 99.99th percentile, not the extreme. Min/max let a handful of outlier
# activations set the step size for all (mean error 0.022 against 0.012 on the demo model).
CALIBRATION_PERCENTILE = 99.99
# The latent's fully connected layers (z -> the decoder's first feature map, the encoder's last map -> mu) are
# where the parameters are: 18.4M weights each for broad2016, 74 MB in float32 read for every frame.
# At or above this many weights, a Gemm's weights are stored 8-bit (weight_only_linear).
LINEAR_MIN_WEIGHTS = 1 << 20
LINEAR_BLOCK = 32  # weights per scale along the input dimension
# Everything that shapes an int8 graph besides the model and the scheme, for the export cache key.
RECIPE = (
    f"subpixel-taps-nhwc-qdq-pixelio-s2d-fc8b{LINEAR_BLOCK}-{LINEAR_MIN_WEIGHTS}-percentile{CALIBRATION_PERCENTILE}"
    f"-span{MODULATION_SPAN}-n{CALIBRATION_FRAMES}"
)
# int8 graphs take and give pixels: the encoder's input is the uint8 picture itself, read as the quantized
# tensor x' = (p - PIXEL_ZERO) * PIXEL_SCALE (the first conv's bias absorbs the half step x - x' = 1/255), and
# the decoder's output is uint8, still in its four phases (pixel_phases_to_frames interleaves them). Converting
# pixels to and from float32 NCHW around the graphs cost 0.5 ms of the demo model's 3.4 ms.
PIXEL_SCALE = 1.0 / 127.5
PIXEL_ZERO = 128
INT16_MAX = 32767


@dataclass(frozen=True)
class Int8Scheme:
    """How weights and activations are stored in an int8 graph, for the kernels of one kind of CPU."""

    name: str
    activation: str  # "u8" (QUInt8)
    weight: str  # "s8" (QInt8)
    reduce_range: bool  # 7-bit weights ([-64, 64]) instead of 8-bit ([-127, 127])
    cpus: str  # which CPUs it is for, and why
    # A scheme derived from another: that scheme's graph with every weight moved by WEIGHT_ZERO (gemm_weights),
    # so the same numbers reach ONNX Runtime's other int8 conv path. None: quantized from the model itself.
    base: str | None = None

    @property
    def weight_max(self) -> int:
        """The largest |stored weight|: 64 or 127, and one more where the weights are moved by WEIGHT_ZERO."""
        return (64 if self.reduce_range else 127) + (1 if self.base else 0)

    def pair_sum_bound(self) -> int:
        """The largest |a0*w0 + a1*w1| of u8 activations and these weights: what x86 vpmaddubsw (the int8
        kernel of CPUs without VNNI) holds in a saturating int16 before it widens to 32 bits."""
        return 2 * 255 * self.weight_max


# ONNX Runtime's quantization guide: on x86 without VNNI the u8 x s8 kernels (vpmaddubsw) add pairs of
# products in 16 bits and saturate; reduce_range (7-bit weights) or U8U8 avoids it. VNNI/AMX (vpdpbusd,
# tdpbusd) and Arm (widening multiplies, sdot/udot) accumulate in 32 bits and take full 8-bit weights.
SCHEMES = {
    "u8s8": Int8Scheme("u8s8", "u8", "s8", False, "x86 with VNNI/AMX, Arm: u8 x s8 products summed in 32 bits"),
    "u8s8-w7": Int8Scheme(
        "u8s8-w7",
        "u8",
        "s8",
        True,
        "x86 without VNNI (AVX2, AVX-512 without VNNI) and unknown CPUs: 7-bit "
        "weights keep vpmaddubsw's pair sums (at most 2 x 255 x 64 = 32640) inside int16",
    ),
    "u8s8-gemm": Int8Scheme(
        "u8s8-gemm",
        "u8",
        "s8",
        False,
        "where u8s8 is exact, when it measures faster: the u8s8 graph with a weight zero point of -1, which "
        "moves ONNX Runtime's QLinearConv from its direct symmetric conv kernels to im2col and its int8 GEMM, "
        "the one that uses AMX tiles on CPUs that have them (Sapphire Rapids and later); the same outputs",
        base="u8s8",
    ),
}
# The zero point gemm_weights gives every weight. ONNX Runtime's QLinearConv runs weights whose zero point is 0
# on its direct symmetric conv kernels (VNNI at best), and any other on im2col + MLAS's int8 GEMM, which uses AMX
# where the CPU has it: the demo decoder 1.43 -> 0.99 ms a frame at batch 16 on one Sapphire Rapids core (ONNX
# Runtime's profiler; its encoder already takes the GEMM path), with bit-identical outputs (each weight q is
# stored as q - 1, so (q - 1) - (-1) = q). Which path wins depends on CPU, batch and threads: it is measured.
WEIGHT_ZERO = -1


def scheme_for(cpu: CpuInfo) -> Int8Scheme:
    """The int8 scheme that is exact on this CPU's kernels: full 8-bit weights where products are summed in
    32 bits (x86 VNNI/AMX, every Arm), 7-bit weights elsewhere (x86 without VNNI, and anything unknown)."""
    if cpu.vnni or cpu.arm:
        return SCHEMES["u8s8"]
    return SCHEMES["u8s8-w7"]


def candidate_schemes(cpu: CpuInfo) -> list[Int8Scheme]:
    """The int8 schemes the timed choice measures on this CPU: the exact one (scheme_for) and every scheme
    derived from it. Which of them is fastest depends on the CPU's kernels (AMX or not), so it is measured."""
    exact = scheme_for(cpu)
    return [exact, *(s for s in SCHEMES.values() if s.base == exact.name)]


def accurate_schemes(cpu: CpuInfo) -> list[Int8Scheme]:
    """Every scheme whose products cannot saturate on this CPU's kernels (what tests can run for real here)."""
    exact = {s.name for s in candidate_schemes(cpu)}
    return [s for s in SCHEMES.values() if s.name in exact or s.reduce_range]


def recipe(scheme: Int8Scheme) -> str:
    """The export cache key's int8 part: calibration recipe plus scheme, so a cache folder copied to another
    kind of CPU exports the graph that CPU needs instead of reusing one that saturates there."""
    return f"{RECIPE}-{scheme.name}"


def cpu_has_int8_dot() -> bool:
    """True when the CPU has int8 dot-product instructions (x86 VNNI/AMX, Arm dotprod); a hint for logs.
    Whether int8 is used is measured (cpuchoice.choose_precision), not read from this."""
    cpu = read_cpu()
    return cpu.vnni or cpu.dotprod


class SubpixelConvTranspose(nn.Module):
    """A stride-2 ConvTranspose2d (and the eval BatchNorm2d after it) as ordinary convs + a pixel shuffle.

    The same function, regrouped: output pixel (2m + ry, 2n + rx) of a transposed conv only sums
    input pixels near (m, n) through the kernel taps of its phase (ry, rx). ONNX Runtime quantizes Conv to a fused
    int8 QLinearConv but runs ConvTranspose in float between dequantize/quantize pairs, which made an int8 decoder
    no faster than fp32; fp32 graphs keep the ConvTranspose.
    - Phases with equal tap counts (k=4: 2x2 each): one conv with 4 * Cout channels over a 2x2 window, then a
      pixel shuffle and a one-pixel crop (self.crop), since the phases' windows start a row apart.
    - Unequal (k=5: 3x3, 3x2, 2x3, 2x2): one conv per phase with exactly its taps, concatenated.
    Either way k * k multiply-adds per input channel and 2x2 outputs, as many as the transposed conv (taps()).
    The first version ran one 3x3 conv over the union of the phases' windows: 36 per 16 for k=4, 36 per 25 for
    k=5, and on AVX2 the demo decoder's int8 graph was then barely faster than fp32 (3.0 against 3.9 ms).
    """

    def __init__(self, ct: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None = None, act: nn.Module | None = None) -> None:
        super().__init__()
        # The elementwise activation after the layer, applied before the shuffle (the same function): ORT fuses
        # a ReLU into its QLinearConv, and the shuffle then moves uint8 instead of float.
        self.act = act if act is not None else nn.Identity()
        self.pixels = False  # set by int8_friendly(pixel_io=True) on the last layer: uint8 phases out
        s = ct.stride[0]
        if ct.stride != (2, 2) or ct.groups != 1 or ct.dilation != (1, 1) or ct.kernel_size[0] != ct.kernel_size[1]:
            raise EngineError(f"int8 rewrite: {ct} is not a square stride-2 transposed conv")
        if isinstance(ct.padding, str) or ct.padding[0] != ct.padding[1]:
            raise EngineError(f"int8 rewrite: {ct} has no symmetric numeric padding")
        k, p = int(ct.kernel_size[0]), int(ct.padding[0])
        if ct.output_padding[0] + k - 2 * p - s != 0:  # output (H - 1) s - 2p + k + op must be exactly 2H
            raise EngineError(f"int8 rewrite: {ct} does not upsample by exactly 2")
        w = ct.weight.detach().float()  # [Cin, Cout, k, k]
        cin, cout = w.shape[:2]
        # Output o = s * m + r receives input i = m - d through kernel tap k = s * d + r + p.
        taps = {r: {d: s * d + r + p for d in range(-k, k + 1) if 0 <= s * d + r + p < k} for r in range(s)}
        # Each phase reads only its own taps: a window of `size` input pixels (2 for k=4), not the union of all
        # phases' (3 for k=4). Phase r's window is conv output row m + shift[r] of the input padded by `front`;
        # so the conv has (k/s)^2 taps per output, as many multiply-adds as the transposed conv itself, where one
        # 3x3 conv over the union did 9/4 of them on zero weights (on AVX2 that made int8 barely beat fp32).
        top = {r: max(t) for r, t in taps.items()}
        size = max(max(t) - min(t) + 1 for t in taps.values())
        front = max(top.values())
        self.shift = [front - top[r] for r in range(s)]  # >= 0, rising with r
        back = max(self.shift) + size - 1 - front  # conv output rows H + max(shift): every phase's window fits
        # Output pixel s*m + r is conv row u = m + shift[r]: pixel s*u + slot[r] - crop of the plain pixel shuffle
        # of the conv's output, when phase r's channels sit in shuffle slot slot[r] = r - s * shift[r] + crop. So
        # a shuffle and one crop place every phase, where four slices and a concat cost 0.3 ms in the demo decoder.
        self.crop = next(
            c for c in range(s * max(self.shift) + 1)
            if sorted(r - s * self.shift[r] + c for r in range(s)) == list(range(s))
        )  # fmt: skip
        slot = [r - s * self.shift[r] + self.crop for r in range(s)]
        # Output channel order (slot y, slot x, c): phase-major, so that the channels-last shuffle in forward moves
        # whole runs of C values (DepthToSpace's (c, ry, rx) order cost 40% of the int8 decoder's time).
        weight = torch.zeros(s, s, cout, cin, size, size)
        for ry in range(s):
            for rx in range(s):
                for dy, ky in taps[ry].items():
                    for dx, kx in taps[rx].items():
                        # input offset -d of phase r sits at kernel index top[r] - d
                        weight[slot[ry], slot[rx], :, :, top[ry] - dy, top[rx] - dx] = w[:, :, ky, kx].t()
        bias = ct.bias.detach().float() if ct.bias is not None else torch.zeros(cout)
        if bn is not None:  # fold eval-mode batch norm: y = (x - mean) * gamma / sqrt(var + eps) + beta
            assert bn.running_mean is not None and bn.running_var is not None
            scale = bn.weight.detach().float() / torch.sqrt(bn.running_var.float() + bn.eps)
            weight = weight * scale[None, None, :, None, None, None]
            bias = (bias - bn.running_mean.float()) * scale + bn.bias.detach().float()
        self.pad = (front, max(back, 0))  # left/top, right/bottom: a symmetric 1 for k=4, p=1
        self.conv = nn.Conv2d(cin, cout * s * s, size, padding=front if front == self.pad[1] else 0)
        self.conv.weight.data = weight.reshape(cout * s * s, cin, size, size)
        assert self.conv.bias is not None
        self.conv.bias.data = bias.repeat(s * s)
        self.s = s
        # Phases of unequal tap counts (k=5: 3, 2): one conv over the largest window still multiplies zeros (36 taps
        # per 25 for k=5), so each phase gets its own conv of exactly its taps, the four concatenated.
        self.phase_convs: nn.ModuleList | None = None
        self.phase_pads: list[tuple[int, int, int, int]] = []
        if len({len(t) for t in taps.values()}) > 1:
            bottom = {r: min(t) for r, t in taps.items()}
            full = weight.reshape(s, s, cout, cin, size, size)
            convs = []
            for ry in range(s):
                for rx in range(s):
                    ny, nx = top[ry] - bottom[ry] + 1, top[rx] - bottom[rx] + 1
                    conv = nn.Conv2d(cin, cout, (ny, nx))
                    conv.weight.data = full[slot[ry], slot[rx], :, :, :ny, :nx].contiguous()
                    assert conv.bias is not None
                    conv.bias.data = bias.clone()
                    convs.append(conv)
                    # phase r at m reads input m - top[r] .. m - bottom[r]: that many rows of zeros before and after
                    self.phase_pads.append((top[rx], -bottom[rx], top[ry], -bottom[ry]))
            self.phase_convs = nn.ModuleList(convs)
            self.crop = 0  # each phase's conv gives exactly its H x W

    def taps(self) -> int:
        """Multiply-adds per input channel for each 2x2 block of outputs: k * k, as in the transposed conv."""
        if self.phase_convs is not None:
            return sum(int(np.prod(conv.kernel_size)) for conv in self.phase_convs if isinstance(conv, nn.Conv2d))
        return self.s * self.s * int(np.prod(self.conv.kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, Cin, H, W] -> [N, Cout, 2H, 2W]
        h, w = x.shape[2:]
        if self.phase_convs is not None:  # [N, s*s*C, H, W], channels (ry, rx, c)
            y = torch.cat([c(F.pad(x, p)) for c, p in zip(self.phase_convs, self.phase_pads, strict=True)], dim=1)
        else:
            if self.conv.padding == (0, 0):
                x = F.pad(x, (self.pad[0], self.pad[1], self.pad[0], self.pad[1]))
            y = self.conv(x)  # [N, s*s*C, H + max(shift), W + max(shift)], channels (slot y, slot x, c)
        n, _, hh, ww = y.shape
        if self.pixels:
            # The conv's output before its activation, left in its phases [N, H', W', slot y, slot x, C]: quantized,
            # that is the graph's uint8 output (uint8_output), and a 256-entry table does tanh and the pixel
            # conversion outside (OUTPUT_LUT_KEY), the interleave and this crop too (OUTPUT_CROP_KEY). In the
            # graph they cost 0.15 ms of float ops, and interleaving 3-byte pixels 0.36 ms; outside, 0.05 ms for
            # both (frames.pixel_phases_to_frames).
            return y.permute(0, 2, 3, 1).reshape(n, hh, ww, self.s, self.s, -1)
        # the activation is elementwise, so before the shuffle: ONNX Runtime fuses a ReLU into its QLinearConv
        return self.phases_to_output(self.act(y).permute(0, 2, 3, 1).reshape(n, hh, ww, self.s, self.s, -1), h, w)

    def phases_to_output(self, p: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Phases [N, H', W', s, s, C] -> the layer's output [N, C, s*h, s*w]: the channels-last shuffle, then the
        crop of the phases' overhang. (forward's tail; for the pixel layer's phases, what forward gives without
        self.pixels before the activation: for tests and the export's check.)"""
        n, hh, ww, s = p.shape[:4]
        # [N, H', W', sy, sx, C] -> [N, H', sy, W', sx, C] moves C-long runs, and ONNX Runtime cancels the
        # NCHW<->NHWC transposes against those its int8 convs insert around themselves.
        y = p.permute(0, 1, 3, 2, 4, 5).reshape(n, hh * s, ww * s, -1)
        if (hh, ww) != (h, w) or self.crop:  # the per-phase convs give exactly h x w: nothing to crop
            y = y[:, self.crop : self.crop + h * s, self.crop : self.crop + w * s]
        return y.permute(0, 3, 1, 2)


ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh)


class SpaceToDepthConv(nn.Module):
    """A stride-2 Conv2d as a stride-1 conv over 2x2 pixel blocks: input [N, 4C, H/2, W/2], channels (ry, rx, c).

    The same function, regrouped: output i reads input rows 2i - p .. 2i - p + k - 1, which are whole blocks once
    the kernel gets f = p % 2 zero taps in front (and one behind to make it even). The encoder's first conv
    reads 3 channels, and ONNX Runtime's int8 conv gathers 3-byte pixels for it: 0.47 ms for the demo model.
    Over 12-channel blocks the same conv took 0.29 ms, though it does 6x6/5x5 of the multiply-adds.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        k, p = int(conv.kernel_size[0]), conv.padding[0] if isinstance(conv.padding, tuple) else -1
        if conv.stride != (2, 2) or conv.kernel_size != (k, k) or conv.padding != (p, p) or conv.groups != 1:
            raise EngineError(f"int8 rewrite: {conv} is not a square stride-2 conv with symmetric padding")
        f = p % 2
        kk = k + f + (k + f) % 2  # kernel taps padded to whole blocks
        kb = kk // 2
        w = F.pad(conv.weight.detach().float(), (f, kk - k - f, f, kk - k - f))  # [Co, C, kk, kk]
        co, c = w.shape[:2]
        w = w.view(co, c, kb, 2, kb, 2).permute(0, 3, 5, 1, 2, 4).reshape(co, 4 * c, kb, kb)  # (ry, rx, c) channels
        self.pad = ((p + f) // 2, kb - 1 - (p + f) // 2)  # blocks before and after, each side
        self.conv = nn.Conv2d(4 * c, co, kb, padding=self.pad[0] if self.pad[0] == self.pad[1] else 0)
        self.conv.weight.data = w.contiguous()
        assert self.conv.bias is not None
        self.conv.bias.data = conv.bias.detach().float().clone() if conv.bias is not None else torch.zeros(co)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 4C, H/2, W/2] -> [N, Co, H/2, W/2]
        if self.conv.padding == (0, 0):
            x = F.pad(x, (self.pad[0], self.pad[1], self.pad[0], self.pad[1]))
        return self.conv(x)


def to_blocks(x: np.ndarray) -> np.ndarray:
    """[N, H, W, C] -> [N, H/2, W/2, 4C], channels (ry, rx, c): what an int8 encoder takes. Moved as 2C-byte
    items for uint8 (the frame's rows of two pixels), 0.02 ms for a 256x144 frame."""
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        raise EngineError(f"encode: frames of {w}x{h}; expected even sizes for the int8 encoder")
    if x.dtype == np.uint8:
        pairs = np.ascontiguousarray(x).reshape(n, h // 2, 2, w // 2, 2 * c).view(np.dtype((np.void, 2 * c)))
        return (
            np.ascontiguousarray(pairs[..., 0].transpose(0, 1, 3, 2)).view(np.uint8).reshape(n, h // 2, w // 2, 4 * c)
        )
    return np.ascontiguousarray(x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)).reshape(
        n, h // 2, w // 2, 4 * c
    )


def int8_friendly(model: VAE, pixel_io: bool = False) -> VAE:
    """A copy of the model whose decoder has every ConvTranspose2d (+ BatchNorm2d + activation) rewritten as
    SubpixelConvTranspose. Same outputs to float rounding (checked at export).

    pixel_io: the graphs int8 exports are made from. The encoder then takes x' = (p - 128) / 127.5 in 2x2 blocks
    (to_blocks), the dequantized pixel (its first conv's bias moved by the half step, so it computes the same
    function of p, and the conv regrouped as SpaceToDepthConv), and
    the decoder ends in uint8 phases [N, H/2, W/2, 2, 2, 3] (pixel_phases_to_frames).
    """
    out = copy.deepcopy(model).eval()
    layers = list(out.decoder.convs)
    new: list[nn.Module] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.ConvTranspose2d):
            j = i + 1
            bn = layers[j] if j < len(layers) and isinstance(layers[j], nn.BatchNorm2d) else None
            j += bn is not None
            act = layers[j] if j < len(layers) and isinstance(layers[j], ELEMENTWISE) else None
            j += act is not None
            new.append(SubpixelConvTranspose(layer, bn, act))  # type: ignore[arg-type]
            i = j
            continue
        new.append(layer)
        i += 1
    out.decoder.convs = nn.Sequential(*new)
    if pixel_io:
        last = new[-1]
        if not isinstance(last, SubpixelConvTranspose) or not isinstance(last.act, nn.Tanh):
            raise EngineError(f"int8 rewrite: the decoder ends in {last}; expected a stride-2 transposed conv + Tanh")
        last.pixels = True
        first = out.encoder.convs[0]
        if not isinstance(first, nn.Conv2d) or first.bias is None:
            raise EngineError(f"int8 rewrite: the encoder starts with {first}; expected a Conv2d with a bias")
        with torch.no_grad():  # x = x' + (PIXEL_ZERO - 127.5) * PIXEL_SCALE: conv(x) = conv(x') + that times sum(W)
            first.bias += (PIXEL_ZERO - 127.5) * PIXEL_SCALE * first.weight.sum(dim=(1, 2, 3))
        out.encoder.convs[0] = SpaceToDepthConv(first)  # reads [N, 12, H/2, W/2] blocks (to_blocks)
    return out


def frames_to_pixel_input(frames: np.ndarray) -> np.ndarray:
    """float32 [N, 3, H, W] in [-1, 1] -> the int8 encoder's float input x' [N, H/2, W/2, 12] (calibration only):
    the pixel p = round((x + 1) * 127.5), then (p - PIXEL_ZERO) * PIXEL_SCALE, so it quantizes back to p exactly."""
    p = np.rint((np.clip(frames, -1.0, 1.0) + 1.0) * 127.5)
    return to_blocks(((p - PIXEL_ZERO) * PIXEL_SCALE).astype(np.float32).transpose(0, 2, 3, 1))


def calibration_data(model: VAE, n: int = CALIBRATION_FRAMES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(frames [n, 3, H, W] float32 in [-1, 1], z [2n, zdim] float32) for calibration and int8 parity checks.

    z: samples of the film's latent PCA (random directions' coefficients up to MODULATION_SPAN standard
    deviations) when the model file has one, else N(0, I); frames: their decodings; the decoder's z are
    the samples plus the encoder's latents of those frames, which also carry the off-PCA residual.
    """
    g = torch.Generator().manual_seed(seed)
    zdim = model.cfg.zdim
    comps, std = model.pca_components, model.pca_std
    with torch.inference_mode():
        if comps.numel() and float(std.abs().sum()) > 0:
            coef = torch.randn(n, len(std), generator=g) * std  # [n, K]
            # a spread of amplitudes: most samples natural, some pushed to the modulation range
            amp = torch.linspace(0.5, MODULATION_SPAN, n)[:, None]
            z = model.pca_mean + (coef * amp) @ comps  # [n, zdim]
        else:
            z = torch.randn(n, zdim, generator=g)
        frames = torch.cat([model.decoder(z[i : i + 16]) for i in range(0, n, 16)])  # [n, 3, H, W]
        mu = torch.cat([model.encoder(frames[i : i + 16])[0] for i in range(0, n, 16)])  # [n, zdim]
    return frames.numpy().astype(np.float32), torch.cat([z, mu]).numpy().astype(np.float32)


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over one input, in batches of `batch` (1 = static)."""

    def __init__(self, name: str, data: np.ndarray, batch: int) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(
            {name: data[i : i + batch]} for i in range(0, len(data) - batch + 1, batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_graph(
    fp32_path: Path,
    out_path: Path,
    input_name: str,
    data: np.ndarray,
    batch: int,
    scheme: Int8Scheme,
    pixel_input: bool = False,
    tanh_output: bool = False,
    output_crop: int = 0,
) -> None:
    """Static QDQ quantization of an fp32 graph: per-channel s8 weights (7-bit with scheme.reduce_range),
    u8 activations, percentile calibration on `data`. The big Gemms (the latent's layers) keep float activations
    and get 8-bit weights in blocks (weight_only_linear), so modulated z is never clipped to a calibrated range.
    The shuffles' Reshape/Transpose/Slice/Concat move uint8 too.

    pixel_input: the input x' is quantized with PIXEL_SCALE and PIXEL_ZERO, and the graph then takes the
    uint8 pixels themselves (uint8_input), so nothing converts a frame to float on the way in.
    tanh_output: the graph gives its last conv's uint8 output, with the table that turns it into pixels stored
    in the graph's metadata (uint8_output)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    extra: dict[str, object] = {"CalibPercentile": CALIBRATION_PERCENTILE}
    pixel_tensor = ""
    pre = out_path.with_name(out_path.stem + ".pre.onnx")
    tmp = out_path.with_name(out_path.stem + ".tmp.onnx")
    try:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        if pixel_input:  # quantize the input's NCHW view at the pixels' own step
            pixel_tensor = _through_layout(pre, input_name)
            pixel = {"scale": np.array(PIXEL_SCALE, np.float32), "zero_point": np.array(PIXEL_ZERO, np.uint8)}
            extra["TensorQuantOverrides"] = {pixel_tensor: [pixel]}
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its histogram progress
            quantize_static(
                str(pre),
                str(tmp),
                _Reader(input_name, data, batch),  # type: ignore[arg-type]
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv", "Relu", "LeakyRelu", "Reshape", "Transpose", "Slice", "Concat", "Pad"],
                per_channel=True,
                reduce_range=scheme.reduce_range,
                activation_type=types[scheme.activation],
                weight_type=types[scheme.weight],
                calibrate_method=CalibrationMethod.Percentile,
                extra_options=extra,
            )
        if pixel_input:
            uint8_input(tmp, input_name, pixel_tensor)
        if tanh_output:
            uint8_output(tmp, output_crop)
        weight_only_linear(tmp, LINEAR_MIN_WEIGHTS)  # the global, read now (tests lower it)
        os.replace(tmp, out_path)
    finally:
        for p in (pre, tmp):
            p.unlink(missing_ok=True)


def weight_only_linear(path: Path, min_weights: int = LINEAR_MIN_WEIGHTS) -> None:
    """Store a graph's big float Gemms (y = x W^T + b) as ONNX Runtime's MatMulNBits, 8-bit weights in blocks of
    LINEAR_BLOCK with a scale each, plus the bias Add. Its input is quantized per block of 32 values at run time
    (accuracy level 4: int8 products), so z keeps its own scale in every block, however far modulation moves it.
    broad2016's two such layers took 3.5-3.8 ms a frame each on 2 AVX2 cores, memory-bound on their float weights."""
    import logging

    import onnx
    from onnx import numpy_helper

    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)  # the module calls logging.basicConfig at import: with a handler there, that does nothing
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    finally:
        root.removeHandler(guard)
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

    m = onnx.load(str(path))
    g = m.graph
    init = {i.name: i for i in g.initializer}
    changed: list[str] = []
    for node in list(g.node):
        if node.op_type != "Gemm" or len(node.input) < 2 or node.input[1] not in init:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            continue
        w = numpy_helper.to_array(init[node.input[1]])
        if w.dtype != np.float32 or w.ndim != 2 or w.size < min_weights:
            continue
        wt = np.ascontiguousarray(w.T if attrs.get("transB", 0) else w)  # [K, N]
        name = node.name or node.output[0]
        wname = f"{name}_weight_kn"
        g.initializer.append(numpy_helper.from_array(wt, wname))
        idx = list(g.node).index(node)
        mm_out = f"{name}_matmul" if len(node.input) > 2 and node.input[2] else node.output[0]
        new = [onnx.helper.make_node("MatMul", [node.input[0], wname], [mm_out], name=f"{name}_matmul")]
        if mm_out != node.output[0]:
            new.append(onnx.helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=f"{name}_bias"))
        g.node.remove(node)
        for k, n in enumerate(new):
            g.node.insert(idx + k, n)
        changed.append(f"{name}_matmul")
    if not changed:
        return
    used = {i for n in g.node for i in n.input}
    for i in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(i)
    q = MatMulNBitsQuantizer(
        m, bits=8, block_size=LINEAR_BLOCK, is_symmetric=True, accuracy_level=4, nodes_to_include=changed
    )
    with contextlib.redirect_stdout(io.StringIO()):
        q.process()
    q.model.save_model_to_file(str(path))


LAYOUT_OPS = ("Transpose", "Reshape")
OUTPUT_LUT_KEY = "livevae.output_lut"  # metadata: hex of 256 bytes, uint8 graph output -> pixel level
OUTPUT_CROP_KEY = "livevae.output_crop"  # metadata: pixels the output phases overhang each side of the frame


def _through_layout(path: Path, name: str) -> str:
    """The tensor a graph input becomes after the layout-only ops that read it (the NHWC -> NCHW Transpose)."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    while True:
        readers = [n for n in nodes if name in n.input]
        if len(readers) != 1 or readers[0].op_type not in LAYOUT_OPS:
            return name
        name = readers[0].output[0]


def _qparams(g: onnx.GraphProto, node: onnx.NodeProto) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(scale, zero point) of a QuantizeLinear/DequantizeLinear, from the graph's initializers (None if absent)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in g.initializer if t.name in node.input[1:3]}
    got = [numpy_helper.to_array(inits[n]) if n in inits else None for n in node.input[1:3]]
    return got[0], got[1] if len(got) > 1 else None


def _rewire(g: onnx.GraphProto, old: str, new: str) -> None:
    """Every node that reads tensor `old` reads `new` instead."""
    for n in g.node:
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = new


def uint8_input(path: Path, input_name: str, tensor: str) -> None:
    """Make a QDQ graph's float input uint8: drop the QuantizeLinear that reads `tensor` (the input, or its view
    through layout-only ops) and feed its consumers that tensor, now uint8. Only exact when the QuantizeLinear
    has PIXEL_SCALE and PIXEL_ZERO (the caller's override), which is checked here, so a changed quantizer cannot
    silently shift every pixel."""
    import onnx

    m = onnx.load(str(path))
    g = m.graph
    quants = [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor]
    readers = [n for n in g.node if tensor in n.input]
    if len(quants) != 1 or len(readers) != 1:
        raise EngineError(f"{path}: {tensor!r} feeds {[n.op_type for n in readers]}; expected one QuantizeLinear")
    q = quants[0]
    scale, zero = _qparams(g, q)
    exact = scale is not None and zero is not None and zero.dtype == np.uint8
    if not exact or abs(float(scale) - PIXEL_SCALE) > 1e-9 or int(zero) != PIXEL_ZERO:  # type: ignore[arg-type]
        found = f"scale {float(scale):.6g}, zero point {int(zero)}" if exact else f"scale {scale}, zero point {zero}"  # type: ignore[arg-type]
        raise EngineError(
            f"{path}: {tensor!r} quantized with {found}; expected scale {PIXEL_SCALE:.6g}, zero point {PIXEL_ZERO}"
        )
    _rewire(g, q.output[0], tensor)
    g.node.remove(q)
    (inp,) = [i for i in g.input if i.name == input_name]
    inp.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    del g.value_info[:]  # shape inference's float annotations of the old input chain; ORT infers again
    onnx.save(m, str(path))


def gemm_weights(src: Path, dst: Path) -> int:
    """Write `src`'s QDQ graph to `dst` with every symmetric int8 weight stored as q + WEIGHT_ZERO under the zero
    point WEIGHT_ZERO: the same dequantized weights, (q + WEIGHT_ZERO) - WEIGHT_ZERO = q, so the same outputs,
    but run on ONNX Runtime's GEMM conv path (see WEIGHT_ZERO). Returns how many weights moved. EngineError when
    a weight is not symmetric int8 in [-127, 127], the only kind that moves without loss."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    moved = 0
    for node in g.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue  # activations are dequantized from tensors, weights from initializers
        w = numpy_helper.to_array(inits[node.input[0]])
        if w.dtype != np.int8:
            continue  # the Gemm's float weights and int32 biases are not int8 weights
        zero = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] in inits else None
        if zero is None or np.any(zero != 0) or w.size == 0 or int(w.min()) < -127:
            found = f"zero point {None if zero is None else zero.ravel()[:4]}, min {int(w.min()) if w.size else None}"
            raise EngineError(f"{src}: weight {node.input[0]!r} has {found}; expected symmetric int8 in [-127, 127]")
        moved_w = (w.astype(np.int16) + WEIGHT_ZERO).astype(np.int8)
        inits[node.input[0]].CopyFrom(numpy_helper.from_array(moved_w, node.input[0]))
        inits[node.input[2]].CopyFrom(numpy_helper.from_array(np.full_like(zero, WEIGHT_ZERO), node.input[2]))
        moved += 1
    if not moved:
        raise EngineError(f"{src}: no int8 weights found; expected a QDQ graph (quantize_graph)")
    tmp = dst.with_name(dst.stem + ".tmp.onnx")
    try:
        onnx.save(m, str(tmp))
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return moved


def tanh_lut(scale: float, zero_point: int) -> np.ndarray:
    """uint8 [256]: a quantized pre-tanh level q -> the pixel round((tanh((q - zero_point) * scale) + 1) * 127.5),
    rounded half to even like preprocess.to_uint8; the same function the float ops after the last conv computed."""
    q = np.arange(256, dtype=np.float32)
    y = np.tanh((q - np.float32(zero_point)) * np.float32(scale))
    return np.rint((np.clip(y, -1.0, 1.0) + 1.0) * np.float32(127.5)).astype(np.uint8)


def uint8_output(path: Path, crop: int = 0) -> None:
    """Make a QDQ graph's single float output uint8: drop the DequantizeLinear it comes from (through layout-only
    ops), so the graph ends in the last conv's quantized output, and store tanh_lut of that DequantizeLinear's
    scale and zero point under OUTPUT_LUT_KEY, and `crop` (the phases' overhang, SubpixelConvTranspose.crop)
    under OUTPUT_CROP_KEY."""
    import onnx

    m = onnx.load(str(path))
    g = m.graph
    if len(g.output) != 1:
        raise EngineError(f"{path}: {len(g.output)} outputs; expected 1")
    producer = {o: n for n in g.node for o in n.output}
    name = g.output[0].name
    while name in producer and producer[name].op_type in LAYOUT_OPS:
        name = producer[name].input[0]
    dq = producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear":
        raise EngineError(
            f"{path}: the output comes from {dq.op_type if dq else 'an input'}; expected DequantizeLinear"
        )
    scale, zero = _qparams(g, dq)
    if scale is None or zero is None or scale.size != 1 or zero.dtype != np.uint8:
        raise EngineError(
            f"{path}: output dequantized with scale {scale}, zero point {zero}; expected per-tensor uint8"
        )
    _rewire(g, dq.output[0], dq.input[0])
    if g.output[0].name == dq.output[0]:  # no layout op after it: the output is renamed onto the uint8 tensor
        for n in g.node:
            for i, out in enumerate(n.output):
                if out == dq.input[0]:
                    n.output[i] = g.output[0].name
    g.node.remove(dq)
    g.output[0].type.tensor_type.elem_type = onnx.TensorProto.UINT8
    del g.value_info[:]
    lut = tanh_lut(float(scale), int(zero))
    m.metadata_props.append(onnx.StringStringEntryProto(key=OUTPUT_LUT_KEY, value=lut.tobytes().hex()))
    m.metadata_props.append(onnx.StringStringEntryProto(key=OUTPUT_CROP_KEY, value=str(int(crop))))
    onnx.save(m, str(path))


def output_lut(meta: dict[str, str], where: object) -> np.ndarray:
    """The table a uint8 int8 decoder graph stores (uint8_output), from its metadata; EngineError if missing."""
    text = meta.get(OUTPUT_LUT_KEY, "")
    try:
        lut = np.frombuffer(bytes.fromhex(text), np.uint8)
    except ValueError:
        lut = np.zeros(0, np.uint8)
    if lut.size != 256:
        raise EngineError(f"{where}: metadata {OUTPUT_LUT_KEY} holds {lut.size} bytes; expected 256 (export again)")
    return lut


def output_crop(meta: dict[str, str], where: object) -> int:
    """The overhang a uint8 int8 decoder graph stores (uint8_output): 0 where the key is absent (graphs made
    before it, whose phases were exactly the frame); EngineError if it is not a small non-negative integer."""
    text = meta.get(OUTPUT_CROP_KEY, "0")
    if not text.isdigit() or int(text) > 8:
        raise EngineError(
            f"{where}: metadata {OUTPUT_CROP_KEY} is {text[:20]!r}; expected an integer 0-8 (export again)"
        )
    return int(text)
