"""Worker detail (Enter on the Workers pane): one worker's stats, tasks, registry and queues,
and the commands that act on that worker alone (``c`` ``L`` ``P`` ``S``).

Everything shown comes from ``inspect(destination=[host])`` through the sources (cleaned at
the trust boundary) and is rendered as Text: a task name or argument is never markup.  The
commands go through the action layer (validated, audited before they are sent, refused in
read-only mode) in thread workers; the outcome comes back as a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Select, Static

from tui.actions import (
    Actions,
    Outcome,
    ReadOnlyRefused,
    ValidationFailed,
    validate_rate_limit,
    validate_time_limits,
)
from tui.core.formatting import clock, count, duration
from tui.core.safe_text import data_text, visible
from tui.sources.inspection import WorkerDetail
from tui.ui.commands import COMMANDS, bindings
from tui.ui.messages import ActionCompleted
from tui.ui.screens.forms import (
    ChoiceScreen,
    ConfirmScreen,
    DialogScreen,
    TypedConfirmScreen,
)
from tui.ui.widgets.plain_input import PlainInput

if TYPE_CHECKING:
    from tui.sources.cluster import Sources

#: the keys that pick a queue in the consume form, in order
CHOICE_KEYS = "123456789abdefhijkmnorstuvwxyz"
#: how long a consume change may take to show in ``active_queues`` (add_consumer is async)
VERIFY_S = 5.0

#: this screen's mutating commands, by key (refused with a message in read-only mode)
_MUTATING_KEYS: dict[str, str] = {
    key: c.name
    for c in COMMANDS
    if c.scope == "worker_detail" and c.mutating
    for key in c.key.split(",")
}
_MUTATING = frozenset(_MUTATING_KEYS.values())


class WorkerDetailRead(Message):
    """``inspect(destination=[host])`` finished (or the worker did not reply)."""

    def __init__(self, detail: WorkerDetail):
        super().__init__()
        self.detail = detail


class WorkerActionDone(Message):
    """A command on this worker finished; ``outcome`` says what happened, in words."""

    def __init__(self, action: str, outcome: Outcome):
        super().__init__()
        self.action = action
        self.outcome = outcome


@dataclass(frozen=True, slots=True)
class LimitRequest:
    """What the limits form asks for: ``which`` is ``rate_limit`` or ``time_limit``."""

    task: str
    which: str
    value: str


class WorkerDetailScreen(ModalScreen[None]):
    """One worker in detail, re-read with ``g``; ``c`` ``L`` ``P`` ``S`` act on it alone."""

    SCOPE = "worker_detail"
    BINDINGS = [Binding("escape,q", "close", "Close"), *bindings("worker_detail")]

    DEFAULT_CSS = """
    WorkerDetailScreen { align: center middle; }
    WorkerDetailScreen > VerticalScroll {
        width: 96%; height: 90%; border: round $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(
        self,
        host: str,
        sources: Sources,
        actions: Actions,
        redact: Callable[[str], str],
        read_only: bool = False,
        known_queues: Sequence[str] = (),
        on_outcome: Callable[[ActionCompleted], None] | None = None,
    ):
        super().__init__()
        self.host = host
        self.sources = sources
        self.actions = actions
        self.redact = redact
        self.read_only = read_only
        self.known_queues = list(known_queues)
        self.on_outcome = on_outcome
        #: the last reply (None: still asking)
        self.detail: WorkerDetail | None = None
        #: every outcome shown here, in order (tests read it)
        self.outcomes: list[WorkerActionDone] = []

    # ---- layout and reading ---------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            # the hostname is data: a str title would be parsed as markup
            scroll.border_title = Text("Worker ") + data_text(self.host)
            scroll.border_subtitle = "g refresh · Esc close"
            yield Static(self.render_text(), id="wd-body")
        yield Footer()  # this screen's keys, over the console's

    def on_mount(self) -> None:
        self.load()

    def action_refresh(self) -> None:
        """Ask the worker again."""
        self.load()

    @work(thread=True, exclusive=True, group="worker-detail")
    def load(self) -> None:
        """Read the worker (in a thread worker: each inspect call waits up to the timeout)."""
        # runs in a worker thread
        self.post_message(WorkerDetailRead(self.sources.worker_detail(self.host)))

    def on_worker_detail_read(self, message: WorkerDetailRead) -> None:
        self.detail = message.detail
        self.query_one("#wd-body", Static).update(self.render_text())

    def action_close(self) -> None:
        self.dismiss(None)

    # ---- rendering ----------------------------------------------------------------------
    def render_text(self) -> Text:
        """The whole detail as one Text (also what tests read)."""
        d = self.detail
        out = Text()
        if d is None:
            out.append(f"asking {visible(self.host)}…\n", style="dim")
            return out
        if d.error:
            out.append(f"cannot ask {visible(self.host)}: {visible(d.error)}\n", style="bold red")
            return out
        if not d.answered:
            out.append(
                f"no reply from {visible(self.host)} (down or busy?): g asks again\n",
                style="bold red",
            )
            return out
        s = d.stats
        pool = s.get("pool", {})
        procs = pool.get("processes")
        usage = s.get("rusage", {})
        out.append(f"read at {clock(d.taken_at)} in {duration(d.duration)}\n\n", style="dim")
        self._stat_line(out, "PID", s.get("pid", "-"))
        self._stat_line(out, "Uptime", duration(s.get("uptime")))
        impl = pool.get("implementation")
        # celery.concurrency.prefork:TaskPool -> prefork (as the Workers pane shows it)
        short = (impl or "").partition(":")[0].rpartition(".")[2] or impl
        self._stat_line(out, "Pool", f"{short} ({impl})" if impl else "-")
        self._stat_line(
            out,
            "Processes",
            f"{count(len(procs) if procs is not None else None)} "
            f"(max-concurrency {count(pool.get('max-concurrency'))})",
        )
        self._stat_line(out, "Prefetch", count(s.get("prefetch_count")))
        self._stat_line(
            out,
            "Rusage",
            f"user {_seconds(usage.get('utime'))}, system {_seconds(usage.get('stime'))}, "
            f"max RSS {count(usage.get('maxrss'))} KiB",
        )
        restarts = {
            True: "on (P restarts the pool)",
            False: "off (start the worker with worker_pool_restarts=True to allow P)",
            None: "unknown",
        }[d.pool_restarts]
        self._stat_line(out, "Pool restart", restarts)
        self._heading(out, f"Queues consumed ({len(d.queues)})")
        out.append(
            ("  " + ", ".join(visible(q) for q in sorted(d.queues)) if d.queues else "  none")
            + "\n"
        )
        for title, tasks, when in (
            ("Active", d.active, "time_start"),
            ("Reserved", d.reserved, ""),
            ("Scheduled", d.scheduled, "eta"),
        ):
            self._heading(out, f"{title} ({len(tasks)})")
            if not tasks:
                out.append("  none\n", style="dim")
            for task in tasks:
                self._task_lines(out, task, when)
        self._heading(out, f"Registered ({len(d.registered)})")
        for info in d.registered:
            out.append("  " + visible(info["name"]))
            limits = "  ".join(
                f"{k}={visible(v)}" for k, v in info.items() if k != "name" and v != "None"
            )
            out.append(f"  {limits}\n" if limits else "\n", style="yellow")
        return out

    @staticmethod
    def _stat_line(out: Text, label: str, value: Any) -> None:
        out.append(f"{label:<13}", style="bold")
        out.append(visible(value) + "\n")

    @staticmethod
    def _heading(out: Text, title: str) -> None:
        out.append(f"\n{title}\n", style="bold underline")

    def _task_lines(self, out: Text, task: dict[str, Any], when: str) -> None:
        out.append("  " + visible(task.get("name", "?")), style="bold")
        out.append("  " + visible(task["id"]), style="dim")
        if when == "time_start" and task.get("time_start"):
            started = task["time_start"]
            out.append(
                f"  started {clock(started)} ({duration(max(0.0, time.time() - started))} ago)"
            )
        elif when == "eta" and task.get("eta"):
            out.append(f"  eta {visible(task['eta'])}")
        out.append("\n")
        # arguments may hold personal data: the [redact] rules apply, as in the task detail
        args = self.redact(task.get("args") or "-")
        kwargs = self.redact(task.get("kwargs") or "-")
        out.append(f"    args {visible(args)}  kwargs {visible(kwargs)}\n")

    # ---- read-only: mutating keys hidden from the footer, refused with a message ------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.read_only and action in _MUTATING)

    def on_key(self, event: events.Key) -> None:
        action = _MUTATING_KEYS.get(event.key)
        if self.read_only and action is not None:
            event.stop()
            self._run(action, None)

    # ---- the commands -------------------------------------------------------------------
    def _answered(self) -> WorkerDetail | None:
        d = self.detail
        if d is None or not d.answered:
            why = "still asking" if d is None else "no reply (down or busy?)"
            self.notify(f"{self.host}: {why}: press g to read it again", severity="warning")
            return None
        return d

    def action_consume(self) -> None:
        """Start or stop consuming a queue on this worker (a pick list with each queue's state)."""
        d = self._answered()
        if d is None:
            return
        names = sorted(set(self.known_queues) | set(d.queues))[: len(CHOICE_KEYS)]
        options = [
            (
                key,
                name,
                f"{'● consuming    ' if name in d.queues else '○ not consuming'}  {name}"
                f"  → {'stop' if name in d.queues else 'start'}",
            )
            for key, name in zip(CHOICE_KEYS, names, strict=False)
        ]

        def chosen(queue: str | None) -> None:
            if queue is None:
                self.notify("nothing changed", timeout=3)
                return
            start = queue not in d.queues
            self._run(
                "add_consumer" if start else "cancel_consumer",
                lambda: self.actions.worker_consume(self.host, queue, start),
                verify=(queue, start),
            )

        self.app.push_screen(
            ChoiceScreen(
                f"Queues of {self.host}",
                f"Start or stop consuming a queue on {self.host} only (other workers keep theirs).",
                options,
            ),
            chosen,
        )

    def action_limits(self) -> None:
        """Set a task type's rate limit or time limits on this worker (a form)."""
        d = self._answered()
        if d is None:
            return
        registered = [info["name"] for info in d.registered]
        if not registered:
            self.notify(f"{self.host} reports no registered tasks", severity="warning")
            return

        def chosen(req: LimitRequest | None) -> None:
            if req is None:
                self.notify("nothing changed", timeout=3)
                return
            send = self.actions.rate_limit if req.which == "rate_limit" else self.actions.time_limit
            self._run(req.which, lambda: send(self.host, req.task, req.value, registered))

        self.app.push_screen(LimitsFormScreen(self.host, registered), chosen)

    def action_pool_restart(self) -> None:
        """Restart this worker's pool after a confirm (or say why it cannot)."""
        d = self._answered()
        if d is None:
            return
        enabled = d.pool_restarts
        if enabled is False:
            # the action layer refuses it, audited, with the reason and the fix
            self._run("pool_restart", lambda: self.actions.pool_restart(self.host, False))
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                self.notify("pool restart cancelled: nothing sent", timeout=3)
                return
            self._run("pool_restart", lambda: self.actions.pool_restart(self.host, enabled))

        self.app.push_screen(
            ConfirmScreen(
                "Restart pool",
                f"Restart the pool of {self.host}? Each pool process is replaced by a new one "
                "when it finishes its current (or, if idle, its next) task. This cannot be undone.",
            ),
            answered,
        )

    def action_shutdown(self) -> None:
        """Shut this worker down after the operator types its name."""

        def typed(name: str | None) -> None:
            if name is None:
                self.notify("shutdown cancelled: nothing sent", timeout=3)
                return
            self._run("shutdown", lambda: self.actions.shutdown(self.host, name))

        self.app.push_screen(
            TypedConfirmScreen(
                f"Shut down {self.host}",
                f"This stops {self.host} (a warm shutdown: it finishes its running tasks; the "
                "jobs it reserved go back to their queues). Nothing here starts it again. "
                "Type the worker name to confirm.",
                self.host,
            ),
            typed,
        )

    # ---- send and show ------------------------------------------------------------------
    def _run(
        self,
        action: str,
        call: Callable[[], Outcome] | None,
        verify: tuple[str, bool] | None = None,
    ) -> None:
        """Send in a thread worker; ``call`` None means refuse (read-only), audited."""
        self.run_worker(
            lambda: self._send(action, call, verify), thread=True, group="worker-actions"
        )

    def _send(
        self, action: str, call: Callable[[], Outcome] | None, verify: tuple[str, bool] | None
    ) -> None:
        # runs in a worker thread: the broker may be slow; the outcome is posted back
        try:
            if call is None:
                self.actions.guard(action, self.host, {})
                outcome = Outcome(False, f"{action}: not available")
            else:
                outcome = call()
                if verify is not None and outcome.ok:
                    outcome = self._verify_queue(outcome, *verify)
        except ReadOnlyRefused as exc:
            outcome = Outcome(False, str(exc))
        except ValidationFailed as exc:
            outcome = Outcome(False, "; ".join(exc.errors.values()))
        except Exception as exc:  # never into the event loop: shown as words
            outcome = Outcome(False, self.redact(f"{action} failed: {type(exc).__name__}: {exc}"))
        self.post_message(WorkerActionDone(action, outcome))

    def _verify_queue(self, outcome: Outcome, queue: str, start: bool) -> Outcome:
        """Re-read ``active_queues`` until the change shows (``add_consumer`` is asynchronous)."""
        # runs in a worker thread
        deadline = time.monotonic() + VERIFY_S
        queues: list[str] | None = None
        while time.monotonic() < deadline:
            queues = self.sources.worker_queues(self.host)
            if queues is not None and (queue in queues) == start:
                outcome.message += f" (verified: active_queues is {', '.join(queues) or 'empty'})"
                return outcome
            time.sleep(0.2)
        outcome.ok = False
        outcome.warning = True
        seen = "no reply" if queues is None else ", ".join(queues) or "empty"
        outcome.message += f", but active_queues does not show it yet ({seen})"
        return outcome

    def on_worker_action_done(self, message: WorkerActionDone) -> None:
        out = message.outcome
        self.outcomes.append(message)
        text = out.message
        if out.replies:
            text += "\n" + "\n".join(f"{h}: {w}" for h, w in sorted(out.replies.items()))
        severity: SeverityLevel = "information" if out.ok else "warning" if out.warning else "error"
        self.notify(self.redact(text), severity=severity, timeout=6 if out.ok else 10)
        if self.on_outcome is not None:
            self.on_outcome(ActionCompleted(message.action, self.host, out, reinspect=True))
        self.load()  # what the worker says now (a shut-down worker: "no reply")


class LimitsFormScreen(DialogScreen[LimitRequest | None]):
    """Task (from the worker's registered list), which limit, and its value."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    HINTS = {
        "rate_limit": "10/m, 5/s, 100/h, or off (no limit)",
        "time_limit": "soft,hard seconds, e.g. 50,60 (soft below hard)",
    }

    def __init__(self, host: str, registered: Sequence[str]):
        super().__init__()
        self.host = host
        self.registered = list(registered)

    def compose(self) -> ComposeResult:
        with Vertical(classes="form") as box:
            box.border_title = Text("Limits on ") + data_text(self.host)
            box.border_subtitle = "Enter apply · Esc cancel"
            with Horizontal(classes="row"):
                yield Label("Task", classes="field")
                # task names come from the worker: Text prompts, never markup
                yield Select(
                    [(data_text(n), n) for n in self.registered],
                    value=self.registered[0],
                    allow_blank=False,
                    id="task",
                )
            with Horizontal(classes="row"):
                yield Label("Limit", classes="field")
                yield Select(
                    [("rate limit", "rate_limit"), ("time limits", "time_limit")],
                    value="rate_limit",
                    allow_blank=False,
                    id="which",
                )
            with Horizontal(classes="row"):
                yield Label("Value", classes="field")
                yield PlainInput(placeholder=self.HINTS["rate_limit"], id="value")
            yield Static("", classes="error", id="limit-error", markup=False)

    def on_mount(self) -> None:
        self.query_one("#value", Input).focus()

    @on(Select.Changed, "#which")
    def _which_changed(self, event: Select.Changed) -> None:
        self.query_one("#value", Input).placeholder = self.HINTS.get(str(event.value), "")

    @on(Input.Submitted)
    def _submitted(self) -> None:
        task = str(self.query_one("#task", Select).value)
        which = str(self.query_one("#which", Select).value)
        value = self.query_one("#value", Input).value
        try:
            if which == "rate_limit":
                validate_rate_limit(value)
            else:
                validate_time_limits(value)
        except ValidationFailed as exc:
            box = self.query_one("#limit-error", Static)
            box.update(visible("✘ " + "; ".join(exc.errors.values()), multiline=True))
            box.add_class("-shown")
            return
        self.dismiss(LimitRequest(task, which, value.strip()))

    def action_cancel(self) -> None:
        self.dismiss(None)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"
