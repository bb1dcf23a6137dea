"""Under a real X server without a window manager (Xvfb): fullscreen covers the display from its origin,
also after toggling from a window that was moved; skipped where Xvfb is not installed (`make sys`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None or shutil.which("xwininfo") is None,
    reason="Xvfb or xwininfo not installed (Debian: xvfb, x11-utils; `make sys`)",
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def xdisplay() -> Iterator[str]:
    """A private Xvfb screen of 1024x600, no window manager: what a kiosk box without a desktop has."""
    for n in range(90, 110):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            break
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1024x600x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.skip("Xvfb did not start")
            time.sleep(0.05)
        yield f":{n}"
    finally:
        proc.terminate()
        proc.wait(5)


def run_x(display: str, code: str) -> str:
    """Run `code` in a fresh Python on the X display (SDL's x11 driver); its stdout."""
    env = {**os.environ, "DISPLAY": display, "SDL_VIDEODRIVER": "x11", "PYTHONPATH": str(ROOT)}
    env["PYGAME_HIDE_SUPPORT_PROMPT"] = "1"
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_fullscreen_toggle_without_a_window_manager_covers_the_display(xdisplay: str) -> None:
    out = run_x(
        xdisplay,
        """
        import subprocess
        import time
        import numpy as np
        from pygame._sdl2.video import Window as SdlWindow
        from livevae.outputs.window import Window, WindowConfig

        w = Window(WindowConfig(size=(640, 360), vsync=False)).open()
        SdlWindow.from_display_module().position = (200, 150)  # a window the performer moved
        w.present(np.zeros((144, 256, 3), np.uint8))
        w.toggle_fullscreen()  # the f key
        w.present(np.full((144, 256, 3), 255, np.uint8))
        time.sleep(0.2)
        info = subprocess.run(["xwininfo", "-name", "livevae"], capture_output=True, text=True).stdout
        geo = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in info.splitlines()) if v}
        # where the X server has the window, not where SDL believes it is
        print((int(geo["Absolute upper-left X"]), int(geo["Absolute upper-left Y"])),
              (int(geo["Width"]), int(geo["Height"])), w.size)
        w.toggle_fullscreen()
        print(tuple(SdlWindow.from_display_module().size))
        w.close()
        """,
    )
    full, back = out.strip().splitlines()[-2:]
    assert full == "(0, 0) (1024, 600) (1024, 600)", out
    assert back == "(640, 360)", out
