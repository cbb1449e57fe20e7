"""How sizes and durations read everywhere: the CLI's tables, the plan's reasons and the HTML
plan. Pure, and a leaf: it imports nothing of Hippolyte's."""

from __future__ import annotations


def size(n: float | None) -> str:
    """Bytes in decimal units: ``512 B``, ``1.5 MB``; ``-`` when unknown."""
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """``4m03s`` under an hour, ``2h05m`` from one hour."""
    h, rem = divmod(int(round(seconds)), 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"
