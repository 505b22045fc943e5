"""Paused queues, derived from the cluster: a pause record plus what the workers consume now.

A pause is kept in the broker as a :class:`PauseRecord` (which workers consumed the queue when
it was paused, when, by whom).  Whether the queue *is* paused is not remembered: it is derived
on every ``inspect`` round from the live workers' ``active_queues``.  A queue is paused on a
recorded worker that is online and no longer consumes it; a worker that consumes it (resumed by
hand, restarted with ``-Q``, or started since) is not paused.  No record, no pause mark: a queue
no worker consumes shows 0 consumers, never ⏸.

Pure: no Textual, no network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PauseRecord:
    """What a pause left in the broker: the workers that consumed ``queue`` when it was paused."""

    queue: str
    workers: tuple[str, ...]
    paused_at: float
    #: who paused it (the operator identity of the console that did: ``user`` or ``user@ssh``)
    by: str = ""


@dataclass(frozen=True, slots=True)
class WorkerQueues:
    """One worker as the derivation needs it: online, inspected, and the queues it consumes."""

    hostname: str
    online: bool
    #: False until an ``inspect`` reply said what it consumes (its queues are unknown, not empty)
    inspected: bool
    queues: frozenset[str]


@dataclass(frozen=True, slots=True)
class QueuePause:
    """A queue paused on some workers, as derived now.

    ``stopped``: recorded workers online that no longer consume it (resume gives it back to
    them); ``consuming``: online workers that consume it all the same; ``offline``: recorded
    workers not online now (a worker restarted with ``-Q`` consumes the queue again).
    """

    record: PauseRecord
    stopped: tuple[str, ...]
    consuming: tuple[str, ...]
    offline: tuple[str, ...]

    @property
    def partial(self) -> bool:
        """Some online worker still (or again) consumes the queue."""
        return bool(self.consuming)

    @property
    def mark(self) -> str:
        """``⏸`` (paused on every online worker that could take it) or ``⏸ 1/2`` (on 1 of 2)."""
        if not self.partial:
            return "⏸"
        return f"⏸ {len(self.stopped)}/{len(self.stopped) + len(self.consuming)}"

    def describe(self) -> str:
        """In words, for the status of an action: ``paused on 1 of 2 workers (w1; w3 consumes it)``."""
        total = len(self.stopped) + len(self.consuming)
        text = f"paused on {len(self.stopped)} of {total} worker(s) ({', '.join(self.stopped)}"
        if self.consuming:
            text += f"; {', '.join(self.consuming)} consume(s) it"
        return text + ")"


def derive_pauses(
    records: Mapping[str, PauseRecord], workers: Iterable[WorkerQueues]
) -> dict[str, QueuePause]:
    """Queue -> :class:`QueuePause` for every recorded queue still paused on some online worker.

    A recorded worker that has not been inspected yet counts as neither paused nor consuming
    (its queues are unknown); a record whose workers all consume the queue again, or are all
    offline, derives no pause (the record is stale; the next pause overwrites it).
    """
    by_host = {w.hostname: w for w in workers}
    out: dict[str, QueuePause] = {}
    for queue, record in records.items():
        stopped: list[str] = []
        offline: list[str] = []
        for host in record.workers:
            w = by_host.get(host)
            if w is None or not w.online:
                offline.append(host)
            elif w.inspected and queue not in w.queues:
                stopped.append(host)
        if not stopped:
            continue
        consuming = sorted(
            w.hostname for w in by_host.values() if w.online and w.inspected and queue in w.queues
        )
        out[queue] = QueuePause(record, tuple(stopped), tuple(consuming), tuple(offline))
    return out
