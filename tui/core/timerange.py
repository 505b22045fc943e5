"""``since:`` / ``until:`` terms of the history search: ``since:30m``, ``since:2h``, ``until:1d``,
or an ISO time ``since:2026-11-24T07:00`` (local time when no zone is given)."""

from __future__ import annotations

import re
from datetime import datetime

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_moment(value: str, now: float) -> float:
    """Seconds since the epoch for ``30m`` (ago) or an ISO time; ValueError with a message otherwise."""
    m = _RELATIVE.fullmatch(value.strip().lower())
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is neither an age like 30m, 2h, 1d nor an ISO time like 2026-11-24T07:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def split_time_terms(text: str, now: float) -> tuple[str, float | None, float | None, list[str]]:
    """Take ``since:``/``until:`` out of ``text``; returns (rest, since, until, errors)."""
    rest: list[str] = []
    since = until = None
    errors: list[str] = []
    for term in text.split():
        key, colon, value = term.partition(":")
        if colon and key.lower() in ("since", "until") and value:
            try:
                moment = parse_moment(value, now)
            except ValueError as exc:
                errors.append(f"{key}: {exc}")
                continue
            if key.lower() == "since":
                since = moment
            else:
                until = moment
        else:
            rest.append(term)
    if since is not None and until is not None and since > until:
        errors.append("since is after until")
    return " ".join(rest), since, until, errors
