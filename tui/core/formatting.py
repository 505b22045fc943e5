"""Pure text helpers for the panes: state symbols and styles, durations, ages, sparklines.

Also the values derived at display time rather than in the model's hot path: a task's
runtime when its event carried none, and a wait that clock skew made slightly negative.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tui.core.states import LOST, SETTLED_STATES, STYLE

#: state -> (symbol, style), from the one definition in :mod:`tui.core.states`.
STATE_STYLE = STYLE
REVOKE_REQUESTED = ("…", "bold red")

SPARK = "▁▂▃▄▅▆▇█"


#: After ``✝ LOST``: the message is not in the broker's unacked set any more.
LOST_GONE = " ∅"
#: Before the local time (HH:MM) the broker hands a lost task out again.
LOST_BACK = "↻"


def state_text(state: str, revoke_requested: bool = False, lost: Any = None) -> tuple[str, str]:
    """``(label, style)`` for a task state, e.g. ``("✔ SUCCESS", "green")``.

    A :data:`LOST` task with ``lost`` (its :class:`tui.core.model.LostInfo`) gets the short
    form of what the broker said: ``✝ LOST↻14:03`` (handed out again at 14:03),
    ``✝ LOST ∅`` (not in the broker: it finished or was restored); :func:`lost_text` says it
    in words.
    """
    if revoke_requested and state not in SETTLED_STATES:
        return f"{REVOKE_REQUESTED[0]} revoke req", REVOKE_REQUESTED[1]
    symbol, style = STATE_STYLE.get(state, ("?", ""))
    if state == LOST and lost is not None:
        if lost.in_broker is False:
            return f"{symbol} {state}{LOST_GONE}", style
        local = _localtime(lost.redeliver_at) if lost.in_broker else None
        if local is not None:
            return f"{symbol} {state}{LOST_BACK}{time.strftime('%H:%M', local)}", style
    return f"{symbol} {state}", style


def lost_text(lost: Any, state: str, now: float | None = None) -> str:
    """A lost task in words: with which worker, how it was noticed, and when the broker hands
    it out again (``redelivered at 14:03:10 (in 58m)``); for a task no longer LOST, that it was."""
    now = time.time() if now is None else now
    head = f"lost with {lost.worker} at {clock(lost.at)} ({lost.why})"
    if state != LOST:
        return f"was {head}; a later event replaced it"
    if lost.in_broker is True and _finite(lost.redeliver_at):
        back = lost.redeliver_at
        since = f"unacknowledged in the broker since {clock(lost.delivered_at)}"
        if back > now:
            return f"{head}\n{since}: redelivered at {clock(back)} (in {duration(back - now, 4)})"
        return (
            f"{head}\n{since}: due for redelivery since {clock(back)} "
            f"({duration(now - back, 4)} ago): a live worker's sweep puts it back in its queue"
        )
    if lost.in_broker is True:
        return f"{head}\nunacknowledged in the broker; {lost.note or 'delivery time unknown'}"
    if lost.in_broker is False:
        return f"{head}\nnot in the broker: it finished or was restored to its queue"
    if lost.note:
        return f"{head}\n{lost.note}"
    return f"{head}\nasking the broker when it hands the job out again…"


#: How far a start may precede the time it is measured from (clocks of two hosts, or a
#: task-sent stamped after publishing) and still read as ~0 rather than unknown.
SKEW_TOLERANCE_S = 1.0


def duration(seconds: float | None, width: int | None = None) -> str:
    """Compact duration: ``850ms``, ``4.2s``, ``3m05s``, ``2h10m``, ``4d03h``; ``-`` when unknown.

    The text is at most 6 characters (up to 99 days).  With ``width``, a coarser form with
    its unit is used when the precise one is longer (``3m05s`` -> ``3m``, ``850ms`` ->
    ``0.8s``), so a column never cuts a value into something else (``2ms`` into ``2m``).
    """
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    if seconds == math.inf:
        return "?"
    text = _precise(seconds)
    if width is None or len(text) <= width:
        return text
    for coarse in _coarser(seconds):
        if len(coarse) <= width:
            return coarse
    return min(_coarser(seconds), key=len)


def _precise(seconds: float) -> str:
    # Round first, so a value at a unit's edge moves up a unit (999.6 ms is 1.0s, not 1000ms).
    if round(seconds * 1000) < 1000:
        return f"{seconds * 1000:.0f}ms"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds)) if seconds < 60 else int(seconds)
    if whole < 3600:
        m, s = divmod(whole, 60)
        return f"{m}m{s:02d}s"
    if whole < 100 * 3600:
        h, m = divmod(whole // 60, 60)
        return f"{h}h{m:02d}m"
    d, h = divmod(whole // 3600, 24)
    return f"{d}d{h:02d}h" if d < 100 else f"{d}d"


def _coarser(seconds: float) -> list[str]:
    """Ever coarser forms of ``seconds``, each with its unit."""
    out = []
    if seconds < 1:
        out.append(f"{seconds:.1f}s")
    if seconds < 60:
        out.append(f"{seconds:.0f}s")
    if seconds < 3600:
        out.append(f"{seconds / 60:.0f}m")
    if seconds < 100 * 3600:
        out.append(f"{seconds / 3600:.0f}h")
    out.append(f"{seconds / 86400:.0f}d")
    return out


def span(start: float | None, end: float | None) -> float | None:
    """``end - start`` in seconds; a start up to :data:`SKEW_TOLERANCE_S` after the end is 0.

    None when a time is unknown or the start is later still (clock skew: no honest value).
    """
    if start is None or end is None:
        return None
    elapsed = end - start
    if elapsed < 0:
        return 0.0 if elapsed >= -SKEW_TOLERANCE_S else None
    return elapsed


def task_runtime(task: object) -> float | None:
    """The runtime a task reported, else finished - started when both are known.

    Celery's ``task-failed`` (and ``task-revoked``) carry no runtime; only ``task-succeeded`` does.
    """
    runtime = getattr(task, "runtime", None)
    if runtime is not None:
        return runtime
    return span(getattr(task, "started", None), getattr(task, "finished", None))


#: Before the elapsed time of a task still running (a finished runtime has no mark).
RUNNING_MARK = "▸"
#: Before the elapsed time of a task running longer than ``[console] long_running_after``.
LONG_RUNNING_MARK = "!"


def elapsed(
    started: float | None, now: float, width: int | None = None, long_after: float = 0
) -> tuple[str, bool]:
    """``("▸3m12s", False)`` for a task running since ``started``; ``("!12m05s", True)`` past
    ``long_after`` seconds (0: never); ``("▸-", False)`` when the start is unknown or skewed."""
    seconds = span(started, now)
    long = bool(long_after) and seconds is not None and seconds > long_after
    mark = LONG_RUNNING_MARK if long else RUNNING_MARK
    return mark + duration(seconds, None if width is None else width - len(mark)), long


def threshold(seconds: float) -> str:
    """A setting's seconds in words for the status line: ``10m``, ``1h``, ``90s``."""
    whole = int(seconds)
    if whole >= 3600 and whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole >= 60 and whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"


def task_wait(task: object) -> float | None:
    """Seconds from sent (or received) to started, a small negative (clock skew) read as 0."""
    wait = getattr(task, "wait_time", None)
    if wait is None:
        return None
    return span(0.0, wait)


def age(ts: float | None, now: float | None = None, width: int | None = None) -> str:
    """How long ago ``ts`` was, as :func:`duration`; ``never`` when unknown, ``?`` when not a time."""
    if not ts:
        return "never"
    if not _finite(ts) or ts < 0:
        return "?"
    return duration(max(0.0, (now or time.time()) - ts), width)


def _finite(value: object) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value)


def _localtime(ts: object) -> time.struct_time | None:
    """``time.localtime(ts)``, or None for what is not a representable time.

    The sources boundary keeps bad timestamps out, but the screens must not crash on one
    that slipped through (NaN, inf and -1e18 raise in ``localtime``).
    """
    if not _finite(ts):
        return None
    try:
        return time.localtime(ts)  # type: ignore[arg-type]
    except (OverflowError, OSError, ValueError):
        return None


#: Older than this, :func:`clock` gives the day, not the time of day.
CLOCK_DAY_AFTER_S = 86_400.0


def clock(ts: float | None, now: float | None = None) -> str:
    """Local wall-clock time ``HH:MM:SS`` of a timestamp in the last 24 hours, else its day
    (``30 Nov``): a history holds tasks of 30 days, and a bare time read as today's (an
    operator review: a failure of a month ago showed as "First 06:38:59").  ``?`` when it
    is not a time."""
    if not ts:
        return "--:--:--"
    local = _localtime(ts)
    if local is None:
        return "?"
    now = time.time() if now is None else now
    if now - ts > CLOCK_DAY_AFTER_S:
        return time.strftime("%d %b", local)
    return time.strftime("%H:%M:%S", local)


def timestamp(ts: object) -> str:
    """Local date and time with milliseconds (``2024-05-01 12:00:03.250``); ``?`` when not a time."""
    local = _localtime(ts)
    if local is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", local) + f".{int(ts % 1 * 1000):03d}"  # type: ignore[operator]


def sparkline(values: list[float], width: int = 10, floor: float = len(SPARK) - 1) -> str:
    """A unicode sparkline of the last ``width`` values, scaled to their max but at least to
    ``floor``: by default one step per unit up to 7, so one waiting job is a low bar, not a
    full one that looks like a backlog."""
    tail = values[-width:]
    if not tail:
        return ""
    top = max(max(tail), floor)
    if top <= 0:
        return SPARK[0] * len(tail)
    last = len(SPARK) - 1
    return "".join(SPARK[min(last, max(0, round(v / top * last)))] for v in tail)


def count(n: int | None) -> str:
    """Thousands-separated integer; ``-`` when unknown."""
    return "-" if n is None else f"{n:,}"


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the cut marked with ``…`` (for data that may be
    long, before it becomes a cell: a table cell is also cut with ``…``, but the full text
    would still be kept and measured on every draw)."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
