"""Building a show: a show file into (LiveConfig, ControlState, controllers), and checking one without playing it."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from livevae.control.modulate import load_pca
from livevae.control.scenes import SceneBank
from livevae.control.state import ControlError, ControlState
from livevae.errors import LivevaeError
from livevae.mirror.controller import MirrorController
from livevae.mirror.index import index_path
from livevae.show.controller import ShowController
from livevae.show.resolve import (
    apply_lfos,
    check_targets,
    lfo_settings,
    live_config,
    model_path,
    model_sizes,
    resolve_path,
)
from livevae.show.schema import EXTENSIONS, OscSection, Show, ShowError, format_validation, load_show

if TYPE_CHECKING:
    from livevae.config import LiveConfig
    from livevae.handle import Controller

log = logging.getLogger("livevae.show.showfile")  # one logger for show files: users see "livevae show: ..."


# --- building a show -------------------------------------------------------------------------------------------
def _extension(name: str, section: dict[str, Any], state: ControlState, show: Show) -> Controller:
    # livevae's own module: a failing import is a bug to see, not an optional feature to skip
    mod = importlib.import_module(EXTENSIONS[name])
    try:
        return mod.from_show(section, state, show.path)  # type: ignore[no-any-return]
    except LivevaeError as e:  # MidiError, AudioError: they name the key already
        raise ShowError(f"{show.path}: [{name}]: {e}") from None


def build_show(
    path: str | Path,
    osc_port: int | None = None,
    osc_host: str | None = None,
    osc_feedback: str | None = None,
    midi_ports: Sequence[str] | None = None,
) -> tuple[LiveConfig, ControlState, list[Controller]]:
    """Load, validate and build a show: (LiveConfig, ControlState with the show's starting values, controllers).

    osc_port / osc_host / osc_feedback ("host:port") override the [osc] section (the --osc-* flags; port 0 = any
    free port). Raises ShowError naming the file and key.
    """
    show = with_osc(load_show(path), osc_host, osc_port, osc_feedback)
    if midi_ports:  # --midi-port: these inputs, the show's [midi] mappings (if any) and MIDI learn
        show = show.model_copy(update={"midi": {**(show.midi or {}), "inputs": list(midi_ports)}})
    zdim, n_pcs = model_sizes(show)
    check_targets(show, zdim, n_pcs)
    check_sync(show)
    cfg = live_config(show)
    state = ControlState(zdim, n_pcs, n_lfos=max(8, len(show.lfo)))
    try:
        state.set_many(show.controls, origin="show")
    except ControlError as e:
        raise ShowError(f"{show.path}: controls: {e}") from None
    apply_lfos(state, show.lfo)
    state.set_start(show.controls, lfo_settings(show.lfo))  # what /livevae/reset returns to
    ctrl = ShowController(show, state, load_pca(model_path(show)))
    ctrl.osc_override = lambda s: with_osc(s, osc_host, osc_port, osc_feedback)  # the flags, on every reload
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
    if show.mirror is None and index_path(model_path(show)).is_file():  # an index beside the model: mirror on
        controllers.append(MirrorController(state))
    return cfg, state, controllers


def check_sync(show: Show) -> None:
    """An autopilot synced to the beat needs a [tempo] section to say who leads. Raises ShowError naming the key."""
    auto = (show.installation or {}).get("autopilot")
    sync = auto.get("sync", "off") if isinstance(auto, dict) else "off"
    if sync != "off" and show.tempo is None:
        raise ShowError(f"{show.path}: installation.autopilot.sync = {sync!r} follows the tempo lead; expected a "
                        '[tempo] section (lead = "midi", "link", "tap" or "manual")')  # fmt: skip


def with_osc(show: Show, host: str | None = None, port: int | None = None, feedback: str | None = None) -> Show:
    """The show with its [osc] section overridden by command-line flags (validated like the file)."""
    over: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port), ("feedback", feedback)) if v is not None}
    if not over:
        return show
    try:
        osc = OscSection.model_validate({**show.osc.model_dump(), **over})
    except ValidationError as e:
        raise ShowError(format_validation(Path("--osc-* flags"), e)) from None
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
    controllers: list[Controller] = [ShowController(show, state, pca)]
    if index_path(cfg.model).is_file():  # the film mirror, when the model has a latent index beside it
        controllers.append(MirrorController(state))
    return controllers


# --- checking a show without playing it ---------------------------------------------------------------------
def check_show(path: str | Path, with_model: bool = True) -> Show:
    """Everything build_show checks, without playing: structure, model, targets, sources, sections of others."""
    show = load_show(path)
    # Without the model: the live preset's sizes, so names and ranges are still checked, not the model's own.
    zdim, n_pcs = model_sizes(show) if with_model else (200, 16)
    check_targets(show, zdim, n_pcs)
    check_sync(show)
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
    _check_use(show)
    return show


def _check_use(show: Show) -> None:
    """What live accepts at start but fails when used: a mapping that recalls no scene, a scene film that does
    not decode, an output that cannot be written. Raises ShowError naming the key."""
    from livevae.media.video import VideoError, probe
    from livevae.safeout import VIDEO_SUFFIXES, OutputError, check_writable_later

    p = show.path
    saved = SceneBank(1, p.with_suffix(".scenes.json")).names() if p.name else []
    known = sorted({*show.scenes, *saved})
    for i, m in enumerate(show.mapping):
        if m.action == "scene.recall" and m.arg not in known:
            raise ShowError(f"{p}: mapping[{i}].arg: scene {m.arg!r} does not exist; expected one of "
                            f"{', '.join(known) or '(no scenes)'}")  # fmt: skip
    for name, sc in show.scenes.items():
        if sc.frames is not None and not sc.frames.video.startswith("clip:"):
            try:
                probe(resolve_path(show, sc.frames.video))
            except VideoError as e:
                raise ShowError(f"{p}: scenes.{name}.frames.video: {e}") from None
    o = show.output
    outs: list[tuple[str, str | None, bool, tuple[str, ...]]] = [
        ("output.out", o.out, False, VIDEO_SUFFIXES), ("output.record", o.record, False, VIDEO_SUFFIXES),
        ("output.stats_json", o.stats_json, False, (".json",)), ("output.record_dir", o.record_dir, True, ()),
        ("output.screenshot_dir", o.screenshot_dir, True, ()),
    ]  # fmt: skip
    for key, v, folder, suffixes in outs:
        if v is not None:
            try:
                check_writable_later(resolve_path(show, v), key, folder=folder, suffixes=suffixes)
            except OutputError as e:
                raise ShowError(f"{p}: {e}") from None
