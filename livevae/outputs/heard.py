"""A recording's sound track built from what was shown: each frame's source soundtrack at its position, as AAC."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from livevae.media.audio import AudioError, FileAudio

log = logging.getLogger(__name__)

RATE = 48000
CHANNELS = 2
AAC_FRAME = 1024  # samples per AAC frame: the encoder takes exactly this many


class HeardAudio:
    """The audio of a recording, written into the recording's own container next to its video.

    The sound heard while frame i is on screen (from its time t_i to the next frame's) is the frame's source
    soundtrack from its position p_i on: so picture and sound stay together across a slow show, dropped frames,
    loops, source switches and freezes, and the track is exactly as long as the video. Sources without sound
    (cameras, the test card, stills, fallback pictures) give silence. Create it before the first video packet
    is muxed (the header lists every stream); call add() per frame with its time, finish() with the end time.
    """

    def __init__(self, container: Any, bit_rate: int = 192_000) -> None:
        self.container = container
        self.stream: Any = container.add_stream("aac", rate=RATE)
        self.stream.layout = "stereo"
        self.stream.bit_rate = bit_rate
        self._readers: dict[Path, FileAudio | None] = {}
        self._prev: tuple[float, Path | None, float] | None = None  # (t, soundtrack, position) of the last frame
        self._written = 0  # samples of the track made so far
        self._encoded = 0  # samples handed to the encoder (the next AAC frame's pts)
        self._fifo = np.zeros((0, CHANNELS), np.float32)
        self.errors = 0

    def _reader(self, path: Path) -> FileAudio | None:
        if path not in self._readers:
            if len(self._readers) >= 8:  # a long show through many films: keep a few open
                old = next(iter(self._readers))
                r = self._readers.pop(old)
                if r is not None:
                    r.close()
            try:
                self._readers[path] = FileAudio(path, RATE, loop=True, channels=CHANNELS)
            except AudioError:  # no sound in this film: silence, not an error
                self._readers[path] = None
        return self._readers[path]

    def add(self, t: float, sound: Path | None, pos: float) -> None:
        """A frame shown at t seconds (recording time) from soundtrack `sound` (None: silence) at position pos."""
        self._fill_to(t)
        self._prev = (t, sound, pos)

    def _fill_to(self, t: float) -> None:
        end = max(0, round(t * RATE))
        n = end - self._written
        if n <= 0:
            return
        block = np.zeros((n, CHANNELS), np.float32)
        _, path, pos = self._prev if self._prev is not None else (0.0, None, 0.0)
        if path is not None:
            reader = self._reader(path)
            if reader is not None:
                try:
                    # the samples from the previous frame's position on, as long as it stayed on screen
                    block = reader.window(pos + n / RATE, n).reshape(n, CHANNELS)
                except Exception as e:  # a corrupt soundtrack: a gap of silence, the picture goes on
                    self.errors += 1
                    if self.errors == 1:
                        log.warning(f"{path}: soundtrack unreadable ({e}); recording silence there")
        self._written = end
        self._push(block)

    def _push(self, block: np.ndarray) -> None:
        import av

        self._fifo = np.concatenate([self._fifo, block]) if self._fifo.size else block
        while self._fifo.shape[0] >= AAC_FRAME:
            chunk, self._fifo = self._fifo[:AAC_FRAME], self._fifo[AAC_FRAME:]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk.T), format="fltp", layout="stereo")
            frame.sample_rate = RATE
            frame.pts = self._encoded
            self._encoded += AAC_FRAME
            for pkt in self.stream.encode(frame):
                self.container.mux(pkt)

    def finish(self, t: float) -> None:
        """Sound up to t seconds (the end of the video), flushed; the soundtracks are closed."""
        try:
            self._fill_to(t)
            if self._fifo.shape[0]:
                self._push(np.zeros((AAC_FRAME - self._fifo.shape[0], CHANNELS), np.float32))
            for pkt in self.stream.encode(None):
                self.container.mux(pkt)
        finally:
            self.close()

    def close(self) -> None:
        for r in self._readers.values():
            if r is not None:
                r.close()
        self._readers.clear()
