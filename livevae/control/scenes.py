"""Scenes: named latent anchors plus control snapshots; saved live, recalled by name, or computed from film frames."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from livevae.control.state import ControlError, ControlState
from livevae.errors import LivevaeError

# Controls a recall leaves alone unless the scene names them: they are how the show is played, not where it is.
KEPT_ON_RECALL = ("smooth", "slew", "bpm")
MAX_LIVE_SCENES = 1000  # names saved while playing; a flood of /livevae/scene/save must not grow without bound
MAX_SCENE_NAME = 64
WRITE_EVERY_S = 0.25  # the sidecar is rewritten at most this often, however many saves arrive


def _free_name(p: Path) -> Path:
    """p, or p.1, p.2, ... : the first that does not exist."""
    q, n = p, 0
    while q.exists():
        n += 1
        q = p.with_name(f"{p.name}.{n}")
    return q


class SceneError(LivevaeError):
    """A scene is unknown, malformed, or its frames cannot be read."""


@dataclass(frozen=True)
class Scene:
    """A named place in latent space: an anchor latent (mixed toward by "mix") and control values."""

    name: str
    anchor: np.ndarray | None = None  # [zdim] float32; None keeps the current anchor
    controls: Mapping[str, float] = field(default_factory=dict)  # e.g. {"mix": 1.0, "pc/0": 1.5}
    fade: float = 0.0  # seconds to glide into the scene
    source: str = "show"  # "show" (from the show file), "live" (saved while playing), "frames"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "anchor": None if self.anchor is None else [round(float(v), 6) for v in self.anchor],
            "controls": dict(self.controls),
            "fade": self.fade,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, object], where: str) -> Scene:
        try:
            name = str(d["name"])
            a = d.get("anchor")
            anchor = None if a is None else np.asarray(a, np.float32).reshape(-1)
            controls = {str(k): float(v) for k, v in dict(d.get("controls") or {}).items()}  # type: ignore[call-overload]
            fade = float(d.get("fade", 0.0))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as e:
            raise SceneError(f"{where}: malformed scene {d!r:.80}: {e}; expected name, anchor, controls") from e
        return cls(name, anchor, controls, fade, source="live")


def capture(name: str, z_out: np.ndarray, snap_values: Mapping[str, float], fade: float = 0.0) -> Scene:
    """A scene of what is on screen now: the anchor is the modulated latent that was decoded, the controls are
    the current ones with the latent offsets, gains and directions folded into that anchor (so recalling it at
    mix 1 shows the same picture, and the faders come back to zero)."""
    z = np.asarray(z_out, np.float32).reshape(-1, z_out.shape[-1]).mean(axis=0)  # [zdim]
    keep = {k: v for k, v in snap_values.items() if not k.startswith(("z/", "gain/", "pc/", "lfo/"))}
    keep.pop("mix", None)
    keep.pop("freeze", None)
    keep["mix"] = 1.0
    return Scene(name, z, keep, fade, source="live")


def recall_values(scene: Scene, state: ControlState) -> dict[str, float]:
    """Every control a recall sets: defaults for all but KEPT_ON_RECALL and the LFOs, then the scene's own values.
    Raises ControlError naming an unknown target in the scene."""
    values = {t: d for t, d in state.defaults().items() if t not in KEPT_ON_RECALL and not t.startswith("lfo/")}
    for t, v in scene.controls.items():
        state.check_target(t)
        values[t] = float(v)
    if scene.anchor is not None and "mix" not in scene.controls:
        values["mix"] = 1.0  # a scene with a latent means "show me that latent"
    return values


class SceneBank:
    """The show's scenes by name. Live saves go to a JSON sidecar next to the show, written off the frame thread."""

    def __init__(self, zdim: int, store: Path | None = None) -> None:
        self.zdim = zdim
        self.store = store
        self._lock = threading.Lock()
        self._show: dict[str, Scene] = {}
        self._live: dict[str, Scene] = {}
        self.current = ""
        self._dirty = False
        self._unreadable = False  # the sidecar exists but did not parse: set aside before the first write
        self._waiting: list[Callable[[Path | None], None]] = []
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        if store is not None and store.is_file():
            self._load_store(store)

    def _load_store(self, store: Path) -> None:
        try:
            data = json.loads(store.read_text())
            scenes = [Scene.from_json(d, str(store)) for d in data.get("scenes", [])]
        except (OSError, ValueError, SceneError, AttributeError) as e:
            print(f"livevae scenes: {store}: cannot read saved scenes ({e}); starting without them", flush=True)
            self._unreadable = True
            return
        for s in scenes:
            if s.anchor is None or s.anchor.shape == (self.zdim,):
                self._live[s.name] = s
            else:
                print(f"livevae scenes: {store}: scene {s.name!r} is for zdim {s.anchor.shape[0]}; skipped", flush=True)

    def set_show_scenes(self, scenes: Iterable[Scene]) -> None:
        """Replace the scenes that come from the show file (a hot reload); live saves are kept."""
        new = {}
        for s in scenes:
            if s.anchor is not None and s.anchor.shape != (self.zdim,):
                raise SceneError(f"scene {s.name!r}: anchor has {s.anchor.size} values; expected {self.zdim}")
            new[s.name] = s
        with self._lock:
            self._show = new

    def put(self, scene: Scene) -> None:
        """Add or replace a scene (computed from frames once they are encoded)."""
        with self._lock:
            if scene.source == "live":
                self._live[scene.name] = scene
            else:
                self._show[scene.name] = scene

    def get(self, name: str) -> Scene:
        with self._lock:
            s = self._live.get(name) or self._show.get(name)
            names = sorted({*self._show, *self._live})
        if s is None:
            raise SceneError(f"scene {name!r}: unknown; expected one of {', '.join(names) or '(none yet)'}")
        return s

    def names(self) -> list[str]:
        with self._lock:
            return sorted({*self._show, *self._live})

    def save(self, scene: Scene, on_done: Callable[[Path | None], None] | None = None) -> None:
        """Keep a live-saved scene, and have the writer thread persist every live scene to the sidecar.

        O(1) on the caller's (frame) thread: the writer serialises, and a burst of saves coalesces into one write.
        Beyond MAX_LIVE_SCENES distinct names, a new name is refused (SceneError); saving over a name always works.
        """
        if len(scene.name) > MAX_SCENE_NAME:
            raise SceneError(f"scene name of {len(scene.name)} characters; expected at most {MAX_SCENE_NAME}")
        with self._lock:
            if scene.name not in self._live and len(self._live) >= MAX_LIVE_SCENES:
                raise SceneError(
                    f"scene {scene.name[:40]!r}: already {MAX_LIVE_SCENES} live scenes; save over one of them"
                )
            self._live[scene.name] = scene
            if on_done is not None:
                self._waiting.append(on_done)
            if self.store is None:
                return
            self._dirty = True
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="scene-save", daemon=True)
                self._writer.start()
        self._wake.set()

    def _write_loop(self) -> None:
        store = self.store
        assert store is not None
        while True:
            self._wake.wait()
            time.sleep(WRITE_EVERY_S)  # saves that arrive meanwhile go into this one write
            self._wake.clear()
            with self._lock:
                if not self._dirty:
                    continue
                self._dirty = False
                scenes, waiting, self._waiting = list(self._live.values()), self._waiting, []
            done: Path | None = store
            try:
                if self._unreadable and store.exists():  # a sidecar we could not read is the user's: keep it
                    kept = _free_name(store.with_name(store.name + ".unreadable"))
                    os.replace(store, kept)
                    print(f"livevae scenes: kept the unreadable {store.name} as {kept.name}", flush=True)
                self._unreadable = False
                tmp = store.with_name(store.name + ".tmp")
                tmp.write_text(json.dumps({"scenes": [s.to_json() for s in scenes]}))
                os.replace(tmp, store)
            except OSError as e:  # a full disk must not end the show; the scene is still in memory
                print(f"livevae scenes: cannot write {store}: {e}; scene kept in memory only", flush=True)
                done = None
            for cb in waiting:
                cb(done)

    def recall(self, name: str, state: ControlState, origin: str = "scene") -> Scene:
        """Apply a scene to the state: its anchor, then all its controls at once. Raises SceneError."""
        scene = self.get(name)
        try:
            values = recall_values(scene, state)
        except ControlError as e:
            raise SceneError(f"scene {name!r}: {e}") from e
        if scene.anchor is not None:
            state.set_vector("anchor", scene.anchor, origin=origin)
        state.set_many(values, origin=origin)
        self.current = name
        return scene


def anchor_from_frames(
    video: str | os.PathLike[str],
    encode: Callable[[np.ndarray], np.ndarray],
    size: tuple[int, int],
    start: float | None = None,
    end: float | None = None,
    max_frames: int = 64,
) -> np.ndarray:
    """The mean latent of a film's frames in [start, end): a scene "computed from film frames".

    encode: uint8 [N, H, W, 3] at the model's size -> float32 [N, zdim]. Samples at most max_frames evenly.
    Raises SceneError naming the file when it has no frames in that span.
    """
    from livevae.media.preprocess import Preprocessor
    from livevae.media.video import VideoError, iter_frames

    pre = Preprocessor(size)
    frames: list[np.ndarray] = []
    try:
        for img, _ in iter_frames(video, start=start, end=end):
            frames.append(pre(img))  # uint8 [H, W, 3] at the model's size
    except (VideoError, OSError) as e:
        raise SceneError(f"{video}: cannot read frames ({e})") from e
    if not frames:
        raise SceneError(f"{video}: no frames between {start} and {end} s; expected a span inside the film")
    idx = np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int)
    batch = np.stack([frames[i] for i in idx])  # [n, H, W, 3]
    zs = np.concatenate([encode(batch[i : i + 16]) for i in range(0, len(batch), 16)])
    return zs.mean(axis=0).astype(np.float32)  # [zdim]
