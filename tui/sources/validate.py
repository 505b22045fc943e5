"""The trust boundary: every record from the broker, the result backend or the history file
is checked here, field by field, before the model or a screen sees it.

Pure Python (stdlib only): no Textual, no network, no Celery.  It runs once per event in
the receiver thread, so the common case (a well-formed event) is a handful of type checks
and C-level string scans; the slow paths only run for data that needs them.

What a record has to pass (issue 12):

* **Shape.**  An event is a ``dict`` whose ``type`` is a short printable string; a known
  event type needs a valid ``hostname`` and a task event a valid ``uuid``.  Keys
  (``uuid``, ``hostname``) are strings of 1..:data:`MAX_KEY_CHARS` characters with no
  control character: a bad key is not repaired (two hostile keys could clean to the same
  one) — the whole record is skipped and counted (``invalid``).
* **Timestamps** are finite numbers between :data:`MIN_TIMESTAMP` (2000-01-01) and now +
  :data:`FUTURE_SLACK_S` (one day: more clock skew than that is a fault to see, not data
  to sort by).  An event whose ``timestamp`` is present but unusable (``"now"``, NaN,
  ``-1e18``, year 3000) is skipped: its place in the task's history cannot be known.  A
  missing ``timestamp`` is allowed (the model copes).  In history rows a bad time only
  loses that field, and the window starts at the epoch: rows are the console's own
  output, so only what cannot be shown or sorted (NaN, inf, negative, far future) is
  refused there.
* **Numbers** have their expected type (``bool`` is not an int here) and lie within
  per-field bounds (:data:`EVENT_FIELDS`), every one within SQLite's 64 bits.
* **Text** is made inert for a terminal: C0 controls, DEL, C1 controls, Unicode line and
  paragraph separators and bidirectional overrides are *shown*, not removed, so an
  operator can see that something odd was sent:

  - C0 and DEL become their Unicode *Control Pictures* (ESC -> ``␛``, NUL -> ``␀``,
    CR -> ``␍``): one cell wide, so columns stay aligned;
  - C1 controls, U+2028/U+2029 and bidi controls become escape text (``\\x9b``,
    ``\\u202e``);
  - lone surrogates (legal in JSON, unencodable in UTF-8) become U+FFFD.

  Multi-line fields (``traceback``, ``result``, ``exception``) keep ``\\n`` and ``\\t``;
  a CRLF there becomes ``\\n``.  Text longer than the field's cap is cut with a visible
  marker.  Text that arrives as another type (a list of args) is ``repr()``-ed first.
* Optional fields that fail are dropped (or cleaned) and counted (``cleaned``); fields
  this console does not use are not passed on at all, so nothing unchecked reaches the
  model.

Nothing here raises on bad data: each entry point returns the cleaned record or ``None``
and counts what it did in a :class:`Tally`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

from tui.core.control_chars import UNSAFE_MULTILINE, UNSAFE_ONE_LINE, show
from tui.core.pauses import PauseRecord

__all__ = [
    "StoredJob",
    "stored_job",
    "EVENT_FIELDS",
    "FUTURE_SLACK_S",
    "MAX_KEY_CHARS",
    "MAX_MULTILINE_CHARS",
    "MAX_TEXT_CHARS",
    "MIN_TIMESTAMP",
    "Boundary",
    "EventValidator",
    "Tally",
    "clean_backend_meta",
    "clean_conf_flags",
    "clean_detail_stats",
    "clean_history_row",
    "clean_inspect_tasks",
    "clean_pause_record",
    "clean_queue_replies",
    "clean_queued_message",
    "clean_registered_replies",
    "clean_scheduled_tasks",
    "clean_stats_replies",
    "clean_text",
    "clean_unacked_entry",
    "clean_unacked_hold",
    "is_key",
    "valid_timestamp",
]

#: 2000-01-01T00:00:00Z.  Nothing this console shows happened earlier.
MIN_TIMESTAMP = 946_684_800.0
#: How far in the future a timestamp may be (clock skew between hosts, time zones).
FUTURE_SLACK_S = 86_400.0
#: Longest key or identifier (uuid, hostname, task name, queue, exchange...).
MAX_KEY_CHARS = 255
#: Hard cap on single-line text (args, kwargs).  The model clips further, to its
#: configured size, with its own marker; this only bounds memory and cleaning cost.
MAX_TEXT_CHARS = 65_536
#: Hard cap on multi-line text (traceback, result, exception).
MAX_MULTILINE_CHARS = 262_144
INT64_MAX = 2**63 - 1
#: Longest event type name (Celery's longest is 16).
MAX_TYPE_CHARS = 64
#: Most events taken from one message (Celery sends lists when it buffers events).
MAX_EVENTS_PER_MESSAGE = 10_000

# The unsafe characters and their visible form: one definition, shared with the display.
_BAD_LINE = UNSAFE_ONE_LINE
_BAD_MULTI = UNSAFE_MULTILINE
_visible = show


def _cut(text: str, limit: int) -> str:
    return f"{text[:limit]}… [cut at the source boundary: {len(text) - limit:,} of {len(text):,} chars]"


def clean_text(value: str, limit: int = MAX_TEXT_CHARS, multiline: bool = False) -> str:
    """``value`` made inert for a terminal and cut to ``limit`` characters (see the module doc).

    Returns the same object when nothing needed doing (callers compare with ``is``).
    """
    if len(value) > limit:
        value = _cut(value, limit)
    if value.isprintable():  # the common case, one C-level scan
        return value
    if multiline:
        if "\r\n" in value:
            value = value.replace("\r\n", "\n")
        return _BAD_MULTI.sub(_visible, value)
    return _BAD_LINE.sub(_visible, value)


def _as_text(value: Any, limit: int) -> str:
    """Text for a field that should have been a string (a list of args, bytes, a number)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value[: limit * 4 + 4]).decode("utf-8", "replace")
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - RecursionError, a hostile __repr__: say so, go on
        return f"<unrepresentable {type(value).__name__}>"


def is_key(value: Any) -> TypeGuard[str]:
    """True for a usable key: a non-empty str of at most MAX_KEY_CHARS, no control character."""
    return (
        value.__class__ is str
        and 0 < len(value) <= MAX_KEY_CHARS
        and (value.isprintable() or _BAD_LINE.search(value) is None)
    )


def valid_timestamp(value: Any, now: float, lo: float = MIN_TIMESTAMP) -> float | None:
    """``value`` as epoch seconds if it is a finite number in [lo, now + FUTURE_SLACK_S]."""
    cls = value.__class__
    if cls is float:
        ts = value
    elif cls is int:
        ts = float(value)
    else:
        return None
    # NaN fails both comparisons; inf fails the second
    if lo <= ts <= now + FUTURE_SLACK_S:
        return ts
    return None


class Tally:
    """What one gate did: records skipped (``invalid``) and fields cleaned or dropped (``cleaned``).

    Written by one thread at a time (the receiver thread, a poll's thread worker or the UI
    thread); read from any thread (plain ints).  ``reasons`` counts each reason, ``last``
    is the latest one, for the status line and for tests.
    """

    __slots__ = ("cleaned", "invalid", "last", "reasons")

    def __init__(self) -> None:
        self.invalid = 0
        self.cleaned = 0
        self.reasons: dict[str, int] = {}
        self.last = ""

    def skip(self, reason: str) -> None:
        """Count one record skipped, and why."""
        self.invalid += 1
        self._note(reason)

    def clean(self, reason: str) -> None:
        """Count one field cleaned or dropped, and why."""
        self.cleaned += 1
        self._note(reason)

    def add(self, other: Tally) -> None:
        """Count what ``other`` counted too (a thread's own tally, handed over when it is
        done, so that each tally keeps a single writer)."""
        self.invalid += other.invalid
        self.cleaned += other.cleaned
        for reason, n in other.reasons.items():
            if reason in self.reasons or len(self.reasons) < 200:
                self.reasons[reason] = self.reasons.get(reason, 0) + n
        if other.last:
            self.last = other.last

    def _note(self, reason: str) -> None:
        reasons = self.reasons
        if reason in reasons:
            reasons[reason] += 1
        elif len(reasons) < 200:  # reasons are fixed strings; bound them anyway
            reasons[reason] = 1
        self.last = reason

    def __repr__(self) -> str:
        return f"<Tally invalid={self.invalid} cleaned={self.cleaned} last={self.last!r}>"


class Boundary:
    """The tallies of every gate, one per source, so that each has a single writer."""

    __slots__ = ("backend", "broker", "events", "history", "inspect")

    def __init__(self) -> None:
        #: events (receiver thread)
        self.events = Tally()
        #: inspect replies (the inspect thread worker; one at a time)
        self.inspect = Tally()
        #: result-backend records (detail screen and backfill thread workers)
        self.backend = Tally()
        #: history rows loaded into the model (UI thread)
        self.history = Tally()
        #: what the broker's own keys said (the unacked look-up thread worker)
        self.broker = Tally()

    @property
    def invalid(self) -> int:
        """Records skipped, all sources."""
        return (
            self.events.invalid
            + self.inspect.invalid
            + self.backend.invalid
            + self.history.invalid
            + self.broker.invalid
        )

    @property
    def cleaned(self) -> int:
        """Fields cleaned or dropped, all sources."""
        return (
            self.events.cleaned
            + self.inspect.cleaned
            + self.backend.cleaned
            + self.history.cleaned
            + self.broker.cleaned
        )


# ---- events ------------------------------------------------------------------------------
# field kinds
_KEY, _TEXT, _MULTI, _INT, _FLOAT, _BOOL, _LOADAVG, _SIGNUM = range(8)

#: Every event field passed on to the model, with its rule: ``(kind, a, b)`` where
#: ``a, b`` are the length cap (text) or the inclusive bounds (numbers).
EVENT_FIELDS: dict[str, tuple[int, Any, Any]] = {
    # identifiers and short text: cleaned; longer than the cap -> dropped
    "name": (_KEY, MAX_KEY_CHARS, None),
    "queue": (_KEY, MAX_KEY_CHARS, None),
    "routing_key": (_KEY, MAX_KEY_CHARS, None),
    "exchange": (_KEY, MAX_KEY_CHARS, None),
    "root_id": (_KEY, MAX_KEY_CHARS, None),
    "parent_id": (_KEY, MAX_KEY_CHARS, None),
    "retry_of": (_KEY, MAX_KEY_CHARS, None),  # a console retry's original (task-sent)
    "sw_ident": (_KEY, MAX_KEY_CHARS, None),
    "sw_ver": (_KEY, MAX_KEY_CHARS, None),
    "sw_sys": (_KEY, MAX_KEY_CHARS, None),
    "eta": (_KEY, 64, None),
    "expires": (_KEY, 64, None),
    # text: cleaned and cut
    "args": (_TEXT, MAX_TEXT_CHARS, None),
    "kwargs": (_TEXT, MAX_TEXT_CHARS, None),
    "result": (_MULTI, MAX_TEXT_CHARS, None),
    "exception": (_MULTI, MAX_TEXT_CHARS, None),
    "traceback": (_MULTI, MAX_MULTILINE_CHARS, None),
    # numbers: out of type or range -> dropped
    "priority": (_INT, 0, 255),  # AMQP's range; Redis uses 0-9, the operator scale 1-10
    "retries": (_INT, 0, 2**31 - 1),
    "pid": (_INT, 0, 2**31 - 1),
    "active": (_INT, 0, 2**31 - 1),
    "processed": (_INT, 0, INT64_MAX),
    "clock": (_INT, 0, INT64_MAX),
    "runtime": (_FLOAT, 0.0, 10 * 365 * 86_400.0),
    "freq": (_FLOAT, 0.0, 86_400.0),
    "utcoffset": (_FLOAT, -24.0, 24.0),
    "loadavg": (_LOADAVG, 0.0, 1e6),
    # flags
    "requeue": (_BOOL, None, None),
    "expired": (_BOOL, None, None),
    "terminated": (_BOOL, None, None),
    "signum": (_SIGNUM, 0, 255),
}

_TASK_TYPES = frozenset(
    {
        "task-sent",
        "task-received",
        "task-started",
        "task-succeeded",
        "task-failed",
        "task-retried",
        "task-revoked",
        "task-rejected",
    }
)
_WORKER_TYPES = frozenset({"worker-online", "worker-heartbeat", "worker-offline"})


def _local_utcoffset() -> float:
    # Celery's celery.utils.time.utcoffset(): whole hours, DST-aware
    return (time.altzone if time.daylight and time.localtime().tm_isdst else time.timezone) // 3600


class EventValidator:
    """Checks and cleans Celery event dicts; one instance per receiver thread.

    ``validate(body)`` returns a new dict holding only checked fields (plus
    ``local_received``, the receive time, as Celery's receiver sets it), or ``None`` when
    the event is skipped.  ``timestamp`` is localised with ``utcoffset`` as Celery's
    ``EventReceiver.event_from_message`` does.  Counts go to :attr:`tally`.
    """

    def __init__(self, tally: Tally | None = None, now: Callable[[], float] = time.time) -> None:
        self.tally = tally if tally is not None else Tally()
        self._now = now
        self._here = float(_local_utcoffset())
        self._here_at = 0.0

    def validate(self, body: Any) -> dict[str, Any] | None:
        """The cleaned event, or None (counted) if it cannot be used.  Never raises."""
        try:
            return self._validate(body)
        except Exception as exc:  # noqa: BLE001 - a gap in a rule must not stop the receive loop
            self.tally.skip(f"validator error: {type(exc).__name__}")
            return None

    __call__ = validate

    def validate_message(self, body: Any) -> list[dict[str, Any]]:
        """A message body is one event or a list of them (Celery's buffered groups)."""
        if body.__class__ is list:
            if len(body) > MAX_EVENTS_PER_MESSAGE:
                self.tally.skip("message with too many events: the rest dropped")
                body = body[:MAX_EVENTS_PER_MESSAGE]
            out = []
            for item in body:
                ev = self.validate(item)
                if ev is not None:
                    out.append(ev)
            return out
        ev = self.validate(body)
        return [] if ev is None else [ev]

    def _validate(self, body: Any) -> dict[str, Any] | None:
        tally = self.tally
        if body.__class__ is not dict:
            if not isinstance(body, Mapping):
                tally.skip("event is not a JSON object")
                return None
            body = dict(body)
        get = body.get
        etype = get("type")
        if (
            etype.__class__ is not str
            or not 0 < len(etype) <= MAX_TYPE_CHARS
            or not etype.isprintable()
        ):
            tally.skip("event type missing or not a short printable string")
            return None
        known = etype in _TASK_TYPES or etype in _WORKER_TYPES
        now = self._now()
        out: dict[str, Any] = {"type": etype}
        host = get("hostname")
        if host is not None or known:
            if not is_key(host):
                tally.skip("event hostname missing or not a valid key")
                return None
            out["hostname"] = host
        if etype in _TASK_TYPES:
            uuid = get("uuid")
            if not is_key(uuid):
                tally.skip("task event uuid missing or not a valid key")
                return None
            out["uuid"] = uuid
        ts = get("timestamp")
        if ts is not None:
            cls = ts.__class__
            if cls is not float and cls is not int:
                tally.skip("event timestamp not a number")
                return None
            ts = float(ts)
            offset = get("utcoffset")
            if (
                offset is not None
                and (offset.__class__ is int or offset.__class__ is float)
                and -24 <= offset <= 24
                and ts == ts
            ):
                if now - self._here_at > 60.0:  # DST can change under a long-running console
                    self._here = float(_local_utcoffset())
                    self._here_at = now
                ts = ts - (offset - self._here) * 3600
            if not MIN_TIMESTAMP <= ts <= now + FUTURE_SLACK_S:  # also NaN and inf
                tally.skip("event timestamp not finite or outside 2000..now+1d")
                return None
            out["timestamp"] = ts
        out["local_received"] = now
        if not known:
            return out  # the model counts unknown types; nothing else of them is used

        fields = EVENT_FIELDS
        for key, v in body.items():
            spec = fields.get(key)
            if spec is None:
                continue
            kind = spec[0]
            cls = v.__class__
            if kind <= _MULTI:  # text
                if cls is str and (v.isprintable() and len(v) <= spec[1]):
                    out[key] = v
                    continue
                if v is None:
                    continue
                if kind == _KEY:
                    if cls is not str or len(v) > spec[1]:
                        tally.clean(f"{key}: not a short string, dropped")
                        continue
                    out[key] = c = clean_text(v, spec[1])
                elif cls is str:
                    out[key] = c = clean_text(v, spec[1], kind == _MULTI)
                else:
                    out[key] = c = clean_text(_as_text(v, spec[1]), spec[1], kind == _MULTI)
                    tally.clean(f"{key}: not a string, shown as its repr")
                    continue
                if c is not v:
                    tally.clean(f"{key}: control characters shown or cut")
            elif kind == _INT:
                if cls is int and spec[1] <= v <= spec[2]:
                    out[key] = v
                elif v is not None:
                    tally.clean(f"{key}: not an int in {spec[1]}..{spec[2]}, dropped")
            elif kind == _FLOAT:
                if (cls is float or cls is int) and spec[1] <= v <= spec[2]:
                    out[key] = float(v) if cls is int else v
                elif v is not None:
                    tally.clean(f"{key}: not a finite number in range, dropped")
            elif kind == _BOOL:
                if cls is bool:
                    out[key] = v
                elif v is not None:
                    tally.clean(f"{key}: not a boolean, dropped")
            elif kind == _LOADAVG:
                if (
                    (cls is list or cls is tuple)
                    and len(v) <= 3
                    and all(
                        (x.__class__ is float or x.__class__ is int) and 0.0 <= x <= spec[2]
                        for x in v
                    )
                ):
                    out[key] = [float(x) for x in v]
                elif v is not None:
                    tally.clean(f"{key}: not up to 3 numbers in range, dropped")
            else:  # _SIGNUM: Celery sends the number or the name
                if cls is int and spec[1] <= v <= spec[2]:
                    out[key] = v
                elif cls is str and 0 < len(v) <= 32:
                    out[key] = c = clean_text(v, 32)
                    if c is not v:
                        tally.clean(f"{key}: control characters shown")
                elif v is not None:
                    tally.clean(f"{key}: not a signal number or name, dropped")
        return out


# ---- inspect replies ------------------------------------------------------------------------
def _bounded_int(value: Any, lo: int, hi: int) -> int | None:
    return value if value.__class__ is int and lo <= value <= hi else None


def _key_or_none(value: Any, tally: Tally, what: str) -> str | None:
    """A key-like string cleaned for display, or None (counted) when unusable."""
    if value.__class__ is not str or not 0 < len(value) <= MAX_KEY_CHARS:
        tally.clean(f"{what}: not a short string, dropped")
        return None
    out = clean_text(value, MAX_KEY_CHARS)
    if out is not value:
        tally.clean(f"{what}: control characters shown")
    return out


def _replies(replies: Any, tally: Tally, what: str) -> Iterable[tuple[str, Any]]:
    """``(hostname, reply)`` of an inspect answer, bad hostnames skipped and counted."""
    if not isinstance(replies, Mapping):
        if replies:
            tally.skip(f"{what}: reply is not a mapping of hostnames")
        return ()
    out = []
    for host, reply in replies.items():
        if not is_key(host):
            tally.skip(f"{what}: reply from a bad hostname")
            continue
        out.append((host, reply))
    return out


def clean_stats_replies(replies: Any, tally: Tally) -> dict[str, dict[str, Any]]:
    """``inspect().stats()`` reduced to what the console reads, every value checked.

    Keeps ``pool`` (``implementation``, ``max-concurrency``, ``processes`` — only its
    length is used, kept as a list of that length), ``autoscaler`` (``max``, ``min``),
    ``pid`` and ``total`` (task name -> count).
    """
    out: dict[str, dict[str, Any]] = {}
    for host, stats in _replies(replies, tally, "stats"):
        if not isinstance(stats, Mapping):
            tally.skip("stats: reply is not an object")
            continue
        clean: dict[str, Any] = {}
        pool = stats.get("pool")
        if isinstance(pool, Mapping):
            p: dict[str, Any] = {}
            impl = pool.get("implementation")
            if impl is not None and (
                impl := _key_or_none(impl, tally, "stats.pool.implementation")
            ):
                p["implementation"] = impl
            limit = pool.get("max-concurrency")
            if limit is not None:
                if (limit := _bounded_int(limit, 0, 10**6)) is None:
                    tally.clean("stats.pool.max-concurrency: not an int in range, dropped")
                else:
                    p["max-concurrency"] = limit
            procs = pool.get("processes")
            if isinstance(procs, list | tuple):
                if len(procs) > 10**6:
                    tally.clean("stats.pool.processes: too many, dropped")
                else:
                    p["processes"] = [x if x.__class__ is int else 0 for x in procs]
            clean["pool"] = p
        elif pool is not None:
            tally.clean("stats.pool: not an object, dropped")
        scaler = stats.get("autoscaler")
        if isinstance(scaler, Mapping):
            hi = _bounded_int(scaler.get("max"), 0, 10**6)
            lo = _bounded_int(scaler.get("min"), 0, 10**6)
            if hi is not None and lo is not None:
                clean["autoscaler"] = {"max": hi, "min": lo}
            elif scaler:
                tally.clean("stats.autoscaler: max/min not ints in range, dropped")
        pid = stats.get("pid")
        if pid is not None:
            if (pid := _bounded_int(pid, 0, 2**31 - 1)) is None:
                tally.clean("stats.pid: not an int in range, dropped")
            else:
                clean["pid"] = pid
        total = stats.get("total")
        if isinstance(total, Mapping):
            totals: dict[str, int] = {}
            for name, n in list(total.items())[:10_000]:
                if not is_key(name) or _bounded_int(n, 0, INT64_MAX) is None:
                    tally.clean("stats.total: bad task name or count, dropped")
                    continue
                totals[name] = n
            clean["total"] = totals
        out[host] = clean
    return out


def clean_queue_replies(replies: Any, tally: Tally) -> dict[str, list[str]]:
    """``inspect().active_queues()`` as hostname -> queue names, every name checked."""
    out: dict[str, list[str]] = {}
    for host, queues in _replies(replies, tally, "active_queues"):
        if not isinstance(queues, list):
            tally.skip("active_queues: reply is not a list")
            continue
        names: list[str] = []
        for q in queues[:10_000]:
            name = q.get("name") if isinstance(q, Mapping) else None
            if is_key(name):
                names.append(name)
            else:
                tally.clean("active_queues: bad queue name, dropped")
        out[host] = names
    return out


def clean_inspect_tasks(replies: Any, tally: Tally) -> dict[str, list[dict[str, Any]]]:
    """``inspect().active()`` / ``reserved()`` as hostname -> task infos (id, name, args, kwargs)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for host, infos in _replies(replies, tally, "active/reserved"):
        if not isinstance(infos, list):
            tally.skip("active/reserved: reply is not a list")
            continue
        tasks: list[dict[str, Any]] = []
        for info in infos[:100_000]:
            if not isinstance(info, Mapping) or not is_key(info.get("id")):
                tally.skip("active/reserved: task without a valid id")
                continue
            task: dict[str, Any] = {"id": info["id"]}
            name = info.get("name")
            if name is not None and (name := _key_or_none(name, tally, "active/reserved.name")):
                task["name"] = name
            for key in ("args", "kwargs"):
                v = info.get(key)
                if v is not None:
                    text = v if v.__class__ is str else _as_text(v, MAX_TEXT_CHARS)
                    task[key] = c = clean_text(text, MAX_TEXT_CHARS)
                    if c is not text:
                        tally.clean(f"active/reserved.{key}: control characters shown or cut")
            started = info.get("time_start")
            if started is not None:
                # epoch seconds (Celery converts the pool's monotonic accept time)
                if (ts := valid_timestamp(started, time.time())) is None:
                    tally.clean("active/reserved.time_start: not a time, dropped")
                else:
                    task["time_start"] = ts
            tasks.append(task)
        out[host] = tasks
    return out


def clean_scheduled_tasks(replies: Any, tally: Tally) -> dict[str, list[dict[str, Any]]]:
    """``inspect().scheduled()`` (``{eta, priority, request: {...}}`` per ETA/countdown job) as
    hostname -> task infos like :func:`clean_inspect_tasks`, plus ``eta`` (ISO text)."""
    flat: dict[str, Any] = {}
    etas: dict[str, list[Any]] = {}
    for host, entries in _replies(replies, tally, "scheduled"):
        if not isinstance(entries, list):
            tally.skip("scheduled: reply is not a list")
            continue
        requests: list[Any] = []
        for entry in entries[:100_000]:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("request"), Mapping):
                tally.skip("scheduled: entry without a request")
                continue
            requests.append(entry["request"])
            etas.setdefault(host, []).append(entry.get("eta"))
        flat[host] = requests
    out = clean_inspect_tasks(flat, tally)
    for host, tasks in out.items():
        by_id = {r.get("id"): eta for r, eta in zip(flat[host], etas.get(host, []), strict=False)}
        for task in tasks:
            eta = by_id.get(task["id"])
            if eta is not None and (eta := _key_or_none(eta, tally, "scheduled.eta")):
                task["eta"] = eta[:64]
    return out


def _bounded_float(value: Any, lo: float, hi: float) -> float | None:
    cls = value.__class__
    if (cls is int or cls is float) and lo <= value <= hi:  # NaN fails both comparisons
        return float(value)
    return None


def clean_detail_stats(replies: Any, tally: Tally) -> dict[str, dict[str, Any]]:
    """``inspect().stats()`` for the worker detail: :func:`clean_stats_replies`'s fields plus
    ``uptime`` (seconds), ``prefetch_count`` and ``rusage`` (``utime``/``stime`` seconds,
    ``maxrss`` KiB), each number checked; anything else in the reply is not passed on."""
    out = clean_stats_replies(replies, tally)
    raw = replies if isinstance(replies, Mapping) else {}  # hosts already checked above
    for host, clean in out.items():
        stats = raw.get(host)
        if not isinstance(stats, Mapping):
            continue
        uptime = stats.get("uptime")
        if uptime is not None:
            if (up := _bounded_int(uptime, 0, 100 * 365 * 86_400)) is None:
                tally.clean("stats.uptime: not an int in range, dropped")
            else:
                clean["uptime"] = up
        prefetch = stats.get("prefetch_count")
        if prefetch is not None:
            # "N/A" before the consumer started: dropped, like any other non-number
            if (n := _bounded_int(prefetch, 0, 2**31 - 1)) is None:
                tally.clean("stats.prefetch_count: not an int in range, dropped")
            else:
                clean["prefetch_count"] = n
        rusage = stats.get("rusage")
        if isinstance(rusage, Mapping):
            usage: dict[str, float] = {}
            for key in ("utime", "stime"):
                v = _bounded_float(rusage.get(key), 0.0, 1e10)
                if v is None:
                    tally.clean(f"stats.rusage.{key}: not a duration, dropped")
                else:
                    usage[key] = v
            rss = _bounded_int(rusage.get("maxrss"), 0, INT64_MAX)
            if rss is None:
                tally.clean("stats.rusage.maxrss: not an int in range, dropped")
            else:
                usage["maxrss"] = rss
            clean["rusage"] = usage
        elif rusage is not None and rusage != "N/A":
            tally.clean("stats.rusage: not an object, dropped")
    return out


#: the ``registered`` task info fields the detail shows (``name [rate_limit=10/m ...]``)
TASK_INFO_ITEMS = ("rate_limit", "time_limit", "soft_time_limit")
_TASK_INFO = re.compile(r"(.+) \[((?:[a-z_]+=\S*)(?: [a-z_]+=\S*)*)\]")


def clean_registered_replies(replies: Any, tally: Tally) -> dict[str, list[dict[str, str]]]:
    """``inspect().registered(*TASK_INFO_ITEMS)`` as hostname -> ``{"name": ..., "rate_limit":
    ..., ...}``, parsed from Celery's ``"name [rate_limit=10/m time_limit=60]"`` strings.

    Names must be keys; only the :data:`TASK_INFO_ITEMS` fields are kept, each key-like text.
    """
    out: dict[str, list[dict[str, str]]] = {}
    for host, names in _replies(replies, tally, "registered"):
        if not isinstance(names, list):
            tally.skip("registered: reply is not a list")
            continue
        tasks: list[dict[str, str]] = []
        for entry in names[:10_000]:
            if entry.__class__ is not str:
                tally.skip("registered: entry is not a string")
                continue
            match = _TASK_INFO.fullmatch(entry)
            name, info = (match[1], match[2]) if match else (entry, "")
            if not is_key(name):
                tally.skip("registered: bad task name")
                continue
            task = {"name": name}
            for pair in info.split():
                key, _, value = pair.partition("=")
                if key in TASK_INFO_ITEMS and (
                    v := _key_or_none(value, tally, f"registered.{key}")
                ):
                    task[key] = v[:64]
            tasks.append(task)
        out[host] = tasks
    return out


def clean_conf_flags(replies: Any, tally: Tally, keys: Iterable[str]) -> dict[str, dict[str, bool]]:
    """``inspect().conf()`` reduced to the boolean settings in ``keys`` (hostname -> {key: bool}).

    The rest of the configuration (broker URLs, paths) is never passed on."""
    out: dict[str, dict[str, bool]] = {}
    for host, conf in _replies(replies, tally, "conf"):
        if not isinstance(conf, Mapping):
            tally.skip("conf: reply is not an object")
            continue
        flags: dict[str, bool] = {}
        for key in keys:
            v = conf.get(key)
            if v.__class__ is bool:
                flags[key] = v
            elif v is not None:
                tally.clean(f"conf.{key}: not a boolean, dropped")
        out[host] = flags
    return out


# ---- result backend --------------------------------------------------------------------------
_META_KEYS = ("status", "name", "worker", "queue", "parent_id", "root_id")
_META_TEXT = ("date_done",)


def _clean_value(value: Any, tally: Tally, what: str, depth: int = 0) -> Any:
    """A JSON-like value with every string cleaned, depth and size bounded (for ``repr``)."""
    cls = value.__class__
    if cls is str:
        out = clean_text(value, MAX_TEXT_CHARS)
        if out is not value:
            tally.clean(f"{what}: control characters shown or cut")
        return out
    if value is None or cls is bool or cls is int or cls is float:
        return value
    if depth >= 20:
        tally.clean(f"{what}: nested too deep, cut")
        return "…"
    if isinstance(value, Mapping):
        return {
            _clean_value(k, tally, what, depth + 1): _clean_value(v, tally, what, depth + 1)
            for k, v in list(value.items())[:1000]
        }
    if isinstance(value, list | tuple):
        items = [_clean_value(v, tally, what, depth + 1) for v in value[:1000]]
        return tuple(items) if cls is tuple else items
    text = clean_text(_as_text(value, MAX_TEXT_CHARS), MAX_TEXT_CHARS)
    tally.clean(f"{what}: {cls.__name__} shown as text")
    return text


def clean_backend_meta(meta: Any, tally: Tally) -> dict[str, Any]:
    """A result-backend record (``celery-task-meta-<uuid>``, decoded) made safe to show.

    Short fields (status, name, worker, queue, ids, date_done) are key-like text;
    ``traceback`` is multi-line text; ``retries`` a bounded int; ``result``, ``args``,
    ``kwargs`` keep their structure with every string cleaned (screens ``repr()`` them).
    Anything else is dropped.  A record that is not an object is counted and ``{}``.
    """
    if not isinstance(meta, Mapping):
        if meta:
            tally.skip("backend record is not an object")
        return {}
    out: dict[str, Any] = {}
    for key in _META_KEYS + _META_TEXT:
        v = meta.get(key)
        if v is not None and (v := _key_or_none(v, tally, f"backend.{key}")):
            out[key] = v
    tb = meta.get("traceback")
    if tb is not None:
        if tb.__class__ is str:
            out["traceback"] = c = clean_text(tb, MAX_MULTILINE_CHARS, multiline=True)
            if c is not tb:
                tally.clean("backend.traceback: control characters shown or cut")
        else:
            tally.clean("backend.traceback: not a string, dropped")
    retries = meta.get("retries")
    if retries is not None:
        if _bounded_int(retries, 0, 2**31 - 1) is None:
            tally.clean("backend.retries: not an int in range, dropped")
        else:
            out["retries"] = retries
    for key in ("result", "args", "kwargs", "children"):
        if key in meta:
            out[key] = _clean_value(meta[key], tally, f"backend.{key}")
    return out


#: Largest args + kwargs (as JSON) a retry re-sends; a bigger record is refused, not cut.
MAX_RETRY_JSON_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredJob:
    """What a retry re-sends, as the result backend stored it (``result_extended``).

    ``args`` and ``kwargs`` are NOT cleaned for display: they go back to the broker exactly
    as the task received them (a cut or cleaned string would not be the same job), never to
    the screen.  They are checked to be JSON data (what the json serializer stored).
    """

    uuid: str
    status: str
    name: str | None
    queue: str | None
    args: list[Any]
    kwargs: dict[str, Any]


def stored_job(uuid: str, meta: Any) -> StoredJob | str:
    """The job ``uuid`` ran, from its backend record; or why a faithful retry is impossible."""
    unfaithful = "a retry would not be faithful"
    status = meta.get("status") if isinstance(meta, Mapping) else None
    if not isinstance(status, str) or status == "PENDING":
        return (
            f"args were not stored: the result backend has no record of {uuid} "
            f"(it never started, or its record expired); {unfaithful}"
        )
    args, kwargs = meta.get("args"), meta.get("kwargs")
    if not isinstance(args, list | tuple) or not isinstance(kwargs, Mapping):
        return (
            f"args were not stored: the result backend's record of {uuid} has no args and "
            f"kwargs (stored without result_extended); only the events' truncated repr is "
            f"known and {unfaithful}"
        )
    try:
        size = len(json.dumps([args, kwargs], allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        return f"the stored args of {uuid} are not JSON data; {unfaithful}"
    if size > MAX_RETRY_JSON_BYTES:
        return f"the stored args of {uuid} are {size:,} bytes of JSON (at most {MAX_RETRY_JSON_BYTES:,})"
    name, queue = meta.get("name"), meta.get("queue")
    return StoredJob(
        uuid,
        status if is_key(status) else "?",
        name if is_key(name) else None,
        queue if is_key(queue) else None,
        list(args),
        dict(kwargs),
    )


# ---- history rows ------------------------------------------------------------------------------
_ROW_KEYS = (
    "name",
    "queue",
    "hostname",
    "root_id",
    "parent_id",
    "routing_key",
    "exchange",
    "eta",
    "expires",
    "state",
    "source",
    "seen_by",
    "revoke_reason",
    "cluster",
)
_ROW_TEXT = ("args", "kwargs")
_ROW_MULTI = ("result", "exception", "traceback")
_ROW_TIMES = ("sent", "received", "started", "retried", "finished", "first_seen")
_ROW_INTS = {"priority": (0, 255), "retries": (0, 2**31 - 1)}


def clean_unacked_hold(
    tag: Any, score: Any, tally: Tally, now: float | None = None
) -> tuple[str, float] | None:
    """``(delivery tag, delivered at)`` of an ``unacked`` entry, or None (counted) when the tag
    is not a usable key or its ``unacked_index`` score is not a time in 2000..now+1d."""
    if not is_key(tag):
        tally.skip("unacked delivery tag missing or not a valid key")
        return None
    now = time.time() if now is None else now
    ts = valid_timestamp(score, now)
    if ts is None:
        tally.skip("unacked_index score missing or not a time in 2000..now+1d")
        return None
    return tag, ts


def clean_history_row(row: Any, tally: Tally, now: float | None = None) -> dict[str, Any] | None:
    """A row read back from the history store, checked like an event.

    Rows written before the boundary existed may hold anything SQLite's dynamic typing
    allows (a NaN or 1e18 time, a queue with ESC, a 2**70 priority stored as REAL or
    TEXT, a BLOB name).  A row without a valid ``uuid`` is skipped; a bad field is
    dropped (times, numbers) or cleaned (text), and counted.
    """
    if not isinstance(row, Mapping):
        tally.skip("history row is not a mapping")
        return None
    uuid = row.get("uuid")
    if not is_key(uuid):
        tally.skip("history row uuid missing or not a valid key")
        return None
    now = time.time() if now is None else now
    out: dict[str, Any] = {"uuid": uuid}
    for key, v in row.items():
        if v is None or key == "uuid":
            continue
        if key in _ROW_TIMES:
            ts = valid_timestamp(v, now, lo=0.0)
            if ts is None:
                tally.clean(f"history.{key}: not a time in 1970..now+1d, dropped")
            else:
                out[key] = ts
        elif key in _ROW_INTS:
            lo, hi = _ROW_INTS[key]
            if _bounded_int(v, lo, hi) is None:
                tally.clean(f"history.{key}: not an int in {lo}..{hi}, dropped")
            else:
                out[key] = v
        elif key == "runtime":
            if (v.__class__ is float or v.__class__ is int) and 0 <= v <= 10 * 365 * 86_400.0:
                out[key] = float(v)
            else:
                tally.clean("history.runtime: not a finite duration, dropped")
        elif key in _ROW_KEYS:
            if v == "":
                continue  # empty is absent (the console writes exchange '' for the default)
            if v.__class__ is str and 0 < len(v) <= MAX_KEY_CHARS:
                out[key] = c = clean_text(v, MAX_KEY_CHARS)
                if c is not v:
                    tally.clean(f"history.{key}: control characters shown")
            else:
                tally.clean(f"history.{key}: not a short string, dropped")
        elif key in _ROW_TEXT or key in _ROW_MULTI:
            limit = MAX_MULTILINE_CHARS if key == "traceback" else MAX_TEXT_CHARS
            text = v if v.__class__ is str else _as_text(v, limit)
            out[key] = c = clean_text(text, limit, key in _ROW_MULTI)
            if c is not v:
                tally.clean(f"history.{key}: control characters shown, cut or not text")
        # other columns (rank, updated, id...) are the store's own and not passed on
    return out


# ---- pause records (afirgen:paused in the broker) ---------------------------------------------
def clean_pause_record(
    queue: Any, raw: Any, tally: Tally, now: float | None = None
) -> PauseRecord | None:
    """A pause record read from the broker (``{workers, paused_at, by}`` JSON), or None (skipped).

    Anyone who can write to the broker can write this hash: the queue and every hostname must
    be usable keys, the time finite and not in the future, ``by`` a short line of text.
    """
    if isinstance(queue, bytes):
        queue = queue.decode("utf-8", "replace")
    if not is_key(queue):
        tally.skip("pause record: bad queue name")
        return None
    try:
        data = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        tally.skip("pause record: not JSON")
        return None
    workers = data.get("workers") if isinstance(data, dict) else None
    if not isinstance(workers, list) or not workers:
        tally.skip("pause record: no worker list")
        return None
    hosts = [h for h in workers[:1000] if is_key(h)]
    if len(hosts) != len(workers):
        tally.clean("pause record: bad hostname dropped")
    if not hosts:
        tally.skip("pause record: no valid hostname")
        return None
    paused_at = valid_timestamp(data.get("paused_at"), now if now is not None else time.time())
    if paused_at is None:
        tally.clean("pause record: bad time dropped")
    by = data.get("by")
    by = clean_text(by, MAX_KEY_CHARS) if isinstance(by, str) else ""
    return PauseRecord(queue, tuple(dict.fromkeys(hosts)), paused_at or 0.0, by)


# ---- messages waiting in a Redis queue -------------------------------------------------------
#: Most a queued message's ETA or expiry may lie ahead (a countdown of years is a fault to see).
MAX_SCHEDULE_AHEAD_S = 10 * 365 * 86_400.0
#: Header carrying the operator priority (``afirgen_tasks.priority.PRIORITY_HEADER``, kept
#: out of this module's imports; a test asserts the two agree).
QUEUED_PRIORITY_HEADER = "afirgen_priority"


def _iso_time(value: Any, now: float) -> float | None:
    """An ISO 8601 ``eta``/``expires`` header as epoch seconds, or None when unusable."""
    if value.__class__ is not str or not 0 < len(value) <= 64:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # Celery writes UTC (enable_utc)
    try:
        ts = when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return ts if MIN_TIMESTAMP <= ts <= now + MAX_SCHEDULE_AHEAD_S else None


def _body_call(message: Mapping[str, Any], tally: Tally) -> tuple[Any, Any] | None:
    """``(args, kwargs)`` from a protocol 2 body (base64 JSON ``[args, kwargs, embed]``)."""
    props = message.get("properties")
    body = message.get("body")
    if body.__class__ is not str:
        return None
    if message.get("content-type") != "application/json":
        tally.clean("queued.body: not JSON, args shown from the headers' repr")
        return None
    raw: str | bytes = body
    if isinstance(props, Mapping) and props.get("body_encoding") == "base64":
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            tally.clean("queued.body: bad base64, args shown from the headers' repr")
            return None
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError):
        tally.clean("queued.body: not valid JSON, args shown from the headers' repr")
        return None
    if decoded.__class__ is not list or len(decoded) < 2:
        tally.clean("queued.body: not [args, kwargs, embed], args shown from the headers' repr")
        return None
    return decoded[0], decoded[1]


def clean_queued_message(
    payload: Any, tally: Tally, now: float | None = None
) -> dict[str, Any] | None:
    """A message read from a queue's Redis list (kombu's JSON envelope around a Celery
    protocol 2 task message), reduced to what the queue-jobs screen shows, every field checked.

    Returns ``{"id", "task", "args", "kwargs", "priority", "wire_priority", "eta", "expires",
    "retries", "delivery_tag"}`` (absent values are None; ``args``/``kwargs`` are inert text
    built from the decoded body, or from the ``argsrepr`` headers when the body cannot be
    read), or None, counted, when the message cannot be used: not JSON, not an object, no
    headers, an id that is not a valid key, no task name.  Never raises.
    """
    try:
        return _clean_queued(payload, tally, time.time() if now is None else now)
    except Exception as exc:  # noqa: BLE001 - a gap in a rule must not stop the page
        tally.skip(f"queued message: validator error: {type(exc).__name__}")
        return None


def _clean_queued(payload: Any, tally: Tally, now: float) -> dict[str, Any] | None:
    if not isinstance(payload, str | bytes | bytearray):
        tally.skip("queued message is not text")
        return None
    try:
        message = json.loads(payload)
    except (ValueError, RecursionError):
        tally.skip("queued message is not JSON")
        return None
    if message.__class__ is not dict:
        tally.skip("queued message is not a JSON object")
        return None
    headers = message.get("headers")
    props = message.get("properties")
    if headers.__class__ is not dict:
        tally.skip("queued message has no headers (not a Celery protocol 2 task)")
        return None
    task_id = headers.get("id")
    if not is_key(task_id):
        tally.skip("queued message id missing or not a valid key")
        return None
    name = headers.get("task")
    if name.__class__ is not str or not 0 < len(name) <= MAX_KEY_CHARS:
        tally.skip("queued message task name missing or not a short string")
        return None
    if props.__class__ is not dict:
        props = {}
        tally.clean("queued.properties: not an object, ignored")
    out: dict[str, Any] = {"id": task_id, "task": clean_text(name, MAX_KEY_CHARS)}
    if out["task"] is not name:
        tally.clean("queued.task: control characters shown")
    call = _body_call(message, tally)
    for i, key in enumerate(("args", "kwargs")):
        if call is not None:
            text = _as_text(_clean_value(call[i], tally, f"queued.{key}"), MAX_TEXT_CHARS)
        else:
            raw = headers.get(f"{key}repr")
            text = raw if isinstance(raw, str) else "?"
        out[key] = c = clean_text(text, MAX_TEXT_CHARS)
        if c is not text:
            tally.clean(f"queued.{key}: control characters shown or cut")
    prio = headers.get(QUEUED_PRIORITY_HEADER)
    out["priority"] = _bounded_int(prio, 1, 10)
    if prio is not None and out["priority"] is None:
        tally.clean("queued.priority header: not an int in 1..10, dropped")
    wire = props.get("priority")
    out["wire_priority"] = _bounded_int(wire, 0, 255)
    if wire is not None and out["wire_priority"] is None:
        tally.clean("queued.properties.priority: not an int in 0..255, dropped")
    for key in ("eta", "expires"):
        value = headers.get(key)
        out[key] = _iso_time(value, now) if value is not None else None
        if value is not None and out[key] is None:
            tally.clean(f"queued.{key}: not an ISO time in 2000..now+10y, dropped")
    retries = headers.get("retries")
    out["retries"] = _bounded_int(retries, 0, 2**31 - 1)
    tag = props.get("delivery_tag")
    out["delivery_tag"] = tag if is_key(tag) else None
    return out


# ---- messages taken but not acknowledged (kombu's unacked hash) ------------------------------
def clean_unacked_entry(
    tag: Any, score: Any, value: Any, tally: Tally, now: float | None = None
) -> dict[str, Any] | None:
    """An ``unacked`` hash entry (``[message, exchange, routing_key]`` JSON) and its
    ``unacked_index`` score, reduced to what the unacknowledged-jobs screen shows.

    Returns ``{"tag", "delivered_at", "exchange", "routing_key", "id", "task", "args",
    "kwargs", "priority", "wire_priority"}`` or None, counted, when the tag or score is not
    usable (:func:`clean_unacked_hold`), the value is not a 3-item JSON array with a usable
    route, or the message fails :func:`clean_queued_message`.  Never raises.
    """
    now = time.time() if now is None else now
    held = clean_unacked_hold(tag, score, tally, now)
    if held is None:
        return None
    try:
        entry = json.loads(value)
    except (TypeError, ValueError, RecursionError):
        tally.skip("unacked value is not JSON")
        return None
    if entry.__class__ is not list or len(entry) != 3:
        tally.skip("unacked value is not [message, exchange, routing_key]")
        return None
    message, exchange, routing_key = entry
    exchange = "" if exchange is None else exchange
    routing_key = "" if routing_key is None else routing_key
    if exchange.__class__ is not str or (exchange and not is_key(exchange)):
        tally.skip("unacked exchange not a valid key")
        return None
    if not is_key(routing_key):
        tally.skip("unacked routing key missing or not a valid key")
        return None
    try:
        fields = _clean_queued(json.dumps(message), tally, now)
    except Exception as exc:  # noqa: BLE001 - a gap in a rule must not stop the page
        tally.skip(f"unacked message: validator error: {type(exc).__name__}")
        return None
    if fields is None:
        return None
    return {
        "tag": held[0],
        "delivered_at": held[1],
        "exchange": exchange,
        "routing_key": routing_key,
        "id": fields["id"],
        "task": fields["task"],
        "args": fields["args"],
        "kwargs": fields["kwargs"],
        "priority": fields["priority"],
        "wire_priority": fields["wire_priority"],
    }
