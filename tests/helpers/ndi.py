"""NDI on 127.0.0.1 for tests: discovery pointed at loopback, a receiver thread that keeps every frame, a sender."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def ndi_on_loopback() -> None:
    """Point NDI discovery at 127.0.0.1 (an ndi-config.v1.json with extra IPs, via NDI_CONFIG_DIR), or skip.

    mDNS discovery does not work in this sandbox (no multicast); the NDI SDK then finds senders by asking
    the listed IPs directly. Must run before cyndilib first makes a finder or sender in this process."""
    pytest.importorskip("cyndilib", reason="NDI tests need the `ndi` extra (cyndilib)")
    if "NDI_CONFIG_DIR" not in os.environ:
        d = Path(tempfile.mkdtemp(prefix="livevae-ndi-"))
        (d / "ndi-config.v1.json").write_text(json.dumps({"ndi": {"networks": {"ips": "127.0.0.1"}}}))
        os.environ["NDI_CONFIG_DIR"] = str(d)


class NdiProbe:
    """A cyndilib receiver in a process of its own (its capture holds the GIL while it waits, which would stall
    the show under test): connects to `name` when it appears and keeps every video frame it captures as RGB
    uint8 [h, w, 3] with its NDI timecode (seconds); stop() ends it and loads them, with NDI's receive
    statistics (frames_total, frames_dropped) in `performance`."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.out = folder / f"{name}.npz"
        self.first = folder / f"{name}.first"  # written when the first frame is in
        self.stop_file = folder / f"{name}.stop"
        self.count_file = folder / f"{name}.count"  # how many frames the probe has captured so far
        self.frames: list[tuple[np.ndarray, float]] = []
        self.performance: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NdiProbe:
        files = (self.out, self.first, self.stop_file, self.count_file)
        cmd = [sys.executable, "-m", "tests.helpers.ndi", self.name, *map(str, files)]
        root = Path(__file__).resolve().parents[2]
        self._proc = subprocess.Popen(cmd, cwd=root, env=dict(os.environ))
        return self

    def wait_first(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.first.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.first.exists()

    def captured(self) -> int:
        """Frames the probe has captured so far (0 before the first)."""
        try:
            return int(self.count_file.read_text() or 0)
        except (OSError, ValueError):  # not written yet, or caught between the write and the rename
            return 0

    def wait_captured(self, n: int, timeout: float) -> bool:
        """Wait until the probe has captured n frames, at most `timeout` s: a test that sends in step with a slow
        probe (on a loaded machine its capture falls behind, and NDI keeps only the newest frame for it)."""
        deadline = time.monotonic() + timeout
        while self.captured() < n and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.captured() >= n

    def stop(self, linger: float = 1.0) -> None:
        """Let frames in flight land for `linger` s, then end the probe and load what it captured."""
        time.sleep(linger)
        self.stop_file.write_text("")
        assert self._proc is not None
        try:
            self._proc.wait(20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
            raise
        with np.load(self.out) as z:
            self.frames = list(zip(list(z["frames"]), [float(t) for t in z["timecodes"]], strict=True))
            self.performance = {"frames_total": int(z["total"]), "frames_dropped": int(z["dropped"])}


def _probe_main(name: str, out: str, first: str, stop: str, count: str) -> None:
    from cyndilib.finder import Finder
    from cyndilib.receiver import ReceiveFrameType, Receiver
    from cyndilib.video_frame import VideoRecvFrame
    from cyndilib.wrapper.ndi_recv import RecvBandwidth, RecvColorFormat

    from livevae.media.ndi_source import ndi_name_matches, rgbx_to_rgb

    frames, codes = [], []
    finder = Finder()
    finder.open()
    deadline = time.monotonic() + 60  # bounded: the probe never outlives a broken test by much
    src = None
    while src is None and not Path(stop).exists() and time.monotonic() < deadline:
        names = [n for n in finder.get_source_names() if ndi_name_matches(n, name)]
        if names:
            src = finder.get_source(names[0])
        else:
            finder.wait_for_sources(0.05)
    perf = {"frames_total": 0, "frames_dropped": 0}
    if src is not None:
        r = Receiver(color_format=RecvColorFormat.RGBX_RGBA, bandwidth=RecvBandwidth.highest)
        vf = VideoRecvFrame()
        r.set_video_frame(vf)
        r.set_source(src)
        while not Path(stop).exists() and time.monotonic() < deadline:
            if r.receive(ReceiveFrameType.recv_video, 200) & ReceiveFrameType.recv_video:
                w, h = vf.get_resolution()
                buf = np.empty(vf.get_data_size(), np.uint8)
                vf.fill_p_data(buf)
                frames.append(rgbx_to_rgb(buf, w, h, vf.get_line_stride()))
                codes.append(vf.get_timecode_posix())
                if len(frames) == 1:
                    Path(first).write_text("")
                Path(count + ".part").write_text(str(len(frames)))
                os.replace(count + ".part", count)
        perf = dict(r.get_performance_data()["video"])
        r.disconnect()
    finder.close()
    arr = np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)
    np.savez(out, frames=arr, timecodes=np.asarray(codes), total=perf["frames_total"], dropped=perf["frames_dropped"])


class NdiTestSender:
    """A cyndilib sender named `name` that the test feeds RGB frames one at a time."""

    def __init__(self, name: str, size: tuple[int, int], fps: float = 30.0) -> None:
        from cyndilib.sender import Sender
        from cyndilib.video_frame import VideoSendFrame
        from cyndilib.wrapper.ndi_structs import FourCC

        self.size = size
        vf = VideoSendFrame()
        vf.set_resolution(*size)
        vf.set_frame_rate(Fraction(fps).limit_denominator(1001))
        vf.set_fourcc(FourCC.RGBA)
        self.sender: Any = Sender(name, clock_video=False)
        self.sender.set_video_frame(vf)
        self.sender.open()
        self._rgba = np.full((size[1], size[0], 4), 255, np.uint8)

    def send(self, rgb: np.ndarray) -> None:
        self._rgba[..., :3] = rgb
        self.sender.write_video(self._rgba.reshape(-1))

    def close(self) -> None:
        self.sender.close()


if __name__ == "__main__":
    _probe_main(*sys.argv[1:6])
