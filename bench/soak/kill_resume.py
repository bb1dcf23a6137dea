"""Training kill test: `livevae train` killed with SIGKILL at random moments, then resumed, N times; every resume
must start from an intact checkpoint and the run must finish with a loadable model.

    .venv/bin/python bench/soak/kill_resume.py --kills 20      # the long form; writes JSON
    (tests/test_kill_resume.py runs the same with 2 kills)

Kills land after a random number of checkpoint writes plus a random delay, so some hit a write in progress.
After every kill: each step-*.safetensors on disk loads (no torn file is ever visible), each sidecar JSON
parses, and the next resume names the newest of them in config.json's resumed_from.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def make_dataset(folder: Path) -> Path:
    """A 64-frame 64x48 dataset via `livevae prep` from a synthetic clip."""
    sys.path.insert(0, str(ROOT))
    from tests.helpers.media import pattern_frames, write_video

    clip = write_video(folder / "clip.mp4", pattern_frames(64, 128, 96), fps=25)
    data = folder / "data"
    subprocess.run(
        [sys.executable, "-m", "livevae", "prep", str(clip), "-o", str(data), "--size", "64x48"],
        check=True,
        capture_output=True,
    )
    return data


def check_checkpoints(run: Path) -> tuple[int, list[str]]:
    """(newest step, problems): every checkpoint file and sidecar must be readable."""
    from train.checkpoint import load_checkpoint

    problems: list[str] = []
    newest = -1
    folder = run / "checkpoints"
    if not folder.is_dir():
        return newest, problems
    for p in sorted(folder.glob("step-*.safetensors")):
        try:
            load_checkpoint(p)
            newest = max(newest, int(p.stem.split("-")[1]))
        except Exception as e:  # a torn checkpoint is exactly what this test hunts for
            if p.exists():  # pruned between glob and load: not a problem
                problems.append(f"{p.name}: {type(e).__name__}: {e}")
        side = p.with_suffix(".json")
        if side.exists():
            try:
                json.loads(side.read_text())
            except ValueError as e:
                problems.append(f"{side.name}: {e}")
    return newest, problems


def newest_name(run: Path) -> int:
    """The newest step named in the checkpoint folder (by file name only: cheap enough to poll)."""
    folder = run / "checkpoints"
    steps = [int(p.stem.split("-")[1]) for p in folder.glob("step-*.safetensors")] if folder.is_dir() else []
    return max(steps, default=0)


def run(kills: int = 20, seed: int = 0, workdir: Path | None = None, max_steps: int | None = None) -> dict[str, Any]:
    """Train the tiny preset, killing it `kills` times; max_steps defaults to just past what the kills use."""
    max_steps = max_steps or 8 * kills + 8
    rng = random.Random(seed)
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    folder = Path(tmp.name) if tmp is not None else Path(workdir)  # type: ignore[arg-type]
    try:
        data = make_dataset(folder)
        out = folder / "run"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        common = ["--max-steps", str(max_steps), "--no-progress", "--threads", "1"]
        first = [sys.executable, "-m", "livevae", "train", "--data", str(data), "--out", str(out), "--preset", "tiny",
                 "--batch", "8", "--checkpoint-every", "2", *common]  # fmt: skip
        resume = [sys.executable, "-m", "livevae", "train", "--resume", str(out), *common]
        events: list[dict[str, Any]] = []
        problems: list[str] = []
        expected_from = -1
        seen_tmp: set[str] = set()
        t0 = time.monotonic()
        for k in range(kills + 1):
            cmd = first if k == 0 else resume
            started_at = time.time()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
            ev: dict[str, Any] = {"run": k}
            if k < kills:
                # wait for 1-3 checkpoints written by this process, then a random moment within about one
                # checkpoint's time, so some kills land in the middle of a write
                before = newest_name(out)
                want = rng.randint(1, 3)
                deadline = time.monotonic() + 600
                while proc.poll() is None and time.monotonic() < deadline and newest_name(out) < before + 2 * want:
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.6))
                finished = proc.poll() is not None
                if not finished:
                    proc.send_signal(signal.SIGKILL)
                text = proc.communicate(timeout=60)[0]
                ev["killed"] = not finished
            else:
                text = proc.communicate(timeout=1800)[0]
                finished = True
                if proc.returncode != 0:
                    problems.append(f"final resume exited {proc.returncode}: {text[-2000:]}")
            newest, bad = check_checkpoints(out)
            problems += [f"after run {k}: {b}" for b in bad]
            ev["newest_step"] = newest
            # a new temporary file left behind means this kill landed in the middle of writing a checkpoint
            tmps = {p.name for p in (out / "checkpoints").glob(".*.tmp")} if (out / "checkpoints").is_dir() else set()
            ev["torn_writes_left"] = len(tmps - seen_tmp)
            seen_tmp |= tmps
            cfg_path = out / "config.json"
            if k > 0 and cfg_path.exists() and cfg_path.stat().st_mtime >= started_at:
                # this resume got far enough to say which checkpoint it started from
                started = json.loads(cfg_path.read_text()).get("resumed_from") or ""
                step = int(Path(started).stem.split("-")[1]) if "step-" in started else -1
                ev["resumed_from_step"] = step
                if step != expected_from:
                    problems.append(f"run {k}: resumed from step {step}; expected the newest intact {expected_from}")
            if "skipped unreadable" in text or "Traceback" in text:
                problems.append(f"run {k}: {text[-1500:]}")
            events.append(ev)
            expected_from = newest
            if finished and k < kills:
                break  # it reached max_steps before the kill: nothing left to kill
        from livevae.model import load_model

        model_ok = False
        try:
            load_model(out / "model.safetensors")
            model_ok = True
        except Exception as e:  # reported in the result
            problems.append(f"final model: {e}")
        return {
            "kills": sum(1 for e in events if e.get("killed")),
            "kills_mid_write": sum(1 for e in events if e.get("killed") and e.get("torn_writes_left", 0) > 0),
            "events": events,
            "problems": problems,
            "final_model_loads": model_ok,
            "seconds": round(time.monotonic() - t0, 1),
        }
    finally:
        if tmp is not None:
            tmp.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=None, help="default: 8 per kill + 8")
    ap.add_argument("--json", default="bench/results/kill_resume.json")
    a = ap.parse_args()
    r = run(a.kills, a.seed, max_steps=a.max_steps)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(r, indent=1))
    print(json.dumps(r, indent=1))
    raise SystemExit(1 if r["problems"] or not r["final_model_loads"] else 0)


if __name__ == "__main__":
    main()
