"""Benchmark: what NDI costs a show, in one run: extra CPU ms per frame for NDI out at 1280x720 and 1920x1080,
30 fps, each as a ratio against the same show without it (torch eager), and NDI in -> NDI out latency in frames.

python bench/bench_rig.py --json bench/results/rig.json
python bench/bench_rig.py --preset tiny --frames 90        # quicker

Method. Every show is realtime, headless (no display on the bench machines, so the baseline is the show with no
window and no outputs), decoding the untrained `live` preset (256x144, z=200) in torch eager on a 30 fps source.
CPU = the show process's CPU time (time.process_time: all its threads, so the NDI sender's conversion and the
SDK's compression count) from the first frame presented to the last, over the frames between (start-up, the model
load and the wait for the receiver are not per-frame costs). Each NDI size runs twice in the same run: as livevae
sends it (I420 made from the model-size picture on the NDI thread) and as it sent before 2026-12-01 (RGB upscaled
on the frame thread, RGBA to the SDK), so the change is measured against the same baseline.
A receiver in a process of its own (its CPU is not counted, but it shares the 2 cores) is connected
to each NDI output, as Resolume or OBS would be. Latency: a peer process sends a 1280x720 feed as ndi:IN (black,
with a white frame every 15), the show plays it with wet = 0 (the output is the input picture, so the flash can
be seen through the model's path: capture, preprocess, encode, decode, blend, scale, send) and sends ndi:OUT; the
peer timestamps each white frame sent and received (one CLOCK_MONOTONIC for both) and the delay is given in
frames of 1/30 s. NDI discovery goes to 127.0.0.1 by an ndi-config.v1.json (no mDNS in the sandbox).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def ndi_loopback() -> None:
    if "NDI_CONFIG_DIR" not in os.environ:
        d = Path(tempfile.mkdtemp(prefix="livevae-ndi-"))
        (d / "ndi-config.v1.json").write_text(json.dumps({"ndi": {"networks": {"ips": "127.0.0.1"}}}))
        os.environ["NDI_CONFIG_DIR"] = str(d)


# --- the peers: a receiver of OUT, or a sender of IN, each in a process of its own ------------------------------
# (one process that both sends and looks for a source never found it here, cyndilib 0.1.3 / NDI 6: so two)
def peer(out_name: str, in_name: str, seconds: float, result: str) -> None:
    from cyndilib.finder import Finder
    from cyndilib.receiver import Receiver
    from cyndilib.sender import Sender
    from cyndilib.video_frame import VideoFrameSync, VideoSendFrame
    from cyndilib.wrapper.ndi_recv import RecvBandwidth, RecvColorFormat
    from cyndilib.wrapper.ndi_structs import FourCC

    from livevae.media.ndi_source import ndi_name_matches

    sender = None
    if in_name:
        vf = VideoSendFrame()
        vf.set_resolution(1280, 720)
        vf.set_frame_rate(Fraction(30))
        vf.set_fourcc(FourCC.RGBA)
        sender = Sender(in_name, clock_video=False)
        sender.set_video_frame(vf)
        sender.open()
    black = np.zeros((720, 1280, 4), np.uint8).reshape(-1)
    white = np.full((720, 1280, 4), 255, np.uint8).reshape(-1)
    finder = Finder()
    finder.open()
    recv, frame = None, None
    sent_white: list[float] = []
    got_white: list[float] = []
    frames = 0
    last_ts, last_bright = None, False
    t0 = time.monotonic()
    end = t0 + seconds
    k = 0
    while time.monotonic() < end:
        now = time.monotonic()
        if sender is not None and now >= t0 + k / 30:
            flash = k % 15 == 14
            sender.write_video(white if flash else black)
            if flash:
                sent_white.append(time.monotonic())
            k += 1
        if not out_name:
            pass
        elif recv is None:
            finder.update_sources()
            names = [n for n in finder.get_source_names() if ndi_name_matches(n, out_name)]
            if names:
                recv = Receiver(color_format=RecvColorFormat.RGBX_RGBA, bandwidth=RecvBandwidth.highest)
                frame = VideoFrameSync()
                recv.frame_sync.set_video_frame(frame)
                recv.set_source(finder.get_source(names[0]))
        else:
            recv.frame_sync.capture_video()
            ts = frame.get_timestamp_posix()
            if frame.xres > 0 and ts != last_ts:
                last_ts = ts
                frames += 1
                a = np.asarray(frame.get_array())
                bright = float(a[: a.size // 8 : 97].mean()) > 128
                if bright and not last_bright:
                    got_white.append(time.monotonic())
                last_bright = bright
        time.sleep(0.001)
    perf = dict(recv.get_performance_data()["video"]) if recv is not None else {}
    if sender is not None:
        sender.close()
    finder.close()
    Path(result).write_text(json.dumps({"sent_white": sent_white, "got_white": got_white, "frames": frames,
                                        "performance": perf}))  # fmt: skip


def start_peer(out_name: str, in_name: str, seconds: float, folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    result = folder / f"peer-{out_name or in_name}.json"
    cmd = [sys.executable, __file__, "--peer", out_name, in_name, str(seconds), str(result)]
    return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ)), result


# --- the show -------------------------------------------------------------------------------------------------
def run_show(
    model: Path, frames: int, sources: list[str], outputs: list[Any], wet: float = 1.0, window: bool = True
) -> dict[str, Any]:
    from livevae.backends import create
    from livevae.control.state import ControlState
    from livevae.handle import FrameInfo, LoopHandle, Watcher
    from livevae.loop import LiveConfig, LiveLoop

    class WaitReceivers(Watcher):
        """Holds the start until every NDI output counts a receiver, as with Resolume connected."""

        def start(self, loop: LoopHandle | None) -> None:
            assert loop is not None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not all(", 1 receiver" in s for s in loop.status().outputs):
                time.sleep(0.01)

    class CpuWindow(Watcher):
        """Process CPU (all threads) and wall time at the first and the last frame presented."""

        def __init__(self) -> None:
            self.marks: list[tuple[int, float, float]] = []

            self.threads: list[dict[int, tuple[str, float]]] = []

        def on_frame(self, info: FrameInfo) -> None:
            if info.index == 0 or info.index == frames - 1:
                self.marks.append((info.index, time.process_time(), time.monotonic()))
                self.threads.append(thread_cpu())

    backend = create(str(model), "torch")
    state = ControlState(backend.cfg.zdim)
    state.set("wet", wet)
    cfg = LiveConfig(model=str(model), sources=sources, source_fps=30, fps=30, headless=not window, realtime=True,
                     frames=frames, outputs=outputs)  # fmt: skip
    meter = CpuWindow()
    loop = LiveLoop(cfg, backend, state=state, controllers=[WaitReceivers(), meter])
    stats = loop.run()
    (i0, c0, w0), (i1, c1, w1) = meter.marks[0], meter.marks[-1]
    n = max(i1 - i0, 1)
    by_thread: dict[str, float] = {}  # where the CPU went, by thread name (a thread's name is its kernel comm)
    t0, t1 = meter.threads[0], meter.threads[-1]
    for tid, (comm, cpu) in t1.items():
        by_thread[comm] = by_thread.get(comm, 0.0) + 1000 * (cpu - t0.get(tid, (comm, 0.0))[1]) / n
    top = dict(sorted(((k, round(v, 3)) for k, v in by_thread.items() if v >= 0.05), key=lambda kv: -kv[1]))
    return {"frames": stats.frames, "cpu_ms_per_frame": 1000 * (c1 - c0) / n, "fps": n / (w1 - w0),
            "sinks": stats.sinks, "dropped": stats.dropped, "cpu_ms_per_frame_by_thread": top}  # fmt: skip


def one_show(
    label: str, model: Path, frames: int, card: list[str], secs: float, tmp: Path, window: bool
) -> dict[str, Any]:
    """One show of a kind: "baseline" (the window alone), "ndi_720p", "ndi_1080p_rgba" ... with a receiver."""
    from livevae.outputs.sinks import OutputSpec

    if label == "baseline":
        return run_show(model, frames, card, [], window=window)
    size = (1280, 720) if label.startswith("ndi_720p") else (1920, 1080)
    fmt = "RGBA" if label.endswith("_rgba") else "I420"
    name = f"livevae-bench-{label}-{os.getpid()}"
    proc, _ = start_peer(name, "", secs, tmp)
    try:
        with rgba_ndi() if fmt == "RGBA" else contextlib.nullcontext():
            r = run_show(model, frames, card, [OutputSpec("ndi", name, size)], window=window)
    finally:
        proc.kill()  # the peer's figures are not needed here, only its connection
        proc.wait(10)
    r["send_format"] = fmt
    return r


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per kind of show: the median over the rounds of its CPU ms a frame, by thread too, and each NDI show's
    extra over the baseline of its own round (the median of those paired differences is the figure)."""
    out: dict[str, Any] = {}
    base = runs["baseline"]
    base_threads = median_threads(base)
    for label, rs in runs.items():
        cpu = [r["cpu_ms_per_frame"] for r in rs]
        threads = median_threads(rs)
        s: dict[str, Any] = {
            "cpu_ms_per_frame": float(np.median(cpu)),
            "cpu_ms_per_frame_rounds": [round(c, 3) for c in cpu],
            "fps": float(np.median([r["fps"] for r in rs])),
            "frames": rs[-1]["frames"],
            "sinks": rs[-1]["sinks"],
            "cpu_ms_per_frame_by_thread": threads,
        }
        if label != "baseline":
            extra = [r["cpu_ms_per_frame"] - b["cpu_ms_per_frame"] for r, b in zip(rs, base, strict=True)]
            s["send_format"] = rs[-1]["send_format"]
            s["extra_cpu_ms_per_frame"] = float(np.median(extra))
            s["extra_cpu_ms_per_frame_rounds"] = [round(e, 3) for e in extra]
            s["ratio_vs_baseline"] = s["cpu_ms_per_frame"] / out["baseline"]["cpu_ms_per_frame"]
            # where the extra went: each thread's median against the baseline's (the NDI threads are new)
            names = sorted(
                set(threads) | set(base_threads), key=lambda k: -abs(threads.get(k, 0) - base_threads.get(k, 0))
            )
            s["extra_by_thread"] = {k: round(threads.get(k, 0.0) - base_threads.get(k, 0.0), 3) for k in names}
        out[label] = s
    return out


def median_threads(rs: list[dict[str, Any]]) -> dict[str, float]:
    """Each thread's median CPU ms a frame over the rounds (0 in a round where it stayed under 0.05 ms)."""
    names = {k for r in rs for k in r["cpu_ms_per_frame_by_thread"]}
    med = {k: float(np.median([r["cpu_ms_per_frame_by_thread"].get(k, 0.0) for r in rs])) for k in names}
    return dict(sorted(((k, round(v, 3)) for k, v in med.items()), key=lambda kv: -kv[1]))


def thread_cpu() -> dict[int, tuple[str, float]]:
    """{thread id: (name, CPU seconds user + system)} of this process, from /proc (Linux; {} elsewhere). Python
    threads go by their threading name ("MainThread" runs the frame loop here, "ndi NAME" the sender), the
    others (the NDI SDK's, OpenCV's, torch's) by their kernel name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for task in Path("/proc/self/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended between the listing and the read
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        tid = int(task.name)
        out[tid] = (names.get(tid, comm), (int(fields[11]) + int(fields[12])) / tick)  # utime, stime
    return out


@contextlib.contextmanager
def rgba_ndi() -> Iterator[None]:
    """NDI outputs as livevae sent them before: the loop upscales RGB on the frame thread (one scale per size),
    the NDI thread converts it to RGBA, the SDK converts RGBA to YUV before compressing."""
    import cv2

    import livevae.loop
    from livevae.outputs.ndi import NdiOutput
    from livevae.outputs.sinks import OutputSpec

    class RgbaNdi(NdiOutput):
        takes_model_size = False
        FOURCC = "RGBA"

        def _picture(self, rgb: np.ndarray) -> np.ndarray:
            if not hasattr(self, "_rgba"):
                self._rgba = np.empty((self.size[1], self.size[0], 4), np.uint8)
            cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA, dst=self._rgba)
            return self._rgba.reshape(-1)

    real = livevae.loop.open_output

    def open_rgba(spec: OutputSpec, fps: float, filter: str = "bilinear") -> Any:
        if spec.kind != "ndi":
            return real(spec, fps, filter)
        return RgbaNdi(spec.name, spec.size, spec.fps or fps, filter).start()

    livevae.loop.open_output = open_rgba  # type: ignore[assignment]
    try:
        yield
    finally:
        livevae.loop.open_output = real


def cpu_flags() -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(), "load_avg_1m_before": os.getloadavg()[0]}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name"))
        flags = next(ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags"))
        info["flags"] = [f for f in flags if f.startswith(("avx", "amx", "sse4", "fma", "f16c"))]
    except (OSError, StopIteration):
        pass
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", nargs=4, metavar=("OUT", "IN", "SECONDS", "RESULT"), help=argparse.SUPPRESS)
    ap.add_argument("--preset", default="live")
    ap.add_argument("--frames", type=int, default=150, help="frames per show (150 = 5 s at 30 fps)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the NDI thread needs the other core)")
    ap.add_argument("--rounds", type=int, default=3, help="each show this many times, interleaved; medians given")
    ap.add_argument("--headless", action="store_true", help="no window in any show (the baseline is then bare)")
    ap.add_argument("--rgba", action="store_true", help="also the RGBA send livevae used before 2026-12-01")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    ndi_loopback()
    if args.peer:
        peer(args.peer[0], args.peer[1], float(args.peer[2]), args.peer[3])
        return 0
    from livevae.ndi_config import prepare

    prepare()  # what a show does before its first NDI object; here before the latency peer's, in this process
    window = not args.headless
    if window:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # the show's own window, drawn off screen

    import torch

    from livevae.model import save_model
    from livevae.offline.bench import conditions, conditions_line, random_model
    from livevae.outputs.sinks import OutputSpec

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="livevae-bench-rig-"))
    model = save_model(random_model(args.preset), tmp / "m.safetensors")
    report: dict[str, Any] = {"machine": cpu_flags(), "preset": args.preset, "frames": args.frames,
                              "torch_threads": args.threads, "rounds": args.rounds, "window": window,
                              "sdl_video_driver": os.environ.get("SDL_VIDEODRIVER", "")}  # fmt: skip
    card = ["testcard:1280x720"]
    secs = args.frames / 30 + 20
    labels = ["baseline"] + [f"ndi_{p}{tag}" for p in ("720p", "1080p") for tag in ("", "_rgba")[: 1 + args.rgba]]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in labels}
    for k in range(args.rounds):
        # each round in another order (a rotation), so a drift over the run falls on every show alike
        for label in labels[k % len(labels) :] + labels[: k % len(labels)]:
            runs[label].append(one_show(label, model, args.frames, card, secs, tmp, window))
            print(f"round {k + 1}/{args.rounds} {label}: {runs[label][-1]['cpu_ms_per_frame']:.2f} CPU ms a frame",
                  file=sys.stderr, flush=True)  # fmt: skip
    report.update(summarise(runs))
    # latency: ndi:IN -> show (wet 0) -> ndi:OUT
    in_name, out_name = f"livevae-bench-in-{os.getpid()}", f"livevae-bench-out-{os.getpid()}"
    # The peer runs as a thread of the show's process here: with discovery by extra IP (no mDNS in the sandbox)
    # a finder reached senders of its own process only once another NDI process held the discovery port, so
    # the feed and the receiver share the show's process (their CPU is not part of any figure above).
    result = tmp / "peer-latency.json"
    th = threading.Thread(target=peer, args=(out_name, in_name, args.frames / 30 + 12, str(result)), daemon=True)
    th.start()
    time.sleep(1.0)  # the feed is up before the show looks for it
    outs = [OutputSpec("ndi", out_name, (1280, 720))]
    r = run_show(model, args.frames, [f"ndi:{in_name}"], outs, wet=0.0, window=window)
    th.join(args.frames / 30 + 40)
    p = json.loads(result.read_text())
    sent, got = p["sent_white"], p["got_white"]
    delays = []
    for g in got:  # each flash received, against the latest flash sent before it
        before = [s for s in sent if s <= g]
        if before:
            delays.append(g - before[-1])
    r["flashes_sent"], r["flashes_received"] = len(sent), len(got)
    if delays:
        d = np.asarray(delays)
        r["latency_ms"] = {"p50": float(np.percentile(d, 50) * 1000), "p90": float(np.percentile(d, 90) * 1000)}
        r["latency_frames"] = {k: v / (1000 / 30) for k, v in r["latency_ms"].items()}
    r["peer_received_frames"] = p["frames"]
    report["ndi_in_to_out"] = r
    report["machine"]["load_avg_1m_after"] = os.getloadavg()[0]
    report["conditions"] = conditions(report["machine"]["load_avg_1m_before"])
    print(conditions_line(report["conditions"]), file=sys.stderr)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
