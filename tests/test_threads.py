"""One thread setting reaches every backend (ONNX Runtime's pool and torch's) from every command and the show file."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import livevae.backends as backends
from livevae.backends import create


@pytest.fixture()
def one_thread_restored() -> Any:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_create_gives_onnxruntime_and_torch_the_thread_count(tiny_model_file: Path, one_thread_restored: None) -> None:
    b = create(tiny_model_file, "onnxruntime+fp32", threads=1, logger=lambda s: None)
    assert b._enc.get_session_options().intra_op_num_threads == 1  # type: ignore[attr-defined]
    assert b._dec.get_session_options().intra_op_num_threads == 1  # type: ignore[attr-defined]
    assert "1 threads" in b.describe()  # type: ignore[attr-defined]
    torch.set_num_threads(2)
    create(tiny_model_file, "torch", threads=1, logger=lambda s: None)
    assert torch.get_num_threads() == 1


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every create() call's keyword arguments; the backend itself is real torch-cpu (quick)."""
    seen: list[dict[str, Any]] = []
    real = backends.create

    @functools.wraps(real)  # the same signature, which reconstruct.load_backend inspects
    def spy(model: Any, backend: str = "auto", **kw: Any) -> Any:
        seen.append({"backend": backend, **kw})
        return real(model, "torch", logger=kw.get("logger", lambda s: None))

    import livevae.offline.bench

    monkeypatch.setattr(backends, "create", spy)
    monkeypatch.setattr(livevae.offline.bench, "create", spy)  # bench binds create at import
    return seen


def show_file(tmp_path: Path, model: Path, threads: int | None) -> Path:
    p = tmp_path / "t.toml"
    line = f"threads = {threads}\n" if threads else ""
    p.write_text(f'model = "{model}"\n{line}[input]\nsources = ["testcard"]\n[osc]\nenabled = false\n')
    return p


def test_live_takes_threads_from_the_show_file_and_the_flag(
    tiny_model_file: Path, tmp_path: Path, calls: list[dict[str, Any]], one_thread_restored: None
) -> None:
    from livevae.cli import live

    p = argparse.ArgumentParser()
    live.add_arguments(p)
    show = show_file(tmp_path, tiny_model_file, 1)
    live.build(p.parse_args([str(show), "--headless", "--frames", "1"]))
    live.build(p.parse_args([str(show), "--headless", "--frames", "1", "--threads", "3"]))  # the flag wins
    live.build(p.parse_args(["--model", str(tiny_model_file), "--headless", "--frames", "1", "--threads", "2"]))
    assert [c["threads"] for c in calls] == [1, 3, 2]


def test_demo_passes_threads(
    tiny_model_file: Path, tmp_path: Path, calls: list[dict[str, Any]], one_thread_restored: None
) -> None:
    from livevae.cli import demo

    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    out = str(tmp_path / "d.mp4")
    demo.run(p.parse_args(["--show", str(show_file(tmp_path, tiny_model_file, 1)), "--out", out, "--frames", "1"]))
    demo.run(
        p.parse_args(["--show", "", "--model", str(tiny_model_file), "--out", out, "--frames", "1", "--threads", "2"])
    )
    assert [c["threads"] for c in calls] == [1, 2]


def test_the_watchdogs_rebuilt_backend_keeps_the_threads(calls: list[dict[str, Any]], tiny_model_file: Path) -> None:
    from livevae.installation.controller import InstallationController, parse_section
    from livevae.loop import LiveConfig
    from tests.helpers.handle import RecordingHandle

    ctl = InstallationController(parse_section({}))
    inner = SimpleNamespace(cfg=None, name="torch-cpu")
    for pipeline in (True, False):
        cfg = LiveConfig(model=str(tiny_model_file), threads=1, pipeline=pipeline)
        loop = RecordingHandle(model=cfg.model, backend_spec=cfg.backend, threads=cfg.threads, backend=inner,
                               pipeline=cfg.pipeline)  # fmt: skip
        ctl._start_watchdog(loop)
        loop.backend.factory()  # what the watchdog calls to rebuild a hung backend
        assert calls[-1]["threads"] == 1 and calls[-1]["overlap"] is pipeline  # shared out as before


def test_reconstruct_and_bench_pass_threads(calls: list[dict[str, Any]], tiny_model_file: Path, tmp_path: Path) -> None:
    from livevae.offline import bench
    from livevae.offline.reconstruct import load_backend

    load_backend(str(tiny_model_file), "auto", threads=1)
    bench._make_backend("onnxruntime", tiny_model_file, 1, tmp_path, 2)
    assert [c["threads"] for c in calls] == [1, 2]
