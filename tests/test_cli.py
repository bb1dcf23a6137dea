"""The command line: one error base printed as one line, logging configured once (-v/-q/--log-file)."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from pathlib import Path

import pytest

import livevae
import train
from livevae import logs
from livevae.cli.main import main
from livevae.errors import LivevaeError


def _modules() -> list[str]:
    names = []
    for pkg in (livevae, train):
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if m.name.endswith("__main__"):  # importing it runs the CLI
                continue
            names.append(m.name)
    return names


def test_every_error_livevae_raises_derives_from_the_one_base() -> None:
    orphans = []
    for name in _modules():
        mod = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(mod, inspect.isclass):
            ours = cls.__module__ == name and issubclass(cls, Exception) and not cls_name.startswith("_")
            if ours and not issubclass(cls, LivevaeError):
                orphans.append(f"{name}.{cls_name}")
    assert orphans == []


def test_a_livevae_error_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[input]\nsources = 3\n")
    assert main(["live", str(bad), "--headless", "--frames", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("livevae live: error: ") and "bad.toml" in err[0]


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import livevae.cli.osc_map as osc_map

    def broken(*a: object, **k: object) -> object:
        raise ZeroDivisionError("a bug, not a user's mistake")

    monkeypatch.setattr(osc_map, "address_map", broken)
    with pytest.raises(ZeroDivisionError):
        main(["osc-map"])


def test_info_shows_by_default_quiet_hides_it_verbose_adds_debug(capsys: pytest.CaptureFixture[str]) -> None:
    lg = logging.getLogger("livevae.controllers.osc")
    logs.configure(0)
    lg.info("an info line")
    lg.debug("a debug line")
    err = capsys.readouterr().err
    assert "livevae osc: an info line" in err and "debug" not in err  # INFO lines used to vanish
    logs.configure(-1)
    lg.info("an info line")
    lg.warning("a warning")
    assert capsys.readouterr().err == "livevae osc: a warning\n"
    logs.configure(1)
    lg.debug("a debug line")
    assert "livevae osc: a debug line" in capsys.readouterr().err


def test_log_file_gets_every_message_and_a_bad_one_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_file = tmp_path / "logs" / "run.log"
    assert main(["osc-map", "--zdim", "4", "--pcs", "0", "-q", "--log-file", str(log_file)]) == 0
    logging.getLogger("livevae.show.showfile").info("into the file only")
    assert "into the file only" in log_file.read_text()
    assert "into the file only" not in capsys.readouterr().err  # -q: the console only warns
    (tmp_path / "afile").write_text("")
    assert main(["osc-map", "--log-file", str(tmp_path / "afile" / "x.log")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--log-file" in err[0] and "afile" in err[0] and "expected a writable" in err[0]


def test_configure_twice_leaves_one_console_handler() -> None:
    logs.configure()
    logs.configure(-1)
    consoles = [h for h in logging.getLogger("livevae").handlers if type(h).__name__ == "_Console"]
    assert len(consoles) == 1 and consoles[0].level == logging.WARNING
