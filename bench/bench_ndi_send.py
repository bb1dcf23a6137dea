"""Benchmark: the NDI send path alone at one size: CPU ms a frame of the conversion, the send call and the NDI
runtime's own threads, per FourCC and SpeedHQ mode, a receiver connected from another process.

python bench/bench_ndi_send.py                      # I420, UYVY and NV12 with the runtime's default 4:2:2
python bench/bench_ndi_send.py --shq 4:2:0          # the mode livevae sets (livevae/ndi_config.py)

The runtime reads its settings once per process, so each mode is its own run. Each FourCC's frames are made
from the same 256x144 pictures (BT.709 limited), sent at 30 fps from one thread; CPU is thread time (the
conversion, the send call) and /proc per-thread time (the runtime's threads, OpenCV's pool) over the frames.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from livevae.outputs.yuv import I420Scaler, rgb_to_ycbcr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_rig  # its receiver peer and per-thread CPU


def uyvy(size: tuple[int, int]) -> Callable[[np.ndarray], np.ndarray]:
    """RGB -> UYVY (4:2:2, 2 bytes a pixel): Y and the interleaved chroma scaled, then packed."""
    w, h = size
    buf = np.empty(w * h * 2, np.uint8)
    c, y = np.empty((h, w // 2, 2), np.uint8), np.empty((h, w), np.uint8)

    def convert(rgb: np.ndarray) -> np.ndarray:
        ycc = rgb_to_ycbcr(rgb)
        cv2.resize(np.ascontiguousarray(ycc[:, :, 1:]), (w // 2, h), dst=c, interpolation=cv2.INTER_LINEAR)
        cv2.resize(np.ascontiguousarray(ycc[:, :, 0]), (w, h), dst=y, interpolation=cv2.INTER_LINEAR)
        cv2.merge([c.reshape(h, w), y], dst=buf.reshape(h, w, 2))
        return buf

    return convert


def nv12(size: tuple[int, int]) -> Callable[[np.ndarray], np.ndarray]:
    """RGB -> NV12 (4:2:0, the chroma interleaved in one plane)."""
    w, h = size
    buf = np.empty(w * h * 3 // 2, np.uint8)
    y, c = buf[: w * h].reshape(h, w), buf[w * h :].reshape(h // 2, w // 2, 2)

    def convert(rgb: np.ndarray) -> np.ndarray:
        ycc = rgb_to_ycbcr(rgb)
        cv2.resize(np.ascontiguousarray(ycc[:, :, 1:]), (w // 2, h // 2), dst=c, interpolation=cv2.INTER_LINEAR)
        cv2.resize(np.ascontiguousarray(ycc[:, :, 0]), (w, h), dst=y, interpolation=cv2.INTER_LINEAR)
        return buf

    return convert


def run(fourcc: str, size: tuple[int, int], frames: int, folder: Path) -> dict[str, Any]:
    from cyndilib.sender import Sender
    from cyndilib.video_frame import VideoSendFrame
    from cyndilib.wrapper.ndi_structs import FourCC

    name = f"livevae-send-{fourcc}-{os.getpid()}"
    proc, _ = bench_rig.start_peer(name, "", frames / 30 + 30, folder)
    vf = VideoSendFrame()
    vf.set_resolution(*size)
    vf.set_frame_rate(Fraction(30))
    vf.set_fourcc(getattr(FourCC, fourcc))
    sender = Sender(name, clock_video=False)
    sender.set_video_frame(vf)
    sender.open()
    convert = {"I420": I420Scaler(size).convert, "UYVY": uyvy(size), "NV12": nv12(size)}[fourcc]
    rng = np.random.default_rng(0)
    pics = [cv2.GaussianBlur(rng.integers(0, 256, (144, 256, 3), dtype=np.uint8), (7, 7), 0) for _ in range(8)]
    deadline = time.monotonic() + 20
    while sender.get_num_connections(0.0) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    out: dict[str, Any] = {"fourcc": fourcc, "receivers": int(sender.get_num_connections(0.0))}

    def body() -> None:
        conv = send = 0.0
        for k in range(10):  # the connection's first frames, not counted
            sender.write_video(convert(pics[k % 8]))
            time.sleep(1 / 30)
        t0 = bench_rig.thread_cpu()
        due = time.monotonic()
        for k in range(frames):
            a = time.thread_time()
            f = convert(pics[k % 8])
            b = time.thread_time()
            sender.write_video(f)
            conv, send = conv + b - a, send + time.thread_time() - b
            due += 1 / 30
            time.sleep(max(0.0, due - time.monotonic()))
        t1 = bench_rig.thread_cpu()
        by: dict[str, float] = {}
        for tid, (comm, cpu) in t1.items():
            by[comm] = by.get(comm, 0.0) + 1000 * (cpu - t0.get(tid, (comm, 0.0))[1]) / frames
        out.update(conversion_ms=1000 * conv / frames, send_call_ms=1000 * send / frames,
                   cpu_ms_per_frame_by_thread={k: round(v, 3) for k, v in by.items() if v >= 0.03})  # fmt: skip

    th = threading.Thread(target=body, name="sender")
    th.start()
    th.join()
    sender.close()
    proc.kill()
    proc.wait(10)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shq", default="", help="SpeedHQ mode for this run (4:2:0, 4:2:2); default: the runtime's")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--fourcc", nargs="+", default=["I420", "UYVY", "NV12"])
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="livevae-bench-send-"))
    ndi: dict[str, Any] = {"networks": {"ips": "127.0.0.1"}}  # discovery on loopback (no mDNS in the sandbox)
    if args.shq:
        ndi["codec"] = {"shq": {"mode": args.shq}}
    (folder / "ndi-config.v1.json").write_text(json.dumps({"ndi": ndi}))
    os.environ["NDI_CONFIG_DIR"] = str(folder)  # before the first NDI object: the runtime reads it once
    w, h = (int(v) for v in args.size.lower().split("x"))
    runs = [run(f, (w, h), args.frames, folder) for f in args.fourcc]
    from livevae.offline.bench import conditions, conditions_line

    report = {"shq_mode": args.shq or "runtime default", "size": args.size, "frames": args.frames, "runs": runs,
              "conditions": conditions(load0)}  # fmt: skip
    print(json.dumps(report, indent=2))
    print(conditions_line(report["conditions"]), file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
