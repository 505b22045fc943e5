"""Modal forms and confirmations for the mutating actions.

Forms validate through :mod:`tui.actions` before dismissing: bad input keeps the form
open with the message next to the field, and nothing is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from celery import Celery
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from afirgen_tasks.routing import route_for
from tui.actions import EnqueueRequest, ValidationFailed, describe_parameters, validate_enqueue
from tui.core.safe_text import data_text, visible
from tui.ui.widgets.plain_input import PlainInput


class FormCheckbox(Checkbox, inherit_bindings=False):
    """A checkbox in a form: Space toggles it; Enter is left to the form, which submits."""

    BINDINGS = [Binding("space", "toggle_button", "Toggle", show=False)]


class FormSelect(Select[str], inherit_bindings=False):
    """A drop-down in a form: Space or the arrows open it; Enter is left to the form (send)."""

    BINDINGS = [Binding("down,space,up", "show_overlay", "Show menu", show=False)]


FORM_CSS = """
DialogScreen { align: center middle; }
.form { width: 84; max-width: 96%; height: auto; max-height: 96%; border: round $accent;
        background: $surface; padding: 0 1; }
.form .row { height: auto; }
.form Label.field { width: 12; }
.form Input { width: 1fr; height: 1; border: none; padding: 0 1; background: $boost; }
.form Input:focus { background: $accent 30%; }
.form Select { width: 1fr; }
.form SelectCurrent { height: 1; border: none; padding: 0 1; }
.form .row { margin-top: 1; }
.form .error { display: none; }
.form .error.-shown { display: block; }
.form .error { color: $error; height: auto; padding-left: 12; }
.form .hint { color: $text-muted; height: auto; padding-left: 12; }
.form .buttons { height: 3; align-horizontal: right; margin-top: 1; }
.form Button { margin-left: 1; min-width: 10; }
.form .question { padding: 1 0; }
"""


R = TypeVar("R")


class DialogScreen(ModalScreen[R]):
    """A dialog (a confirm, a form): one ``.form`` box, centred on the terminal whichever
    screen opened it.

    The CSS lives here, once.  A screen's DEFAULT_CSS is scoped to its own type: a
    ``ModalScreen { align: … }`` rule in it reads ``ConfirmScreen ModalScreen``, which
    matches nothing, and the box sat at the top left.  ``DialogScreen`` is the scope, and
    every dialog is one."""

    DEFAULT_CSS = FORM_CSS


class ConfirmScreen(DialogScreen[bool]):
    """Yes/no: ``y`` or Enter confirms, ``n`` or Esc cancels."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, question: str):
        super().__init__()
        self.title_text = title
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="form") as box:
            # Titles and questions name tasks, uuids and queues: a str border title is parsed
            # as markup, so it gets a Text; the Static takes none (markup=False).
            box.border_title = data_text(self.title_text)
            box.border_subtitle = "y / Enter confirm · n / Esc cancel"
            yield Static(
                visible(self.question, multiline=True),
                classes="question",
                id="question",
                markup=False,
            )

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ChoiceScreen(DialogScreen[str | None]):
    """Pick one of a few options by its key; Esc cancels."""

    BINDINGS = [Binding("escape", "choose(None)", "Cancel")]

    def __init__(self, title: str, question: str, options: Sequence[tuple[str, str, str]]):
        """``options``: (key, value, description)."""
        super().__init__()
        self.title_text = title
        self.question = question
        self.options = list(options)

    def compose(self) -> ComposeResult:
        with Vertical(classes="form") as box:
            box.border_title = data_text(self.title_text)  # a str title would be parsed as markup
            box.border_subtitle = "press a key · Esc cancel"
            # the question quotes the operator's filter
            yield Static(visible(self.question, multiline=True), classes="question", markup=False)
            for key, _value, description in self.options:
                yield Static(visible(f"  {key}  {description}"), markup=False)

    def on_key(self, event: Any) -> None:
        for key, value, _ in self.options:
            if event.key == key:
                event.stop()
                self.dismiss(value)

    def action_choose(self, value: str | None) -> None:
        self.dismiss(value)


class TypedConfirmScreen(DialogScreen[str | None]):
    """A destructive confirmation: the operator must type ``expected`` (e.g. the queue name)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, question: str, expected: str):
        super().__init__()
        self.title_text = title
        self.question = question
        self.expected = expected

    def compose(self) -> ComposeResult:
        with Vertical(classes="form") as box:
            # "Purge <queue>": the queue name is broker data; a str title is parsed as markup
            box.border_title = data_text(self.title_text)
            box.border_subtitle = "Enter confirm · Esc cancel"
            yield Static(
                visible(self.question, multiline=True),
                classes="question",
                id="question",
                markup=False,
            )
            yield PlainInput(placeholder=f"type {visible(self.expected)} to confirm", id="typed")
            yield Static("", classes="error", id="typed-error", markup=False)

    def on_mount(self) -> None:
        # at once, not later (Widget.focus): keys typed while the form opened follow it
        self.set_focus(self.query_one("#typed", Input))

    @on(Input.Submitted, "#typed")
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() != self.expected:
            box = self.query_one("#typed-error", Static)
            box.update(
                f"✘ that is not {visible(repr(self.expected))}: type the name exactly, or Esc to cancel"
            )
            box.add_class("-shown")
            return
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class EnqueueScreen(DialogScreen[EnqueueRequest | None]):
    """The enqueue form: task, args, kwargs, queue, priority, countdown or ETA."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        # Enter sends from any field (the task list opens with Space or the arrows)
        Binding("ctrl+s,enter", "submit", "Send"),
    ]

    FIELDS = ("task", "args", "kwargs", "queue", "priority", "countdown", "eta")

    def __init__(
        self,
        app: Celery,
        tasks: Sequence[str],
        queues: Sequence[str],
        initial: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.celery_app = app
        self.task_names = list(tasks)
        self.queues = list(queues)
        self.initial = initial or {}
        #: the task whose route queue and priority the form holds
        self._prefilled_for = ""
        #: field -> the message shown beside it since the last submit
        self.errors: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        first = self.initial.get("task") or (self.task_names[0] if self.task_names else "")
        with VerticalScroll(classes="form") as box:
            box.border_title = (
                "Enqueue a job: the last one sent, edit it or send it again"
                if self.initial
                else "Enqueue a job"
            )
            box.border_subtitle = "Enter / Ctrl+S send · Esc cancel"
            with Horizontal(classes="row"):
                yield Label("Task", classes="field")
                yield FormSelect(
                    [(n.removeprefix("afirgen_tasks."), n) for n in self.task_names],
                    value=first,
                    allow_blank=False,
                    id="task",
                )
            yield Static("", classes="hint", id="params", markup=False)
            yield Static("", classes="error", id="task-error", markup=False)
            for name, placeholder in (
                ("args", 'JSON array, e.g. [42, "a@b.in"]'),
                ("kwargs", 'JSON object, e.g. {"days": 30}'),
                ("queue", "queue"),
                ("priority", "1-10, 10 = most urgent"),
                ("countdown", "seconds from now (optional)"),
                ("eta", "ISO time, local unless +00:00, e.g. 2026-11-24T15:30 (optional)"),
            ):
                with Horizontal(classes="row"):
                    yield Label(name.capitalize(), classes="field")
                    yield PlainInput(placeholder=placeholder, id=name)
                yield Static("", classes="error", id=f"{name}-error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Send", variant="primary", id="send")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        for name in ("args", "kwargs", "countdown", "eta"):
            if name in self.initial:
                self.query_one(f"#{name}", Input).value = str(self.initial[name])
        task = self.query_one("#task", Select).value
        self._prefill(str(task), keep=True)
        # at once, not later (Widget.focus): keys typed while the form opened follow it
        self.set_focus(self.query_one("#args", Input))

    def _prefill(self, task: str, keep: bool = False) -> None:
        self._prefilled_for = task
        route = route_for(task)
        queue, priority = self.query_one("#queue", Input), self.query_one("#priority", Input)
        if not keep or not queue.value:
            queue.value = str(self.initial.get("queue", route.queue)) if keep else route.queue
        if not keep or not priority.value:
            priority.value = (
                str(self.initial.get("priority", route.priority)) if keep else str(route.priority)
            )
        # an emptied field is refused, never replaced by the default: say which it was
        queue.placeholder = f"queue (this task's route: {route.queue})"
        priority.placeholder = f"1-10, 10 = most urgent (this task's default: {route.priority})"
        self.query_one("#params", Static).update(
            f"{task.rsplit('.', 1)[-1]}({describe_parameters(self.celery_app, task)}) → route {route.queue}, "
            f"priority {route.priority}"
        )

    @on(Select.Changed, "#task")
    def _task_changed(self, event: Select.Changed) -> None:
        # The Select also reports the value it was built with, after on_mount: re-filling
        # then would put the route's queue and priority over what the operator (or the
        # last job) put there.  Only a different task brings its own route.
        if str(event.value) != self._prefilled_for:
            self._prefill(str(event.value))

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.action_submit()

    @on(Input.Changed)
    def _edited(self, event: Input.Changed) -> None:
        # The message was about the old text; submitting checks the new text again.
        name = event.input.id
        if name in self.errors:
            del self.errors[name]
            self._error(name, "")

    @on(Button.Pressed, "#send")
    def _send(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel_button(self) -> None:
        self.action_cancel()

    def values(self) -> dict[str, str]:
        """The form's raw text, by field."""
        out = {
            name: self.query_one(f"#{name}", Input).value for name in self.FIELDS if name != "task"
        }
        out["task"] = str(self.query_one("#task", Select).value)
        return out

    def action_submit(self) -> None:
        """Validate; on error show each message beside its field and stay open."""
        v = self.values()
        for name in self.FIELDS:
            self._error(name, "")
        try:
            req = validate_enqueue(
                self.celery_app,
                v["task"],
                v["args"],
                v["kwargs"],
                v["queue"],
                v["priority"],
                v["countdown"],
                v["eta"],
                known_queues=self.queues,
            )
        except ValidationFailed as exc:
            self.errors = exc.errors
            for name, message in exc.errors.items():
                self._error(name if name in self.FIELDS else "task", f"✘ {message}")
            first = next(iter(exc.errors))
            if first in self.FIELDS and first != "task":
                self.query_one(f"#{first}", Input).focus()
            return
        self.errors = {}
        self.dismiss(req)

    def _error(self, field: str, message: str) -> None:
        box = self.query_one(f"#{field}-error", Static)
        # the validator's message quotes what the operator typed or pasted (markup=False box)
        box.update(visible(message, multiline=True))
        box.set_class(bool(message), "-shown")

    def action_cancel(self) -> None:
        self.dismiss(None)


class NumberFormScreen(DialogScreen[dict[str, Any] | None]):
    """A small form of integer fields plus an "all workers" checkbox (pool resize, autoscale)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        # Enter applies from any field, the checkbox too (Space toggles it)
        Binding("enter", "submit", "Apply"),
    ]

    def __init__(
        self,
        title: str,
        fields: Sequence[tuple[str, str, str]],
        target: str,
        check: Callable[[dict[str, int]], str | None],
    ):
        """``fields``: (name, label, initial); ``check`` returns an error message or None."""
        super().__init__()
        self.title_text = title
        self.fields = list(fields)
        self.target = target
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(classes="form") as box:
            box.border_title = data_text(self.title_text)  # a str title would be parsed as markup
            box.border_subtitle = "Enter apply · Space tick · Esc cancel"
            for name, label, initial in self.fields:
                with Horizontal(classes="row"):
                    yield Label(label, classes="field")
                    yield PlainInput(value=initial, id=name)
            # the target is a worker's hostname: a str label would be parsed as markup
            yield FormCheckbox(data_text(f"all workers (not only {self.target})"), id="all")
            yield Static("", classes="error", id="form-error", markup=False)

    def on_mount(self) -> None:
        # at once, not later (Widget.focus): keys typed while the form opened follow it
        self.set_focus(self.query_one(f"#{self.fields[0][0]}", Input))

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_submit()

    def action_submit(self) -> None:
        """Check the numbers; on a problem say it and stay open, else close with the values."""
        values: dict[str, int] = {}
        for name, label, _ in self.fields:
            text = self.query_one(f"#{name}", Input).value.strip()
            try:
                values[name] = int(text)
            except ValueError:
                self._problem(f"✘ {label} {visible(repr(text))} is not a whole number")
                return
        problem = self.check(values)
        if problem:
            self._problem(f"✘ {visible(problem)}")
            return
        self.dismiss({**values, "all": self.query_one("#all", Checkbox).value})

    def _problem(self, message: str) -> None:
        box = self.query_one("#form-error", Static)
        box.update(message)
        box.add_class("-shown")

    def action_cancel(self) -> None:
        self.dismiss(None)
