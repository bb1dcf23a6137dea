"""Training kill test, short form: `livevae train` killed with SIGKILL twice at random moments; every resume
starts from the newest intact checkpoint and the run ends with a loadable model. Long form (20 kills):
bench/soak/kill_resume.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_kill_minus_nine_and_resume(tmp_path: Path) -> None:
    if not (ROOT / "train" / "cli.py").exists():
        pytest.skip("livevae train not written yet")
    spec = importlib.util.spec_from_file_location("kill_resume", ROOT / "bench" / "soak" / "kill_resume.py")
    assert spec is not None and spec.loader is not None
    kr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kr)
    r = kr.run(kills=2, seed=1, workdir=tmp_path, max_steps=12)
    print(r)
    assert not r["problems"], r["problems"]
    assert r["kills"] >= 1 and r["final_model_loads"]
    resumed = [e for e in r["events"] if "resumed_from_step" in e]
    assert resumed and all(e["resumed_from_step"] > 0 for e in resumed)
