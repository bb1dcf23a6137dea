"""`livevae bench`: the command line of the backend benchmark (every backend x preset against torch eager)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from livevae.cli.main import ExamplesFormatter
from livevae.offline import bench as job  # called through the module, so a test can stand in for the job

EXAMPLES = """examples:
  livevae bench                                          # batch 1, tiny/live/broad2016, every backend
  livevae bench --presets live --threads 1 --out bench/results/backends_1thread
  livevae bench --presets runs/br/model.safetensors --backends onnxruntime,tensorrt --batch 1,16
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    p.formatter_class = ExamplesFormatter
    p.add_argument(
        "--presets",
        default="tiny,live,broad2016",
        help="comma-separated model presets (random weights) and/or model files (*.safetensors)",
    )
    p.add_argument(
        "--backends",
        default="torch-cpu,torch-cpu+channels_last,torch-cpu-jit,onnxruntime,onnxruntime+fp32,onnxruntime+spin,"
        "torch-cuda,onnxruntime-cuda,tensorrt",
        help="comma-separated backends (any create() name, NAME+PRECISION such as onnxruntime+fp32 or "
        "onnxruntime+int8, and the bench-only variants onnxruntime+overlap (the live loop's pipeline forced on, its "
        "enc+dec timed as the pipeline runs it), onnxruntime+spin, onnxruntime+nospin, torch-cpu+channels_last, "
        "torch-cpu-jit+channels_last); torch-cpu (eager) is always measured as the reference; unavailable ones "
        "are listed as skipped with the reason",
    )
    p.add_argument("--batch", default="1", help="comma-separated batch sizes (1 = live latency; e.g. 1,8)")
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per figure")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="CPU threads per backend")
    p.add_argument("--out", default="bench/results/backends", help="writes OUT.md and OUT.json")
    p.add_argument("--cache-dir", default=None, help="export/engine cache; None = a temporary folder")


def run(args: argparse.Namespace) -> int:
    presets = [s for s in args.presets.split(",") if s]
    backends = [s for s in args.backends.split(",") if s]
    batches = [int(s) for s in args.batch.split(",") if s]
    from livevae.safeout import OutputError, atomic_file, check_output_file

    out = Path(args.out)
    try:  # before minutes of measuring: an unwritable --out fails now
        check_output_file(out.with_suffix(".md"), (".md",), what="--out")
    except OutputError as e:
        print(f"livevae bench: error: {e}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="livevae-bench-") as tmp:
        cache = Path(args.cache_dir or tmp)
        cache.mkdir(parents=True, exist_ok=True)
        report = job.run_bench(presets, backends, batches, args.seconds, args.rounds, args.threads, cache)
    md = job.to_markdown(report)
    with atomic_file(out.with_suffix(".md")) as tmp_md:
        tmp_md.write_text(md)
    data = {
        "machine": report.machine,
        "settings": report.settings,
        "skipped": report.skipped,
        "rows": [asdict(r) for r in report.rows],
    }
    with atomic_file(out.with_suffix(".json")) as tmp_json:
        tmp_json.write_text(json.dumps(data, indent=1))
    print(md)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0
