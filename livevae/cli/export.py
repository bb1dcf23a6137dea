"""`livevae export`: export a model to ONNX (checked) and build TensorRT engines ahead of a show, into the cache."""

from __future__ import annotations

import argparse
import time

from livevae.backends import EngineError
from livevae.backends.cache import cache_root
from livevae.backends.onnx_export import DEFAULT_MAX_BATCH, PRECISIONS, NetSpec, export, live_specs, offline_specs
from livevae.cli.main import ExamplesFormatter

EXAMPLES = """examples:
  livevae export runs/br/model.safetensors                      # ONNX fp32+fp16(+int8), batch 1 and dynamic
  livevae export runs/br/model.safetensors --backend tensorrt   # fp16 engines for this GPU, before the show
  LIVEVAE_CACHE=/show/cache livevae export model.safetensors --batch live --precision fp32
"""


def specs_for(batch: str, precisions: list[str], max_batch: int) -> list[NetSpec]:
    """The NetSpecs named by --batch (live = static 1, offline = dynamic, both) and --precision."""
    if batch not in ("live", "offline", "both"):
        raise EngineError(f"--batch {batch!r}; expected live, offline or both")
    out: list[NetSpec] = []
    for p in precisions:
        if p not in PRECISIONS:
            raise EngineError(f"--precision {p!r}; expected some of {', '.join(PRECISIONS)}")
        if batch in ("live", "both"):
            out += live_specs(p)
        if batch in ("offline", "both"):
            out += offline_specs(p, max_batch)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Export the encoder (frames -> z = mean) and decoder (z -> frames) to ONNX, each checked by onnx.checker "
        "and ONNX Runtime parity with PyTorch, and optionally build TensorRT engines. Everything is cached on "
        "the model file's sha256 under --cache-dir ($LIVEVAE_CACHE, default ~/.cache/livevae), so the show "
        "starts without exporting or building."
    )
    p.epilog = EXAMPLES
    p.formatter_class = ExamplesFormatter
    p.add_argument("model", help="livevae model file (.safetensors)")
    p.add_argument("--backend", choices=["onnx", "tensorrt"], default="onnx", help="what to build")
    p.add_argument(
        "--precision",
        default=None,
        help="comma-separated fp32,fp16,int8 (int8: ONNX Runtime CPU, the scheme for this CPU); None = all three "
        "for onnx (then int8 and fp32 are timed and the faster is cached for `auto`), fp16 for tensorrt",
    )
    p.add_argument(
        "--batch",
        default="both",
        choices=["live", "offline", "both"],
        help="live = static batch 1, offline = dynamic batch",
    )
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="largest dynamic batch (TensorRT profile)")
    p.add_argument("--cache-dir", default=None, help="cache folder; None = $LIVEVAE_CACHE or ~/.cache/livevae")
    p.add_argument("--force", action="store_true", help="export, build and measure again even when cached")
    p.add_argument("--threads", type=int, default=None, help="CPU threads the int8/fp32 choice is measured with")


def run(args: argparse.Namespace) -> int:
    default = "fp16"
    if args.backend == "onnx":
        default = "fp32,fp16,int8"  # int8 and fp32 both: the CPU live path runs whichever measures faster here
    precisions = [s for s in (args.precision or default).split(",") if s]
    specs = specs_for(args.batch, precisions, args.max_batch)
    print(f"cache: {cache_root(args.cache_dir)}")
    if args.backend == "tensorrt":
        from livevae.backends.tensorrt_backend import build_all, require_tensorrt

        require_tensorrt()  # fail before spending time on ONNX exports
        for spec in specs:
            t = time.perf_counter()
            (path,) = build_all(args.model, [spec], args.cache_dir, args.force)
            print(f"{spec.name:18s} {path}  ({time.perf_counter() - t:.1f} s)")
        return 0
    for spec in specs:
        t = time.perf_counter()
        e = export(args.model, spec, args.cache_dir, force=args.force)
        state = "cached" if e.cached else f"exported in {time.perf_counter() - t:.1f} s"
        print(f"{spec.name:18s} {e.path}  max |ORT - torch fp32| = {e.max_abs_diff:.2g}  ({state})")
    live = {s.precision for s in specs if s.batch == 1}
    if {"fp32", "int8"} <= live:  # what `auto` will run on this CPU, measured now so the show starts at once
        from livevae.backends.cpuchoice import choose_precision

        c = choose_precision(args.model, 1, args.cache_dir, args.threads, logger=lambda s: None, force=args.force)
        print(f"CPU choice (ONNX Runtime, live): {c.precision}: {c.reason}")
    return 0
