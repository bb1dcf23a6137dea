"""ONNX Runtime backend: the CPU live path (tuned for 2 cores), and the CUDA EP when onnxruntime-gpu is present."""

from __future__ import annotations

import os

import numpy as np

from livevae.backends import EngineError
from livevae.backends.frames import check_z, pixel_phases_to_frames, to_input, to_pixels, to_uint8
from livevae.backends.onnx_export import NetSpec, export
from livevae.backends.quantize import to_blocks
from livevae.model import ModelConfig, read_model_header


def default_threads() -> int:
    """Intra-op threads when none are given: min(2, cores); the live loop's capture and display want the rest."""
    return min(2, os.cpu_count() or 1)


SPINNING = ("run", "off", "on")


def session_options(threads: int | None = None, spinning: str = "run") -> object:
    """SessionOptions for live use on a small CPU.

    threads: intra-op threads (default: min(2, cores)); inter-op 1, sequential execution: our graphs
    are a single chain, so a second pool would only compete with the capture and display threads.
    spinning: "run" (the default) lets the worker spin between the ops of one run and stops it when the run
    ends (session.force_spinning_stop): without it every op waits for the sleeping worker to wake, which cost
    the demo model 12% of its speed; with spinning left on ("on", bench only), the encoder's worker spins
    on through the decoder's run and starves it (x0.5), and takes the core capture and display need between
    frames. "off": the worker sleeps after every op.
    """
    import onnxruntime as ort

    if spinning not in SPINNING:
        raise EngineError(f"onnxruntime spinning {spinning!r}; expected one of {', '.join(SPINNING)}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or default_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0" if spinning == "off" else "1")
    so.add_session_config_entry("session.force_spinning_stop", "1" if spinning == "run" else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3  # warnings about unused initialisers etc. are noise at a show
    return so


class OnnxRuntimeBackend:
    """encode/decode through two ORT sessions (encoder, decoder) built from cached ONNX exports."""

    def __init__(
        self,
        encoder_onnx: str | os.PathLike[str],
        decoder_onnx: str | os.PathLike[str],
        cfg: ModelConfig,
        provider: str = "cpu",
        threads: int | None = None,
        spinning: str = "run",
        batch: int | None = 1,
        precision: str = "fp32",
        scheme: str | None = None,
        overlap: bool = False,
    ) -> None:
        """overlap: the live loop will run one frame's encode beside the previous frame's decode (LiveLoop's
        pipeline), so the `threads` are shared out between the two sessions (2 -> 1 each, 3 -> 1 + 2) instead of each
        session taking them all: on 2 cores two one-thread runs side by side gave 1.1-1.3x the frames of one
        two-thread run after the other (broad2016, AVX2 kernels), and two two-thread runs side by side less."""
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise EngineError(f"onnxruntime is not installed ({e}); pip install onnxruntime") from e
        if provider == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EngineError(
                    f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                    f"(available: {ort.get_available_providers()}); pip install onnxruntime-gpu"
                )
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif provider == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise EngineError(f"onnxruntime provider {provider!r}; expected 'cpu' or 'cuda'")
        self.cfg = cfg
        self.batch = batch
        self.precision = precision
        self.scheme = scheme  # int8: the quantize.SCHEMES entry the graphs were quantized with
        self.threads = threads or default_threads()
        self.spinning = spinning
        self.overlaps = overlap and provider == "cpu" and self.threads >= 2  # one core or a GPU: nothing to share
        # overlapped: the encoder gets half the threads, the decoder (the heavier net) the rest
        self.enc_threads = self.threads // 2 if self.overlaps else self.threads
        self.dec_threads = self.threads - self.enc_threads if self.overlaps else self.threads
        so_enc, so_dec = session_options(self.enc_threads, spinning), session_options(self.dec_threads, spinning)
        self._enc = ort.InferenceSession(str(encoder_onnx), so_enc, providers=providers)
        self._dec = ort.InferenceSession(str(decoder_onnx), so_dec, providers=providers)
        self._lut, self._crop = None, 0
        if precision == "int8":  # the decoder gives quantized pre-tanh levels; its table makes them pixels
            from livevae.backends.quantize import output_crop, output_lut

            meta = self._dec.get_modelmeta().custom_metadata_map
            self._lut, self._crop = output_lut(meta, decoder_onnx), output_crop(meta, decoder_onnx)
        self.provider = self._enc.get_providers()[0]
        self.name = "onnxruntime" if provider == "cpu" else "onnxruntime-cuda"

    @classmethod
    def from_file(
        cls,
        model_path: str | os.PathLike[str],
        provider: str = "cpu",
        batch: int | None = 1,
        precision: str = "fp32",
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        spinning: str = "run",
        scheme: str | None = None,
        overlap: bool = False,
    ) -> OnnxRuntimeBackend:
        """Export (or reuse the cached) encoder/decoder for this model file, then open the sessions.
        scheme: int8 only, a quantize.SCHEMES name; None = the scheme for this CPU. overlap: see __init__."""
        cfg, _ = read_model_header(model_path)  # raises ModelError naming a bad file before any export
        enc = export(model_path, NetSpec("encoder", batch, precision, scheme=scheme), cache_dir)
        dec = export(model_path, NetSpec("decoder", batch, precision, scheme=scheme), cache_dir)
        return cls(enc.path, dec.path, cfg, provider, threads, spinning, batch, precision, enc.spec.scheme, overlap)

    def describe(self) -> str:
        b = "dynamic batch" if self.batch is None else f"batch {self.batch}"
        spin = {"run": "within a run", "off": "off", "on": "on"}[self.spinning]
        prec = f"{self.precision} {self.scheme}" if self.scheme else self.precision
        threads = f"{self.threads} threads"
        if self.overlaps:
            threads = f"{self.enc_threads}+{self.dec_threads} threads, encode beside decode"
        return f"{self.name} ({self.provider}, {threads}, spinning {spin}, {prec}, {b})"

    def _run(self, sess: object, name: str, out: str, x: np.ndarray) -> np.ndarray:
        run = sess.run  # type: ignore[attr-defined]
        if self.batch is None or len(x) == self.batch:
            return np.asarray(run([out], {name: x})[0])
        # A static-batch graph: feed it one batch-sized slice at a time (live graphs are batch 1).
        if len(x) % self.batch:
            raise EngineError(f"{len(x)} items do not split into static batches of {self.batch}; use batch=None")
        parts = [run([out], {name: x[i : i + self.batch]})[0] for i in range(0, len(x), self.batch)]
        return np.concatenate(parts)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] or float32 [N, 3, H, W] in [-1, 1] -> float32 z [N, zdim]."""
        if self.precision == "int8":  # the graph takes the uint8 pixels themselves, in 2x2 blocks (NetSpec.pixel_io)
            return self._run(self._enc, "frames", "z", to_blocks(to_pixels(frames, self.cfg)))
        return self._run(self._enc, "frames", "z", to_input(frames, self.cfg))

    def decode(self, z: np.ndarray) -> np.ndarray:
        """float32 [N, zdim] -> uint8 [N, H, W, 3]."""
        out = self._run(self._dec, "z", "frames", check_z(z, self.cfg))
        if self._lut is not None:  # uint8 levels in phases [N, H/2, W/2, 2, 2, 3]
            return pixel_phases_to_frames(out, self._lut, self._crop)
        return to_uint8(out)
