"""Docs that a command can print or a tree can check: the OSC map in docs/control.md, module names in the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from livevae.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- osc-map:", "<!-- /osc-map -->"


def test_osc_map_in_the_docs_is_what_osc_map_prints(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "control.md").read_text()
    start = text.index("\n", text.index(BEGIN)) + 1
    documented = text[start : text.index(END)].strip()
    assert main(["osc-map", "--markdown"]) == 0
    printed = capsys.readouterr().out.strip()
    assert documented == printed, "docs/control.md drifted from `livevae osc-map --markdown`: paste its output"


def test_every_module_the_docs_name_exists() -> None:
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for m in re.finditer(r"`?((?:livevae|train|tests|bench)/[\w/]+\.py)`?", doc.read_text()):
            if not (ROOT / m.group(1)).is_file():
                missing.append(f"{doc.name}: {m.group(1)}")
        if doc.name == "architecture.md":  # the walk names modules relative to livevae/
            for m in re.finditer(r"^ ([a-z]+/[\w*]+\.py|[a-z]+\.py)\b", doc.read_text(), re.M):
                name = m.group(1)
                if "*" not in name and not (ROOT / "livevae" / name).is_file():
                    missing.append(f"{doc.name}: livevae/{name}")
    assert missing == []


def test_the_readme_stays_a_front_door() -> None:
    """What it is, two commands, a tour, links: reference material lives in docs/, lab notes in docs/notes/."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    for link in re.findall(r"\]\((docs/[^)#]+)", "\n".join(lines)):
        assert (ROOT / link).exists(), link
