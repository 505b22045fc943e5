"""One priority scale for operators: 1-10, higher = more urgent, on every transport.

kombu's Redis transport serves *lower* numbers first and keeps one list per
``priority_steps`` entry (the default steps ``[0, 3, 6, 9]`` lump priorities
together); RabbitMQ serves *higher* numbers first up to the queue's
``x-max-priority``.  We give Redis ten distinct steps (0-9) and map:

================  =========  ==========
operator scale    Redis      RabbitMQ
================  =========  ==========
10 (most urgent)  0          10
5                 5          5
1 (least)         9          1
================  =========  ==========

so a waiting priority-10 job starts before a waiting priority-1 job in the same
queue on either broker.
"""

from __future__ import annotations

MIN_PRIORITY = 1
MAX_PRIORITY = 10
DEFAULT_PRIORITY = 5

#: kombu Redis transport option: one list per wire priority 0..9.
REDIS_PRIORITY_STEPS: list[int] = list(range(10))
#: x-max-priority declared on every RabbitMQ queue.
AMQP_MAX_PRIORITY = MAX_PRIORITY

#: Header carrying the operator's priority on every task message, so retries and the
#: console read the operator value instead of reverse-mapping the wire value.
PRIORITY_HEADER = "afirgen_priority"


class PriorityError(ValueError):
    """A priority outside the operator scale."""


def validate_priority(value: object) -> int:
    """Return ``value`` as an int on the 1-10 scale, or raise :class:`PriorityError`."""
    if isinstance(value, bool):
        raise PriorityError(f"priority {value!r} is not a whole number from 1 to 10")
    if isinstance(value, str):
        text = value.strip()
        # ASCII only: str.isdigit() accepts digits like '𑁒' that int() then rejects
        if not (text.isascii() and text.lstrip("-").isdigit()):
            raise PriorityError(f"priority {value!r} is not a whole number from 1 to 10")
        value = int(text)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise PriorityError(f"priority {value!r} is not a whole number from 1 to 10")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise PriorityError(f"priority {value} is outside 1-10 (10 = most urgent)")
    return value


def is_redis_transport(broker_url: str) -> bool:
    """True when ``broker_url`` uses kombu's Redis transport (lower number served first)."""
    scheme = broker_url.split("://", 1)[0].lower()
    return scheme in {"redis", "rediss", "redis+socket", "sentinel"}


def to_wire(priority: int, broker_url: str) -> int:
    """The message ``priority`` property for operator ``priority`` on ``broker_url``'s transport."""
    p = validate_priority(priority)
    if is_redis_transport(broker_url):
        return MAX_PRIORITY - p
    return p


def from_wire(wire: int, broker_url: str) -> int:
    """Inverse of :func:`to_wire` (clamped into 1-10)."""
    if is_redis_transport(broker_url):
        p = MAX_PRIORITY - int(wire)
    else:
        p = int(wire)
    return max(MIN_PRIORITY, min(MAX_PRIORITY, p))


def redis_step_key(queue: str, wire: int, sep: str) -> str:
    """The Redis list kombu uses for ``queue`` at wire priority ``wire`` (step 0 is the bare name)."""
    return f"{queue}{sep}{wire}" if wire else queue
