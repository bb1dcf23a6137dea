"""OSC fuzz: random and mutated datagrams at full rate over real UDP on 127.0.0.1 into livevae's OSC server.

    .venv/bin/python bench/soak/fuzz_osc.py --count 100000     # the long form; writes JSON + markdown

Passes when the server thread survives, every control stays finite and in range, the bad input is counted (not
raised), memory stays bounded, and a good message after the flood still lands.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import socket
import struct
import time
from pathlib import Path
from typing import Any

ADDRESSES = [
    "/livevae/mix", "/livevae/noise", "/livevae/smooth", "/livevae/ema", "/livevae/freeze", "/livevae/bpm",
    "/livevae/z/0", "/livevae/z/15", "/livevae/z/16", "/livevae/z/-1", "/livevae/gain/3", "/livevae/pc/0",
    "/livevae/pc/9", "/livevae/lfo/0/rate", "/livevae/lfo/0/target", "/livevae/lfo/7/shape", "/livevae/lfo/99/rate",
    "/livevae/z", "/livevae/offset", "/livevae/anchor", "/livevae/scene/a", "/livevae/scene/save", "/livevae/source",
    "/livevae/record", "/livevae/screenshot", "/livevae/reset", "/livevae/ping", "/livevae/*", "/livevae/z/*",
    "/livevae/{mix,noise}", "/livevae/[a-z]*", "/nope", "/", "//", "/livevae/" + "a" * 300,
]  # fmt: skip


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def _osc_string(s: str | bytes) -> bytes:
    return _pad(s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s)


def message(address: str, args: list[Any], tags: str | None = None) -> bytes:
    """A raw OSC message; `tags` may lie about the arguments (that is the point)."""
    body = b""
    t = ","
    for a in args:
        if isinstance(a, bool):
            t += "T" if a else "F"
        elif isinstance(a, int):
            t += "i"
            body += struct.pack(">i", max(-(2**31), min(2**31 - 1, a)))
        elif isinstance(a, float):
            t += "f"
            body += struct.pack(">f", a)
        elif isinstance(a, bytes):
            t += "b"
            body += struct.pack(">i", len(a)) + _pad(a)[: len(a) + (4 - len(a) % 4) % 4]
        else:
            t += "s"
            body += _osc_string(str(a))
    return _osc_string(address) + _osc_string(tags if tags is not None else t) + body


def bundle(elements: list[bytes], timetag: int = 1) -> bytes:
    out = _osc_string("#bundle") + struct.pack(">Q", timetag)
    for e in elements:
        out += struct.pack(">i", len(e)) + e
    return out


def random_arg(rng: random.Random) -> Any:
    k = rng.randrange(9)
    if k == 0:
        return rng.random()
    if k == 1:
        return rng.choice([float("nan"), float("inf"), float("-inf"), 1e38, -1e38, -0.0])
    if k == 2:
        return rng.randint(-(2**31), 2**31 - 1)
    if k == 3:
        return rng.choice(["", "a", "dusk", "z/3", "../../etc/passwd", "__import__('os')", "\u00e9" * 10, "x" * 2000])
    if k == 4:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(40)))
    if k == 5:
        return rng.choice([True, False])
    return rng.uniform(-10, 10)


def datagram(rng: random.Random) -> bytes:
    """One fuzz datagram: a third plausible, a third mutated, a third garbage (and some deep bundles)."""
    k = rng.randrange(10)
    if k < 3:  # plausible: known and unknown addresses, random arguments
        return message(rng.choice(ADDRESSES), [random_arg(rng) for _ in range(rng.randrange(4))])
    if k < 6:  # a valid message with bytes flipped, cut or grown
        d = bytearray(message(rng.choice(ADDRESSES), [random_arg(rng) for _ in range(rng.randrange(1, 4))]))
        for _ in range(rng.randint(1, 6)):
            op = rng.randrange(3)
            if op == 0 and d:
                d[rng.randrange(len(d))] = rng.getrandbits(8)
            elif op == 1 and d:
                del d[rng.randrange(len(d)) :]
            else:
                d += bytes(rng.getrandbits(8) for _ in range(rng.randrange(16)))
        return bytes(d)
    if k < 7:  # lying type tags
        tags = "," + "".join(rng.choice("ifsbTFNIhdtcrm[]xyz") for _ in range(rng.randrange(8)))
        return message(rng.choice(ADDRESSES), [random_arg(rng) for _ in range(rng.randrange(3))], tags)
    if k < 8:  # bundles, some nested deep, some with lying sizes
        inner = [message(rng.choice(ADDRESSES), [random_arg(rng)]) for _ in range(rng.randrange(1, 4))]
        b = bundle(inner, rng.getrandbits(64))
        for _ in range(rng.choice([0, 1, 5, 60])):
            b = bundle([b])
        if rng.random() < 0.3:
            b = b[:16] + struct.pack(">i", rng.randint(-5, 10**6)) + b[20:]
        return b[:65000]
    return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))  # garbage


def run(count: int = 100_000, seed: int = 0, host: str = "127.0.0.1", paced: bool = False) -> dict[str, Any]:
    """Flood a fresh OscServer with `count` datagrams; returns what happened. Full rate overflows the socket
    buffer (the kernel drops most, as in a real flood); `paced` sends bursts of 200 and waits for the server,
    so every datagram reaches the parser."""
    from livevae.control.state import ControlState
    from livevae.controllers.osc import OscServer
    from livevae.installation.health import rss_bytes

    rng = random.Random(seed)
    state = ControlState(16, 4)
    srv = OscServer(state, host=host, port=0, busy_share=1.0)  # the parser's robustness, not the flood throttle
    srv.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    sent = send_errors = 0
    pool = [datagram(rng) for _ in range(min(count, 20_000))]  # generated up front so sending is at full rate
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    for i in range(count):
        try:
            sock.sendto(pool[i % len(pool)] if i >= len(pool) else pool[i], (host, srv.port))
            sent += 1
        except OSError:  # e.g. EMSGSIZE for an oversized one; the server never saw it
            send_errors += 1
        if paced and i % 200 == 199:
            # bursts of 200 at full rate, then let the server catch up, so every datagram is parsed
            end = time.perf_counter() + 5
            while srv.stats.datagrams < sent and time.perf_counter() < end:
                time.sleep(0.001)
    send_s = time.perf_counter() - t0
    # let the server drain what the socket buffer holds
    last, still = -1, 0
    while still < 10:
        time.sleep(0.05)
        n = srv.stats.datagrams
        still = still + 1 if n == last else 0
        last = n
    drain_s = time.perf_counter() - t0
    alive = srv._thread is not None and srv._thread.is_alive()
    received = srv.stats.datagrams
    # a good message after the flood still lands
    sock.sendto(message("/livevae/mix", [0.25]), (host, srv.port))
    ok = False
    for _ in range(100):
        time.sleep(0.02)
        if abs(state.get("mix") - 0.25) < 1e-6:
            ok = True
            break
    snap = state.snapshot()
    import numpy as np

    finite = all(np.isfinite(a).all() for a in (snap.offset, snap.gain, snap.pc))
    in_range = True
    for t in state.targets():
        lo, hi = state.check_target(t)
        v = state.get(t)
        if not (lo <= v <= hi) or not np.isfinite(v):
            in_range = False
    s = srv.stats
    srv.stop()
    sock.close()
    return {
        "mode": "paced bursts" if paced else "full rate",
        "count": count,
        "sent": sent,
        "send_errors": send_errors,
        "received": received,
        "lost_in_udp": sent - received,
        "messages": s.messages,
        "handled": s.handled,
        "malformed": s.malformed,
        "unknown": s.unknown,
        "bad_args": s.bad_args,
        "distinct_bad_addresses_kept": len(s.by_address),
        "send_rate_per_s": round(sent / send_s) if send_s else 0,
        "handled_rate_per_s": round(received / drain_s) if drain_s else 0,
        "rss_growth_mb": round((rss_bytes() - rss0) / 2**20, 1),
        "alive": alive,
        "after_flood_ok": ok,
        "state_finite": bool(finite),
        "in_range": in_range,
        "queued_actions": len(state.drain_actions()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="bench/results/fuzz_osc.json")
    a = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # python-osc warns on the root logger for every bad type tag
    r = [run(a.count, a.seed), run(a.count, a.seed + 1, paced=True)]
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(r, indent=1))
    print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
