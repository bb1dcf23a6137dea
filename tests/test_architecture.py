"""The import contracts cover the whole package: a new top-level module cannot slip past "nothing imports cli/"."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _sources(name_start: str) -> set[str]:
    """The source_modules of the contract whose name starts so."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (c,) = [c for c in cfg["contracts"] if c["name"].startswith(name_start)]
    return {str(m) for m in c["source_modules"]}


def test_nothing_imports_cli_lists_every_top_level_module() -> None:
    listed = _sources("nothing imports cli/")
    pkg = ROOT / "livevae"
    tops = {f"livevae.{p.stem}" for p in pkg.glob("*.py") if p.stem not in ("__init__", "__main__")}
    tops |= {f"livevae.{p.name}" for p in pkg.iterdir() if (p / "__init__.py").is_file() and p.name != "cli"}
    assert tops - listed == set(), "add these to the contract in pyproject.toml"


def test_the_loop_contract_names_every_package_that_plugs_into_it() -> None:
    listed = _sources("controllers, outputs")
    assert {"livevae.controllers", "livevae.outputs", "livevae.show", "livevae.installation"} <= listed
