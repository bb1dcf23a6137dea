"""Adversarial resumes: another film with the same frame count, and settings that silently would not apply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from livevae.cli.main import main
from livevae.offline.prep import FRAMES_FILE
from tests.test_train import make_dataset
from train.resume_check import MAY_CHANGE, differing_flags, fingerprint


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("resume")
    data = make_dataset(tmp / "d")
    recipe = tmp / "r.toml"
    recipe.write_text('preset = "tiny"\nbatch = 4\nheld_out_every = 5\npixel_weight = 1.0\nthreads = 1\n')
    args = ["train", "--recipe", str(recipe), "--data", str(data), "--out", str(tmp / "run"), "--no-progress"]
    assert main([*args, "--max-steps", "2", "--set", "checkpoint_every=1"]) == 0
    return data, tmp / "run"


def test_another_film_with_the_same_frame_count_is_refused(
    run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = run
    other = make_dataset(tmp_path / "other")
    frames = np.load(other / FRAMES_FILE)
    np.save(other / FRAMES_FILE, 255 - frames)  # same count and size, other pictures
    rc = main(["train", "--resume", str(out), "--data", str(other), "--max-steps", "3", "--no-progress"])
    assert rc == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(err) == 1 and "other frames than" in err[0] and "fingerprint" in err[0]


def test_settings_that_cannot_change_are_all_listed_and_refused(
    run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = run
    argv = ["train", "--resume", str(out), "--max-steps", "3", "--no-progress"]
    assert main([*argv, "--preset", "live", "--batch", "8", "--set", "kl_weight=0.5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    for part in ("preset: asked 'live', the run has 'tiny'", "batch: asked 8, the run has 4", "kl_weight: asked 0.5"):
        assert part in err[0], err[0]


def test_the_runs_own_values_and_stopping_rules_pass(
    run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = run
    assert main(["train", "--resume", str(out), "--max-steps", "3", "--batch", "4", "--no-progress"]) == 0
    assert "max_steps: asked 3, the run has 2; applied" in capsys.readouterr().err


def test_fingerprint_and_flag_diff_are_pure() -> None:
    a = np.zeros((100, 4, 4, 3), np.uint8)
    b = a.copy()
    b[50, 0, 0, 0] = 1  # one pixel of one sampled frame
    assert fingerprint(a) == fingerprint(a.copy()) and fingerprint(a) != fingerprint(b)
    assert fingerprint(a) != fingerprint(np.zeros((100, 4, 5, 3), np.uint8))
    refused, allowed = differing_flags({"batch": 4, "lr": None, "epochs": 9}, {"batch": 12, "lr": 1.0, "epochs": 6})
    assert refused == ["batch: asked 4, the run has 12"] and allowed == ["epochs: asked 9, the run has 6"]
    assert "epochs" in MAY_CHANGE and "preset" not in MAY_CHANGE
