"""Untrusted model files: config bounds and tensor shapes checked from the file's header, before any network exists."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Generous bounds on a model livevae can play: far past every preset (broad2016 is 256x144, widths to 640),
# far below what makes a downloaded file allocate terabytes while building its network.
BOUNDS: dict[str, tuple[int, int]] = {
    "width": (8, 4096),
    "height": (8, 4096),
    "zdim": (1, 4096),
    "kernel": (1, 15),
    "bottleneck": (0, 4096),
}
WIDTH_BOUNDS = (1, 4096)  # each encoder conv's channels
MAX_LAYERS = 8
DEC_KERNELS = (4, 5)  # the transposed-conv kernels that upsample exactly 2x (livevae.model._up)
FLOAT_DTYPES = ("F32", "F16", "BF16")
MAX_ELEMENTS = 1 << 31  # of all weights together (8 GB of float32)


def check_config_dict(d: Mapping[str, Any], where: str) -> None:
    """Bounds of a model config as stored in a file, before ModelConfig (or the network) is built from it.
    Raises ValueError naming the key, what was found and what was expected."""
    for key, (lo, hi) in BOUNDS.items():
        if key in d:
            _int_in(d[key], lo, hi, f"{where}: config {key}")
    if "dec_kernel" in d and d["dec_kernel"] not in DEC_KERNELS:
        raise ValueError(f"{where}: config dec_kernel {d['dec_kernel']!r}; expected one of {DEC_KERNELS}")
    if "widths" in d:
        w = d["widths"]
        if not isinstance(w, list | tuple) or not 1 <= len(w) <= MAX_LAYERS:
            raise ValueError(f"{where}: config widths {str(w)[:60]}; expected a list of 1..{MAX_LAYERS} integers")
        for i, x in enumerate(w):
            _int_in(x, *WIDTH_BOUNDS, f"{where}: config widths[{i}]")


def _int_in(v: object, lo: int, hi: int, what: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{what}: {str(v)[:40]}; expected an integer in {lo}..{hi}")


def check_tensors(
    cfg: Any,
    shapes: Mapping[str, tuple[int, ...]],
    dtypes: Mapping[str, str],
    where: str,
    want: Mapping[str, tuple[int, ...]],
) -> None:
    """The file's tensors (names, shapes, dtypes from its header) are exactly what its config builds, plus the PCA
    buffers sized [K, zdim] / [K] with K <= zdim. `want`: what the config builds (model.expected_shapes), passed in
    so this module needs no network. Raises ValueError naming the first key that differs."""
    pca = {"pca_components", "pca_std"}
    missing = sorted(set(want) - set(shapes))
    extra = sorted(set(shapes) - set(want))
    if missing:
        raise ValueError(f"{where}: tensor {missing[0]!r} missing ({len(missing)} in all); expected by the config")
    if extra:
        raise ValueError(f"{where}: tensor {extra[0]!r} unexpected ({len(extra)} in all); not in the config")
    total = 0
    for k, shape in shapes.items():
        dt = dtypes.get(k, "")
        if dt not in FLOAT_DTYPES and not k.endswith("num_batches_tracked"):
            raise ValueError(f"{where}: tensor {k!r} is {dt}; expected one of {', '.join(FLOAT_DTYPES)}")
        if k not in pca and tuple(shape) != want[k]:
            raise ValueError(f"{where}: tensor {k!r} has shape {list(shape)}; expected {list(want[k])} for its config")
        n = 1
        for s in shape:
            n *= s
        total += n
    kc = shapes["pca_components"]
    ks = shapes["pca_std"]
    z = cfg.zdim
    if len(kc) != 2 or kc[1] != z or kc[0] > z or tuple(ks) != (kc[0],):
        raise ValueError(
            f"{where}: PCA tensors pca_components {list(kc)}, pca_std {list(ks)}; expected [K, {z}] and [K], K <= {z}"
        )
    if total > MAX_ELEMENTS:
        raise ValueError(f"{where}: {total} weights; expected at most {MAX_ELEMENTS}")
