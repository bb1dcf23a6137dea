"""The [installation] show section: autopilot, opening hours, health and watchdog settings, validated in one pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from livevae.errors import LivevaeError
from livevae.installation import schedule as sched

if TYPE_CHECKING:
    from livevae.config import LiveConfig


class InstallationError(LivevaeError):
    """The [installation] section of a show is malformed, or installation mode cannot start."""


# ---------------------------------------------------------------------------------------------- the show section


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AutopilotLfo(_Section):
    """An LFO of the autopilot's own, on one latent dimension; it fades with the autopilot."""

    target: str  # "z/{i}"
    shape: Literal["sine", "triangle", "walk"] = "sine"
    rate: float = Field(default=0.02, ge=0.0, le=20.0)  # Hz: installations move slowly
    depth: float = Field(default=1.0, ge=0.0, le=8.0)  # latent units
    phase: float = Field(default=0.0, ge=0.0, le=1.0)

    @field_validator("target")
    @classmethod
    def _z_target(cls, v: str) -> str:
        head, _, idx = v.strip().strip("/").partition("/")
        if head != "z" or not idx.isdigit():
            raise ValueError(f"target {v!r}; expected 'z/{{i}}', a latent dimension")
        return f"z/{int(idx)}"

    @property
    def dim(self) -> int:
        return int(self.target.split("/")[1])


class AutopilotSection(_Section):
    """Moves the show while nobody plays; hands back at the first OSC/MIDI input, resumes after idle_timeout."""

    enabled: bool = True
    idle_timeout: float = Field(default=120.0, gt=0.0, le=86400.0)  # s without performer input before it takes over
    fade_in: float = Field(default=10.0, ge=0.0, le=600.0)  # s to fade the autopilot in when it resumes
    release: float = Field(default=0.5, ge=0.0, le=60.0)  # s to fade it out when a performer touches a control
    drift: float = Field(default=0.8, ge=0.0, le=8.0)  # size of the latent drift, in latent units (the prior's std)
    drift_period: float = Field(default=20.0, gt=0.0, le=3600.0)  # s per step of the random walk
    # "film": walk the training film's own trajectory through latent space (needs the film mirror's index);
    # "random": the seeded random walk above
    drift_along: Literal["random", "film"] = "random"
    film_rate: float = Field(default=0.25, gt=0.0, le=8.0)  # "film": x the film's own frame rate
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    scenes: list[str] = Field(default_factory=list)  # recalled in turn; [] = every scene of the show
    scene_seconds: float = Field(default=300.0, ge=1.0, le=86400.0)  # s per scene
    order: Literal["cycle", "shuffle"] = "cycle"
    # scene changes on the [tempo] lead's beats or bars: a change due after scene_seconds waits for the next line
    sync: Literal["off", "beat", "bar"] = "off"
    scene_bars: int | None = Field(default=None, ge=1, le=1024)  # sync = "bar": N bars a scene, on N-bar lines
    reset_on_resume: bool = True  # controls back to the show's starting values when the autopilot takes back
    lfos: list[AutopilotLfo] = Field(default_factory=list)

    @field_validator("scene_bars")
    @classmethod
    def _bars_need_bar_sync(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None and info.data.get("sync") != "bar":
            raise ValueError('counts bars; expected sync = "bar" beside it')
        return v


class ScheduleSection(_Section):
    """Opening hours; outside them a black screen or a still, at `closed_fps` and no model work."""

    timezone: str = "local"
    open: list[str] = Field(default_factory=list)  # [] = always open
    closed_dates: list[str] = Field(default_factory=list)
    closed: Literal["black", "still"] = "black"
    still: str | None = None  # image shown while closed (closed = "still"); relative to the show file
    closed_fps: float = Field(default=1.0, ge=0.1, le=30.0)
    nightly_restart: str | None = None  # "04:00" local time; None = never
    restart_mode: Literal["exec", "exit"] = "exec"  # exec: the process replaces itself; exit: systemd restarts


class HealthSection(_Section):
    # "state:X" = X under the state folder (resources.state_dir()/<show name>); else relative to the show file
    heartbeat: str | None = "state:heartbeat.json"  # None = no heartbeat
    heartbeat_interval: float = Field(default=5.0, ge=0.5, le=600.0)
    log_file: str | None = None  # rotating log; "state:logs/livevae.log" or relative to the show file
    log_max_mb: float = Field(default=10.0, gt=0.0, le=10_000.0)
    log_backups: int = Field(default=5, ge=0, le=1000)
    max_rss_mb: float = Field(default=0.0, ge=0.0)  # > 0: restart (like the nightly restart) when RSS passes this


class WatchdogSection(_Section):
    enabled: bool = True
    source_timeout: float = Field(default=10.0, gt=0.0, le=3600.0)  # s without a new source frame -> restart it
    backend_timeout: float = Field(default=60.0, gt=0.0, le=3600.0)  # s without a good backend call -> rebuild it
    call_timeout: float | None = Field(default=None, gt=0.0, le=3600.0)  # abandon a single backend call after this
    hang_exit: float = Field(default=120.0, ge=0.0, le=86400.0)  # s the frame loop may hang before exiting; 0 = never


class InstallationSection(_Section):
    """`[installation]`: display, autopilot, schedule, health and watchdog of an unattended show."""

    enabled: bool = True
    display: int = Field(default=0, ge=0, le=64)
    fullscreen: bool = True
    cursor: bool = False
    hud: bool = False
    autopilot: AutopilotSection = AutopilotSection()
    schedule: ScheduleSection = ScheduleSection()
    health: HealthSection = HealthSection()
    watchdog: WatchdogSection = WatchdogSection()


def _format_errors(e: ValidationError, prefix: str) -> str:
    lines = []
    for err in e.errors():
        key = prefix
        for p in (str(p) for p in err["loc"]):
            key += f"[{p}]" if p.isdigit() else f".{p}"
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if err["type"] in ("missing",) or isinstance(got, (dict, list)) else f" (got {got!r})"
        lines.append(f"{key}: {msg}{shown}")
    return "; ".join(lines)


def parse_section(raw: Mapping[str, Any], where: str = "installation") -> InstallationSection:
    """Validate the [installation] table; raises InstallationError naming each bad key, what was found and what
    was expected. Opening hours, dates, the time zone and the restart time are checked here too."""
    if not isinstance(raw, Mapping):
        raise InstallationError(f"{where}: a {type(raw).__name__}; expected a table")
    try:
        sec = InstallationSection.model_validate(dict(raw))
    except ValidationError as e:
        raise InstallationError(_format_errors(e, where)) from None
    s = sec.schedule
    try:
        sched.make_schedule(s.open, s.timezone, s.closed_dates, what=f"{where}.schedule")
        if s.nightly_restart is not None:
            sched.parse_time_of_day(s.nightly_restart, f"{where}.schedule.nightly_restart")
    except sched.ScheduleError as e:
        raise InstallationError(str(e)) from None
    if s.closed == "still" and not s.still:
        raise InstallationError(f"{where}.schedule.still: missing; closed = 'still' needs an image path")
    for i, name in enumerate(sec.autopilot.scenes):
        if not name.strip():
            raise InstallationError(f"{where}.autopilot.scenes[{i}]: empty name; expected a scene of the show")
    return sec


def apply_display(cfg: LiveConfig, sec: InstallationSection) -> LiveConfig:
    """cfg with the installation's window: fullscreen on the chosen display, cursor hidden, no HUD; sources loop."""
    from dataclasses import replace

    if not sec.enabled:
        return cfg
    win = replace(cfg.window, display=sec.display, fullscreen=sec.fullscreen, cursor=sec.cursor, hud=sec.hud,
                  follow_display=True)  # fmt: skip  # the projector may come up after the show
    return replace(cfg, window=win, loop=True)
