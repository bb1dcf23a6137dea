"""The browser control surface in a real headless Chromium (Debian's chromium + chromium-driver, via selenium)."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the remote extra is not installed (pip install -e '.[dev]')")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")

from tests.helpers.remote import LiveShow, start_live_show, stop_live_show  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None, reason="no chromium/chromedriver (apt-get install chromium chromium-driver)"
)
PHONE = (390, 844)  # CSS pixels of a common phone in portrait


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShow]:
    from livevae.model import random_model, save_model

    tmp = tmp_path_factory.mktemp("remote-browser")
    model = save_model(random_model("tiny", seed=0), tmp / "tiny.safetensors")
    show = start_live_show(model, tmp, name=f"livevae-web-{uuid.uuid4().hex[:6]}", zeroconf=False)
    yield show
    stop_live_show(show)


@pytest.fixture
def browser() -> Iterator[Callable[[str], Any]]:
    """Opens pages in fresh headless Chromium instances at phone size; all quit after the test."""
    from selenium.webdriver.chrome.service import Service

    drivers: list[Any] = []
    dirs: list[str] = []

    def open_page(url: str) -> Any:
        d = tempfile.mkdtemp(prefix="livevae-chromium-")
        dirs.append(d)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--no-first-run",
                  "--disable-sync", f"--user-data-dir={d}", f"--window-size={PHONE[0]},{PHONE[1]}"):  # fmt: skip
            opts.add_argument(a)
        drv = webdriver.Chrome(options=opts, service=Service(DRIVER))
        drivers.append(drv)
        drv.set_page_load_timeout(20)
        drv.get(url)
        return drv

    yield open_page
    for drv in drivers:
        drv.quit()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def wait(cond: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def drag(drv: Any, el: Any, frm: float, to: float) -> None:
    """Press at fraction `frm` of the element's width, move to `to`, release (pointer events, as a finger)."""
    from selenium.webdriver import ActionChains

    w = el.size["width"]
    a = ActionChains(drv, duration=50)
    a.move_to_element_with_offset(el, int((frm - 0.5) * w), 0).click_and_hold()
    for _ in range(4):
        a.move_by_offset(int((to - frm) * w / 4), 0)
    a.release().perform()


def test_a_drag_on_a_fader_moves_the_control_and_the_picture_in_few_frames(
    live: LiveShow, browser: Callable[[str], Any], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    drv = browser(live.remote.url)
    target = "pc/0" if live.state.n_pcs else "z/0"
    live.log.target = target
    fader = wait(lambda: drv.find_elements(By.CSS_SELECTOR, f'.fader[data-target="{target}"]'), "the faders")[0]
    wait(lambda: drv.execute_script("return window.livevae.pictures") > 0, "a preview picture")
    lo, hi = live.state.check_target(target)
    live.state.set(target, lo + 0.5 * (hi - lo))
    wait(lambda: "50%" in fader.find_element(By.CLASS_NAME, "fill").get_attribute("style"), "the fader at 50%")
    live.log.wait_frames(3)
    before, still = live.log.frames[-1][3], live.log.frames[-2][3]
    noise = float(np.abs(before.astype(np.float32) - still.astype(np.float32)).mean())  # 0 for a still source

    drag(drv, fader, 0.5, 0.95)
    moved = wait(lambda: live.state.get(target) > lo + 0.85 * (hi - lo), f"{target} to move")
    assert moved
    live.log.wait_frames(3)
    pressed_at = drv.execute_script("return window.livevae.lastInput") / 1000.0  # the browser's Date.now()
    first = live.log.first_where(lambda v: v >= live.state.get(target) - 1e-6)
    assert first is not None
    index, after = first
    latency = index - live.log.index_at(pressed_at)
    diff = float(np.abs(after.astype(np.float32) - before.astype(np.float32)).mean())
    print(
        f"fader-to-picture latency: {latency} frames at {live.loop.cfg.fps:g} fps "
        f"(decoded picture moved {diff:.2f}, {noise:.2f} between still frames)"
    )
    assert diff > 0.1 and diff > 10 * noise, "the decoded picture did not change"
    assert 0 <= latency <= 10
    shot = tmp_path / "phone.png"
    drv.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_two_pages_stay_in_sync(live: LiveShow, browser: Callable[[str], Any]) -> None:
    from selenium.webdriver.common.by import By

    a, b = browser(live.remote.url), browser(live.remote.url)
    for drv in (a, b):
        wait(lambda drv=drv: drv.find_elements(By.CSS_SELECTOR, '.fader[data-target="mix"]'), "the faders")
    live.state.set("mix", 0.0)
    wait(lambda: b.execute_script("return window.livevae.controls['mix'].value") == 0.0, "page b at 0")
    drag(a, a.find_element(By.CSS_SELECTOR, '.fader[data-target="mix"]'), 0.1, 0.7)
    wait(lambda: live.state.get("mix") > 0.5, "mix to move")
    value = live.state.get("mix")
    wait(lambda: abs(b.execute_script("return window.livevae.controls['mix'].value") - value) < 1e-6, "page b")
    fill = b.find_element(By.CSS_SELECTOR, '.fader[data-target="mix"] .fill').get_attribute("style")
    assert f"{100 * value:.1f}%" in fill
    # and back: an OSC-side change reaches both pages (the same change events as OSC feedback)
    live.state.set("mix", 0.2, origin="osc:/livevae/mix")
    for drv in (a, b):
        wait(lambda drv=drv: drv.execute_script("return window.livevae.controls['mix'].value") == 0.2, "0.2")
    # a scene saved on one page appears as a button on the other
    name = f"s{uuid.uuid4().hex[:4]}"
    a.find_element(By.ID, "scenename").send_keys(name)
    a.find_element(By.ID, "savebtn").click()
    wait(lambda: b.find_elements(By.CSS_SELECTOR, f'#scenes button[data-scene="{name}"]'), "the scene on page b")


def test_a_wrong_pin_is_refused_and_the_right_one_controls(tmp_path: Path, browser: Callable[[str], Any]) -> None:
    from selenium.webdriver.common.by import By

    from livevae.control.state import ControlState
    from livevae.controllers.remote import RemoteSection, RemoteServer
    from tests.helpers.handle import RecordingHandle

    state = ControlState(4, 0)
    rs = RemoteServer(state, RemoteSection(port=0, pin="2468", zeroconf=False))
    rs.start(RecordingHandle(sources=("testcard",)))
    try:
        drv = browser(rs.base_url + "/ui/?pin=1357")
        wait(lambda: drv.find_element(By.ID, "pinmsg").text == "wrong PIN", "the wrong-PIN message")
        assert not drv.find_element(By.ID, "surface").is_displayed()
        assert rs.stats.refused == 1 and rs.stats.clients["ui"] == 0
        drv.find_element(By.ID, "pin").send_keys("2468")
        drv.find_element(By.ID, "pinok").click()
        fader = wait(lambda: drv.find_elements(By.CSS_SELECTOR, '.fader[data-target="mix"]'), "the surface")[0]
        drag(drv, fader, 0.1, 0.6)
        wait(lambda: state.get("mix") > 0.3, "mix to move with the right PIN")
    finally:
        rs.stop()
