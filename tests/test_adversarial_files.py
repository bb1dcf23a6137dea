"""Adversarial outputs: a careless -o never deletes the user's files, every output is checked before work and
written atomically, and a command whose output was not written exits non-zero with one line."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from livevae.cli.main import main
from livevae.offline.prep import FRAMES_FILE, PrepError, prep
from livevae.safeout import OutputError, atomic_file, check_dataset_out, check_output_file
from tests.conftest import pattern_frames, write_video


@pytest.fixture
def film(tmp_path: Path) -> Path:
    return write_video(tmp_path / "film.mp4", pattern_frames(6, 160, 90))


def _one_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert all(w in lines[0] for w in words), lines[0]


# --- class: never destroy what prep did not create ---------------------------------------------------------------


def test_prep_refuses_a_folder_of_the_users_and_touches_nothing(
    tmp_path: Path, film: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "my_project"
    project.mkdir()
    (project / "notes.txt").write_text("three weeks of notes")
    (project / "sub").mkdir()
    assert main(["prep", str(film), "-o", str(project), "--no-progress"]) == 1
    _one_line(capsys.readouterr().err, "my_project", "notes.txt", "not a livevae dataset")
    assert (project / "notes.txt").read_text() == "three weeks of notes" and (project / "sub").is_dir()
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", "sub"]


def test_prep_refuses_a_dataset_the_user_added_files_to(tmp_path: Path, film: Path) -> None:
    ds = tmp_path / "ds"
    prep(film, ds, progress=False)
    (ds / "my_labels.csv").write_text("0,sky\n")
    with pytest.raises(PrepError, match=r"my_labels\.csv"):
        prep(film, ds, max_frames=2, progress=False)
    assert (ds / "my_labels.csv").exists() and np.load(ds / FRAMES_FILE).shape[0] == 6


def test_prep_dot_means_the_current_folder_and_is_refused_when_it_is_not_a_dataset(
    tmp_path: Path, film: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # holds the film itself
    assert main(["prep", "film.mp4", "-o", ".", "--no-progress"]) == 1
    _one_line(capsys.readouterr().err, "not a livevae dataset")
    assert film.exists()


@pytest.mark.parametrize("kind", ["file", "under-a-file", "empty-folder", "new-nested"])
def test_prep_output_paths_are_checked_before_decoding(
    tmp_path: Path, film: Path, kind: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    out = {
        "file": blocker,
        "under-a-file": blocker / "ds",
        "empty-folder": tmp_path / "empty",
        "new-nested": tmp_path / "a" / "b" / "ds",
    }[kind]
    if kind == "empty-folder":
        out.mkdir()
    decoded: list[int] = []
    import livevae.offline.prep as prep_mod

    orig = prep_mod.iter_scaled
    monkeypatch.setattr(prep_mod, "iter_scaled", lambda *a, **k: (decoded.append(1), *orig(*a, **k))[1:])
    rc = main(["prep", str(film), "-o", str(out), "--no-progress"])
    err = capsys.readouterr().err
    if kind in ("file", "under-a-file"):
        assert rc == 1 and not decoded
        _one_line(err, str(out.name))
        assert blocker.read_text() == "mine"
    else:
        assert rc == 0 and (out / FRAMES_FILE).is_file()


def test_the_safe_output_helpers_refuse_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    for bad, why in [(tmp_path, "is a folder"), (tmp_path / "o.xyz", "suffix"), (tmp_path / "f" / "o.mp4", "cannot")]:
        with pytest.raises(OutputError, match=why):
            check_output_file(bad, (".mp4",))
    with pytest.raises(OutputError, match="is a file"):
        check_dataset_out(tmp_path / "f", "livevae-frames", ())
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "meta.json").write_text(json.dumps({"format": "someone-elses"}))
    with pytest.raises(OutputError, match="not a livevae dataset"):
        check_dataset_out(fake, "livevae-frames", ("meta.json",))


def test_atomic_file_keeps_the_old_file_whole_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "scenes.json"
    dest.write_text("old")
    with pytest.raises(OSError), atomic_file(dest) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert dest.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["scenes.json"]
    with atomic_file(dest) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["scenes.json"]


# --- class: a command whose output was not written exits non-zero -------------------------------------------------


@pytest.mark.parametrize("out", ["out.xyz", "folder/", "a_file/out.mp4"])
def test_reconstruct_bad_outputs_fail_at_once_and_leave_nothing(
    tmp_path: Path, film: Path, tiny_model_file: Path, out: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_text("mine")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    target = str(tmp_path / out) + ("/" if out.endswith("/") else "")
    rc = main(["reconstruct", str(tiny_model_file), str(film), "-o", target, "--no-progress", "--backend", "torch"])
    assert rc == 1
    _one_line(capsys.readouterr().err, "expected")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no partial file, nothing removed


def test_videowriter_with_an_unknown_container_leaves_no_partial(tmp_path: Path) -> None:
    from livevae.media.video import VideoError, VideoWriter

    with pytest.raises(VideoError, match=r"out\.xyz"):
        VideoWriter(tmp_path / "out.xyz", 25, (32, 32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out", ["render.xyz", "a_file/render.mp4"])
def test_headless_render_to_a_bad_out_exits_non_zero_before_rendering(
    tmp_path: Path, film: Path, tiny_model_file: Path, out: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a_file").write_text("mine")
    argv = ["live", "--model", str(tiny_model_file), "--source", str(film), "--headless", "--frames", "3"]
    assert main([*argv, "--out", str(tmp_path / out)]) == 1
    _one_line(capsys.readouterr().err, "--out", "expected")


def test_headless_render_whose_disk_fills_exits_non_zero(
    tmp_path: Path,
    film: Path,
    tiny_model_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from livevae.media import video

    def full(self: object, rgb: object, t: object = None) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video.VideoWriter, "write", full)
    out = tmp_path / "render.mp4"
    argv = ["live", "--model", str(tiny_model_file), "--source", str(film), "--headless", "--frames", "3"]
    assert main([*argv, "--out", str(out)]) == 1
    assert "the render was not written" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".render*"))


def test_a_checkpoint_on_a_full_disk_is_one_error_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from train import checkpoint as ck

    folder = ck.CheckpointFolder(tmp_path / "checkpoints")
    first = folder.save(1, {"w": torch.ones(3)}, {"step": 1})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ck.CheckpointError, match=r"step-000000002.safetensors: cannot write .*No space left"):
        folder.save(2, {"w": torch.ones(3)}, {"step": 2})
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-000000001.json", "step-000000001.safetensors"]  # no .tmp filling the disk
    assert ck.load_checkpoint(first)[1]["step"] == 1


# --- class: a traceback where one line is due ------------------------------------------------------------------

DEEP_TOML = "x = " + "[" * 3000 + "]" * 3000 + "\n"


def test_deeply_nested_recipe_and_set_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(DEEP_TOML)
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress"]
    assert main([*argv, "--recipe", str(recipe)]) == 1
    _one_line(capsys.readouterr().err, "r.toml", "nested too deep")
    assert main([*argv, "--set", "lr=" + "[" * 3000 + "]" * 3000]) == 1
    _one_line(capsys.readouterr().err, "--set", "nested too deep")


def test_deeply_nested_midi_learn_file_is_one_error(tmp_path: Path) -> None:
    from livevae.controllers.midi import MidiError, load_learned

    p = tmp_path / "show.midi.toml"
    p.write_text(DEEP_TOML)
    with pytest.raises(MidiError, match="nested too deep"):
        load_learned(p)


def test_bench_with_an_unwritable_out_fails_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import livevae.offline.bench as bench

    def never(*a: object, **k: object) -> None:
        raise AssertionError("measured before checking --out")

    monkeypatch.setattr(bench, "run_bench", never)
    (tmp_path / "a_file").write_text("mine")
    assert main(["bench", "--out", str(tmp_path / "a_file" / "backends")]) == 1
    _one_line(capsys.readouterr().err, "--out", "cannot write")
