"""The workers' broker consumer with exponential backoff, and revoked ids that survive restarts
(the backoff policy itself: :mod:`afirgen_tasks.backoff`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery.worker.consumer.consumer import Consumer

from afirgen_tasks.backoff import backoff_delay


class BackoffConsumer(Consumer):
    """The worker's broker consumer, reconnecting with exponential backoff instead of kombu's linear steps.

    Celery's own ``ensure_connected`` sleeps 2, 4, 6 ... 30 s; we sleep ~1, 2, 4, 8, 16, 30 s,
    with jitter, up to ``broker_connection_max_retries`` tries, checking for shutdown every
    second like Celery does.
    """

    def ensure_connected(self, conn):
        conf = self.app.conf
        retry = (
            conf.broker_connection_retry_on_startup
            if getattr(self, "first_connection_attempt", True)
            else conf.broker_connection_retry
        )
        if retry is False:
            return super().ensure_connected(conn)
        from celery.worker.consumer.consumer import maybe_shutdown

        max_retries = conf.broker_connection_max_retries
        attempt = 0
        while True:
            try:
                conn.connect()
                break
            except conn.recoverable_connection_errors as exc:
                if max_retries is not None and attempt >= max_retries:
                    raise
                delay = backoff_delay(attempt)
                attempt += 1
                self.broker_connection_retry_attempt = attempt
                from celery.utils.log import get_logger

                get_logger(__name__).error(
                    "consumer: cannot connect to %s: %s; trying again in %.1f s (%d/%s)",
                    conn.as_uri(),
                    exc,
                    delay,
                    attempt,
                    max_retries,
                )
                _sleep_checking(delay, maybe_shutdown)
        self.first_connection_attempt = False
        self.broker_connection_retry_attempt = 0
        return conn


def _sleep_checking(seconds: float, check: Callable[[], object]) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        check()
        time.sleep(min(1.0, left))


def persist_revoked(state: Any) -> None:
    """Write the worker's revoked ids to its state db (``worker_state_db``) now.

    ``state`` is the remote-control handler state (``state.consumer.controller`` is the
    WorkController).  No-op when the worker has no state db.
    """
    controller = getattr(getattr(state, "consumer", None), "controller", None)
    persistence = getattr(controller, "_persistence", None)
    if persistence is not None:
        persistence.sync()


def install_revoke_persistence() -> None:
    """Make the ``revoke`` remote-control command save the revoked ids at once.

    Celery writes ``worker_state_db`` only in an exit handler, which a SIGKILLed (or
    OOM-killed) worker never runs: a job revoked while it waited in the queue ran after
    the worker was restarted (tests/integration/test_worker_faults.py, "crash").  Idempotent.
    """
    from celery.worker import control

    original = control.Panel.data["revoke"]
    if getattr(original, "_afirgen_persists", False):
        return

    def revoke(
        state: Any, task_id: Any, terminate: bool = False, signal: Any = None, **kwargs: Any
    ) -> Any:
        reply = original(state, task_id, terminate=terminate, signal=signal, **kwargs)
        persist_revoked(state)
        return reply

    revoke.__doc__ = original.__doc__
    revoke._afirgen_persists = True  # type: ignore[attr-defined]
    control.Panel.data["revoke"] = revoke


# Workers import this module for BackoffConsumer (``worker_consumer``) before the
# remote-control mailbox starts, so every AFIRGen worker gets the persistent revoke.
install_revoke_persistence()
