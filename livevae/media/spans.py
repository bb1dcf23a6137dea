"""Keyframe-span decoding: a film cut at its index's keyframes, each span decoded and mapped on its own thread.

Why: FFmpeg's frame threads scale poorly (on 2 cores they make H.264 1.2-1.4x faster than one thread, at 1.2x the
CPU a frame), and whatever a caller does with the frames (prep's crop + area scale) then competes with them for
the cores. A span that starts at a keyframe decodes on its own, so N single-threaded decoders each take a span,
each scales its own frames, and the caller gets them in film order: the frames of a sequential decode, byte for
byte (tests/test_spans.py), at up to N times one decoder's speed.

Which frames a span owns: span i starts at keyframe K_i (in MP4 the index gives its decode timestamp D_i and its
packet the presentation timestamp P_i; in Matroska the index gives P_i) and owns the frames with
P_i <= pts < P_{i+1}. Its decoder runs on past
K_{i+1} until it puts out a frame at or after P_{i+1}, so an open GOP's leading pictures (after K_{i+1} in decode
order, before it on screen) come from the decoder that holds their references. Every assumption is checked as
the packets go by (the seek landed on D_i, K_i is the span's first frame, no packet before K_{i+1} shows after
it, timestamps rise); a film that breaks one carries on from the last good keyframe on one decoder, so output
is never lost or reordered, only slower.

MP4/MOV (an index of every sample, by decode timestamp, read at open) and Matroska/WebM (its cues, by presentation
timestamp, read at the first seek) are cut; other films (MPEG-TS, AVI), films with one keyframe (bigbuckbunny.mp4)
and one-core machines decode on one decoder (video.prefetch of video.iter_av_frames).
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Generic, TypeVar

import av

from livevae.media.video import DecodeStats, iter_av_frames, main_stream, open_container, prefetch

R = TypeVar("R")

# Demuxers (FFmpeg's format names) with an index of keyframes to cut at. MP4/MOV's lists every sample by decode
# timestamp and is read at open; Matroska's is its cues (a keyframe a cluster, or every keyframe as mkvmerge
# writes them), by presentation timestamp, read at the first seek.
MP4 = "mov,mp4,m4a,3gp,3g2,mj2"
MATROSKA = "matroska,webm"
INDEXED_FORMATS = frozenset({MP4, MATROSKA})
MIN_SPAN_PACKETS = 24  # shorter GOPs (all-intra footage) are merged, so each seek is paid for by 24+ frames
MAX_WORKERS = 8
AHEAD_BYTES = 128 << 20  # of mapped frames held for spans the caller has not reached (1213 of 256x144 RGB)
AHEAD_ITEMS = 1024  # the same bound in frames, for callers whose frames have no fixed size


@dataclass(frozen=True)
class Span:
    """Frames from the keyframe at index timestamp `ts` (None: from `start`, as iter_av_frames seeks) to the next
    span's keyframe at `end_ts` (None: to `end` or the film's end), in the stream's time base. The index keys
    keyframes by decode timestamp in MP4 and by presentation timestamp in Matroska (`by_pts`)."""

    index: int
    ts: int | None
    end_ts: int | None
    stream: int = 0  # the film's picture (video.main_stream), by its index among all streams
    by_pts: bool = False


class _Mismatch(Exception):
    """The film broke an assumption of span decoding; the caller carries on on one decoder."""


def default_workers() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count), at most MAX_WORKERS."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, n))


def plan(
    path: str | os.PathLike[str],
    start: float | None = None,
    end: float | None = None,
    min_packets: int | None = None,
) -> list[Span]:
    """The film's spans: one span when it cannot or need not be cut (no full index, one keyframe in range).
    min_packets: the shortest span (default MIN_SPAN_PACKETS)."""
    with open_indexed(path) as c:
        return plan_open(c, start, end, min_packets)


def plan_open(
    c: av.container.InputContainer,
    start: float | None = None,
    end: float | None = None,
    min_packets: int | None = None,
) -> list[Span]:
    """plan() on a film already open. An MP4 is left as it was (header read, nothing demuxed); a Matroska file
    is seeked once, which is when FFmpeg reads its cues."""
    least = MIN_SPAN_PACKETS if min_packets is None else min_packets
    v = main_stream(c)
    if v is None or any(not (st.codec_context.width and st.codec_context.height) for st in c.streams.video):
        return [Span(0, None, None)]  # the header leaves a picture's size to probing: main_stream may differ
    tb = Fraction(v.time_base or Fraction(1, 1000))
    one = [Span(0, None, None, int(v.index))]
    if c.format.name not in INDEXED_FORMATS:
        return one
    by_pts = c.format.name == MATROSKA
    if by_pts:
        try:
            c.seek(0, stream=v, backward=True, any_frame=False)  # loads the cues into the index
        except av.error.FFmpegError:
            return one
    entries = v.index_entries
    lo = int(start / tb) if start else None
    hi = int(end / tb) if end is not None else None
    # The shortest span: `least` samples of MP4's index (it lists them all), or as long as `least` frames last
    # in Matroska's (it lists keyframes only).
    rate = float(v.average_rate or v.guessed_rate or 25)
    gap = max(1, round(least / rate / tb)) if by_pts else 0
    cuts: list[int] = []
    # Hop from cut to cut by the index's own search (the first keyframe at or after a timestamp; the index is
    # sorted by timestamp): a few calls a span, where visiting every entry cost 9 us each, 1.5 s for a film.
    pos = 0 if lo is None else _position(entries, lo)
    while True:
        if by_pts:
            if pos >= len(entries):
                break
            at = _position(entries, entries[pos].timestamp + gap, backward=False)
            if at <= pos:
                break  # no keyframe after it
        else:
            if pos + least >= len(entries):
                break
            at = _position(entries, entries[pos + least].timestamp, backward=False)
            if at < pos + least:
                break
        e = entries[at]
        if hi is not None and e.timestamp >= hi:
            break  # this keyframe is shown at or after `end` (pts >= dts): nothing of it is kept
        if e.is_keyframe and not e.is_discard and (lo is None or e.timestamp > lo):
            cuts.append(e.timestamp)  # (at or before `start`, the first span seeks to `start` itself)
        pos = at
    bounds: list[int | None] = [None, *cuts]
    return [Span(i, b, cuts[i] if i < len(cuts) else None, int(v.index), by_pts) for i, b in enumerate(bounds)]


def open_indexed(path: str | os.PathLike[str]) -> av.container.InputContainer:
    """Open a film without FFmpeg's stream probing (which decodes its first frames: 10 ms for bigbuckbunny.mp4,
    5% of prepping it), for what needs only the header: MP4's index, the streams' sizes, the decoders."""
    try:
        return av.open(str(path), options={"probesize": "32", "analyzeduration": "0"})
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError):
        return open_container(path)  # probed, and with open_container's one-line error if it fails too


def _position(entries: Any, ts: int, backward: bool = True) -> int:
    """The index position of the keyframe a seek to `ts` lands on (backward: at or before it, else at or after
    it); backward gives 0 before the first keyframe, forward -1 after the last."""
    try:
        at = int(entries.search_timestamp(ts, backward=backward))
    except (ValueError, TypeError):
        return 0 if backward else -1
    return max(0, at) if backward else at


@dataclass
class _Found:
    """What a span's decoder learned: the presentation timestamps of its keyframe and of the next span's."""

    first_pts: int | None = None
    end_pts: int | None = None


def decode_span(
    c: av.container.InputContainer,
    span: Span,
    start: float | None,
    end: float | None,
    mapper: Callable[[av.VideoFrame], R],
    emit: Callable[[R, float], bool],
    stats: DecodeStats,
    lock: threading.Lock,
    stopped: Callable[[], bool] = lambda: False,
) -> _Found:
    """Decode one span of the open film `c` on this thread; emit(mapper(frame), t) for each of its frames in order
    (emit returns False to stop). Raises _Mismatch when the film breaks an assumption, before emitting any frame
    it is unsure of. The first span without `start` needs `c` fresh; any other seeks (and flushes the decoder)."""
    found = _Found()
    if span.by_pts:  # Matroska's index gives the presentation timestamps themselves
        found.first_pts, found.end_pts = span.ts, span.end_ts
    v = next(st for st in c.streams.video if st.index == span.stream)
    tb = Fraction(v.time_base or Fraction(1, 1000))
    at = span.ts if span.ts is not None else (int(start / tb) if start else None)
    if at is not None:
        try:
            c.seek(at, stream=v, backward=True, any_frame=False)
        except av.error.FFmpegError as e:  # e.g. an index that runs past a truncated file's end
            raise _Mismatch(f"seek to {at}: {e}") from None
        v.codec_context.flush_buffers()  # a decoder reused from an earlier span starts clean, as a fresh one would
    last_pts: int | None = None
    in_range_max: int | None = None  # the latest pts of a packet before the next span's keyframe
    seen_end = span.end_ts is None  # the next span's keyframe has been read
    # MP4: frames shown at or after the next keyframe's dts, held until its pts is known
    held: list[tuple[av.VideoFrame, int]] = []
    first_packet = True

    def beyond(packet: av.Packet, ts: int) -> bool:
        """The packet lies past where the keyframe at index timestamp `ts` would be: it is not in this film."""
        if span.by_pts:  # decode order is not presentation order, but keyframes keep their place in both
            return bool(packet.is_keyframe) and int(packet.pts or 0) > ts
        return int(packet.dts or 0) > ts

    def out(frame: av.VideoFrame, pts: int) -> bool:
        """Emit one frame; False when the span (or the range) is over or the caller stopped."""
        nonlocal last_pts
        t = float(pts * tb)
        if end is not None and t >= end - 1e-6:
            return False
        if last_pts is not None and pts <= last_pts:
            raise _Mismatch(f"frame at pts {pts} after {last_pts}: timestamps do not rise")
        if last_pts is None and span.ts is not None and pts != found.first_pts:
            raise _Mismatch(f"span's first frame at pts {pts}, expected its keyframe's {found.first_pts}")
        last_pts = pts
        return emit(mapper(frame), t)

    def flush() -> bool:
        """Emit the held frames shown before the next span's keyframe; False at the first one after it."""
        while held:
            frame, pts = held.pop(0)
            if found.end_pts is None or pts >= found.end_pts or not out(frame, pts):
                return False
        return True

    def take(frame: av.VideoFrame) -> bool:
        """Route a decoded frame: drop, emit, hold, or end the span (False)."""
        pts = frame.pts
        if pts is None:
            raise _Mismatch("a frame without a timestamp")
        if found.first_pts is not None and pts < found.first_pts:
            return True  # a leading picture of this span's keyframe: the span before owns it
        if span.ts is None and start is not None and float(pts * tb) < start - 1e-6:
            return True
        if found.end_pts is not None:
            if not flush():
                return False
            if pts >= found.end_pts:
                if not seen_end:  # shown after the next keyframe, yet decoded before it: that span cannot have it
                    raise _Mismatch(f"a frame at pts {pts} put out before the keyframe at {found.end_pts}")
                return False
            return out(frame, pts)
        if span.end_ts is not None and pts >= span.end_ts:
            held.append((frame, pts))  # may belong to the next span: pts >= dts for every frame
            return True
        return out(frame, pts)

    for packet in c.demux(v):
        if stopped():
            return found
        if packet.size:
            if packet.pts is None or (packet.dts is None and not span.by_pts):
                raise _Mismatch(f"a packet without a timestamp (dts {packet.dts}, pts {packet.pts})")
            key = packet.pts if span.by_pts else packet.dts
            assert key is not None
            if first_packet and span.ts is not None:
                if not (packet.is_keyframe and key == span.ts):
                    if beyond(packet, span.ts):
                        raise _Mismatch(f"seek to {span.ts} landed past it, at {key}")
                    continue  # an earlier packet: MP4's seek takes a presentation time, so it can land a keyframe early
                if not span.by_pts:
                    found.first_pts = packet.pts
            elif first_packet and span.end_ts is not None and beyond(packet, span.end_ts - 1):
                raise _Mismatch(f"seek to the start landed on {key}, past the next span's keyframe")
            first_packet = False
            if not seen_end and span.end_ts is not None:
                if packet.is_keyframe and key == span.end_ts:
                    seen_end = True
                    if not span.by_pts:
                        found.end_pts = packet.pts
                    if in_range_max is not None and in_range_max >= (found.end_pts or 0):
                        raise _Mismatch(f"a frame at pts {in_range_max} before the keyframe at {found.end_pts}")
                elif beyond(packet, span.end_ts):
                    raise _Mismatch(f"no keyframe at the next span's {span.end_ts} (found {key})")
                else:
                    in_range_max = packet.pts if in_range_max is None else max(in_range_max, packet.pts)
        elif first_packet:
            continue  # nothing decoded yet: no flush to run
        for frame in _decode(packet, stats, lock):
            if not take(frame):
                return found
    if first_packet and span.ts is not None:
        raise _Mismatch(f"the film ended before the span's keyframe at {span.ts}")
    if not seen_end:
        raise _Mismatch(f"the film ended before the next span's keyframe at {span.end_ts}")
    flush()  # the film's end, with the keyframe never put out (a corrupt tail): the held frames before it
    return found


def _decode(packet: av.Packet, stats: DecodeStats, lock: threading.Lock) -> list[av.VideoFrame]:
    """The packet's frames; a packet FFmpeg rejects is counted in `stats` (as video.iter_av_frames counts it),
    its good neighbours kept."""
    try:
        return packet.decode()  # type: ignore[return-value]
    except av.error.FFmpegError as e:
        with lock:
            stats.errors += 1
            if len(stats.messages) < 10:
                stats.messages.append(f"packet at pts {packet.pts}: {e}")
        return []


class _Board(Generic[R]):
    """The spans' outputs, handed from the decoding threads to the caller in order, with a bound on how many
    frames may wait for spans the caller has not reached yet (the one being read is never held back)."""

    def __init__(self, spans: int, ahead: int) -> None:
        self.cv = threading.Condition()
        self.out: list[collections.deque[tuple[R, float]]] = [collections.deque() for _ in range(spans)]
        self.done: list[bool] = [False] * spans
        self.error: list[BaseException | None] = [None] * spans
        self.found: list[_Found | None] = [None] * spans
        self.current = 0
        self.waiting = 0  # items queued for spans after `current`
        self.limit = ahead
        self.next_span = 0
        self.stop = False

    def put(self, k: int, item: tuple[R, float]) -> bool:
        with self.cv:
            while k != self.current and self.waiting >= self.limit and not self.stop:
                self.cv.wait()
            if self.stop:
                return False
            self.out[k].append(item)
            if k != self.current:
                self.waiting += 1
            self.cv.notify_all()
            return True

    def advance(self, k: int) -> None:
        with self.cv:
            self.current = k
            self.waiting -= len(self.out[k])
            self.cv.notify_all()

    def take(self) -> int | None:
        with self.cv:
            if self.stop or self.next_span >= len(self.out):
                return None
            self.next_span += 1
            return self.next_span - 1

    def finish(self, k: int, found: _Found | None, error: BaseException | None) -> None:
        with self.cv:
            self.done[k], self.found[k], self.error[k] = True, found, error
            self.cv.notify_all()

    def halt(self) -> None:
        with self.cv:
            self.stop = True
            self.cv.notify_all()


def iter_mapped(
    path: str | os.PathLike[str],
    make_mapper: Callable[[], Callable[[av.VideoFrame], R]],
    start: float | None = None,
    end: float | None = None,
    every: int = 1,
    stats: DecodeStats | None = None,
    workers: int | None = None,
    ahead: int = AHEAD_ITEMS,
    spans: list[Span] | None = None,
) -> Generator[tuple[R, float], None, None]:
    """Yield (mapper(frame), t) for the frames in [start, end), every `every`-th, in film order: the sequence
    `mapper` over video.iter_av_frames gives, decoded by keyframe spans on `workers` threads when the film can be
    cut (see the module docstring). make_mapper makes one mapper a thread (an FFmpeg graph is not thread-safe).
    stats.mode says which way it went."""
    stats = stats if stats is not None else DecodeStats()
    workers = default_workers() if workers is None else max(1, workers)
    spare: list[av.container.InputContainer] = []  # the planning open, handed to the first decoding thread
    if spans is None and workers > 1:
        spare.append(open_indexed(path))  # opening an MP4 costs 10 ms for 1320 frames: not twice
        spans = plan_open(spare[0], start, end)
        if spans[0].by_pts:  # planning seeked it (to read Matroska's cues): the first span wants a fresh one
            spare.pop().close()
    spans = spans if spans is not None else [Span(0, None, None)]
    if len(spans) < 2 or workers < 2:
        for c in spare:
            c.close()
        stats.mode = "one decoder"
        mapper = make_mapper()
        for frame, t in prefetch(iter_av_frames(path, start=start, end=end, every=every, stats=stats)):
            yield mapper(frame), t
        return
    workers = min(workers, len(spans))
    stats.mode = f"{len(spans)} keyframe spans on {workers} decoders"
    kept = 0
    with contextlib.closing(_in_order(path, spans, make_mapper, start, end, stats, workers, ahead, spare)) as frames:
        for i, item in enumerate(frames):
            if i % every == 0:
                kept += 1
                stats.frames = kept
                yield item


def _in_order(
    path: str | os.PathLike[str],
    spans: list[Span],
    make_mapper: Callable[[], Callable[[av.VideoFrame], R]],
    start: float | None,
    end: float | None,
    stats: DecodeStats,
    workers: int,
    ahead: int,
    spare: list[av.container.InputContainer],
) -> Generator[tuple[R, float], None, None]:
    """Every frame of [start, end), mapped, in film order: `spans` decoded on `workers` threads (the first takes
    `spare`, an open container, if there is one), or from the last whole span on one decoder once one breaks an
    assumption."""
    board: _Board[R] = _Board(len(spans), ahead)
    lock = threading.Lock()

    def stopped() -> bool:
        return board.stop

    def work() -> None:
        mapper = make_mapper()
        c: av.container.InputContainer | None = None
        try:
            while (k := board.take()) is not None:

                def emit(r: R, t: float, k: int = k) -> bool:
                    return board.put(k, (r, t))

                try:
                    if c is None:  # one open a thread, not one a span
                        with board.cv:
                            c = spare.pop() if spare else None
                        c = c or open_indexed(path)
                        picture = next(st for st in c.streams.video if st.index == spans[k].stream)
                        picture.codec_context.thread_count = 1  # the spans are the parallelism
                    found = decode_span(c, spans[k], start, end, mapper, emit, stats, lock, stopped)
                except BaseException as e:  # handed to the caller, which re-raises it (or goes on, for _Mismatch)
                    board.finish(k, None, e)
                    return
                board.finish(k, found, None)
        finally:
            if c is not None:
                c.close()

    threads = [threading.Thread(target=work, name=f"livevae-span{w}", daemon=True) for w in range(workers)]
    for th in threads:
        th.start()
    given = 0  # frames yielded so far
    counts = [0] * len(spans)  # of which from each span
    try:
        for k in range(len(spans)):
            board.advance(k)
            while True:
                with board.cv:
                    while not board.out[k] and not board.done[k]:
                        board.cv.wait()
                    item = board.out[k].popleft() if board.out[k] else None
                    error = board.error[k] if item is None else None
                if item is None and error is None:
                    break  # span k is over
                if item is None:
                    if not isinstance(error, _Mismatch):
                        raise error  # type: ignore[misc]
                    board.halt()
                    stats.mode += f"; span {k} went on one decoder ({error})"
                    j = k - 1  # the last span that played out whole: its keyframe is where the seek is sure
                    found = board.found[j] if j >= 1 else None
                    ts = spans[j].ts if j >= 1 else None
                    if found is not None and found.first_pts is not None and ts is not None:
                        rest = _decode_from(path, ts, found.first_pts, None, end, counts[j] + counts[k], stats, lock)
                    else:  # from `start` (or the film's start), as the first span did
                        rest = _decode_from(path, None, None, start, end, given, stats, lock)
                    mapper = make_mapper()
                    for frame, t in prefetch(rest):
                        yield mapper(frame), t
                    return
                counts[k] += 1
                given += 1
                yield item
    finally:
        board.halt()
        for th in threads:
            th.join()
        for c in spare:  # no thread took it
            c.close()


def _decode_from(
    path: str | os.PathLike[str],
    dts: int | None,
    first_pts: int | None,
    start: float | None,
    end: float | None,
    skip: int,
    stats: DecodeStats,
    lock: threading.Lock,
) -> Iterator[tuple[av.VideoFrame, float]]:
    """The frames from the keyframe at `dts` (shown at `first_pts`), or else from `start` as iter_av_frames
    seeks, to `end`, on one decoder, less the first `skip`: where a span that broke an assumption carries on.
    Decode errors are counted past the skip (the spans counted those before it)."""
    with open_container(path) as c:
        v = main_stream(c)
        # one thread, as the span decoders run: FFmpeg's frame threads drop the frames in flight around a packet
        # they cannot decode (two before a truncated tail, with no error said), so they would lose frames the
        # spans' decoders keep, and the count of frames to skip would no longer line up with what was given
        v.codec_context.thread_count = 1
        tb = Fraction(v.time_base or Fraction(1, 1000))
        step = 1 / float(v.average_rate or 25)
        at = dts if dts is not None else (int(start / tb) if start else None)
        if at is not None:  # MP4's seek may land a keyframe early: the frames before first_pts are dropped
            c.seek(at, stream=v, backward=True, any_frame=False)
        n, t = 0, -step
        for packet in c.demux(v):
            for frame in _decode(packet, stats if n >= skip else DecodeStats(), lock):
                t = float(frame.pts * tb) if frame.pts is not None else t + step
                if first_pts is not None and frame.pts is not None and frame.pts < first_pts:
                    continue
                if start is not None and t < start - 1e-6:
                    continue
                if end is not None and t >= end - 1e-6:
                    return
                n += 1
                if n > skip:
                    yield frame, t
