"""The show controller: modulation of z, the OSC server and feedback, scenes, LFOs, and hot reload of the file."""

from __future__ import annotations

import logging
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from livevae.control.modulate import Modulator, Pca
from livevae.control.scenes import Scene, SceneBank, SceneError, anchor_from_frames
from livevae.control.state import ControlError, ControlState
from livevae.controllers.osc import OscServer
from livevae.controllers.osc_feedback import OscFeedback, Status
from livevae.controllers.osc_mapping import OscError
from livevae.show.resolve import apply_lfos, check_targets, lfo_settings, model_path, resolve_source, show_scenes
from livevae.show.schema import EXTENSIONS, Show, ShowError, load_show

if TYPE_CHECKING:
    from livevae.handle import FrameInfo, LoopHandle

log = logging.getLogger("livevae.show.showfile")  # one logger for show files: users see "livevae show: ..."

RELOAD_POLL_S = 0.5
HUD_WIDTH = 72  # characters per HUD line (pygame's default font at 22 px: about 560 px)


# --- the show controller ---------------------------------------------------------------------------------------
class ShowController:
    """The control side of a show in the live loop: modulation of z (the Controller protocol), the OSC server and
    feedback, scenes, LFOs, and the hot-reload watcher. Everything with a socket or the disk runs on its own
    thread; modulate() only reads one snapshot."""

    def __init__(
        self,
        show: Show,
        state: ControlState,
        pca: Pca | None = None,
        encoder: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.show, self.state, self.pca = show, state, pca
        self.modulator = Modulator(state.zdim, pca, seed=show.seed)
        self.scenes = SceneBank(state.zdim, store=show.path.with_suffix(".scenes.json") if show.path.name else None)
        self.scenes.set_show_scenes(s for s in show_scenes(show, state.zdim) if s.source != "frames")
        self._encoder = encoder
        self._model_size = (0, 0)  # (w, h) of the model, known once the encoder is loaded
        self._frame_anchors: dict[tuple[str, float | None, float | None, int], np.ndarray] = {}
        self.loop: LoopHandle | None = None
        self.last_z: np.ndarray | None = None  # [N, zdim] the last modulated latent (what scene.save captures)
        self.reloads = 0
        self.reload_errors = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self._mtime = _mtime(show.path)
        self.osc_override: Callable[[Show], Show] | None = None  # the --osc-* flags, applied again on a reload
        self.feedback: OscFeedback | None = None
        self.server: OscServer | None = None
        o = show.osc
        if o.enabled:
            # Always a feedback sender: with no fixed target it feeds whoever says /livevae/hello.
            host, _, port = (o.feedback or "").rpartition(":")
            self.feedback = OscFeedback(state, host or None, int(port or 0), o.status_interval, echo_builtin=o.echo)
            self.server = OscServer(state, o.host, o.port, show.osc_mappings(), self.feedback, o.reply_to_sender)
        state.add_reset_listener(self._on_reset)

    # -- Controller protocol --
    def start(self, loop: LoopHandle | None = None) -> None:
        """Open the OSC server, the feedback sender and the file watcher (threads; returns at once)."""
        self.loop = loop
        sh = self.show  # one line saying what plays, so a show that lost its parts is seen at the first start
        log.info(f"{sh.path}: {len(sh.scenes)} scenes ({', '.join(sh.scenes) or 'none'}), {len(sh.lfo)} LFOs")
        if self.server is not None:
            try:
                self.server.start()
                log.info(f"OSC on {self.server.host}:{self.server.port} (see `livevae osc-map`)")
            except OscError as e:  # the show goes on without OSC; the HUD shows no port
                log.warning(f"{e}; playing without OSC input")
                self.server = None
        if self.feedback is not None:
            self.feedback.start()
            self.feedback.send_all()
        if self.show.hot_reload and self.show.path.is_file():
            self._watch = threading.Thread(target=self._watch_file, name="show-reload", daemon=True)
            self._watch.start()

    def modulate(self, z: np.ndarray, t: float) -> np.ndarray:
        out = self.modulator(z, self.state.snapshot(), t)
        self.last_z = out
        return out

    def handle_action(self, action: str, arg: object) -> bool:
        if action == "scene.recall":
            self.recall(str(arg))
            return True
        if action == "scene.save":
            self.save_scene(str(arg))
            return True
        return False

    def on_frame(self, info: FrameInfo) -> None:
        if self.feedback is not None:
            audio = 0.0
            levels = self.loop.service("audio.levels") if self.loop is not None else None
            if callable(levels):
                audio = float(levels().get("rms", 0.0))
            self.feedback.frame(Status(info.fps, info.source, self.scenes.current, info.index, info.recording, audio))

    def _on_reset(self, origin: str) -> None:
        """After /livevae/reset or /livevae/zero: the show is in no scene (the tablet's scene label clears)."""
        self.scenes.current = ""
        if self.feedback is not None:
            self.feedback.set_state("scene", "")

    def stop(self) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.stop()
        if self.feedback is not None:
            self.feedback.stop()
        if self._watch is not None:
            self._watch.join(timeout=2)
            self._watch = None

    # -- what the HUD and the live loop read --
    @property
    def osc_port(self) -> int | None:
        return self.server.port if self.server is not None and self.server._sock is not None else None

    def services(self) -> dict[str, object]:
        """What other controllers may use (LoopHandle.service): the scene bank and the OSC route registry."""
        out: dict[str, object] = {"scenes": self.scenes}
        if self.server is not None:
            out["osc.routes"] = self.server
        if self.feedback is not None:
            out["osc.feedback"] = self.feedback
        return out

    def hud_lines(self) -> list[str]:
        lines = []
        if self.scenes.current:
            lines.append(f"scene {self.scenes.current}")
        if self.server is not None:
            st = self.server.stats
            bad = st.malformed + st.unknown + st.bad_args
            lines.append(f"osc {st.handled} msgs" + (f", {bad} bad" if bad else ""))
        if self.last_error:
            # the whole error, wrapped: a cut one hides the key or the value that is wrong
            lines += textwrap.wrap(
                f"show: {self.last_error}",
                HUD_WIDTH,
                subsequent_indent="  ",
                break_long_words=False,  # a path stays whole
                break_on_hyphens=False,
            )
        return lines

    # -- scenes --
    def recall(self, name: str) -> None:
        try:
            scene = self.scenes.get(name)
            if scene.source == "frames" and scene.anchor is None:
                log.info(f"scene {name!r}: its frames are still being encoded; try again in a moment")
                return
            self.scenes.recall(name, self.state, origin="scene")
        except SceneError as e:
            log.warning(str(e))
            return
        if scene.fade > 0:
            self.modulator.fade(scene.fade)
        if self.feedback is not None:
            self.feedback.set_state("scene", name)
            self.feedback.send_all()

    def save_scene(self, name: str) -> None:
        if self.last_z is None:
            log.info(f"scene.save {name!r}: no frame yet; nothing to save")
            return
        from livevae.control.scenes import capture

        scene = capture(name, self.last_z, self.state.snapshot().values())
        try:
            self.scenes.save(scene)
        except SceneError as e:
            log.warning(str(e))
            return
        self.scenes.current = name
        log.info(f"scene {name!r} saved" + (f" to {self.scenes.store}" if self.scenes.store else ""))

    def compute_frame_scenes(self, show: Show | None = None) -> None:
        """Encode the film frames of every scene with `frames` (cached by file and span). Slow: call it at build
        time or from the watcher thread, never from the frame loop. Errors name the scene and leave it out."""
        for sc in self._frame_scenes(show or self.show):
            self.scenes.put(sc)

    def _frame_scenes(self, show: Show) -> list[Scene]:
        out: list[Scene] = []
        for name, sc in show.scenes.items():
            if sc.frames is None:
                continue
            f = sc.frames
            key = (f.video, f.start, f.end, f.max_frames)
            anchor = self._frame_anchors.get(key)
            if anchor is None:
                video = resolve_source(show, f.video, f"scenes.{name}.frames.video")
                if video == "testcard":
                    continue
                try:
                    encode = self._get_encoder()
                    size = (self._model_size[0], self._model_size[1])
                    anchor = anchor_from_frames(video, encode, size, f.start, f.end, f.max_frames)
                except (SceneError, ShowError) as e:
                    log.warning(f"{show.path}: scenes.{name}.frames: {e}; scene left out")
                    continue
                self._frame_anchors[key] = anchor
            out.append(Scene(name, anchor, dict(sc.controls), sc.fade, source="frames"))
        return out

    def _get_encoder(self) -> Callable[[np.ndarray], np.ndarray]:
        if self._encoder is None:
            from livevae.backends import EngineError, create
            from livevae.model import ModelError

            try:
                b = create(str(model_path(self.show)), "torch")
            except (EngineError, ModelError) as e:
                raise ShowError(f"model: {e}") from None
            self._encoder = b.encode
            self._model_size = (b.cfg.width, b.cfg.height)
        if self._model_size == (0, 0):
            from livevae.model import read_model_header

            cfg, _ = read_model_header(model_path(self.show))
            self._model_size = (cfg.width, cfg.height)
        return self._encoder

    # -- hot reload --
    def _watch_file(self) -> None:
        while not self._stop.wait(RELOAD_POLL_S):
            m = _mtime(self.show.path)
            if m is not None and m != self._mtime:
                self._mtime = m
                try:
                    self.reload()
                except Exception as e:  # whatever a save holds, the watcher stays: the next save must be heard
                    self._reload_failed(f"{self.show.path}: {type(e).__name__}: {e}")

    def _reload_failed(self, why: str) -> None:
        self.last_error = why.splitlines()[0]
        log.warning(f"reload failed, the show goes on unchanged: {' | '.join(why.splitlines())}")
        self.reload_errors += 1  # counted last: whoever sees the count finds the error and the warning already out

    def reload(self) -> bool:
        """Re-read the show file and apply what can change live (mappings, scenes, LFOs, changed [controls]).

        A transaction: the whole new show is parsed, validated and built first (mappings, scenes, frame anchors,
        LFOs, control values), then swapped in at once; anything wrong is reported in one line and the running
        show continues unchanged. Returns success."""
        path = self.show.path
        old = self.show
        try:
            new = load_show(path)
            if self.osc_override is not None:
                new = self.osc_override(new)
            check_targets(new, self.state.zdim, self.state.n_pcs)
            if len(new.lfo) > self.state.n_lfos:
                raise ShowError(
                    f"{path}: lfo: {len(new.lfo)} LFOs; expected at most {self.state.n_lfos} without a restart"
                )
            mappings = new.osc_mappings()
            if self.server is not None:
                try:
                    self.server.check_mappings(mappings)
                except (OscError, ControlError) as e:
                    raise ShowError(f"{path}: mapping: {e}") from None
            scenes = [s for s in show_scenes(new, self.state.zdim) if s.source != "frames"]
            SceneBank(self.state.zdim).set_show_scenes(scenes)  # the same checks, on a throwaway bank
            # finite and known (load_show, check_targets); out of range clamps, as at the show's start
            changed = {k: v for k, v in new.controls.items() if old.controls.get(k) != v}
            frame_scenes = self._frame_scenes(new)  # slow (encodes film frames), still before anything changes
        except (ShowError, ControlError, SceneError) as e:
            self._reload_failed(str(e))
            return False
        # -- the swap: everything above was checked, so these cannot refuse
        if self.server is not None:
            self.server.set_mappings(mappings)
        self.scenes.set_show_scenes(scenes)
        for sc in frame_scenes:
            self.scenes.put(sc)
        if new.lfo != old.lfo:
            apply_lfos(self.state, new.lfo)
        if changed:
            self.state.set_many(changed, origin="show")
        if changed or new.lfo != old.lfo or set(new.controls) != set(old.controls):
            self.state.set_start(new.controls, lfo_settings(new.lfo))  # reset now means the file as it is
        fixed = [k for k in ("model", "backend", "input", "window", "output", "osc", *EXTENSIONS, "seed")
                 if getattr(new, k) != getattr(old, k)]  # fmt: skip
        self.show = new
        self.reloads += 1
        self.last_error = ""
        msg = f"reloaded {path.name}: {len(new.mapping)} mappings, {len(new.scenes)} scenes, {len(new.lfo)} LFOs"
        if fixed:
            msg += f"; restart to apply changes to {', '.join(fixed)}"
        log.info(msg)
        lost = shrunk(old, new)
        if lost:
            log.warning(f"{path.name} lost most of the show ({lost}); if the save was cut short, save it again")
        if self.feedback is not None:
            self.feedback.set_mappings(mappings)
            self.feedback.send_all()
        return True


def shrunk(old: Show, new: Show) -> str:
    """'12 -> 0 mappings, 5 -> 1 scenes' when a save removed more than half of what a show had (of at least 3
    items), else ''. A truncated save is still valid TOML: this is how the player hears about it."""
    counts = [("mappings", len(old.mapping), len(new.mapping)), ("scenes", len(old.scenes), len(new.scenes)),
              ("LFOs", len(old.lfo), len(new.lfo))]  # fmt: skip
    before, after = sum(c[1] for c in counts), sum(c[2] for c in counts)
    if before < 3 or after * 2 >= before:
        return ""
    return ", ".join(f"{a} -> {b} {what}" for what, a, b in counts if b < a)


def _mtime(path: Path) -> float | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns + st.st_size * 1e-3  # size too: two saves within the clock's resolution still differ
