"""The on-disk cache of exported ONNX graphs and TensorRT engines: keys, paths and verified sidecars."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; writes stay atomic (unique temp names), builds may duplicate
    fcntl = None  # type: ignore[assignment]

from livevae.backends import EngineError

# Bump when the exported graphs or the engine build recipe change, so old cache entries are not reused.
CACHE_FORMAT = 1
# How long a process waits for another one holding a cache lock: an engine build takes minutes at most.
LOCK_TIMEOUT_S = 30 * 60.0


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """An advisory flock on `path` (created if missing), so torchrun ranks sharing a cache take turns.

    flock belongs to the open file, so two threads or two processes exclude each other alike. Raises
    EngineError naming the lock when it is not free within `timeout` seconds. Without fcntl (Windows), or
    where the lock file cannot be created (a read-only cache), it does not lock.
    """
    fd = -1
    if fcntl is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            fd = -1
    if fd < 0:
        yield
        return
    try:
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EngineError(
                        f"{path}: held by another process for over {timeout:.0f} s; expected its engine build to "
                        "finish by then (a crashed build leaves no lock: is a livevae process still running?)"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def lock_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".lock")


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: `cache_dir`, else $LIVEVAE_CACHE, else ~/.cache/livevae."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("LIVEVAE_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "livevae"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (model files can be hundreds of MB)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise EngineError(f"{path}: cannot read file to hash it ({e})") from e
    return h.hexdigest()


def key_of(fields: Mapping[str, Any]) -> str:
    """A stable 24-hex-digit key for a set of fields: sha256 of their canonical JSON (sorted keys).

    Pure: the same fields always give the same key; changing any value changes it.
    """
    blob = json.dumps({"cache_format": CACHE_FORMAT, **fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def engine_key_fields(
    onnx_sha256: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    precision: str,
    shapes: Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
) -> dict[str, Any]:
    """Everything a TensorRT engine depends on, as the fields of its cache key.

    shapes: input name -> (min, opt, max) shape of the optimisation profile; a static engine has
    min == opt == max. Engines are not portable across TensorRT versions or GPU models, and a
    key without resolution or GPU is the StreamDiffusion mistake we do not repeat.
    """
    return {
        "onnx_sha256": onnx_sha256,
        "tensorrt": trt_version,
        "gpu": gpu_name,
        "compute_capability": f"{compute_capability[0]}.{compute_capability[1]}",
        "precision": precision,
        "shapes": {k: [list(s) for s in v] for k, v in sorted(shapes.items())},
    }


def timing_cache_key_fields(trt_version: str, gpu_name: str, compute_capability: tuple[int, int]) -> dict[str, Any]:
    """The timing cache is shared by all engines built by one TensorRT version on one GPU model."""
    return {
        "tensorrt": trt_version,
        "gpu": gpu_name,
        "compute_capability": f"{compute_capability[0]}.{compute_capability[1]}",
    }


def sidecar_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def _replace_atomically(dst: Path, data: bytes) -> None:
    # A temp name of this writer's own: with a fixed one, two ranks' writes collide and one os.replace fails.
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600: a show run as another user must read the export
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_verified(artifact: Path, data: bytes, fields: Mapping[str, Any]) -> Path:
    """Write `data` to `artifact` and a sidecar JSON recording its sha256 and the key fields, atomically.

    The pair is written under the artifact's lock, so concurrent writers (torchrun ranks) never leave one
    writer's file beside another's sidecar, and readers (read_verified) never see a half-written pair.
    """
    artifact.parent.mkdir(parents=True, exist_ok=True)
    side = {"sha256": hashlib.sha256(data).hexdigest(), "fields": dict(fields), "cache_format": CACHE_FORMAT}
    with file_lock(lock_path(artifact)):
        _replace_atomically(artifact, data)
        _replace_atomically(sidecar_path(artifact), json.dumps(side, indent=1, sort_keys=True).encode())
    return artifact


def read_verified(artifact: Path, fields: Mapping[str, Any]) -> bytes:
    """The bytes of a cached artifact, only if the cache wrote it for exactly these key fields.

    Raises EngineError naming the file when the sidecar is missing or unreadable, records other key
    fields, or the file's sha256 differs from the recorded one (a hand-copied or corrupt engine:
    deserialising an engine is not safe against arbitrary bytes, so we refuse before TensorRT sees it).
    """
    if not artifact.is_file():
        raise EngineError(f"{artifact}: cached file not found")
    with file_lock(lock_path(artifact), shared=True):
        return _read_verified(artifact, fields)


def _read_verified(artifact: Path, fields: Mapping[str, Any]) -> bytes:
    side_path = sidecar_path(artifact)
    if not artifact.is_file():
        raise EngineError(f"{artifact}: cached file not found")
    try:
        side = json.loads(side_path.read_text())
        recorded, recorded_fields = side["sha256"], side["fields"]
    except FileNotFoundError:
        raise EngineError(
            f"{artifact}: no sidecar {side_path.name}; refusing a file the livevae cache did not write"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EngineError(f"{side_path}: unreadable sidecar ({e}); expected JSON with 'sha256' and 'fields'") from e
    expected_fields = json.loads(json.dumps(dict(fields)))  # tuples -> lists, as stored
    if recorded_fields != expected_fields:
        diff = sorted(
            k for k in set(recorded_fields) | set(expected_fields) if recorded_fields.get(k) != expected_fields.get(k)
        )
        raise EngineError(f"{artifact}: sidecar was written for other key fields {diff}; refusing to load it")
    data = artifact.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded:
        raise EngineError(
            f"{artifact}: sha256 {actual[:16]}... does not match the {recorded[:16]}... recorded when the cache "
            "wrote it; refusing to load a file the cache did not produce (delete it to rebuild)"
        )
    return data
