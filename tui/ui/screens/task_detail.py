"""Task detail (Enter on a task): everything the events said, completed from the result backend."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.core.formatting import (
    duration,
    lost_text,
    state_text,
    task_runtime,
    task_wait,
    timestamp,
)
from tui.core.safe_text import data_text, visible

TIMESTAMPS = (
    ("sent", "Sent"),
    ("received", "Received"),
    ("started", "Started"),
    ("finished", "Finished"),
    ("eta", "ETA"),
    ("expires", "Expires"),
)


def _ts(value: Any) -> str:
    if value in (None, ""):
        return "-"
    if isinstance(value, (int, float)):
        return timestamp(value)  # "?" for NaN, inf, -1e18: never raises
    return str(value)


class BackendFetched(Message):
    """The result backend answered (or failed to) for the task on screen."""

    def __init__(self, meta: dict[str, Any] | None, error: str = ""):
        super().__init__()
        self.meta = meta
        self.error = error


class TaskDetailScreen(ModalScreen[None]):
    """Full uuid, args, kwargs, result or exception with traceback, retries, timestamps, ids."""

    BINDINGS = [
        Binding("escape,q,enter", "dismiss_screen", "Close"),
    ]

    DEFAULT_CSS = """
    TaskDetailScreen { align: center middle; }
    TaskDetailScreen > VerticalScroll {
        width: 96%; height: 92%; border: round $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(
        self,
        task: Any,
        redact: Callable[[str], str],
        fetch: Callable[[str], dict[str, Any]] | None,
        note: str = "",
        retried_as: Callable[[str], list[str]] | None = None,
    ):
        """``retried_as``: the tasks known to re-send a task (the model's links)."""
        super().__init__()
        self.retried_as = retried_as
        self.note = note or (
            "filled in from the result backend: the console did not see this task live"
            if getattr(task, "source", None) == "backend"
            else ""
        )
        self.task_record = task
        self.redact = redact
        self.fetch = fetch
        self.backend: dict[str, Any] | None = None
        self.backend_error = ""

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            # A str title is parsed as markup: a uuid "[@click=app.resize_all(5)]GROW" was a
            # clickable action here. Text is taken literally.
            scroll.border_title = Text("Task ") + data_text(self.task_record.uuid)
            scroll.border_subtitle = "Esc close"
            yield Static(self.render_text(), id="detail-body")

    def on_mount(self) -> None:
        if self.fetch is not None:
            self._fetch_backend()
        # The record is the live one: a task lost with its worker changes as the broker
        # answers and when it is redelivered, and the countdown moves.
        self._shown = self._live_signature()
        self.set_interval(1.0, self._refresh_if_changed)

    def _live_signature(self) -> tuple[Any, ...]:
        t = self.task_record
        lost = getattr(t, "lost", None)
        live = (
            getattr(t, "state", None),
            getattr(t, "revoke_requested", None),
            len(self.retried_as(t.uuid)) if self.retried_as is not None else 0,
        )
        if lost is None:
            return live
        return (*live, lost.in_broker, lost.redeliver_at, lost.note, int(time.time()))

    def _refresh_if_changed(self) -> None:
        shown = self._live_signature()
        if shown != self._shown:
            self._shown = shown
            self.query_one("#detail-body", Static).update(self.render_text())

    @work(thread=True, exclusive=True)
    def _fetch_backend(self) -> None:
        # runs in a worker thread: the backend may be slow or down
        try:
            meta = self.fetch(self.task_record.uuid) if self.fetch else None
            self.post_message(BackendFetched(meta))
        except Exception as exc:
            self.post_message(
                BackendFetched(None, self.redact(f"{type(exc).__name__}: {exc}")[:200])
            )

    def on_backend_fetched(self, message: BackendFetched) -> None:
        self.backend = message.meta
        self.backend_error = message.error
        self.query_one("#detail-body", Static).update(self.render_text())

    def render_text(self) -> Text:
        """The whole detail as one Rich Text (also what tests read)."""
        t = self.task_record
        meta = self.backend or {}
        out = Text()

        def line(label: str, value: Any, style: str = "", multiline: bool = False) -> None:
            out.append(f"{label:<12}", style="bold")
            # Values are data: literal, escapes made visible. One-line fields stay one line,
            # so a name cannot forge the lines below it.
            out.append(visible(value, multiline=multiline) + "\n", style=style)

        lost = getattr(t, "lost", None)
        label, style = state_text(t.state, getattr(t, "revoke_requested", False), lost)
        # The backend's PENDING means "no record": it says nothing next to a known state.
        backend_state = meta.get("status") if meta.get("status") != "PENDING" else None
        if self.note:
            out.append(f"{visible(self.note, multiline=True)}\n\n", style="italic yellow")
        line("UUID", t.uuid)
        line("Name", t.name or meta.get("name") or "?")
        line(
            "State",
            label + (f"   (backend: {backend_state})" if backend_state else ""),
            style,
        )
        if lost is not None:
            lost_style = "bold red" if t.state == "LOST" else "dim"
            for n, part in enumerate(lost_text(lost, t.state).split("\n")):
                line("" if n else "Lost", part, lost_style)
        line("Queue", getattr(t, "queue", None) or meta.get("queue") or "-")
        line(
            "Priority",
            "-"
            if getattr(t, "priority", None) is None
            else f"{t.priority} (1-10, 10 = most urgent)",
        )
        line("Worker", getattr(t, "hostname", None) or meta.get("worker") or "-")
        line(
            "Retries",
            getattr(t, "retries", None)
            if getattr(t, "retries", None) is not None
            else meta.get("retries", "-"),
        )
        line("Root id", getattr(t, "root_id", None) or "-")
        line("Parent id", getattr(t, "parent_id", None) or "-")
        retry_of = getattr(t, "retry_of", None)
        if retry_of:
            line("Retry of", retry_of, "bold cyan")
        retries_sent = self.retried_as(t.uuid) if self.retried_as is not None else []
        if retries_sent:
            line("Retried as", ", ".join(retries_sent), "bold cyan")
        for attr, name in TIMESTAMPS:
            line(name, _ts(getattr(t, attr, None)))
        if meta.get("date_done"):
            line("Done (bknd)", meta["date_done"])
        line("Wait", duration(task_wait(t)))
        runtime = task_runtime(t)
        derived = runtime is not None and getattr(t, "runtime", None) is None
        line(
            "Runtime",
            duration(runtime)
            + ("   (finished - started: the event carried no runtime)" if derived else ""),
        )
        args = getattr(t, "args", None) or (
            repr(meta["args"]) if meta.get("args") is not None else None
        )
        kwargs = getattr(t, "kwargs", None) or (
            repr(meta["kwargs"]) if meta.get("kwargs") is not None else None
        )
        line("Args", self.redact(args or "-"), multiline=True)
        line("Kwargs", self.redact(kwargs or "-"), multiline=True)
        result = getattr(t, "result", None)
        if result is None and meta.get("status") == "SUCCESS":
            result = repr(meta.get("result"))
        if result is not None:
            line("Result", self.redact(str(result)), multiline=True)
        reason = getattr(t, "revoke_reason", None)
        if reason:
            # A terminate's task-revoked comes first; the job's own failure (e.g. smtplib
            # turning the SIGTERM into an SMTP error) outranks it, so say what came first.
            after = (
                f"   (then {t.state}: the job kept running or failed as the signal hit it; "
                f"the exception below is its own)"
                if t.state in ("FAILURE", "SUCCESS")
                else ""
            )
            line("Revoked", reason + after, "red", multiline=True)
        exc = getattr(t, "exception", None) or (
            repr(meta.get("result")) if meta.get("status") == "FAILURE" else None
        )
        if exc:
            line("Exception", self.redact(str(exc)), "bold red", multiline=True)
        tb = getattr(t, "traceback", None) or meta.get("traceback")
        if tb:
            out.append("Traceback\n", style="bold")
            out.append(visible(self.redact(str(tb)), multiline=True).rstrip() + "\n", style="red")
        if self.fetch is not None:
            if self.backend_error:
                out.append(f"\nresult backend: {visible(self.backend_error)}\n", style="yellow")
            elif self.backend is None:
                out.append("\nresult backend: asking…\n", style="dim")
            elif not meta or meta.get("status") == "PENDING":
                out.append("\nresult backend: nothing stored for this task\n", style="dim")
        return out

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)
