"""The live film mirror: pulls z toward the training film's own moments and can show the film's frame itself."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from livevae.control.modulate import _alpha
from livevae.control.state import ControlState
from livevae.handle import Watcher
from livevae.mirror.blend import blend_target, compose_film, mirror_blend, neighbour_weights, played_on
from livevae.mirror.index import Film, LatentIndex, MirrorError, index_path, load_index, open_film
from livevae.mirror.search import Searcher

if TYPE_CHECKING:
    from livevae.handle import FrameInfo, LoopHandle

log = logging.getLogger(__name__)


class MirrorSection(BaseModel):
    """`[mirror]` of a show file; every key optional."""

    model_config = ConfigDict(extra="forbid")

    index: str = ""  # the latent index; default beside the model (<model stem>.index.safetensors)
    dataset: str = ""  # the dataset its frames come from; default the one the index was built on
    graph: bool | None = None  # faiss HNSW: None = for large indexes when faiss is installed


@dataclass(frozen=True)
class Match:
    """The film moment the mirror is on: index row, dataset row, timecode."""

    row: int
    frame: int
    seconds: float
    timecode: str
    held: bool = False


class MirrorController(Watcher):
    """A Controller: after the show's modulation, blends z toward its nearest film latents (mirror, mirror/k,
    mirror/soft, mirror/snap, mirror/hold) and composes the film's own frame into the output (mirror/film,
    mirror/split). Without an index it does nothing: a show never fails for want of one."""

    def __init__(
        self,
        state: ControlState,
        index: LatentIndex | None = None,
        film: Film | None = None,
        index_file: str | Path = "",
        dataset: str | Path = "",
        graph: bool | None = None,
    ) -> None:
        self.state = state
        self.index_file, self.dataset, self.graph = str(index_file), str(dataset), graph
        self.index: LatentIndex | None = None
        self.film: Film | None = film
        self.searcher: Searcher | None = None
        self._lat: np.ndarray | None = None  # float32 [N, zdim]
        self.match: Match | None = None
        self._hold: tuple[int, float] | None = None  # (row, show time) the held moment started from
        self._amount = 0.0  # the mirror amount after its slew
        self._t: float | None = None
        self.error = ""
        self._feedback: Any = None  # the show's OSC feedback sender, when it has one
        self._sent: Match | None = None
        if index is not None:
            self.attach(index, film)

    # -- set-up --
    def attach(self, index: LatentIndex, film: Film | None = None) -> None:
        """Use this index (and the film for the film view); builds the search."""
        if index.zdim != self.state.zdim:
            raise MirrorError(f"mirror: index has zdim {index.zdim}; expected the model's {self.state.zdim}")
        self.index = index
        self._lat = index.latents.astype(np.float32)
        self.searcher = Searcher(self._lat, graph=self.graph)
        if film is not None:
            self.film = film

    def start(self, loop: LoopHandle | None) -> None:
        if loop is not None:
            fb = loop.service("osc.feedback")
            self._feedback = fb if callable(getattr(fb, "note_extra", None)) else None
        if self.index is not None or loop is None:
            return
        model = loop.status().model
        path = Path(self.index_file) if self.index_file else index_path(model) if model else None
        if path is None or (not self.index_file and not path.is_file()):
            log.info("mirror: no latent index beside %s (build one: livevae index MODEL DATASET)", model or "?")
            return
        try:
            idx = load_index(path, model or None, self.state.zdim)
            self.attach(idx)
        except MirrorError as e:  # a stale or broken index: the show plays on without the mirror
            self.error = str(e)
            log.warning("%s; playing without the mirror", e)
            return
        ds = self.dataset or idx.dataset
        if ds:
            try:
                self.film = open_film(ds)
            except MirrorError as e:
                log.warning("mirror: %s; the film view shows the reconstruction", e)
        log.info("mirror: %d film frames from %s (%s search)", idx.n, path, self.searcher.name if self.searcher else "")

    # -- the frame loop --
    def modulate(self, z: np.ndarray, t: float) -> np.ndarray:
        """z [N, zdim] -> z pulled toward the film; unchanged when the mirror and film view are off."""
        idx, lat, search = self.index, self._lat, self.searcher
        snap = self.state.snapshot()
        dt = 0.0 if self._t is None else max(0.0, t - self._t)
        self._t = t
        # The amount glides like any slewed control: a fader jump on "mirror" does not jolt the picture.
        self._amount += float(_alpha(dt, snap.slews.get("mirror", snap.slew))) * (snap.mirror - self._amount)
        if abs(self._amount - snap.mirror) < 1e-4:
            self._amount = snap.mirror
        view = snap.mirror_film > 0.0 or snap.mirror_split >= 0.5
        if idx is None or lat is None or search is None or (self._amount <= 0.0 and not view):
            self.match, self._hold = None, None
            return z
        if snap.mirror_hold >= 0.5:
            if self._hold is None:
                start = self.match.row if self.match is not None else int(search.search(z[:1], 1)[0][0, 0])
                self._hold = (start, t)
            row = played_on(*self._hold, t, idx.fps, idx.n)
            target = np.broadcast_to(lat[row], z.shape)  # [N, zdim]
            rows0 = np.full(z.shape[0], row, np.int64)
        else:
            self._hold = None
            k = 1 if snap.mirror_snap >= 0.5 else round(snap.mirror_k)
            rows, d2 = search.search(z, k)  # [N, k] each
            target = lat[rows[:, 0]] if k == 1 else blend_target(lat, rows, neighbour_weights(d2, snap.mirror_soft))
            rows0 = rows[:, 0]
        r = int(rows0[0])
        self.match = Match(r, int(idx.frames[r]), float(idx.times[r]), idx.timecode(r), self._hold is not None)
        if self._amount <= 0.0:
            return z
        return mirror_blend(np.asarray(z, np.float32), target, self._amount)

    def compose(self, out: np.ndarray, t: float) -> np.ndarray:
        """The decoded picture uint8 [H, W, 3] -> with the matched film frame, as mirror/film and mirror/split say."""
        snap = self.state.snapshot()
        split = snap.mirror_split >= 0.5
        if self.match is None or self.film is None or (snap.mirror_film <= 0.0 and not split):
            return out
        frame = self.film.frames[min(self.match.frame, len(self.film.frames) - 1)]  # one memory-mapped row
        if frame.shape != out.shape:
            import cv2

            frame = cv2.resize(np.ascontiguousarray(frame), (out.shape[1], out.shape[0]), interpolation=cv2.INTER_AREA)
        return compose_film(out, np.asarray(frame), snap.mirror_film, split)

    def trajectory(self, t: float, rate: float = 1.0) -> np.ndarray | None:
        """The film's own latent at show time t, played from its first frame at `rate` x its fps, looping, and
        interpolated between frames (a slow rate glides rather than steps): float32 [zdim]; None without an index.
        What the installation autopilot drifts along."""
        if self.index is None or self._lat is None:
            return None
        pos = max(t, 0.0) * self.index.fps * rate
        a = int(np.floor(pos)) % self.index.n
        b = (a + 1) % self.index.n
        u = np.float32(pos - np.floor(pos))
        return ((np.float32(1.0) - u) * self._lat[a] + u * self._lat[b]).astype(np.float32)

    def on_frame(self, info: FrameInfo) -> None:
        fb = self._feedback
        m = self.match
        if fb is not None and m is not None and m is not self._sent:
            self._sent = m  # the feedback thread sends it with the next status; nothing blocks here
            fb.note_extra("/livevae/mirror/status", m.timecode, m.frame, m.seconds, int(m.held))

    # -- what the HUD, status and other controllers read --
    def hud_lines(self) -> list[str]:
        m = self.match
        if m is None:
            return []
        return [f"film {m.timecode} #{m.frame}" + (" hold" if m.held else "")]

    def status(self) -> dict[str, Any]:
        """The matched moment for status displays: {"timecode", "frame", "seconds", "held", "search"}."""
        m = self.match
        if m is None:
            return {}
        return {
            "timecode": m.timecode,
            "frame": m.frame,
            "seconds": m.seconds,
            "held": m.held,
            "search": self.searcher.name if self.searcher else "",
        }

    def services(self) -> dict[str, object]:
        return {"mirror": self}


def from_show(section: dict[str, Any], state: ControlState, show_path: Path) -> MirrorController:
    """A MirrorController from a show's [mirror] section; relative paths are relative to the show file."""
    try:
        sec = MirrorSection.model_validate(section)
    except ValidationError as e:
        first = e.errors()[0]
        raise MirrorError(f"[mirror] {'.'.join(str(x) for x in first['loc'])}: {first['msg']}") from None

    def resolve(p: str, what: str) -> str:
        if not p:
            return ""
        q = Path(p) if Path(p).is_absolute() else Path(show_path).parent / p
        if not q.exists():
            raise MirrorError(
                f"[mirror] {what}: {q} not found; expected {'an index file' if what == 'index' else 'a dataset folder'}"
            )
        return str(q)

    return MirrorController(
        state, index_file=resolve(sec.index, "index"), dataset=resolve(sec.dataset, "dataset"), graph=sec.graph
    )
