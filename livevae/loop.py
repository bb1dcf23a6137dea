"""The live loop: source -> preprocess -> encode -> modulate -> decode -> outputs; `livevae live`.

Over 600 lines on purpose: it is the one frame loop, LiveLoop, read top to bottom in the order a frame flows; its
handle for controllers is the short class at the end.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from livevae.config import LiveConfig, LiveError
from livevae.handle import Controller, FrameInfo, LoopHandle, LoopStatus, Watcher, services_of
from livevae.media.capture import Backoff, Capture, Fallback, OrderedReader
from livevae.media.preprocess import DevicePreprocessor, Preprocessor
from livevae.media.source import Frame, Source, VideoFileSource, open_source
from livevae.outputs.hud import HudInfo, hud_lines
from livevae.outputs.recorder import Heard, Recorder, Screenshots, stamped_path
from livevae.outputs.scaling import ScaledFrame
from livevae.outputs.sinks import OutputSpec, open_output
from livevae.outputs.threaded import NewestFrameOutput
from livevae.outputs.window import DisplayThread, Window
from livevae.stats import LiveStats, StageTimes

if TYPE_CHECKING:
    from livevae.backends import Backend
    from livevae.control.state import ControlState

log = logging.getLogger(__name__)

# actions that need a part of the show that is not there, and how to get it
_MIDI_HINT = 'MIDI is off: add a [midi] section (inputs = ["*"]) to the show, or start with --midi-port NAME'
DEAD_ENDS = {
    "midi.learn": _MIDI_HINT,
    "midi.unlearn": _MIDI_HINT,
    "scene.recall": "scenes need a show file with [scenes.NAME] (or /livevae/scene/save NAME first)",
    "scene.save": "scenes need the show controller: play a show file, or --model with OSC on",
}
STAGES = ("input", "preprocess", "encode", "modulate", "decode", "output")
__all__ = ["Controller", "FrameInfo", "LiveConfig", "LiveError", "LiveLoop", "LiveStats", "Watcher"]


@dataclass
class _InFlight:
    """One frame between its input and its present: what _begin took and made, for _finish."""

    frame: Frame | None  # None: the fallback picture or a frozen z
    t: float  # show time
    captured: float  # time.monotonic() of capture, for the latency
    ms: dict[str, float]  # stage times so far
    fell_back: bool = False
    dry: np.ndarray | None = None  # uint8 [H, W, 3] the input as the model saw it, for dry/wet
    z: np.ndarray | None = None  # float32 [1, zdim] once encoded
    job: cf.Future[tuple[np.ndarray, float]] | None = None  # its encode on the encode thread: (z, ms)
    hold_z: bool = False  # frozen by the loop: its z becomes the held one


def _timed(fn: Callable[[Any], np.ndarray], x: Any) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    z = fn(x)
    return z, (time.perf_counter() - t) * 1000


class LiveLoop:
    """Runs one show until quit, the frame/second count, or Ctrl-C. Build it, then call run() once."""

    def __init__(
        self,
        cfg: LiveConfig,
        backend: Backend,
        state: ControlState | None = None,
        controllers: Sequence[Controller] = (),
        make_source: Callable[[str], Source] | None = None,
    ) -> None:
        """make_source: builds a Source from a spec (default open_source with the config's options); tests
        and embedders pass their own to feed the loop from anything."""
        self.cfg = cfg
        self._source_factory = make_source
        self.backend = backend
        self.state = state
        self.controllers = list(controllers)
        self.size = (backend.cfg.width, backend.cfg.height)
        self.pre = Preprocessor(self.size, cfg.crop if cfg.crop == "centre" else _parse_crop(cfg.crop))
        # On a CUDA torch backend the crop/resize runs on the GPU and the tensor goes straight to encode.
        dev = getattr(backend, "device", None)
        cuda = getattr(dev, "type", "") == "cuda" and backend.name.startswith("torch-cuda")
        self.device_pre = DevicePreprocessor(self.pre, dev) if cuda else None
        self.offline = cfg.headless and not cfg.realtime
        self.fallback = Fallback(cfg.fallback)
        self.source_index = cfg.source
        self.input: Capture | OrderedReader | None = None
        self._retired: list[Capture] = []
        # a source being switched to, opening on its own thread: (capture, index in cfg.sources or None)
        self._incoming: tuple[Capture, int | None] | None = None
        self._switch_lock = threading.Lock()
        self._switch_gen = 0
        self.window: Window | DisplayThread | None = None
        self.recorder: Recorder | None = None
        self.render: Recorder | None = None
        # NDI / Syphon / Spout / virtual camera, each with its spec (its size); fed from one ScaledFrame a frame
        self.sinks: list[tuple[OutputSpec, NewestFrameOutput]] = []
        self._encoder: cf.ThreadPoolExecutor | None = None  # the encode thread of the pipeline (_overlapping)
        self.screens = Screenshots(cfg.screenshot_dir)
        self.frozen = False
        self._z_hold: np.ndarray | None = None
        self._quit = False
        self.times = StageTimes()
        self.latency: deque[float] = deque(maxlen=20000)
        self.index = 0
        self.t = 0.0
        self.last_output: np.ndarray | None = None
        self._recent_present: deque[float] = deque(maxlen=32)
        self._controller_errors: dict[int, int] = {}
        self.stats = LiveStats(
            backend=backend.name, mode="offline" if self.offline else "realtime" if cfg.headless else "live"
        )
        self._dropped_before = 0  # drops of sources switched away from
        self._outputs: list[str] = []
        self._finishing: list[Any] = []  # threads finishing stopped recordings
        self._first: Frame | None = None
        # (picture, fps): show this instead of the model at a low rate, source stopped (installation closed hours)
        self.hold: tuple[np.ndarray, float] | None = None
        self._holding = False
        self._posted: deque[tuple[str, object]] = deque(maxlen=256)  # from controllers' threads, via the handle
        self.loop_handle: LoopHandle = _Handle(self)

    # --- controls the loop offers its controllers -------------------------------------------------------------
    def request_quit(self) -> None:
        self._quit = True

    @property
    def fps(self) -> float:
        """The show's frame rate: the configured one, else the current source's."""
        if self.cfg.fps:
            return float(self.cfg.fps)
        return self.input.fps if self.input is not None else 30.0

    @property
    def source_name(self) -> str:
        return self.input.name if self.input is not None else ""

    @property
    def dropped(self) -> int:
        src = self._dropped_before + (self.input.dropped if self.input is not None else 0)
        return src + (self.recorder.dropped if self.recorder else 0)

    @property
    def recording(self) -> bool:
        return self.recorder is not None and not self.recorder.failed

    # --- sources --------------------------------------------------------------------------------------------
    def _make_source(self, spec: str) -> Source:
        if self._source_factory is not None:
            return self._source_factory(spec)
        c = self.cfg
        return open_source(spec, size=c.source_size, fps=c.source_fps, hold=c.hold, loop=c.loop)

    def switch_source(self, which: int | str) -> None:
        """Switch to cfg.sources[which] or a new spec. Live, the new source is built and opened on its own thread
        while the current one keeps playing; the loop swaps it in at its first frame (see _adopt_incoming)."""
        if isinstance(which, bool) or not isinstance(which, (int, str, float)):
            log.warning(f"source action: {which!r} is neither an index nor a spec; ignored")
            return
        index: int | None = None
        if isinstance(which, (int, float)) and not isinstance(which, str):
            i = int(which)
            if not 0 <= i < len(self.cfg.sources):
                log.warning(
                    f"source {i}: out of range; expected 0..{len(self.cfg.sources) - 1}; staying on {self.source_name}"
                )
                return
            spec, index = self.cfg.sources[i], i
        else:
            spec = which
        if not self.offline and isinstance(self.input, Capture) and self.input.status != "stopped":
            self._switch_in_background(spec, index)
            return
        try:
            src = self._make_source(spec)
        except Exception as e:  # a bad spec from OSC must not end the show
            log.warning(f"{e}; staying on {self.source_name}")
            return
        self._swap_input(self._start_input(src), index)

    def _swap_input(self, new: Capture | OrderedReader, index: int | None) -> None:
        old = self.input
        if old is not None:
            self._dropped_before += old.dropped
            self._count_source(old)
            if isinstance(old, Capture):
                self._retire(old)
            else:
                old.stop()
        if index is not None:
            self.source_index = index
        self.input = new
        log.info(f"source -> {new.name}")

    def _retire(self, cap: Capture) -> None:
        cap.stop(wait=False)
        # forget captures whose thread has ended: each holds its last frame, and a show running for
        # weeks (watchdog restarts, reopening after closed hours) must not pile them up
        self._retired = [c for c in self._retired if c._thread is not None and c._thread.is_alive()]
        self._retired.append(cap)

    def _switch_in_background(self, spec: str, index: int | None) -> None:
        """Build and open the source on a thread: a spec's filesystem checks, a camera's or a file's open can
        take seconds, and the frame thread must not wait for them. A later switch replaces one still opening."""
        with self._switch_lock:
            self._switch_gen += 1
            gen = self._switch_gen
            stale, self._incoming = self._incoming, None
        if stale is not None:
            self._retire(stale[0])
        playing = self.source_name

        def opener() -> None:
            try:
                src = self._make_source(spec)
            except Exception as e:  # a bad spec from OSC must not end the show
                log.warning(f"{e}; staying on {playing}")
                return
            cap = Capture(src, Backoff(), fps=self.cfg.fps, trial=True)
            with self._switch_lock:
                if gen != self._switch_gen or self._quit:
                    return  # a later switch (or the end of the show) won; this one never opens
                self._incoming = (cap, index)
                cap.start()

        threading.Thread(target=opener, name=f"source switch {spec[:40]}", daemon=True).start()

    def _adopt_incoming(self) -> None:
        """Once per loop turn: swap in a source being switched to at its first frame; drop it if it failed."""
        inc = self._incoming
        if inc is None:
            return
        cap, index = inc
        if not cap.ready and cap.status not in ("failed", "ended", "stopped"):
            return  # still opening: the current source keeps playing
        with self._switch_lock:
            if self._incoming is not inc:
                return
            self._incoming = None
        if cap.ready:
            cap.trial = False  # from now on a failure means fallback and reconnect, as for any source
            self._swap_input(cap, index)
        else:
            self._count_source(cap)
            self._retire(cap)

    def _start_input(self, src: Source) -> Capture | OrderedReader:
        if self.offline:
            return OrderedReader(src, Backoff(), fps=self.cfg.fps)
        return Capture(src, Backoff(), fps=self.cfg.fps).start()

    def _count_source(self, inp: Capture | OrderedReader) -> None:
        self.stats.source_failures += inp.failures
        self.stats.reconnects += inp.reconnects

    # --- outputs --------------------------------------------------------------------------------------------
    def start_recording(self, path: str | Path | None = None) -> None:
        if self.recorder is not None:
            return
        p = Path(path) if path else stamped_path(self.cfg.record_dir, "livevae", ".mp4")
        # Offline renders wait for the writer (every frame kept); live, a slow disk drops frames instead.
        self.recorder = self._recorder(p)
        log.info(f"recording {p} at {self.fps:.3f} fps")

    def record_size(self) -> tuple[int, int]:
        """What recordings are scaled (letterboxed) to: --record-size, else the window's size, else 1280x720."""
        if self.cfg.record_size is not None:
            return self.cfg.record_size
        if self.window is not None:
            try:
                w, h = self.window.size
                return (w + w % 2, h + h % 2)
            except Exception:  # the display thread has not opened yet: its configured size
                return self.cfg.window.size
        return (1280, 720)

    def _recorder(self, path: Path) -> Recorder:
        # Offline renders are stepped (frame i at i / fps) and wait for the writer (every frame kept); live, frames
        # are stamped when shown (wall clock) and a slow disk drops frames instead of stalling the show.
        clock = "frames" if self.offline else "wall"
        return Recorder(
            path, self.fps, self.record_size(), block=self.offline, clock=clock, audio=self.cfg.record_audio
        ).start()

    def stop_recording(self) -> None:
        rec, self.recorder = self.recorder, None
        if rec is None:
            return
        rec.end()  # the file ends at this frame, however long the encoder takes to finish it
        self.stats.record_dropped += rec.dropped

        # Finishing the file flushes the encoder: done on a thread so the show does not stall on the disk.
        def finish() -> None:
            p = rec.stop()
            if p is not None:
                self._outputs.append(str(p))
                log.info(f"recorded {p} ({rec.frames} frames)")

        t = threading.Thread(target=finish, name="recorder finish", daemon=True)
        t.start()
        self._finishing.append(t)

    def screenshot(self, path: str | Path | None = None) -> Path | None:
        """Save the current output picture (the model's pixels, lossless PNG); None before the first frame."""
        if self.last_output is None:
            return None
        return self.screens.save(self.last_output, path)

    # --- actions --------------------------------------------------------------------------------------------
    def handle(self, action: str, arg: object) -> None:
        """Run one action from a key, OSC/MIDI (via ControlState.post) or a controller."""
        if action == "quit":
            self._quit = True
        elif action == "source":
            self.switch_source(arg)  # type: ignore[arg-type]
        elif action == "record":
            want = (self.recorder is None) if arg is None else bool(arg)
            if want and self.recorder is None:
                self.start_recording(arg if isinstance(arg, (str, Path)) else None)
            elif not want:
                self.stop_recording()
        elif action == "screenshot":
            self.screenshot(arg if isinstance(arg, (str, Path)) else None)
        elif action == "fullscreen":
            if self.window is not None:
                self.window.toggle_fullscreen()
        elif action == "hud":
            if self.window is not None:
                self.window.show_hud = not self.window.show_hud
        elif action == "freeze":
            want = (not self._is_frozen()) if arg is None else bool(arg)
            if self.state is not None and "freeze" in self.state.targets():
                # The control state's modulator freezes z, and OSC/MIDI feedback shows the change.
                self.state.set("freeze", 1.0 if want else 0.0, origin="key")
            else:
                self.frozen = want
                if not want:
                    self._z_hold = None
        else:
            for c in self.controllers:
                try:
                    if c.handle_action(action, arg):
                        return
                except Exception as e:  # a controller's bug must not end the show; it is reported
                    self._controller_failed(c, "handle_action", e)
            hint = DEAD_ENDS.get(action, "")
            log.warning(f"action {action!r} ({arg!r}): nothing handles it" + (f"; {hint}" if hint else ""))

    def _is_frozen(self) -> bool:
        if self.state is not None and "freeze" in self.state.targets():
            return self.state.get("freeze") >= 0.5
        return self.frozen

    def _controller_failed(self, c: object, where: str, e: Exception) -> None:
        k = id(c)
        self._controller_errors[k] = self._controller_errors.get(k, 0) + 1
        self.stats.controller_errors += 1
        if self._controller_errors[k] in (1, 100, 10000):  # say so, without flooding the console
            log.warning(f"controller {type(c).__name__}.{where} raised {e.__class__.__name__}: {e} "
                f"({self._controller_errors[k]} so far)")  # fmt: skip

    # --- the loop -------------------------------------------------------------------------------------------
    def _limit(self) -> int | None:
        """Frame count to stop at: --frames, or --seconds of show time in offline renders (live, --seconds
        is wall time, checked in the loop, since a slow machine renders fewer frames than fps * seconds)."""
        if self.cfg.frames is not None:
            return self.cfg.frames
        if self.cfg.seconds is not None and self.offline:
            return max(1, round(self.cfg.seconds * self.fps))
        return None

    def _open(self) -> None:
        self.input = self._start_input(self._make_source(self.cfg.sources[self.source_index]))
        if self.offline:
            # Frame rate of a file is known only once it is open; open it now so the render's rate is right.
            first = self.input
            assert isinstance(first, OrderedReader)
            self._first = first.read(0.0)
        elif isinstance(self.input, Capture):
            # A camera or file takes a moment to open: start on its first frame rather than the fallback
            # (a source that fails or takes longer than this starts on the fallback).
            self.input.wait_ready(2.0)
        if not self.cfg.headless:
            kind = DisplayThread if self.cfg.window.threaded else Window
            self.window = kind(self.cfg.window).open()
        if self.cfg.out:
            self.render = self._recorder(Path(self.cfg.out))
        if self.cfg.record:
            self.start_recording(self.cfg.record)
        for spec in self.cfg.sinks():
            o = open_output(spec, self.fps, self.cfg.scale_filter)
            if o is not None:
                self.sinks.append((spec, o))
        for c in self.controllers:
            c.start(self.loop_handle)

    def _close(self) -> None:
        if self._encoder is not None:
            self._encoder.shutdown(wait=False, cancel_futures=True)  # _loop waited for its last encode
        for c in self.controllers:
            try:
                c.stop()
            except Exception as e:  # keep closing the rest
                self._controller_failed(c, "stop", e)
        if self.input is not None:
            self._count_source(self.input)
            self.stats.dropped = self._dropped_before + self.input.dropped
            self.input.stop()
        with self._switch_lock:
            self._switch_gen += 1  # an opener still building a source starts nothing
            if self._incoming is not None:
                self._retired.append(self._incoming[0])
                self._incoming = None
        for cap in self._retired:
            cap.stop()
        self.stop_recording()
        for t in self._finishing:
            t.join(60)
        if self.render is not None:
            p = self.render.stop(timeout=120)
            self.stats.record_dropped += self.render.dropped
            if p is not None:
                self._outputs.append(str(p))
        self.stats.sinks = [o.describe() for _, o in self.sinks]  # before close: receivers still connected
        for _, o in self.sinks:
            o.close()
        self.screens.wait()
        if self.window is not None:
            self.window.close()

    def run(self) -> LiveStats:
        """Run the show; returns its stats. Ctrl-C ends it cleanly (the stats and files are still written)."""
        self._open()
        start = time.monotonic()
        try:
            self._loop(start)
        except KeyboardInterrupt:
            log.info("interrupted")
        finally:
            wall = time.monotonic() - start
            self._close()
            s = self.stats
            s.frames = self.index
            s.seconds = wall
            s.fps = self.index / wall if wall > 0 else 0.0
            s.source_fps = self.fps
            lat = self.latency
            if isinstance(self.window, DisplayThread):
                # On screen: the display thread's flip is the present; its scale + HUD + flip is a stage.
                for v in self.window.present_ms:
                    self.times.add("display", v)
                s.display_dropped = self.window.dropped
                lat = self.window.latencies or lat
            s.stages = self.times.summary()
            if lat:
                a = np.asarray(lat, np.float64)
                s.latency_ms = {
                    "p50": float(np.percentile(a, 50)),
                    "p99": float(np.percentile(a, 99)),
                    "mean": float(a.mean()),
                }
            s.outputs = list(self._outputs)
            s.screenshots = [str(p) for p in self.screens.saved]
            if self.cfg.stats_json:
                Path(self.cfg.stats_json).parent.mkdir(parents=True, exist_ok=True)
                Path(self.cfg.stats_json).write_text(json.dumps(s.to_dict(), indent=2))
        return self.stats

    def _next_input(self, k: int, wait: bool) -> tuple[Frame | None, bool]:
        """(frame, render) for frame number k. Offline: the next frame in order. Live: the newest frame, waiting
        up to 1.5 periods; (None, False) when the source is up but nothing new arrived yet (nothing to render); a
        None frame with render=True means the fallback picture (source down) or a frozen hold. wait=False (a
        frame is in flight): only a frame already there, else (None, False): the frame in flight is presented
        now rather than held back for the next one, and fallback and frozen frames stay paced by the wait."""
        inp = self.input
        assert inp is not None
        if isinstance(inp, OrderedReader):
            first, self._first = self._first, None
            if first is not None:
                return first, True
            return inp.read(k / self.fps), True
        if not wait:
            f = inp.take(0.0)
            return f, f is not None
        if self.frozen and self._z_hold is not None:
            # Frozen on the loop's own hold: paced by the source, its frames taken and unused (not drops).
            inp.take(1.5 / self.fps)
            return None, True
        f = inp.take(1.5 / self.fps)
        if f is None and inp.status == "running":
            return None, False
        return f, True

    def _overlapping(self) -> bool:
        """Whether the next frame's encode runs beside this frame's decode: the show allows it (`pipeline`) and
        the backend was built to share the cores between the two (backends.overlaps); a GPU preprocess is not."""
        from livevae.backends import overlaps

        return self.cfg.pipeline and self.device_pre is None and overlaps(self.backend)

    def _loop(self, start: float) -> None:
        """Frame after frame: _begin (input, preprocess, encode), then _finish (modulate, decode, outputs).

        Pipelined (_overlapping), frame n+1 is taken and its encode started on the encode thread before frame n
        is decoded on this one, so the two nets run side by side on the two cores; every controller, action and
        output still runs here, in frame order. Only a frame already waiting is taken early: a source slower than
        the model gets each frame presented as soon as it is decoded, as without the pipeline."""
        limit = self._limit()
        wall_end = start + self.cfg.seconds if self.cfg.seconds is not None and not self.offline else math.inf
        pending: _InFlight | None = None  # taken and being encoded, not yet decoded
        while not self._quit and (limit is None or self.index < limit) and time.monotonic() < wall_end:
            if self.hold is not None:
                if pending is not None:  # the frame encoded before the hold came is shown first
                    self._finish(pending)
                    pending = None
                    continue
                self._hold_frame(start)
                continue
            if self._holding:  # reopening: a fresh capture of the source that played before
                self._holding = False
                self.switch_source(self.source_index)
            self._adopt_incoming()
            if pending is not None:
                self._encoded(pending)  # the encode thread is free again for the next frame
            k = self.index + (pending is not None)  # the number of the frame to take
            nxt: _InFlight | None = None
            ended = False
            if limit is None or k < limit:
                got = self._begin(start, k, wait=pending is None)
                ended = got == "ended"
                nxt = got if isinstance(got, _InFlight) else None
            if pending is not None:
                self.stats.pipelined_frames += nxt is not None and nxt.job is not None  # encoding beside this decode
                self._finish(pending)
            elif nxt is None:
                if ended:
                    break  # an offline render of a source with looping off ends with it
                self._actions()
                continue
            pending = None
            if nxt is not None:
                if nxt.job is None:  # encoded already (not pipelined, or a frozen z)
                    self._finish(nxt)
                else:
                    pending = nxt
            if ended:
                break
        if pending is not None:  # quit or out of time: let its encode end before the backend is closed
            self._encoded(pending)

    def _begin(self, start: float, k: int, wait: bool) -> _InFlight | str | None:
        """Take frame k, preprocess it and encode it: at once, or started on the encode thread when pipelined.
        None: nothing to render yet; "ended": an offline source without looping has ended."""
        perf = time.perf_counter
        t_in = perf()
        frame, render = self._next_input(k, wait)
        if frame is None and self.offline and self.input is not None and self.input.status == "ended":
            return "ended"
        if not render:
            return None
        t = k / self.fps if self.offline else time.monotonic() - start
        loop_frozen = not (self.state is not None and "freeze" in self.state.targets()) and self.frozen
        if frame is not None:
            self.fallback.remember(frame.image)
            captured = frame.captured
        else:
            captured = time.monotonic()
        p = _InFlight(frame, t, captured, {"input": (perf() - t_in) * 1000})
        # preprocess + encode (skipped while the loop holds a frozen z)
        t0 = perf()
        if loop_frozen and self._z_hold is not None:
            p.z = self._z_hold.copy()
            p.ms["preprocess"] = p.ms["encode"] = 0.0
            return p
        if frame is None:
            p.fell_back = True
            self.stats.fallback_frames += 1
            img = self.fallback.image(t)
        else:
            img = frame.image
        x: Any
        if self.device_pre is not None:
            x = self.device_pre(img)  # float32 [1, 3, H, W] in [-1, 1], on the GPU
            p.dry = None  # made on the CPU only when dry/wet asks for it
        else:
            x = self.pre(img)[None]  # uint8 [1, H, W, 3] at the model's size
            p.dry = x[0]
        p.ms["preprocess"] = (perf() - t0) * 1000
        p.hold_z = loop_frozen
        if self._overlapping():
            if self._encoder is None:
                self._encoder = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="livevae encode")
            p.job = self._encoder.submit(_timed, self.backend.encode, x)
        else:
            p.z, p.ms["encode"] = _timed(self.backend.encode, x)
            self._encoded(p)
        return p

    def _encoded(self, p: _InFlight) -> _InFlight:
        """p with its z: waits for its encode on the encode thread (its error, if any, raised here)."""
        if p.job is not None:
            p.z, p.ms["encode"] = p.job.result()
            p.job = None
        if p.hold_z and p.z is not None:
            if self.frozen:  # not unfrozen while it was encoding: a later freeze takes a fresh z
                self._z_hold = p.z.copy()
            p.hold_z = False
        return p

    def _finish(self, p: _InFlight) -> None:
        """Modulate, decode and present a frame whose encode is done; then tell the controllers."""
        perf = time.perf_counter
        self._encoded(p)
        z, ms, t, frame = p.z, p.ms, p.t, p.frame
        assert z is not None
        self.t = t
        t2 = perf()
        for c in self.controllers:
            try:
                z = np.asarray(c.modulate(z, t), np.float32)
            except Exception as e:  # one broken controller must not black out the show
                self._controller_failed(c, "modulate", e)
        t3 = perf()
        out = self.backend.decode(z)[0]  # uint8 [H, W, 3]
        out = self._dry_wet(out, frame, p.dry)
        t4 = perf()
        out = self._compose(out, t)
        ms["modulate"] = (t3 - t2) * 1000
        ms["decode"] = (t4 - t3) * 1000
        self.last_output = out
        self._present(out, ms, p.captured, self._heard(frame))
        now = time.monotonic()
        ms["output"] = (perf() - t4) * 1000
        lat = (now - p.captured) * 1000
        self.latency.append(lat)
        for key, v in ms.items():
            self.times.add(key, v)
        self._recent_present.append(now)
        shown_from = frame.source if frame is not None else self.source_name
        self._actions()
        info = FrameInfo(
            index=self.index,
            t=t,
            fps=self.measured_fps(),
            source=shown_from,
            dropped=self.dropped,
            latency_ms=lat,
            stage_ms=ms,
            fallback=p.fell_back,
            frozen=self._is_frozen(),
            recording=self.recording,
            z=z,
            output=out,
        )
        self._frame_done(info)

    def _compose(self, out: np.ndarray, t: float) -> np.ndarray:
        """Controllers with an optional compose(picture, t) -> picture (the film mirror's film view) change the
        decoded picture before every output sees it; a failing one is reported and skipped."""
        for c in self.controllers:
            compose = getattr(c, "compose", None)
            if callable(compose):
                try:
                    out = np.asarray(compose(out, t), np.uint8)
                except Exception as e:  # one broken controller must not black out the show
                    self._controller_failed(c, "compose", e)
        return out

    def _frame_done(self, info: FrameInfo) -> None:
        """Tell every controller about the frame just presented, then count it."""
        for c in self.controllers:
            try:
                c.on_frame(info)
            except Exception as e:  # reported, never fatal
                self._controller_failed(c, "on_frame", e)
        self.index += 1

    def _hold_frame(self, start: float) -> None:
        """One frame of a held picture (closed hours): no source, no model, actions still served every 0.1 s."""
        assert self.hold is not None
        img, fps = self.hold
        if not self._holding:
            self._holding = True
            if isinstance(self.input, Capture):
                self.input.stop(wait=False)  # no decoding while closed; restarted when the hold ends
        if self.window is not None:
            self.window.present(img, None)
        for _, o in self.sinks:
            o.write(img)
        now = time.monotonic()
        self._recent_present.append(now)
        info = FrameInfo(index=self.index, t=now - start, fps=self.measured_fps(), source=self.source_name,
                         dropped=self.dropped, latency_ms=0.0, output=img)  # fmt: skip
        self._frame_done(info)
        end = now + 1.0 / max(fps, 0.1)
        while not self._quit and self.hold is not None and (left := end - time.monotonic()) > 0:
            self._actions()
            time.sleep(min(0.1, left))

    def measured_fps(self) -> float:
        r = self._recent_present
        if len(r) < 2 or r[-1] <= r[0]:
            return 0.0
        return (len(r) - 1) / (r[-1] - r[0])

    def _dry_wet(self, out: np.ndarray, frame: Frame | None, dry: np.ndarray | None) -> np.ndarray:
        """The reconstruction blended with the input picture (`dry`, uint8 [H, W, 3] as the model saw it) by the
        "wet" control (1 = all dream, 0 = all input)."""
        wet = self.state.get("wet") if self.state is not None and "wet" in self.state.targets() else 1.0
        if wet >= 1.0:
            return out
        if dry is None and frame is not None:
            dry = self.pre(frame.image)  # uint8 [H, W, 3]: the device path preprocessed on the GPU
        if dry is None or dry.shape != out.shape:
            return out
        return cv2.addWeighted(dry, 1.0 - wet, out, wet, 0.0)  # uint8 [H, W, 3]

    def _heard(self, frame: Frame | None) -> Heard | None:
        """Where the sound of this frame comes from: its film and position (None: silence)."""
        if frame is None or frame.fallback:
            return None
        src = getattr(self.input, "source", None)
        return (src.path, frame.pts) if isinstance(src, VideoFileSource) else None

    def _present(
        self, out: np.ndarray, ms: dict[str, float], captured: float | None = None, heard: Heard | None = None
    ) -> None:
        for rec in (self.render, self.recorder):
            if rec is not None:
                rec.write(out, captured, heard)
        if self.sinks:
            scaled = ScaledFrame(out, self.cfg.scale_filter)  # each output size computed once per frame
            for spec, sink in self.sinks:
                # NDI scales on its own thread, in YUV planes; the others share one RGB copy per size
                sink.write(scaled.rgb if sink.takes_model_size else scaled.at(spec.size), captured)
        if self.window is not None:  # the window alone draws the HUD over the picture
            self.window.present(out, hud_lines(self.hud_info(ms)) if self.window.show_hud else None, captured)

    def hud_info(self, ms: dict[str, float]) -> HudInfo:
        osc_port = getattr(self.state, "osc_port", None)
        extra: list[str] = []
        for c in self.controllers:
            osc_port = osc_port or getattr(c, "osc_port", None)
            lines = getattr(c, "hud_lines", None)
            if callable(lines):
                try:
                    extra += list(lines())
                except Exception as e:  # reported, never fatal
                    self._controller_failed(c, "hud_lines", e)
        rec = self.recorder
        inp = self.input
        return HudInfo(
            fps=self.measured_fps(),
            target_fps=self.fps,
            stage_ms=self._hud_stages(),
            backend=self.backend.name,
            source=f"{self.source_index}: {self.source_name}",
            source_status=inp.status if inp is not None else "",
            dropped=self.dropped,
            latency_ms=self.latency[-1] if self.latency else 0.0,
            recording=rec.seconds if rec is not None else None,
            frozen=self._is_frozen(),
            osc_port=osc_port if isinstance(osc_port, int) else None,
            extra=[*extra, *self._rig_lines()],
        )

    def _rig_lines(self) -> list[str]:
        """HUD lines for the extra outputs and a dry/wet below 1."""
        lines = ["out " + o.describe() for _, o in self.sinks]
        if self.state is not None and "wet" in self.state.targets() and (w := self.state.get("wet")) < 1.0:
            lines.append(f"wet {w:.2f}")
        return lines

    def _hud_stages(self) -> dict[str, float]:
        ms = {k: self.times.mean_recent(k) for k in STAGES[1:]}
        if isinstance(self.window, DisplayThread) and self.window.present_ms:
            recent = list(self.window.present_ms)[-30:]
            ms["display"] = sum(recent) / len(recent)  # scale + HUD + flip, on the display thread
        return ms

    def _actions(self) -> None:
        acts: list[tuple[str, object]] = []
        if self.window is not None:
            acts += self.window.poll()
        if self.state is not None:
            acts += self.state.drain_actions()
        while self._posted:
            acts.append(self._posted.popleft())
        for a, arg in acts:
            self.handle(a, arg)


class _Handle(LoopHandle):
    """The LoopHandle of one LiveLoop: controllers see this, never the loop's attributes."""

    def __init__(self, loop: LiveLoop) -> None:
        self._loop = loop

    def status(self) -> LoopStatus:
        lp = self._loop
        inp = lp.input
        return LoopStatus(
            backend=lp.backend.name,
            model=lp.cfg.model,
            backend_spec=lp.cfg.backend,
            threads=lp.cfg.threads,
            pipeline=lp.cfg.pipeline,
            offline=lp.offline,
            size=lp.size,
            index=lp.index,
            sources=tuple(str(s) for s in lp.cfg.sources),
            source_index=lp.source_index,
            source_name=lp.source_name,
            source_status=inp.status if inp is not None else "",
            source_published=int(getattr(inp, "published", 0)),
            controller_errors=lp.stats.controller_errors,
            outputs=tuple(o.describe() for _, o in lp.sinks),
        )

    def post(self, action: str, arg: object = None) -> None:
        self._loop._posted.append((action, arg))  # deque.append is atomic; drained on the frame thread

    def request_quit(self) -> None:
        self._loop.request_quit()

    def hold(self, picture: np.ndarray, fps: float) -> None:
        self._loop.hold = (picture, fps)  # one reference swap: the frame loop sees the old or the new hold

    def resume(self) -> None:
        self._loop.hold = None

    def wrap_backend(self, wrap: Callable[[Backend], Backend]) -> None:
        self._loop.backend = wrap(self._loop.backend)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return self._loop.pre(image)

    def service(self, name: str) -> object | None:
        return services_of(self._loop.controllers).get(name)


def _parse_crop(text: str) -> Any:
    from livevae.media.preprocess import parse_crop

    return parse_crop(text)
