"""Training checkpoints: one safetensors file each (weights, optimizer and RNG tensors) with the JSON state
(config, step, epoch, batch, optimizer scalars) in its metadata; atomic writes, no pickle anywhere."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from livevae.errors import LivevaeError

FORMAT = "livevae-train-checkpoint"
VERSION = 1
_STEP_RE = re.compile(r"^step-(\d{9})\.safetensors$")


class CheckpointError(LivevaeError):
    """A checkpoint is missing, corrupt or does not fit the run it is loaded into."""


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(str(d), os.O_RDONLY)
    except OSError:  # not every platform can open a directory
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file, fsync, rename over `path`, fsync the folder: a reader (or a kill -9) sees the
    old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # a full disk: the half-written temp file must not keep filling it
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CheckpointError(
                f"{path}: cannot write {len(data) / 2**20:.1f} MB ({e.strerror or e}); expected free space in "
                f"{path.parent} (the previous checkpoints are untouched)"
            ) from e
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_checkpoint(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Atomically write tensors + JSON state (stored in the safetensors metadata) to `path`."""
    from safetensors.torch import save as st_save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}  # clone: no shared storage
    meta = {"format": FORMAT, "version": str(VERSION), "state": json.dumps(state, sort_keys=True)}
    atomic_write_bytes(path, st_save(flat, metadata=meta))
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors on CPU, state) from a checkpoint; raises CheckpointError naming the file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; expected a step-*.safetensors file or a run folder")
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a mapping
    except Exception as e:  # safetensors raises several error types for truncated or garbage files
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({e}); expected a livevae checkpoint") from e
    if md.get("format") != FORMAT:
        raise CheckpointError(f"{path}: metadata format={md.get('format')!r}; expected {FORMAT!r}")
    try:
        state = json.loads(md["state"])
    except (KeyError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: missing or bad 'state' metadata ({e})") from e
    return tensors, state


# --- optimizer and RNG state as tensors + JSON scalars -------------------------------------------------


def pack_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict split into tensors (keyed prefix.param.key) and JSON (groups, scalars)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unpack_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict[str, Any], prefix: str
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if name.startswith(prefix + "."):
            pid, key = name[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(pid), {})[key] = t
    for pid, sc in info.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(sc)
    groups = info["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def rng_tensors(generators: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    """Global torch CPU/CUDA RNG states and the named generators' states, as uint8 tensors."""
    out = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda{i}"] = s
    for name, g in generators.items():
        out[f"rng.gen.{name}"] = g.get_state()
    return out


def restore_rng(tensors: dict[str, torch.Tensor], generators: dict[str, torch.Generator]) -> None:
    if "rng.torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng.torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda"))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    for name, g in generators.items():
        key = f"rng.gen.{name}"
        if key in tensors:
            g.set_state(tensors[key])


# --- the checkpoint folder of a run --------------------------------------------------------------------


class CheckpointFolder:
    """RUN/checkpoints/: step-XXXXXXXXX.safetensors (+ .json sidecar with state and validation), the last
    `keep_last` of them, and best.safetensors (+ best.json) by the validation metric."""

    def __init__(self, root: str | os.PathLike[str], keep_last: int = 3) -> None:
        self.root = Path(root)
        self.keep_last = keep_last

    def steps(self) -> list[tuple[int, Path]]:
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _STEP_RE.match(p.name))]
        return sorted(found)

    def save(self, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
        path = save_checkpoint(self.root / f"step-{step:09d}.safetensors", tensors, state)
        atomic_write_json(path.with_suffix(".json"), state)
        self.prune()
        return path

    def save_best(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
        path = save_checkpoint(self.root / "best.safetensors", tensors, state)
        atomic_write_json(self.root / "best.json", state)
        return path

    def prune(self) -> None:
        for _, p in self.steps()[: -self.keep_last]:
            p.unlink(missing_ok=True)
            p.with_suffix(".json").unlink(missing_ok=True)

    def latest(self) -> Path | None:
        s = self.steps()
        return s[-1][1] if s else None

    def best_value(self) -> float | None:
        p = self.root / "best.json"
        if not p.is_file():
            return None
        try:
            v = json.loads(p.read_text()).get("best_value")
        except ValueError:
            return None
        return float(v) if v is not None else None


def resolve_resume(path: str | os.PathLike[str]) -> Path:
    """--resume takes a checkpoint file, a run folder or its checkpoints/ folder: the newest readable step.
    A corrupt newest file (which atomic writes should prevent) is reported, and the one before it used."""
    p = Path(path)
    if p.is_file():
        return p
    folder = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    if not folder.is_dir():
        raise CheckpointError(f"{p}: no such checkpoint file or run folder")
    steps = CheckpointFolder(folder).steps()
    errors: list[str] = []
    for _, f in reversed(steps):
        try:
            load_checkpoint(f)
            if errors:
                print(f"livevae train: skipped unreadable checkpoint(s): {'; '.join(errors)}")
            return f
        except CheckpointError as e:
            errors.append(str(e))
    detail = f" ({'; '.join(errors)})" if errors else ""
    raise CheckpointError(f"{folder}: no readable step-*.safetensors checkpoint to resume from{detail}")
