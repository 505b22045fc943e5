"""The AFIRGen app with task events switched off, as a worker started without -E would have it."""

from afirgen_tasks.celery_app import app

app.conf.worker_send_task_events = False

__all__ = ["app"]
