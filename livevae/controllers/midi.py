"""MIDI in and out: show mappings and MIDI learn into the control state, hot-plugged ports, LED/motor-fader feedback."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mido
from pydantic import ValidationError

from livevae.control.curves import CURVES, curve, scale, unscale
from livevae.control.state import ControlError, ControlState
from livevae.controllers.midi_mapping import (
    CC_MODES,
    LEARN_ACTIONS,
    LEARN_ORIGINS,
    NOTE_MODES,
    SOCKET_POLL,
    Effect,
    Learned,
    MidiError,
    MidiMapper,
    MidiMapping,
    PostAction,
    SetControl,
    message_for,
    relative_delta,
)
from livevae.controllers.midi_ports import MidiStats, OpenPort, PortSpec, Warner, connect
from livevae.controllers.midi_section import (
    MidiSection,
    learn_path,
    load_learned,
    parse_mappings,
    save_learned,
    validation_message,
)

if TYPE_CHECKING:
    from livevae.handle import FrameInfo, LoopHandle


log = logging.getLogger("livevae.controllers.midi")


# --- the controller ---------------------------------------------------------------------------------------------
class MidiController:
    """MIDI input (hot-plugged ports, mappings, learn) and feedback output into one ControlState.

    Its thread rescans port names every `rescan` seconds and opens new matching ports; rtmidi ports deliver on
    rtmidi's own thread by callback, socket ports are polled. Every device error becomes one warning and a retry
    on the next scan; nothing raises into the frame loop. modulate() is the identity.
    """

    def __init__(
        self,
        state: ControlState,
        mappings: Sequence[MidiMapping] = (),
        inputs: Sequence[str] = ("*",),
        output: str = "",
        rescan: float = 1.0,
        learn_file: Path | None = None,
        show_path: Path | None = None,
        learn_timeout: float = 30.0,
        learned: Sequence[MidiMapping] = (),
    ) -> None:
        self.state = state
        self.specs = [PortSpec.parse(s) for s in inputs] or [PortSpec.parse("*")]
        self.out_spec = PortSpec.parse(output) if output else None
        self.rescan, self.learn_file, self.show_path = rescan, learn_file, show_path
        self.learn_timeout = learn_timeout
        self.mapper = MidiMapper(mappings, state.check_target, state.get, learned)
        self.stats = MidiStats()
        self.warn = Warner()
        self._lock = threading.Lock()  # serialises mapper.handle across rtmidi callbacks and the poll thread
        self._open: dict[str, OpenPort] = {}
        self._out: Any = None
        self._out_name = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_touched = ""  # the control most recently moved by a non-MIDI input, for learn without a target
        self._dirty: dict[str, str] = {}
        self._dirty_lock = threading.Lock()
        self._wake = threading.Event()
        self._apply_slews()

    # -- lifecycle --
    def start(self, loop: LoopHandle | None = None) -> None:
        if self._thread is not None:
            return
        self.state.add_listener(self._on_change)
        if loop is not None:
            self._attach_osc_from(loop)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="midi", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.state.remove_listener(self._on_change)
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None
        for o in list(self._open.values()):
            self._close(o)
        self._open.clear()
        if self._out is not None:
            self._safe_close(self._out)
            self._out = None

    def modulate(self, z: Any, t: float) -> Any:
        return z

    def on_frame(self, info: FrameInfo) -> None:
        pass

    def handle_action(self, action: str, arg: object) -> bool:
        """ "midi.learn" [target] arms learn (no target: the control last moved by OSC/keys/UI); "midi.unlearn"
        target forgets its learned mappings."""
        if action == "midi.learn":
            self.arm_learn(str(arg) if arg not in (None, "") else None)
            return True
        if action == "midi.unlearn" and arg:
            self.unlearn(str(arg))
            return True
        return False

    # -- learn --
    def arm_learn(self, target: str | None = None) -> bool:
        """Arm MIDI learn for `target` (None: the control last moved by a non-MIDI input). The next CC, note or
        pitch bend moved binds to it. Returns False (with a warning) when there is nothing to learn for."""
        t = target or self._last_touched
        if not t:
            log.warning("MIDI learn: no target given and no control moved yet; expected e.g. midi.learn pc/0")
            return False
        try:
            with self._lock:
                self.mapper.arm(t, time.monotonic())
        except ControlError as e:
            log.warning("MIDI learn: %s", e)
            return False
        log.info("MIDI learn: move a control to bind it to %s", t)
        return True

    def unlearn(self, target: str) -> int:
        with self._lock:
            n = self.mapper.unlearn(target)
        if n:
            self._save_learned()
            self._apply_slews()
        return n

    def _save_learned(self) -> None:
        if self.learn_file is None:
            return
        try:
            save_learned(self.learn_file, self.mapper.learned, self.show_path)
        except (OSError, MidiError) as e:
            self.warn.warn("learn-save", "MIDI learn: cannot save %s (%s); learned mappings last until quit",
                           self.learn_file, e)  # fmt: skip

    def _apply_slews(self) -> None:
        for m in self.mapper.mappings:
            if m.target and m.smoothing > 0:
                try:
                    self.state.set_slew(m.target, m.smoothing)
                except ControlError as e:
                    log.warning("MIDI mapping %s: %s", m.name, e)

    # -- messages --
    def feed(self, msg: mido.Message, port: str = "") -> list[Effect]:
        """Handle one message as if it came from `port`; applies its effects to the state. Never raises."""
        self.stats.messages += 1
        now = time.monotonic()
        with self._lock:
            if self.mapper.armed is not None and now - self.mapper.armed_at > self.learn_timeout:
                log.info("MIDI learn for %s timed out", self.mapper.armed)
                self.mapper.disarm()
            try:
                effects = self.mapper.handle(msg, port, now)
            except Exception as e:  # a mapping bug must not kill a port's thread
                self.stats.errors += 1
                self.warn.warn("handle", "MIDI: %s on %s from %s; ignored", e, msg, port)
                return []
        for eff in effects:
            try:
                if isinstance(eff, SetControl):
                    self.state.set(eff.target, eff.value, origin=eff.origin)
                    self.stats.handled += 1
                elif isinstance(eff, PostAction):
                    self.stats.handled += 1
                    if eff.action in LEARN_ACTIONS:
                        self.handle_action(eff.action, eff.arg)
                    else:
                        self.state.post(eff.action, eff.arg, origin=eff.origin)
                else:
                    self.stats.learned += 1
                    log.info("MIDI learn: %s -> %s", eff.mapping.name, eff.mapping.target)
                    self._save_learned()
                    self._mark_all()
            except ControlError as err:
                self.stats.errors += 1
                self.warn.warn(f"effect {eff}", "MIDI: %s", err)
        return effects

    def _on_change(self, target: str, value: float, origin: str) -> None:
        if origin.split(":")[0] in LEARN_ORIGINS:  # a performer's hand, not MIDI itself, audio, LFOs or scenes
            self._last_touched = target
        if self._out is not None:
            with self._dirty_lock:
                self._dirty[target] = origin
            self._wake.set()

    def _mark_all(self) -> None:
        with self._dirty_lock:
            for m in self.mapper.mappings:
                if m.target:
                    self._dirty[m.target] = ""
        self._wake.set()

    # -- the thread --
    def _run(self) -> None:
        next_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_scan:
                self.scan()
                next_scan = time.monotonic() + self.rescan
            self.flush_feedback()
            polled = [o for o in self._open.values() if o.polled]
            for o in polled:
                self._poll(o)
            if polled:
                self._wake.wait(SOCKET_POLL)
            else:
                self._wake.wait(max(0.0, next_scan - time.monotonic()))
            self._wake.clear()

    def _poll(self, o: OpenPort) -> None:
        if o.server:
            self._accept(o)
            return
        try:
            for msg in o.port.iter_pending():
                self.feed(msg, o.name)
            gone = bool(getattr(o.port, "closed", False))
        except Exception as e:  # a socket reset, an rtmidi error
            gone = True
            self.warn.warn(f"read {o.name}", "MIDI port %s: read failed (%s)", o.name, e)
        if gone:
            self._vanished(o)

    def _accept(self, o: OpenPort) -> None:
        """A listening socket port: take new senders (each polled on its own); the server itself is never read,
        since mido's PortServer.receive blocks while it has no clients."""
        try:
            client = o.port.accept(block=False)
        except OSError as e:
            self.warn.warn(f"accept {o.name}", "MIDI port %s: accept failed (%s)", o.name, e)
            return
        if client is not None:
            o.port.ports.append(client)  # so feedback sent to the server reaches every connected sender
            name = f"{o.name} <- {client.name}"
            self._open[name] = OpenPort(name, client, o.spec, polled=True, client=True)
            log.info("MIDI in: %s", name)

    def _vanished(self, o: OpenPort) -> None:
        if o.client:  # a sender hanging up on our server is ordinary
            log.info("MIDI in: %s disconnected", o.name)
            self._close(o)
            self._open.pop(o.name, None)
            return
        # said before it is counted: whoever sees the count (the status line, a test) finds the warning already out
        log.warning("MIDI port %s vanished; will reopen it when it comes back", o.name)
        self.stats.vanished += 1
        self._close(o)
        self._open.pop(o.name, None)

    def scan(self) -> None:
        """Open matching input ports that are not open, drop ones that vanished, (re)open the feedback output."""
        names = self._names(mido.get_input_names, "inputs") if any(
            s.kind in ("all", "prefix") for s in self.specs
        ) else []  # fmt: skip
        if names is not None:
            for o in [o for o in self._open.values() if o.spec.kind in ("all", "prefix") and o.name not in names]:
                self._vanished(o)
            for name in names:
                if (
                    name not in self._open
                    and not name.startswith("RtMidi")
                    and any(s.matches(name) for s in self.specs)
                ):
                    self._open_rtmidi(name, next(s for s in self.specs if s.matches(name)))
        for s in self.specs:
            if s.kind in ("tcp", "listen") and s.text not in self._open:
                self._open_socket(s)
        if self.out_spec is not None:
            self._scan_output()

    def _names(self, fn: Callable[[], list[str]], what: str) -> list[str] | None:
        try:
            names = list(fn())
        except Exception as e:  # no ALSA sequencer / no CoreMIDI: rtmidi raises on creating its client
            self.warn.warn(f"names {what}", "MIDI: cannot list %s (%s); will keep trying every %gs", what, e,
                           self.rescan)  # fmt: skip
            return None
        self.warn.ok(f"names {what}")
        return names

    def _open_rtmidi(self, name: str, spec: PortSpec) -> None:
        def cb(msg: mido.Message, _name: str = name) -> None:
            self.feed(msg, _name)

        try:
            port = mido.open_input(name, callback=cb)
        except Exception as e:
            self.warn.warn(f"open {name}", "MIDI port %s: cannot open (%s); will retry", name, e)
            return
        self.warn.ok(f"open {name}")
        self._open[name] = OpenPort(name, port, spec, polled=False)
        self.stats.opened += 1
        log.info("MIDI in: %s", name)

    def _open_socket(self, s: PortSpec) -> None:
        from mido import sockets

        try:
            port: Any = connect(s.host, s.portno) if s.kind == "tcp" else sockets.PortServer(s.host, s.portno)
        except OSError as e:
            self.warn.warn(f"open {s.text}", "MIDI port %s: cannot %s (%s); will retry every %gs", s.text,
                           "connect" if s.kind == "tcp" else "listen", e, self.rescan)  # fmt: skip
            return
        self.warn.ok(f"open {s.text}")
        self._open[s.text] = OpenPort(s.text, port, s, polled=True, server=s.kind == "listen")
        self.stats.opened += 1
        log.info("MIDI in: %s", s.text)

    def _scan_output(self) -> None:
        spec = self.out_spec
        assert spec is not None
        if self._out is not None:
            if getattr(self._out, "closed", False):
                log.warning("MIDI out %s vanished; will reopen it when it comes back", self._out_name)
                self._out = None
            elif spec.kind in ("all", "prefix"):
                names = self._names(mido.get_output_names, "outputs")
                if names is not None and self._out_name not in names:
                    log.warning("MIDI out %s vanished; will reopen it when it comes back", self._out_name)
                    self._safe_close(self._out)
                    self._out = None
            if self._out is not None:
                return
        try:
            if spec.kind in ("tcp", "listen"):
                inp = self._open.get(spec.text)
                if inp is not None:  # the same socket carries both directions
                    port, name = inp.port, spec.text
                else:
                    port, name = connect(spec.host, spec.portno), spec.text
            else:
                names = self._names(mido.get_output_names, "outputs")
                match = [n for n in names or () if spec.matches(n) and not n.startswith("RtMidi")]
                if not match:
                    if names is not None:
                        self.warn.warn("out missing", "MIDI out %r: no such port (found %s); will retry",
                                       spec.text, ", ".join(names) or "none")  # fmt: skip
                    return
                name = match[0]
                port = mido.open_output(name)
        except Exception as e:
            self.warn.warn("out open", "MIDI out %s: cannot open (%s); will retry", spec.text, e)
            return
        self.warn.ok("out open")
        self.warn.ok("out missing")
        self._out, self._out_name = port, name
        log.info("MIDI out: %s", name)
        self._mark_all()  # a controller just (re)appeared: put its faders and LEDs where the show is

    # -- feedback --
    def flush_feedback(self) -> None:
        """Send the values of changed mapped controls to the output port (not back to the control that moved)."""
        out = self._out
        if out is None:
            return
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, {}
        if not dirty:
            return
        snap = self.state.snapshot()
        for m in self.mapper.mappings:
            if not m.target or not m.feedback or m.target not in dirty:
                continue
            if dirty[m.target] == f"midi:{m.name}":  # a motor fader fights its own echo
                continue
            try:
                rng = m.range if m.range is not None else self.state.check_target(m.target)
                msgs = message_for(m, unscale(snap.get(m.target), m.curve, rng))
                for msg in msgs:
                    out.send(msg)
                    self.stats.sent += 1
            except ControlError:
                continue
            except Exception as e:
                log.warning("MIDI out %s: send failed (%s); will reopen it when it comes back", self._out_name, e)
                self._safe_close(out)
                self._out = None
                return

    # -- helpers --
    def _close(self, o: OpenPort) -> None:
        if o.port is self._out:
            self._out = None
        self._safe_close(o.port)

    @staticmethod
    def _safe_close(port: Any) -> None:
        sock = getattr(port, "_socket", None)
        if isinstance(sock, socket.socket) and getattr(port, "_rfile", None) is not None:
            # mido's SocketPort.close() leaves the connection open while its makefile() objects live
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        try:
            port.close()
        except Exception as e:  # closing a port whose device is gone may itself fail
            log.debug("MIDI close %r: %s", port, e)

    def _attach_osc_from(self, loop: LoopHandle) -> None:
        """Add /livevae/midi/learn to the show's OSC routes, when the show has an OSC server."""
        from livevae.controllers.osc import OscServer

        server = loop.service("osc.routes")
        if isinstance(server, OscServer):
            attach_osc(self, server)

    @property
    def open_ports(self) -> list[str]:
        return list(self._open)

    @property
    def mappings(self) -> tuple[MidiMapping, ...]:
        return self.mapper.mappings


def attach_osc(ctl: MidiController, server: Any) -> None:
    """Add /livevae/midi/learn [target] and /livevae/midi/unlearn target to an OscServer."""

    def learn(address: str, *args: Any) -> None:
        ctl.arm_learn(str(args[0]) if args and isinstance(args[0], str) and args[0] else None)

    def unlearn(address: str, *args: Any) -> None:
        if args and isinstance(args[0], str):
            ctl.unlearn(args[0])

    server.add_route("/livevae/midi/learn", learn, "[s]", "arm MIDI learn: the next CC/note maps to target")
    server.add_route("/livevae/midi/unlearn", unlearn, "s", "forget the learned MIDI mapping of target")
    log.info("OSC: /livevae/midi/learn [target] and /livevae/midi/unlearn target")


def from_show(section: dict[str, Any], state: ControlState, show_path: Path) -> MidiController:
    """A MidiController from a show's [midi] section, with learned mappings from SHOW.midi-learn.toml merged over
    it. Raises MidiError naming the key and what was expected; checks every target against `state`."""
    try:
        cfg = MidiSection.model_validate(section)
    except ValidationError as e:
        raise MidiError(validation_message("[midi]", e)) from e
    mappings = parse_mappings([m.model_dump(exclude_defaults=True) for m in cfg.map], "[midi]")
    for i, m in enumerate(mappings):
        key, name = ("target", m.target) if m.target else ("arg", str(m.arg or ""))
        if m.target or (m.action in LEARN_ACTIONS and name):
            try:
                state.check_target(name)
            except ControlError as e:
                raise MidiError(f"[midi] map[{i}].{key}: {e}") from e
    show_path = Path(show_path)
    lp = learn_path(show_path, cfg.learn_file)
    learned = load_learned(lp)
    for i, m in enumerate(learned):
        if m.target:
            try:
                state.check_target(m.target)
            except ControlError as e:
                raise MidiError(f"MIDI learn file {lp} map[{i}].target: {e}") from e
    try:
        return MidiController(
            state,
            mappings,
            inputs=cfg.inputs,
            output=cfg.output,
            rescan=cfg.rescan,
            learn_file=lp,
            show_path=show_path,
            learn_timeout=cfg.learn_timeout,
            learned=learned,
        )
    except MidiError as e:
        raise MidiError(f"[midi] inputs/output: {e}") from e


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m livevae.controllers.midi`: list MIDI ports (the names `inputs`/`output` match by prefix); with
    --monitor, print what arrives (e.g. to find a knob's CC number and channel)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m livevae.controllers.midi", description=main.__doc__)
    p.add_argument("--monitor", nargs="*", metavar="PORT", help="print messages from these inputs (default: all)")
    args = p.parse_args(argv)
    for what, fn in (("inputs", mido.get_input_names), ("outputs", mido.get_output_names)):
        try:
            names = fn()
        except Exception as e:  # no ALSA sequencer / CoreMIDI
            print(f"MIDI {what}: none available ({e}); socket ports (tcp:HOST:PORT, listen:HOST:PORT) still work")
            continue
        print(f"MIDI {what}:" + "".join(f"\n  {n}" for n in names) if names else f"MIDI {what}: none")
    if args.monitor is None:
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = ControlState(zdim=1)
    ctl = MidiController(state, inputs=args.monitor or ["*"])
    orig = ctl.feed

    def show(msg: mido.Message, port: str = "") -> list[Effect]:
        ch = f" ch{msg.channel + 1}" if hasattr(msg, "channel") else ""
        print(f"{port}:{ch} {msg}")
        return orig(msg, port)

    ctl.feed = show  # type: ignore[method-assign]
    ctl.start()
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        ctl.stop()
    return 0


__all__ = [
    "CC_MODES",
    "CURVES",
    "NOTE_MODES",
    "Learned",
    "MidiController",
    "MidiError",
    "MidiMapper",
    "MidiMapping",
    "PortSpec",
    "PostAction",
    "SetControl",
    "attach_osc",
    "curve",
    "from_show",
    "learn_path",
    "load_learned",
    "message_for",
    "relative_delta",
    "save_learned",
    "scale",
    "unscale",
]


if __name__ == "__main__":
    raise SystemExit(main())
