"""Everything the console sends to the cluster: jobs, remote-control commands, purges.

The action layer (:mod:`tui.actions`) validates, confirms and audits; this is the only code
that then talks to the broker for it.  Replies are returned as Celery gives them (a list of
``{hostname: body}``); the caller turns them into words.  Blocking network I/O: call from a
thread worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from celery import Celery

from tui.sources.pause_records import PauseRecordStore
from tui.sources.validate import Tally, clean_queue_replies

Replies = list[dict[str, Any]]


class ClusterControl:
    """Jobs, remote control and purges on the cluster of ``app``, each bounded by ``timeout``."""

    def __init__(
        self, app: Celery, timeout: float = 2.0, pause_records: PauseRecordStore | None = None
    ) -> None:
        self.app = app
        self.timeout = timeout
        self._pause_records = pause_records

    @property
    def pause_records(self) -> PauseRecordStore:
        """Where pauses are kept (the broker's Redis); built on first use."""
        if self._pause_records is None:
            self._pause_records = PauseRecordStore.for_app(self.app, None, self.timeout)
        return self._pause_records

    def send_task(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        queue: str,
        priority: int,
        countdown: float | None = None,
        eta: datetime | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """Publish one job; returns its task id.  ``headers`` go in the message's headers
        (a retry's :data:`afirgen_tasks.factory.RETRY_OF_HEADER`)."""
        result = self.app.send_task(
            name,
            args=list(args),
            kwargs=kwargs,
            queue=queue,
            priority=priority,
            countdown=countdown,
            eta=eta,
            headers=headers,
        )
        return str(result.id)

    def revoke(
        self, task_id: str | Sequence[str], terminate: bool = False, signal: str | None = None
    ) -> Replies:
        """Broadcast a revoke of one id or several (with ``terminate``: the worker running it
        signals the process)."""
        kwargs: dict[str, Any] = {"terminate": terminate}
        if signal:
            kwargs["signal"] = signal
        ids = task_id if isinstance(task_id, str) else list(task_id)
        return self.app.control.revoke(ids, reply=True, timeout=self.timeout, **kwargs) or []

    def resize_pool(self, delta: int, hosts: Sequence[str]) -> Replies:
        """``pool_grow`` (delta > 0) or ``pool_shrink`` by ``abs(delta)`` on ``hosts``."""
        call = self.app.control.pool_grow if delta > 0 else self.app.control.pool_shrink
        return call(abs(delta), destination=list(hosts), reply=True, timeout=self.timeout) or []

    def autoscale(self, max_c: int, min_c: int, hosts: Sequence[str]) -> Replies:
        """Set the autoscaler's bounds on ``hosts``."""
        return (
            self.app.control.autoscale(
                max_c, min_c, destination=list(hosts), reply=True, timeout=self.timeout
            )
            or []
        )

    def consume(self, queue: str, start: bool, hosts: Sequence[str] | None = None) -> Replies:
        """``add_consumer`` (``start``) or ``cancel_consumer`` of ``queue`` on ``hosts`` (None: all)."""
        dest = list(hosts) if hosts else None
        call = self.app.control.add_consumer if start else self.app.control.cancel_consumer
        return call(queue, reply=True, destination=dest, timeout=self.timeout) or []

    def consumers(self, queue: str) -> tuple[list[str], list[str]]:
        """``(workers that answered, those of them consuming queue)``, from ``active_queues``.

        Waits the whole ``timeout``: a worker missed here would keep consuming a paused queue.
        """
        replies = clean_queue_replies(
            self.app.control.inspect(timeout=self.timeout).active_queues() or {}, Tally()
        )
        return sorted(replies), sorted(h for h, names in replies.items() if queue in names)

    def rate_limit(self, task: str, rate: str | None, hosts: Sequence[str]) -> Replies:
        """Set task type ``task``'s rate limit (``"10/m"``; None removes it) on ``hosts``."""
        return (
            self.app.control.rate_limit(
                task, rate, destination=list(hosts), reply=True, timeout=self.timeout
            )
            or []
        )

    def time_limit(self, task: str, soft: float, hard: float, hosts: Sequence[str]) -> Replies:
        """Set task type ``task``'s soft and hard time limits (seconds) on ``hosts``."""
        return (
            self.app.control.time_limit(
                task,
                soft=soft,
                hard=hard,
                destination=list(hosts),
                reply=True,
                timeout=self.timeout,
            )
            or []
        )

    def pool_restart(self, hosts: Sequence[str]) -> Replies:
        """Restart the pool of ``hosts`` (refused by workers without ``worker_pool_restarts``)."""
        return (
            self.app.control.pool_restart(destination=list(hosts), reply=True, timeout=self.timeout)
            or []
        )

    def shutdown(self, hosts: Sequence[str]) -> None:
        """Warm shutdown of ``hosts``.  No reply: the worker exits before it could answer."""
        self.app.control.shutdown(destination=list(hosts))

    def ping(self, hosts: Sequence[str], timeout: float | None = None) -> set[str]:
        """Which of ``hosts`` answer a ping within ``timeout``."""
        replies = self.app.control.ping(
            destination=list(hosts), timeout=self.timeout if timeout is None else timeout
        )
        return {h for r in replies or [] if isinstance(r, dict) for h in r if h in hosts}

    def purge(self, queue: str) -> int:
        """Delete every waiting message of ``queue``; returns how many the broker deleted."""
        with self.app.connection_for_write() as conn:
            return int(conn.default_channel.queue_purge(queue) or 0)

    def enable_events(self, hosts: Sequence[str]) -> Replies:
        """Ask ``hosts`` to send task events (``enable_events``); the replies say who had them off."""
        return (
            self.app.control.enable_events(
                destination=list(hosts), reply=True, timeout=self.timeout
            )
            or []
        )
