"""OSC address patterns matched in bounded, linear time over the tree of known addresses (no regex, no backtracking)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from livevae.errors import LivevaeError

# An incoming pattern longer than this is refused before any matching: TouchOSC, Max and Lemur send addresses
# of a few dozen characters; a kilobyte of wildcards is an attack, not a controller.
MAX_PATTERN = 256
MAX_SEGMENTS = 16  # "/livevae/lfo/3/rate" has 4
_WILD = frozenset("*?[]{}")

# Token kinds of one compiled segment.
_LIT, _ANY, _STAR, _SET, _ALT = range(5)


class PatternError(LivevaeError, ValueError):
    """An incoming OSC address pattern is too long, too deep or malformed."""


@dataclass(frozen=True)
class _Tok:
    kind: int
    ch: str = ""  # _LIT
    chars: frozenset[str] = frozenset()  # _SET
    ranges: tuple[tuple[str, str], ...] = ()  # _SET: inclusive a-z ranges
    negate: bool = False  # _SET: [!...]
    options: tuple[str, ...] = ()  # _ALT: {foo,bar}


def is_pattern(address: str) -> bool:
    """True when an address holds any OSC wildcard character."""
    return not _WILD.isdisjoint(address)


def compile_segment(seg: str) -> tuple[_Tok, ...]:
    """One '/'-free segment of a pattern -> tokens; consecutive stars collapse into one (they match the same).
    Raises PatternError on an unclosed [ or {."""
    toks: list[_Tok] = []
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "*":
            if not toks or toks[-1].kind != _STAR:
                toks.append(_Tok(_STAR))
        elif c == "?":
            toks.append(_Tok(_ANY))
        elif c == "[":
            j = seg.find("]", i + 1)
            if j < 0:
                raise PatternError(f"unclosed '[' at position {i}")
            body = seg[i + 1 : j]
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            chars: set[str] = set()
            ranges: list[tuple[str, str]] = []
            k = 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    ranges.append((body[k], body[k + 2]))
                    k += 3
                else:
                    chars.add(body[k])
                    k += 1
            toks.append(_Tok(_SET, chars=frozenset(chars), ranges=tuple(ranges), negate=negate))
            i = j
        elif c == "{":
            j = seg.find("}", i + 1)
            if j < 0:
                raise PatternError(f"unclosed '{{' at position {i}")
            toks.append(_Tok(_ALT, options=tuple(dict.fromkeys(seg[i + 1 : j].split(",")))))
            i = j
        else:
            toks.append(_Tok(_LIT, ch=c))
        i += 1
    return tuple(toks)


def _min_len(toks: tuple[_Tok, ...]) -> int:
    return sum(1 if t.kind in (_LIT, _ANY, _SET) else min(map(len, t.options)) if t.kind == _ALT else 0 for t in toks)


def _in_set(t: _Tok, c: str) -> bool:
    hit = c in t.chars or any(a <= c <= b for a, b in t.ranges)
    return hit != t.negate


def match_segment(toks: tuple[_Tok, ...], name: str) -> bool:
    """Whether a compiled segment matches one name, by simulating the pattern's NFA: every step keeps the set of
    positions the pattern could be at, so the cost is len(name) x len(toks), whatever the pattern holds."""
    n = len(toks)
    if n == 1 and toks[0].kind == _STAR:  # "*": every name (the common wildcard, and the attack's favourite)
        return True
    if _min_len(toks) > len(name):
        return False
    # a state is (token index, alternative index, characters of that alternative matched); -1 = "entering"
    start: set[tuple[int, int, int]] = set()
    _enter(toks, 0, start)
    states = start
    for c in name:
        nxt: set[tuple[int, int, int]] = set()
        for i, k, p in states:
            if i == n:
                continue
            t = toks[i]
            if t.kind == _STAR:
                _enter(toks, i, nxt)  # the star eats c and may eat more, or stop here
                continue
            if t.kind == _ALT:
                opt = t.options[k]
                if p < len(opt) and opt[p] == c:
                    if p + 1 == len(opt):
                        _enter(toks, i + 1, nxt)
                    else:
                        nxt.add((i, k, p + 1))
                continue
            if (t.kind == _LIT and t.ch == c) or t.kind == _ANY or (t.kind == _SET and _in_set(t, c)):
                _enter(toks, i + 1, nxt)
        states = nxt
        if not states:
            return False
    return any(i == n for i, _, _ in states)


def _enter(toks: tuple[_Tok, ...], i: int, out: set[tuple[int, int, int]]) -> None:
    """Add the states of arriving at token i: a star may match nothing, an alternative starts each option."""
    n = len(toks)
    while i < n:
        t = toks[i]
        if t.kind == _STAR:
            out.add((i, -1, 0))
            i += 1
            continue
        if t.kind == _ALT:
            empty = False
            for k, opt in enumerate(t.options):
                if opt:
                    out.add((i, k, 0))
                else:
                    empty = True
            if empty:
                i += 1
                continue
            return
        out.add((i, 0, 0))
        return
    out.add((n, 0, 0))


def split_pattern(pattern: str) -> list[str]:
    """'/a/b*' -> ['a', 'b*'] after the bounds checks. Raises PatternError naming what was found."""
    if len(pattern) > MAX_PATTERN:
        raise PatternError(f"{len(pattern)} characters; expected at most {MAX_PATTERN}")
    if not pattern.startswith("/"):
        raise PatternError("does not start with '/'")
    segs = pattern[1:].split("/")
    if len(segs) > MAX_SEGMENTS:
        raise PatternError(f"{len(segs)} parts; expected at most {MAX_SEGMENTS}")
    return segs


def match(pattern: str, address: str) -> bool:
    """Whether an OSC pattern matches one literal address (both '/'-separated). Raises PatternError."""
    segs = split_pattern(pattern)
    parts = address[1:].split("/") if address.startswith("/") else None
    if parts is None or len(parts) != len(segs):
        return False
    pairs = zip(segs, parts, strict=True)
    return all(s == a if not is_pattern(s) else match_segment(compile_segment(s), a) for s, a in pairs)


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    address: str | None = None  # set when a full known address ends here


class AddressTree:
    """The known addresses as a tree of segments. An incoming pattern walks it one segment at a time, matching
    each segment only against the names that exist at that depth, so the cost is bounded by the tree's size
    and the pattern's length, never exponential."""

    def __init__(self, addresses: Iterable[str] = ()) -> None:
        self.root = _Node()
        for a in addresses:
            self.add(a)

    def add(self, address: str) -> None:
        node = self.root
        for part in address[1:].split("/"):
            node = node.children.setdefault(part, _Node())
        node.address = address

    def matches(self, pattern: str) -> list[str]:
        """Known addresses the pattern matches, in tree order. Raises PatternError when the pattern is out of
        bounds or malformed. Each depth tries each existing name at most once, so the work is at most
        (names in the tree) x (pattern length) x (name length), whatever the pattern holds."""
        segs = split_pattern(pattern)
        compiled = [None if not is_pattern(s) else compile_segment(s) for s in segs]
        nodes = [self.root]
        for seg, toks in zip(segs, compiled, strict=True):
            nxt: list[_Node] = []
            for node in nodes:
                if toks is None:
                    child = node.children.get(seg)
                    if child is not None:
                        nxt.append(child)
                    continue
                for name, child in node.children.items():
                    if match_segment(toks, name):
                        nxt.append(child)
            nodes = nxt
            if not nodes:
                return []
        return [n.address for n in nodes if n.address is not None]
