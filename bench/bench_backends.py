"""Backend x preset benchmark (fps, p50/p99, ratio to torch eager): a thin wrapper over `livevae bench`.

python bench/bench_backends.py                       # batch 1, tiny/live/broad2016 -> bench/results/backends.{md,json}
python bench/bench_backends.py --batch 8 --presets live --out bench/results/backends_b8
"""

from __future__ import annotations

import sys

from livevae.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
