"""The filter language of the Tasks pane and the history search: parsed in one place.

``state:failure queue:email worker:w1 name:pdf uuid:ab12 prio:>=8 exc:SMTP`` and plain words;
:class:`TaskFilter` compiles it into a predicate on in-memory tasks, :func:`parse_query`
into terms the history store turns into SQL (it adds ``args:text``).  Pure Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tui.core.failures import failure_type
from tui.core.model import TaskRecord
from tui.core.states import ALL_STATES, CONSOLE_STATES

__all__ = [
    "FILTER_FIELDS",
    "SearchQuery",
    "TaskFilter",
    "Term",
    "parse_prio_spec",
    "parse_query",
    "prio_scale_errors",
]

_LOWER: dict[str, str] = {}


def _lower(text: str) -> str:
    # names, hostnames, queues and states are interned and few: lowercase them once
    low = _LOWER.get(text)
    if low is None:
        if len(_LOWER) > 50_000:
            _LOWER.clear()
        low = _LOWER[text] = text.lower()
    return low


_FIELD_ALIASES = {
    "state": "state",
    "s": "state",
    "queue": "queue",
    "q": "queue",
    "worker": "worker",
    "host": "worker",
    "w": "worker",
    "name": "name",
    "n": "name",
    "task": "name",
    "uuid": "uuid",
    "id": "uuid",
    "prio": "prio",
    "priority": "prio",
    "p": "prio",
    "exc": "exc",
    "exception": "exc",
}

#: What operators type for a state: Celery's event words and everyday ones.
_STATE_WORDS = {
    "failed": "failure",
    "fail": "failure",
    "error": "failure",
    "errors": "failure",
    "succeeded": "success",
    "ok": "success",
    "done": "success",
    "retried": "retry",
    "retrying": "retry",
    "running": "started",
    "active": "started",
    "queued": "sent",
    "waiting": "sent",
    "canceled": "revoked",
    "cancelled": "revoked",
    "terminated": "revoked",
    "killed": "revoked",
}
_STATE_NAMES = tuple(s.lower() for s in (*ALL_STATES, *CONSOLE_STATES))


def state_needles(needles: list[str]) -> tuple[list[str], list[str]]:
    """``state:`` values as state prefixes (``failed`` -> ``failure``), and the errors for
    values that start no state at all (shared with the history search)."""
    out: list[str] = []
    errors: list[str] = []
    for needle in needles:
        needle = _STATE_WORDS.get(needle, needle)
        out.append(needle)
        if not any(name.startswith(needle) for name in _STATE_NAMES):
            errors.append(f"no state {needle!r} (states: {' '.join(_STATE_NAMES)})")
    return out, errors


FILTER_FIELDS = ("state", "queue", "worker", "name", "uuid", "prio", "exc")


def unknown_field_error(key: str, fields: tuple[str, ...] = FILTER_FIELDS) -> str | None:
    """The error for ``key:value`` when ``key`` looks like a field name but is none."""
    if key.isascii() and key.isalpha():
        return f"no field {key!r} (fields: {' '.join(fields)})"
    return None


_Pred = Callable[[TaskRecord], bool]


def _text_pred(attr: str, needles: list[str], prefix: bool) -> _Pred:
    def pred(task: TaskRecord) -> bool:
        value = getattr(task, attr)
        if value is None:
            return False
        low = _lower(value)
        if prefix:
            return any(low.startswith(n) for n in needles)
        return any(n in low for n in needles)

    return pred


def _uuid_pred(needles: list[str]) -> _Pred:
    prefixes = tuple(needles)
    return lambda task: task.uuid.lower().startswith(prefixes)


def exc_matches(needles: list[str], exc_type: str | None, exception: str | None) -> bool:
    """``exc:`` on one task: a needle starts its exception's type (:func:`failure_type`) or
    is in its exception text (both case-insensitive).  Shared with the history search."""
    if exc_type is None:
        return False
    low_type = exc_type.lower()
    low_text = exception.lower() if exception else ""
    return any(low_type.startswith(n) or n in low_text for n in needles)


def _exc_pred(needles: list[str]) -> _Pred:
    def pred(task: TaskRecord) -> bool:
        exc_type = failure_type(task.exception, task.traceback, task.state)
        return exc_matches(needles, exc_type, task.exception)

    return pred


def _is_ascii_int(text: str) -> bool:
    """``0-9`` digits only: ``str.isdigit()`` also accepts digits ``int()`` rejects (e.g. '𑁒')."""
    return text.isascii() and text.isdigit()


_PRIO_OPS = (">=", "<=", "!=", "==", ">", "<", "=")


def parse_prio_spec(spec: str) -> list[tuple] | None:
    """``prio:`` alternatives: ``(op, n)`` with op one of ``>= <= != > < =``, or
    ``("range", lo, hi)`` for ``lo-hi``; None when any part is unreadable.

    Used by the Tasks pane's predicates and the history search's SQL.
    """
    alts: list[tuple] = []
    for part in spec.split(","):
        part = part.strip()
        for op in _PRIO_OPS:
            if part.startswith(op):
                num = part[len(op) :]
                break
        else:
            op, num = "=", part
            lo, dash, hi = part.partition("-")
            if dash and _is_ascii_int(lo) and _is_ascii_int(hi):
                alts.append(("range", int(lo), int(hi)))
                continue
        num = num.strip()
        if not _is_ascii_int(num):
            return None
        alts.append(("=" if op == "==" else op, int(num)))
    return alts


def prio_scale_errors(alts: list[tuple]) -> list[str]:
    """Each number in ``prio:`` alternatives outside the operator's scale, 1–10, named
    (``prio:11`` matches nothing: say so rather than show an empty pane)."""
    out: list[str] = []
    for _op, *nums in alts:
        for n in nums:
            if not 1 <= n <= 10 and f"priority {n} is outside 1–10" not in out:
                out.append(f"priority {n} is outside 1–10")
    return out


def _prio_test(op: str, nums: list[int]) -> Callable[[int], bool]:
    """One ``prio:`` alternative as a test on a priority."""
    if op == "range":
        lo, hi = nums[0], nums[1]
        return lambda p: lo <= p <= hi
    n = nums[0]
    tests: dict[str, Callable[[int], bool]] = {
        ">=": lambda p: p >= n,
        "<=": lambda p: p <= n,
        ">": lambda p: p > n,
        "<": lambda p: p < n,
        "!=": lambda p: p != n,
    }
    return tests.get(op, lambda p: p == n)


def _prio_pred(spec: str) -> _Pred | None:
    alts = parse_prio_spec(spec)
    if alts is None:
        return None
    tests: list[Callable[[int], bool]] = [_prio_test(op, nums) for op, *nums in alts]

    def pred(task: TaskRecord) -> bool:
        p = task.priority
        return p is not None and any(t(p) for t in tests)

    return pred


def _bare_pred(needle: str) -> _Pred:
    def pred(task: TaskRecord) -> bool:
        if task.uuid.startswith(needle):
            return True
        for value in (task.name, task.state, task.queue, task.hostname):
            if value is not None and needle in _lower(value):
                return True
        return False

    return pred


class TaskFilter:
    """The Tasks pane's filter, compiled once per query; call it with a TaskRecord.

    Space-separated terms are ANDed.  A bare term matches case-insensitively as a
    substring of name, state, queue or worker, or as a uuid prefix.  Field terms:
    ``state:failure`` (prefix), ``queue:email``, ``worker:w1``, ``name:pdf``
    (substrings), ``uuid:abc`` (prefix), ``prio:10``, ``prio:>=8``, ``prio:3-7``,
    ``exc:SMTP`` (a prefix of the exception's type, as the failures screen names it, or a
    substring of the exception text);
    commas give alternatives (``state:failure,retry``); ``state:failed`` and other
    everyday words mean the state they name.  A field term with no value is ignored
    (the operator is still typing); an unreadable ``prio:``, a value that is no state
    and an unknown field (``foo:bar``) are listed in ``errors`` for the status line.
    """

    __slots__ = ("text", "errors", "_preds")

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.errors: list[str] = []
        preds: list[_Pred] = []
        for term in self.text.split():
            key, colon, value = term.partition(":")
            fieldname = _FIELD_ALIASES.get(key.lower()) if colon else None
            if fieldname is None:
                if colon and value and (error := unknown_field_error(key)):
                    self.errors.append(error)
                preds.append(_bare_pred(term.lower()))
                continue
            needles = [n for n in value.lower().split(",") if n]
            if not needles:
                continue
            if fieldname == "state":
                needles, errors = state_needles(needles)
                self.errors.extend(errors)
            if fieldname == "prio":
                pred = _prio_pred(value)
                if pred is None:
                    self.errors.append(f"bad priority in {term!r}")
                    pred = _never
                else:
                    self.errors.extend(prio_scale_errors(parse_prio_spec(value) or []))
                preds.append(pred)
            elif fieldname == "uuid":
                preds.append(_uuid_pred(needles))
            elif fieldname == "exc":
                preds.append(_exc_pred(needles))
            elif fieldname == "state":
                preds.append(_text_pred("state", needles, prefix=True))
            elif fieldname == "worker":
                preds.append(_text_pred("hostname", needles, prefix=False))
            else:
                preds.append(_text_pred(fieldname, needles, prefix=False))
        self._preds = tuple(preds)

    @property
    def empty(self) -> bool:
        """True when the filter keeps every task."""
        return not self._preds

    def __call__(self, task: TaskRecord) -> bool:
        for pred in self._preds:
            if not pred(task):
                return False
        return True


def _never(task: TaskRecord) -> bool:
    return False


# ---- one parse for the history search ----------------------------------------------------
#: The Tasks pane's field names, plus args (args or kwargs text), which only the store indexes.
_SEARCH_ALIASES = {**_FIELD_ALIASES, "args": "args", "a": "args", "kwargs": "args"}


@dataclass(slots=True)
class Term:
    """One ANDed term: ``kind`` is bare, state, queue, worker, name, uuid, prio, exc or args."""

    kind: str
    needles: list[str]
    #: prio: (op, n) or ("range", a, b) alternatives
    prio: list[tuple] = field(default_factory=list)


@dataclass(slots=True)
class SearchQuery:
    """A parsed filter: ``terms`` are ANDed; ``errors`` lists unreadable terms."""

    terms: list[Term]
    errors: list[str]
    never: bool = False


def parse_query(text: str) -> SearchQuery:
    """Parse the Tasks pane's filter syntax (see :class:`TaskFilter`) plus ``args:``, for SQL."""
    terms: list[Term] = []
    errors: list[str] = []
    never = False
    for term in text.strip().split():
        key, colon, value = term.partition(":")
        kind = _SEARCH_ALIASES.get(key.lower()) if colon else None
        if kind is None:
            if colon and value and (error := unknown_field_error(key, (*FILTER_FIELDS, "args"))):
                errors.append(error)
            terms.append(Term("bare", [term.lower()]))
            continue
        needles = [n for n in value.lower().split(",") if n]
        if not needles:
            continue  # the operator is still typing
        if kind == "state":
            needles, state_errors = state_needles(needles)
            errors.extend(state_errors)
        if kind == "args" and any(len(n) < 3 for n in needles):
            # shorter needles cannot use the trigram index; a scan of the whole file
            # for them is too slow to offer
            errors.append(f"args: needs 3 or more characters in {term!r}")
            continue
        if kind == "prio":
            alts = parse_prio_spec(value)
            if alts is None:
                errors.append(f"bad priority in {term!r}")
                never = True
                continue
            errors.extend(prio_scale_errors(alts))
            terms.append(Term("prio", needles, alts))
        else:
            terms.append(Term(kind, needles))
    return SearchQuery(terms, errors, never)
