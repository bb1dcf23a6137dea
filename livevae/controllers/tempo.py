"""`[tempo]`: who leads the show's bpm: a MIDI clock (mido, incl. socket ports), Ableton Link (aalink), or taps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from livevae.control.state import ControlState
from livevae.control.tempo import PPQN, BeatPosition, ClockTempo, TapTempo
from livevae.controllers.midi_ports import PortSpec, connect
from livevae.errors import LivevaeError
from livevae.handle import FrameInfo, LoopHandle, Watcher

log = logging.getLogger(__name__)

LEADS = ("tap", "midi", "link", "manual")


class TempoError(LivevaeError):
    """A [tempo] section that names an unknown lead or port, or a tempo source that cannot start."""


class TempoSection(BaseModel):
    """[tempo] lead = "midi" | "link" | "tap" | "manual"; midi_port = "*" | name prefix | tcp:H:P | listen:H:P;
    beats_per_bar (Link's quantum; where the autopilot's bar lines fall)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lead: Literal["tap", "midi", "link", "manual"] = "tap"
    midi_port: str = "*"
    tap_timeout: float = Field(default=2.0, gt=0.2, le=10.0)  # s of silence that starts a new tap count
    beats_per_bar: int = Field(default=4, ge=1, le=16)


class TempoController(Watcher):
    """Writes the "bpm" control from the lead source; tempo-synced LFOs follow it (they read bpm every frame).

    Taps (key t, /livevae/tap, a mapped MIDI note) always count, but set bpm only when the lead is "tap": with a
    clock leading, the clock wins. MIDI clock and Link run on threads of their own; a port or a session that
    fails is said once and retried, the show goes on.

    It also keeps where the lead is in its bars (`position`, offered as the "tempo" service: the autopilot lands
    scene changes on its bar lines). MIDI: the tick count since Start (the first tick after Start is beat 0; Song
    Position moves it; Stop freezes it until Continue; a clock joined mid-song counts from the first tick heard).
    Link: its session beat. Tap: the first tap of a count is beat 0, each tap one beat. Manual: beat 0 at the
    show's start, at the bpm control."""

    def __init__(self, state: ControlState, section: TempoSection | None = None) -> None:
        self.state = state
        self.cfg = section or TempoSection()
        self.clock = ClockTempo()
        self.taps = TapTempo(timeout=self.cfg.tap_timeout)
        self.ticks = 0
        self.source = "" if self.cfg.lead in ("tap", "manual") else self.cfg.lead
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_set = 0.0
        self.beats_per_bar = self.cfg.beats_per_bar
        lead = self.cfg.lead
        # a clock extrapolates two ticks at most and is stale after 0.5 s without one; taps and manual never stale
        self.position = BeatPosition(
            stale=0.5 if lead == "midi" else 1.0 if lead == "link" else math.inf,
            max_ahead=2 / PPQN if lead == "midi" else None,
        )
        self._next_tick = 0  # MIDI: the position (in ticks) the next clock tick gets
        self._running = True  # MIDI: False between Stop and Continue/Start
        self._tap_count = 0  # taps in the current count (the next tap's beat)
        self._last_tap: float | None = None

    # --- the Controller protocol ---------------------------------------------------------------------------
    def services(self) -> dict[str, object]:
        return {"tempo": self}

    def beat_at(self, now: float) -> float | None:
        """The lead's beat count at monotonic time `now` (beat 0 = a downbeat), or None while it has none."""
        return self.position.beat_at(now)

    def start(self, loop: LoopHandle | None) -> None:
        if self.cfg.lead == "manual":
            self.position.anchor(time.monotonic(), 0.0, self.state.get("bpm"))
        target = {"midi": self._run_midi, "link": self._run_link}.get(self.cfg.lead)
        if target is not None:
            t = threading.Thread(target=target, name=f"tempo {self.cfg.lead}", daemon=True)
            t.start()
            self._threads.append(t)

    def handle_action(self, action: str, arg: object) -> bool:
        if action != "tap":
            return False
        self.tap(time.monotonic())
        return True

    def on_frame(self, info: FrameInfo) -> None:
        if self.cfg.lead in ("tap", "manual"):  # bpm moved by OSC, MIDI or taps: the bars go on from here at it
            self._follow_bpm(time.monotonic())

    def _follow_bpm(self, now: float) -> None:
        bpm, was = self.state.get("bpm"), self.position.tempo()
        if was is not None and abs(was - bpm) > 1e-6 and (beat := self.position.beat_at(now)) is not None:
            self.position.anchor(now, beat, bpm)

    def hud_lines(self) -> list[str]:
        lead = self.cfg.lead if self.cfg.lead != "midi" or self.ticks else "midi (no clock yet)"
        return [f"tempo {self.state.get('bpm'):.1f} bpm ({lead})"]

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2.0)

    # --- sources -------------------------------------------------------------------------------------------
    def tap(self, t: float) -> float | None:
        """One tap at time t (seconds); sets bpm from the fourth tap on when taps lead."""
        new_count = self._last_tap is None or not 0 < t - self._last_tap <= self.cfg.tap_timeout
        self._tap_count = 0 if new_count else self._tap_count + 1
        self._last_tap = t
        bpm = self.taps.tap(t)
        if self.cfg.lead == "tap":
            if bpm is not None:
                self.state.set("bpm", bpm, origin="tap")
            self.position.anchor(t, float(self._tap_count), bpm or self.state.get("bpm"))  # each tap is a beat
        return bpm

    def clock_tick(self, t: float) -> None:
        """One MIDI clock tick at time t; bpm is written at most 20 times a second (OSC/MIDI feedback listens)."""
        self.ticks += 1
        self.clock.tick(t)
        bpm = self.clock.bpm()
        if t - self._last_set >= 0.05 and bpm is not None:
            self._last_set = t
            self.state.set("bpm", round(bpm, 2), origin="midi-clock")
        if self._running:
            self.position.anchor(t, self._next_tick / PPQN, bpm or self.state.get("bpm"))
            self._next_tick += 1

    def _run_midi(self) -> None:
        spec = PortSpec.parse(self.cfg.midi_port)
        warned = False
        while not self._stop.is_set():
            try:
                port = self._open_midi(spec)
            except Exception as e:  # no such port yet: said once, retried every second
                if not warned:
                    log.warning(f"tempo: MIDI clock port {spec.text!r}: {e}; retrying")
                    warned = True
                self._stop.wait(1.0)
                continue
            warned = False
            try:
                self._read_midi(port)
            except Exception as e:  # the port went away mid-show
                log.warning(f"tempo: MIDI clock port {spec.text!r} failed ({e}); reopening")
            finally:
                with contextlib.suppress(Exception):  # already gone
                    port.close()

    def _open_midi(self, spec: PortSpec) -> Any:
        """A mido input: a socket client, a socket server (senders connect to it) or a named port."""
        import mido
        from mido import sockets

        if spec.kind == "tcp":
            return connect(spec.host, spec.portno)
        if spec.kind == "listen":
            return sockets.PortServer(spec.host, spec.portno)
        names = [n for n in mido.get_input_names() if spec.matches(n)]
        if not names:
            raise TempoError(f"no MIDI input matches {spec.text!r}; expected one of {mido.get_input_names()}")
        return mido.open_input(names[0])

    def _read_midi(self, port: Any) -> None:
        from mido import sockets

        server = port if isinstance(port, sockets.PortServer) else None
        clients: list[Any] = [] if server is not None else [port]
        while not self._stop.is_set():
            if server is not None:
                # take new senders; the server itself is never read (its receive blocks while it has no clients)
                while (c := server.accept(block=False)) is not None:
                    clients.append(c)
            got = False
            for c in list(clients):
                try:
                    for msg in c.iter_pending():
                        got = True
                        self._on_midi(msg, time.monotonic())
                except OSError:  # a sender hung up on our server: ordinary
                    if server is None:
                        raise
                    clients.remove(c)
            if not got:
                time.sleep(0.0005)  # a tick every ~20 ms at 128 bpm; half a millisecond of jitter at most

    def _on_midi(self, msg: Any, now: float) -> None:
        if msg.type == "clock":
            self.clock_tick(now)
        elif msg.type in ("start", "stop", "continue"):
            self.clock.reset()
            self.transport(msg.type)
        elif msg.type == "songpos":  # in sixteenth notes: 6 ticks each
            self._next_tick = int(msg.pos) * (PPQN // 4)

    def transport(self, what: str) -> None:
        """MIDI Start (the next tick is beat 0), Stop (no position until Continue) or Continue."""
        if what == "start":
            self._next_tick = 0
        self._running = what != "stop"
        if not self._running:
            self.position.clear()

    def _run_link(self) -> None:
        try:
            from aalink import Link
        except ImportError as e:
            log.warning(f"tempo: Ableton Link needs aalink ({e}); pip install 'livevae[link]'; bpm stays manual")
            return
        loop = asyncio.new_event_loop()

        async def follow() -> None:
            link = Link(self.state.get("bpm"))  # on the running loop
            link.quantum = self.cfg.beats_per_bar  # Link's bar: beat 0, 4, 8 ... are downbeats for every peer
            link.enabled = True
            self.link = link
            while not self._stop.is_set():
                tempo = float(link.tempo)
                if abs(tempo - self.state.get("bpm")) > 0.01:
                    self.state.set("bpm", tempo, origin="link")
                self.position.anchor(time.monotonic(), float(link.beat), tempo)
                await asyncio.sleep(0.05)
            link.enabled = False

        try:
            loop.run_until_complete(follow())
        except Exception as e:  # Link's session failed: the show keeps its last bpm
            log.warning(f"tempo: Ableton Link stopped ({e}); bpm stays at {self.state.get('bpm'):.1f}")
        finally:
            loop.close()


def from_show(section: dict[str, Any], state: ControlState, path: Path) -> TempoController:
    """The [tempo] section of a show file -> a TempoController; raises TempoError naming the key."""
    try:
        sec = TempoSection.model_validate(section)
        PortSpec.parse(sec.midi_port)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(x) for x in first["loc"])
        raise TempoError(f"tempo.{key}: {first['msg']} (got {first.get('input')!r})") from None
    except LivevaeError as e:
        raise TempoError(f"tempo.midi_port: {e}") from None
    return TempoController(state, sec)
