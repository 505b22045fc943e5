"""What every AFIRGen task shares: error classes, retry policy, settings lookup, the result shape."""

from __future__ import annotations

import smtplib
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis.exceptions
from celery import Task, shared_task

from .settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


class PermanentTaskError(Exception):
    """Input that can never succeed (unknown FIR id, malformed address): fail at once, no retry."""


class TransientTaskError(Exception):
    """A failure worth retrying (a dependency was briefly unavailable)."""


class DatabaseLockedError(TransientTaskError):
    """The FIR database was locked by another writer."""


#: Exceptions retried with exponential backoff and jitter, at most ``celery_task_max_retries`` times.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientTaskError,
    ConnectionError,
    TimeoutError,
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPConnectError,
    smtplib.SMTPHeloError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` should be retried rather than failing the task at once."""
    if isinstance(exc, PermanentTaskError):
        return False
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower():
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        # 4xx replies are temporary by definition (RFC 5321); 5xx are permanent.
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, TRANSIENT_ERRORS)


def task_settings(task: Task | None = None) -> Settings:
    """The settings of the app running ``task`` (apps built by ``create_app`` carry theirs)."""
    app = task.app if task is not None else None
    settings = getattr(app, "afirgen_settings", None)
    if settings is None:
        from celery import current_app

        settings = getattr(current_app, "afirgen_settings", None)
    return settings if settings is not None else load_settings()


def result(status: str, started: float, **fields: Any) -> dict[str, Any]:
    """The structured dict every task returns: status, duration and task-specific fields."""
    return {"status": status, **fields, "duration_s": round(time.monotonic() - started, 4)}


def afirgen_task(name: str, **options: Any) -> Callable[[F], Task]:
    """Register ``fn`` as task ``name`` (bound: ``self`` first) with the shared retry policy.

    Transient errors (see :func:`is_transient`) retry with exponential backoff and jitter up
    to ``celery_task_max_retries`` times; anything else fails at once with its message.
    """

    def decorate(fn: F) -> Task:
        def run(self: Task, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(self, *args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                settings = task_settings(self)
                if self.request.retries >= settings.celery_task_max_retries:
                    raise
                from .backoff import backoff_delay

                countdown = backoff_delay(
                    self.request.retries, base=2.0, cap=settings.celery_task_retry_backoff_max
                )
                raise self.retry(
                    exc=exc, countdown=countdown, max_retries=settings.celery_task_max_retries
                ) from exc

        run.__name__ = fn.__name__
        run.__qualname__ = fn.__qualname__
        run.__doc__ = fn.__doc__
        run.__module__ = fn.__module__
        run.__wrapped__ = fn  # type: ignore[attr-defined]  # inspect.signature shows fn's parameters
        return shared_task(name=name, bind=True, **options)(run)

    return decorate
