"""The heads-up display: what a performer needs at a glance (fps, ms per stage, backend, drops, OSC port)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STAGE_SHORT = {
    "preprocess": "pre",
    "encode": "enc",
    "modulate": "mod",
    "decode": "dec",
    "output": "out",
    "display": "disp",
}


@dataclass
class HudInfo:
    fps: float = 0.0
    target_fps: float = 0.0
    stage_ms: Mapping[str, float] = field(default_factory=dict)  # recent mean ms per stage
    backend: str = ""
    source: str = ""
    source_status: str = ""
    dropped: int = 0
    latency_ms: float = 0.0
    recording: float | None = None  # seconds recorded so far, None when not recording
    frozen: bool = False
    osc_port: int | None = None
    extra: list[str] = field(default_factory=list)  # lines a controller adds (scene name, autopilot ...)


def hud_lines(info: HudInfo) -> list[str]:
    """The HUD text, one string per line; a pure function so it is testable without a window."""
    head = f"{info.fps:5.1f}/{info.target_fps:.0f} fps  {info.backend}"
    if info.osc_port is not None:
        head += f"  OSC :{info.osc_port}"
    lines = [head]
    stages = "  ".join(f"{STAGE_SHORT.get(k, k)} {v:4.1f}" for k, v in info.stage_ms.items())
    if stages:
        lines.append(stages + " ms")
    src = f"src {info.source}"
    if info.source_status and info.source_status != "running":
        src += f" [{info.source_status.upper()}]"
    lines.append(f"{src}  dropped {info.dropped}  latency {info.latency_ms:.0f} ms")
    flags = []
    if info.recording is not None:
        m, s = divmod(int(info.recording), 60)
        flags.append(f"REC {m:02d}:{s:02d}")
    if info.frozen:
        flags.append("FROZEN")
    if flags:
        lines.append("  ".join(flags))
    lines += info.extra
    return lines


def draw_hud(screen: Any, lines: list[str], font: Any) -> None:
    """The HUD: white lines on a translucent black box at the top left of a pygame Surface."""
    import pygame

    assert isinstance(font, pygame.font.Font)
    rendered = [font.render(line, True, (255, 255, 255)) for line in lines]
    pad, lh = 6, font.get_linesize()
    box = pygame.Surface((max(r.get_width() for r in rendered) + 2 * pad, lh * len(rendered) + 2 * pad))
    box.set_alpha(170)
    box.fill((0, 0, 0))
    screen.blit(box, (8, 8))
    for i, r in enumerate(rendered):
        screen.blit(r, (8 + pad, 8 + pad + i * lh))
