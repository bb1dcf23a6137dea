"""The NDI runtime's settings livevae hands it: the user's own file, plus SpeedHQ 4:2:0 unless they chose a mode."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from livevae import ndi_config
from livevae.ndi_config import CONFIG_NAME, merged_config


def write(d: Path, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / CONFIG_NAME).write_text(text)
    return d


def test_the_users_settings_are_kept_and_speedhq_420_is_added(tmp_path: Path) -> None:
    user = {"ndi": {"networks": {"ips": "192.168.1.20,192.168.1.21"}, "groups": {"send": "stage"}}}
    cfg, why = merged_config(write(tmp_path, json.dumps(user)))
    assert cfg == {"ndi": {**user["ndi"], "codec": {"shq": {"mode": "4:2:0"}}}}
    assert "SpeedHQ 4:2:0" in why and str(tmp_path / CONFIG_NAME) in why
    assert "codec" not in user["ndi"]  # a copy: the user's own settings are not changed


def test_no_settings_file_gives_the_codec_alone(tmp_path: Path) -> None:
    cfg, why = merged_config(tmp_path / "none")
    assert cfg == {"ndi": {"codec": {"shq": {"mode": "4:2:0"}}}} and "no settings at" in why


def test_a_mode_the_user_chose_wins(tmp_path: Path) -> None:
    cfg, why = merged_config(write(tmp_path, '{"ndi": {"codec": {"shq": {"mode": "4:2:2"}}}}'))
    assert cfg is None and "ndi.codec.shq.mode = '4:2:2': kept" in why


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("{not json", "unreadable (JSONDecodeError"),
        ("[1, 2]", "in list settings"),
        ('{"ndi": "x"}', "in dict settings"),
        ('{"ndi": {"codec": {"shq": 4}}}', "in dict settings"),
        ("[" * 100_000, "unreadable (RecursionError"),
    ],
)
def test_a_broken_settings_file_is_one_line_naming_it_and_left_to_the_runtime(
    tmp_path: Path, text: str, found: str
) -> None:
    cfg, why = merged_config(write(tmp_path, text))
    assert cfg is None and str(tmp_path / CONFIG_NAME) in why and found in why and "\n" not in why


def test_an_oversized_settings_file_is_not_read(tmp_path: Path) -> None:
    d = write(tmp_path, "{" + " " * (ndi_config.MAX_CONFIG_BYTES + 1) + "}")
    cfg, why = merged_config(d)
    assert cfg is None and f"expected an NDI settings file under {ndi_config.MAX_CONFIG_BYTES}" in why


def test_prepare_points_the_runtime_at_a_whole_private_copy_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = write(tmp_path / "user", '{"ndi": {"networks": {"ips": "127.0.0.1"}}}')
    monkeypatch.setenv("NDI_CONFIG_DIR", str(user))
    monkeypatch.setattr(ndi_config, "_done", None)
    line = ndi_config.prepare()
    d = Path(os.environ["NDI_CONFIG_DIR"])
    assert d != user and sorted(p.name for p in d.iterdir()) == [CONFIG_NAME]  # no .part left behind
    assert json.loads((d / CONFIG_NAME).read_text()) == {
        "ndi": {"networks": {"ips": "127.0.0.1"}, "codec": {"shq": {"mode": "4:2:0"}}}
    }
    assert "SpeedHQ 4:2:0" in line
    assert ndi_config.prepare() == line and Path(os.environ["NDI_CONFIG_DIR"]) == d  # once per process
    assert json.loads((user / CONFIG_NAME).read_text()) == {"ndi": {"networks": {"ips": "127.0.0.1"}}}


def test_prepare_leaves_the_runtime_alone_when_the_file_is_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = write(tmp_path, "{broken")
    monkeypatch.setenv("NDI_CONFIG_DIR", str(user))
    monkeypatch.setattr(ndi_config, "_done", None)
    line = ndi_config.prepare()
    assert os.environ["NDI_CONFIG_DIR"] == str(user) and "the runtime's own compression applies" in line


def test_the_platforms_own_folder_without_ndi_config_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NDI_CONFIG_DIR", raising=False)
    monkeypatch.setattr(ndi_config.sys, "platform", "linux")
    assert ndi_config.user_config_dir() == Path.home() / ".ndi"
    monkeypatch.setattr(ndi_config.sys, "platform", "win32")
    monkeypatch.setenv("PROGRAMDATA", "D:\\PD")
    assert ndi_config.user_config_dir() == Path("D:\\PD") / "NDI"
