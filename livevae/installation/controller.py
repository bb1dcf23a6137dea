"""Installation mode: the `[installation]` show section, and the controller that runs a show unattended for weeks."""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from livevae import logs
from livevae.control.tempo import next_line
from livevae.installation import schedule as sched
from livevae.installation.autopilot import autopilot_wanted, drift, lfo_offset, scene_at, step_weight
from livevae.installation.health import HealthError, Heartbeat, StderrTee, rss_bytes, setup_log_file
from livevae.installation.section import InstallationError, InstallationSection, apply_display, parse_section
from livevae.installation.watchdog import GuardedBackend, Watchdog

if TYPE_CHECKING:
    from livevae.config import LiveConfig
    from livevae.control.state import ControlState
    from livevae.handle import FrameInfo, LoopHandle

log = logging.getLogger("livevae.installation.controller")


# ---------------------------------------------------------------------------------------------- the controller


class InstallationController:
    """Runs the show unattended: autopilot, opening hours, nightly restart, heartbeat, log file and watchdog.

    Everything it does in the frame thread is cheap (modulate: one vector op; on_frame: a few comparisons and a
    dict update); files are written by the heartbeat thread and the watchdog runs on its own thread.
    """

    def __init__(
        self,
        sec: InstallationSection,
        state: ControlState | None = None,
        show_dir: Path = Path("."),
        show_scenes: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        show_name: str = "show",
    ) -> None:
        self.sec = sec
        self.state = state
        self.show_dir = Path(show_dir)
        self.show_name = show_name  # names its folder under the state dir
        self.clock = clock
        self.wallclock = wallclock
        ap = sec.autopilot
        self.scenes = list(ap.scenes or show_scenes)
        s = sec.schedule
        self.schedule = sched.make_schedule(s.open, s.timezone, s.closed_dates, what="installation.schedule")
        self.restart_at = sched.parse_time_of_day(s.nightly_restart) if s.nightly_restart else None
        self.loop: LoopHandle | None = None
        self._film_warned = False
        self.weight = 1.0 if ap.enabled else 0.0  # nobody is playing when the doors open
        self.driving = ap.enabled
        self.scene = ""
        self.scene_count = 0
        self._scene_due = 0.0  # show time t of the next scene change (renders repeat: t is index / fps there)
        self._line: tuple[float, float] | None = None  # sync: (the beat count the next change waits for, its step)
        self._sync_said = ""  # why the last change could not follow the beat (said once per reason)
        self._last_t: float | None = None
        self.is_open = True
        self._next_sched_check = 0.0
        self._next_restart: float | None = None
        self.restart_requested = ""
        self._next_hb = 0.0
        self.heartbeat: Heartbeat | None = None
        self.watchdog: Watchdog | None = None
        self._log_handler: logging.Handler | None = None
        self._tee: StderrTee | None = None
        self._console: logging.Handler | None = None
        self._closed_image: np.ndarray | None = None
        self._home_values: dict[str, float] = {}
        self._home_lfos: tuple[Any, ...] = ()
        self.handovers = 0  # performer took over
        self.resumes = 0  # autopilot took back

    # --- paths -------------------------------------------------------------------------------------------
    def _path(self, p: str) -> Path:
        from livevae.resources import runtime_path

        return runtime_path(p, self.show_dir, self.show_name)

    # --- Controller protocol -----------------------------------------------------------------------------
    def configure(self, cfg: LiveConfig) -> LiveConfig:
        """The show's config with the installation's display settings (build_show calls this before the loop)."""
        return apply_display(cfg, self.sec)

    def start(self, loop: LoopHandle | None) -> None:
        self.loop = loop
        self._film_warned = False
        if not self.sec.enabled:  # `enabled = false`: the section stays in the file, the show runs as a plain one
            self.weight, self.driving = 0.0, False
            return
        if self.state is not None:  # the show's starting controls, restored whenever the autopilot takes back
            snap = self.state.snapshot()
            self._home_values = snap.values()
            self._home_lfos = snap.lfos
        if not self.scenes and loop is not None:  # every scene the show's control layer knows (file's and saved)
            names = getattr(loop.service("scenes"), "names", None)
            if callable(names):
                self.scenes = list(names())
        h = self.sec.health
        if h.log_file:
            self._log_handler = setup_log_file(
                self._path(h.log_file), int(h.log_max_mb * 2**20), h.log_backups, logging.INFO
            )
            self._tee = StderrTee.install()
        if self._tee is not None and not logs.console_configured():
            # the file handler replaces logging's last-resort console output: keep warnings on the console too,
            # written to the real stderr so the tee does not copy them into the file a second time
            self._console = logging.StreamHandler(self._tee.stream)
            self._console.setLevel(logging.INFO)
            self._console.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            tee_name = self._tee.logger.name
            self._console.addFilter(lambda r: r.name != tee_name)  # printed lines are on the console already
            logging.getLogger("livevae").addHandler(self._console)
        if h.heartbeat:
            self.heartbeat = Heartbeat(self._path(h.heartbeat), h.heartbeat_interval)
            backend = loop.status().backend if loop is not None else ""
            self.heartbeat.update(state="starting", show=str(self.show_dir), backend=backend)
            self.heartbeat.start()
        if self.sec.watchdog.enabled and loop is not None and not loop.status().offline:
            self._start_watchdog(loop)
        self._closed_image = self._make_closed_image(loop)
        now = self.clock()
        self._scene_due = 0.0  # the first scene at once
        self._update_schedule(now, force=True)
        log.info(
            "installation: %s; autopilot %s; %d scene(s)",
            sched.describe(self.schedule, self._now_dt()),
            "on" if self.sec.autopilot.enabled else "off",
            len(self.scenes),
        )

    def _start_watchdog(self, loop: LoopHandle) -> None:
        w = self.sec.watchdog
        wd = Watchdog(hang_exit=w.hang_exit)
        self.watchdog = wd
        st = loop.status()
        if st.model:
            from livevae.backends import create

            def factory() -> Any:
                # the rebuilt backend keeps the settings: the same threads, shared out the same way
                return create(st.model, st.backend_spec, threads=st.threads, overlap=st.pipeline)

            def guard(inner: Any) -> Any:
                if isinstance(inner, GuardedBackend):
                    return inner
                return GuardedBackend(factory, wd, call_timeout=w.call_timeout, timeout=w.backend_timeout, inner=inner)

            loop.wrap_backend(guard)

        def source_progress() -> int:
            s = loop.status()
            if s.source_status not in ("running", ""):
                # a capture that is reconnecting on its own (file gone, camera unplugged) is not stalled:
                # it has its own backoff; restarting it would only pile up captures
                return -int(self.clock() * 10)
            return s.source_published

        wd.add("source", self._restart_source, w.source_timeout, progress=source_progress)
        wd.add("loop", lambda: log.warning("watchdog: the frame loop is stalled"), max(w.hang_exit / 2, 5.0),
               progress=lambda: loop.status().index)  # fmt: skip
        wd.start()

    def _restart_source(self) -> None:
        loop = self.loop
        if loop is None:
            return
        # through the action queue, so the switch happens on the frame thread (no race with the loop)
        if self.state is not None:
            self.state.post("source", loop.status().source_index, origin="watchdog")
        else:
            loop.post("source", loop.status().source_index)

    def modulate(self, z: np.ndarray, t: float) -> np.ndarray:
        """z + weight * (drift + LFOs): float32 [N, zdim]. The weight fades with performer input."""
        ap = self.sec.autopilot
        dt_ = 0.0 if self._last_t is None else t - self._last_t
        self._last_t = t
        if not ap.enabled or not self.sec.enabled:
            return z
        last = self.state.last_input_time if self.state is not None else 0.0
        wanted = autopilot_wanted(self.clock(), last, ap.idle_timeout)
        self.weight = step_weight(self.weight, wanted, dt_, ap.fade_in, ap.release)
        if self.weight <= 0.0:
            return z
        zdim = z.shape[-1]
        if ap.drift_along == "film" and (path := self._film_trajectory(t)) is not None:
            # Pulled onto the film's own path (the weight fades it in and out), the autopilot's LFOs on top.
            zf = (z + self.weight * (path[None, :] - z)).astype(np.float32)
            return (
                (zf + self.weight * lfo_offset(ap.lfos, t, zdim, ap.seed)[None, :]).astype(np.float32)
                if ap.lfos
                else zf
            )
        off = drift(t, zdim, ap.drift, ap.drift_period, ap.seed)
        if ap.lfos:
            off = off + lfo_offset(ap.lfos, t, zdim, ap.seed)
        return (z + self.weight * off[None, :]).astype(np.float32, copy=False)

    def _film_trajectory(self, t: float) -> np.ndarray | None:
        """The film's latent at show time t (float32 [zdim]) from the film mirror's service; None without an index
        (said once; the random walk drifts instead)."""
        mirror = self.loop.service("mirror") if self.loop is not None else None
        walk = getattr(mirror, "trajectory", None)
        path = walk(t, self.sec.autopilot.film_rate) if callable(walk) else None
        if path is None and not self._film_warned:
            self._film_warned = True
            log.warning("autopilot: drift_along = 'film' but the model has no latent index (livevae index MODEL "
                        "DATASET); drifting at random")  # fmt: skip
        return path

    def handle_action(self, action: str, arg: object) -> bool:
        return False  # scenes are the control layer's; the autopilot only posts them

    def on_frame(self, info: FrameInfo) -> None:
        if not self.sec.enabled:
            return
        now = self.clock()
        self._update_schedule(now)
        self._autopilot_turns(now, info.t, info.fps)
        self._check_restart(now)
        if self.heartbeat is not None and now >= self._next_hb:
            self._next_hb = now + 1.0
            self.heartbeat.update(**self.health_fields(info))

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop(final={"state": "restarting" if self.restart_requested else "stopped"})
        if self._tee is not None:
            self._tee.uninstall()
        if self._console is not None:
            logging.getLogger("livevae").removeHandler(self._console)
        if self._log_handler is not None:
            logging.getLogger("livevae").removeHandler(self._log_handler)
            self._log_handler.close()
        if self.restart_requested and self.sec.schedule.restart_mode == "exec":
            atexit.register(_reexec)  # after every output is closed and the stats printed

    # --- autopilot -----------------------------------------------------------------------------------------
    def _autopilot_turns(self, now: float, t: float, fps: float = 30.0) -> None:
        ap = self.sec.autopilot
        if not ap.enabled or self.state is None:
            return
        wanted = autopilot_wanted(now, self.state.last_input_time, ap.idle_timeout)
        if wanted and not self.driving:
            self.driving = True
            self.resumes += 1
            log.info("autopilot: nobody has played for %.0f s; taking over", ap.idle_timeout)
            if ap.reset_on_resume:
                self._restore_home()
            self._scene_due = t
            self._line = None
        elif not wanted and self.driving:
            self.driving = False
            self.handovers += 1
            log.info("autopilot: performer input (%s); handing over", self.state.last_origin or "?")
        if self.driving and self.scenes and self.is_open and self._scene_turn(now, t, fps):
            self.scene = scene_at(self.scene_count, self.scenes, ap.order, ap.seed)
            self.scene_count += 1
            self._scene_due = t + ap.scene_seconds
            try:
                self.state.post("scene.recall", self.scene, origin="autopilot")
            except Exception as e:  # a control layer without scenes: keep drifting
                log.warning("autopilot: cannot recall scene %r: %s", self.scene, e)

    def _scene_turn(self, now: float, t: float, fps: float) -> bool:
        """Whether the next scene goes on now. Unsynced: scene_seconds after the last. sync = "beat" / "bar": a
        change due on seconds waits for the lead's next beat / bar line (scene_bars: the next N-bar line, no
        seconds). The recall posted now lands on the next frame, so the line is looked for one frame ahead: the
        change shows on the frame nearest the line. With no beat to follow (a clock stopped or not yet there) the
        seconds rule runs, said once."""
        ap = self.sec.autopilot
        beat = None
        if ap.sync != "off":
            beat = self._beat(now + 1.0 / max(fps, 1.0))
        if beat is None:
            self._line = None
            return t >= self._scene_due
        if self._line is None:
            if ap.scene_bars is None and t < self._scene_due:
                return False
            bar = float(getattr(self._tempo(), "beats_per_bar", 4))
            step = bar * (ap.scene_bars or 1) if ap.sync == "bar" else 1.0
            self._line = (next_line(beat, step), step)
            return False
        line, step = self._line
        if beat + step < line:  # the lead jumped back (MIDI Start, Song Position): the next line from here
            self._line = (next_line(beat, step), step)
            return False
        if beat < line:
            return False
        self._line = None
        return True

    def _tempo(self) -> object | None:
        return self.loop.service("tempo") if self.loop is not None else None

    def _beat(self, now: float) -> float | None:
        """The [tempo] lead's beat count at monotonic time `now`, or None (said once per reason) without one."""
        tempo = self._tempo()
        beat_at = getattr(tempo, "beat_at", None)
        beat = beat_at(now) if callable(beat_at) else None
        why = "" if beat is not None else "no [tempo] section" if tempo is None else "no beat from the tempo lead yet"
        if why and why != self._sync_said:
            log.warning(f"autopilot: sync = {self.sec.autopilot.sync!r} but {why}; changing scenes on scene_seconds")
        elif not why and self._sync_said:
            log.info(f"autopilot: following the tempo lead's {self.sec.autopilot.sync}s again")
        self._sync_said = why
        return float(beat) if beat is not None else None

    def _restore_home(self) -> None:
        """Every control back to the show's starting values and LFOs (as they were when the show started)."""
        from livevae.control.state import ControlError, LfoSettings

        assert self.state is not None
        self.state.reset(origin="autopilot")
        try:
            if self._home_values:
                self.state.set_many(self._home_values, origin="autopilot")
            for n, lfo in enumerate(self._home_lfos):
                if lfo != LfoSettings():
                    self.state.set_lfo(n, lfo, origin="autopilot")
        except ControlError as e:  # the show's own values were valid at start; say so if that ever changes
            log.warning("autopilot: cannot restore the show's starting controls: %s", e)

    # --- schedule ------------------------------------------------------------------------------------------
    def _now_dt(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.wallclock(), dt.timezone.utc)

    def _update_schedule(self, now: float, force: bool = False) -> None:
        if not force and now < self._next_sched_check:
            return
        self._next_sched_check = now + 1.0
        is_open = sched.is_open(self.schedule, self._now_dt())
        if is_open == self.is_open and not force:
            return
        self.is_open = is_open
        loop = self.loop
        if loop is None:
            return
        if is_open:
            log.info("schedule: open (%s)", sched.describe(self.schedule, self._now_dt()))
            loop.resume()
            if self.watchdog is not None:
                self.watchdog.pause(False)
        else:
            log.info("schedule: closed (%s); showing %s", sched.describe(self.schedule, self._now_dt()),
                     self.sec.schedule.closed)  # fmt: skip
            if self.watchdog is not None:
                self.watchdog.pause(True, "source", "backend")
            assert self._closed_image is not None
            loop.hold(self._closed_image, self.sec.schedule.closed_fps)

    def _make_closed_image(self, loop: LoopHandle | None) -> np.ndarray:
        s = self.sec.schedule
        size = loop.status().size if loop is not None else (256, 144)
        if s.closed == "still" and s.still:
            from livevae.media.source import read_image

            p = self._path(s.still)
            try:
                img = read_image(p)
                # the model's size and crop, like every other output frame
                return loop.preprocess(img) if loop is not None else img
            except Exception as e:  # a missing still must not keep the doors shut: black instead
                log.error("schedule.still %s: %s; showing black while closed", p, e)
        return np.zeros((size[1], size[0], 3), np.uint8)

    # --- restarts --------------------------------------------------------------------------------------------
    def _check_restart(self, now: float) -> None:
        if self.restart_requested:
            return
        if self.restart_at is not None:
            if self._next_restart is None:
                nxt = sched.next_daily(self.restart_at, self._now_dt(), self.schedule.tz)
                self._next_restart = now + (nxt.timestamp() - self.wallclock())
            elif now >= self._next_restart:
                self.request_restart(f"nightly restart at {self.sec.schedule.nightly_restart}")
                return
        lim = self.sec.health.max_rss_mb
        if lim > 0 and now >= self._next_hb - 0.5 and rss_bytes() > lim * 2**20:
            self.request_restart(f"RSS {rss_bytes() / 2**20:.0f} MB over max_rss_mb {lim:g}")

    def request_restart(self, reason: str) -> None:
        """End the show cleanly and start it again (re-exec, or exit for systemd to restart)."""
        self.restart_requested = reason
        log.warning("installation: %s; restarting", reason)
        if self.loop is not None:
            self.loop.request_quit()

    # --- health ----------------------------------------------------------------------------------------------
    def health_fields(self, info: FrameInfo | None = None) -> dict[str, Any]:
        loop = self.loop
        out: dict[str, Any] = {
            "state": "open" if self.is_open else "closed",
            "mode": "autopilot" if self.driving else "performer",
            "autopilot_weight": round(self.weight, 3),
            "scene": self._current_scene(),
            "schedule": sched.describe(self.schedule, self._now_dt()),
            "handovers": self.handovers,
            "resumes": self.resumes,
        }
        if info is not None:
            out.update(frames=info.index + 1, fps=round(info.fps, 2), source=info.source, dropped=info.dropped,
                       fallback=info.fallback, latency_ms=round(info.latency_ms, 1))  # fmt: skip
        if loop is not None:
            st = loop.status()
            out["backend"] = st.backend
            out["source_status"] = st.source_status
            out["controller_errors"] = st.controller_errors
        if self.watchdog is not None:
            out["watchdog"] = self.watchdog.status()
        return out

    def _current_scene(self) -> str:
        """The scene on stage: the control layer's current one (whoever recalled it), else the autopilot's."""
        bank = self.loop.service("scenes") if self.loop is not None else None
        cur = getattr(bank, "current", None)
        return cur if isinstance(cur, str) and cur else self.scene

    def hud_lines(self) -> list[str]:
        mode = f"autopilot {self.weight:.0%}" if self.driving else "performer"
        return [f"{mode}  {'open' if self.is_open else 'closed'}  {self.scene}".rstrip()]


def _reexec() -> None:
    """Replace this process with a fresh copy of itself (same interpreter and arguments)."""
    argv = list(getattr(sys, "orig_argv", [])) or [sys.executable, *sys.argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *argv[1:]])


def from_show(
    section: Mapping[str, Any],
    state: ControlState | None,
    show_path: Path,
    scenes: Sequence[str] = (),
) -> InstallationController:
    """The installation controller for a show's [installation] table. Raises InstallationError naming the key."""
    sec = parse_section(section)
    if sec.health.log_file:
        from livevae.resources import runtime_path

        p = runtime_path(sec.health.log_file, show_path.parent, show_path.stem)
        if p.exists() and p.is_dir():
            raise InstallationError(f"installation.health.log_file {p}: a folder; expected a file path")
    try:
        return InstallationController(sec, state, show_path.parent, scenes, show_name=show_path.stem)
    except (sched.ScheduleError, HealthError) as e:
        raise InstallationError(str(e)) from None
