"""A wheel install behaves like the checkout: the bundled shows, recipes and model travel inside the package,
`livevae demo` plays the demo show (OSC, scenes, LFOs) from any folder, and no top-level `train` is installed."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_in_the_wheel_list() -> None:
    """pyproject.toml lists the packages (train/ and shows/ are mapped into livevae): a new sub-package that
    is not listed would be missing from every install, so the list is checked against the folders."""
    st = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "livevae").rglob("__init__.py")}
    found |= {".".join(("livevae", "train", *p.parent.relative_to(ROOT / "train").parts))
              for p in (ROOT / "train").rglob("__init__.py")}  # fmt: skip
    assert set(st["packages"]) == found | {"livevae.shows"}
    assert st["package-dir"] == {"livevae.train": "train", "livevae.shows": "shows"}
    assert not any(p == "train" or p.startswith("train.") for p in st["packages"])


def test_training_imports_itself_relatively() -> None:
    """train/ installs as livevae.train: an absolute `from train.x import` inside it works in the checkout
    and breaks every wheel install, so none may exist (tools outside the package, bench/, may use them)."""
    import re

    bad = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in sorted((ROOT / "train").rglob("*.py"))
           for i, line in enumerate(p.read_text().splitlines(), 1)
           if re.match(r"\s*(from train[. ]|import train\b)", line)]  # fmt: skip
    assert not bad, "use relative imports inside train/: " + "; ".join(bad)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Offline and quick: the venv already has setuptools; no build isolation, no dependencies fetched.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (whl,) = out.glob("livevae-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_carries_shows_recipes_and_model_and_no_top_level_train(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names}
    assert tops == {"livevae", f"{wheel.name.split('-py')[0]}.dist-info"}, tops  # no top-level train
    for want in ("livevae/shows/demo.toml", "livevae/shows/gallery_loop.toml", "livevae/train/recipes/bbb.toml",
                 "livevae/train/cli.py", "livevae/assets/demo.safetensors", "livevae/py.typed"):  # fmt: skip
        assert want in names, want
    assert not any("heartbeat" in n or n.endswith(".log") for n in names)  # runtime state never ships


@pytest.mark.slow
def test_wheel_install_plays_the_demo_show_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv with only the wheel in it (its dependencies seen through a .pth onto this venv's
    site-packages, whose editable livevae is not active there), run from an unrelated folder."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())  # fmt: skip
    (site / "deps-from-test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "PYTHONPATH": ""}
    env["LIVEVAE_STATE"] = str(tmp_path / "state")
    where = subprocess.run(
        [str(py), "-c", "import livevae, importlib.util as u; print(livevae.__file__, u.find_spec('train'))"],
        cwd=work, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(site)) and where.stdout.strip().endswith("None"), where.stdout
    exe = venv / ("Scripts/livevae.exe" if os.name == "nt" else "bin/livevae")
    cmd = [
        str(exe),
        "demo",
        "--headless",
        "--frames",
        "6",
        "--out",
        "demo.mp4",
        "--backend",
        "torch",
        "--osc-port",
        "0",
    ]
    r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=240)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    show = site / "livevae" / "shows" / "demo.toml"
    assert f"livevae demo: show {show}" in log, log  # the demo show, from the installed package
    assert "OSC on 127.0.0.1:" in log, log
    assert "2 scenes (dream, calm), 2 LFOs" in log, log
    assert (work / "demo.mp4").stat().st_size > 0
    assert not list((site / "livevae" / "shows").glob("*.json")), "runtime state written into site-packages"
    # the bundled recipes too: `livevae train --recipe bbb` resolves from any folder (checked without training)
    r = subprocess.run(
        [str(py), "-c", "from livevae.train.config import load_recipe; print(load_recipe('bbb')[0].preset)"],
        cwd=work, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip(), r.stdout + r.stderr
