"""Pure text helpers for the panes: state symbols and styles, durations, ages, sparklines."""

from __future__ import annotations

import time

#: state -> (symbol, style). Symbols keep states readable without colour (NO_COLOR).
STATE_STYLE: dict[str, tuple[str, str]] = {
    "SENT": ("○", "dim"),
    "RECEIVED": ("◔", "cyan"),
    "STARTED": ("▶", "bold yellow"),
    "SUCCESS": ("✔", "green"),
    "FAILURE": ("✘", "bold red"),
    "RETRY": ("↻", "magenta"),
    "REVOKED": ("⊘", "red"),
    "REJECTED": ("⊗", "red"),
}
REVOKE_REQUESTED = ("…", "bold red")

SPARK = "▁▂▃▄▅▆▇█"


def state_text(state: str, revoke_requested: bool = False) -> tuple[str, str]:
    """``(label, style)`` for a task state, e.g. ``("✔ SUCCESS", "green")``."""
    if revoke_requested and state not in ("REVOKED", "SUCCESS", "FAILURE", "REJECTED"):
        return f"{REVOKE_REQUESTED[0]} revoke req", REVOKE_REQUESTED[1]
    symbol, style = STATE_STYLE.get(state, ("?", ""))
    return f"{symbol} {state}", style


def duration(seconds: float | None) -> str:
    """Compact duration: ``850ms``, ``4.2s``, ``3m05s``, ``2h10m``; ``-`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        m, s = divmod(int(seconds), 60)
        return f"{m}m{s:02d}s"
    h, m = divmod(int(seconds) // 60, 60)
    return f"{h}h{m:02d}m"


def age(ts: float | None, now: float | None = None) -> str:
    """How long ago ``ts`` was, as :func:`duration`; ``never`` when unknown."""
    if not ts:
        return "never"
    return duration(max(0.0, (now or time.time()) - ts))


def clock(ts: float | None) -> str:
    """Local wall-clock time ``HH:MM:SS`` of a timestamp."""
    if not ts:
        return "--:--:--"
    return time.strftime("%H:%M:%S", time.localtime(ts))


def sparkline(values: list[float], width: int = 10) -> str:
    """A unicode sparkline of the last ``width`` values (scaled to their max)."""
    tail = values[-width:]
    if not tail:
        return ""
    top = max(tail)
    if top <= 0:
        return SPARK[0] * len(tail)
    last = len(SPARK) - 1
    return "".join(SPARK[min(last, round(v / top * last))] for v in tail)


def count(n: int | None) -> str:
    """Thousands-separated integer; ``-`` when unknown."""
    return "-" if n is None else f"{n:,}"
