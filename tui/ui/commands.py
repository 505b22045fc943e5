"""One registry of every command the console offers: its key, where it works, what it does.

The key bindings (the App's and each pane's ``BINDINGS``), the help screen, the command
palette, the "works on the Tasks pane" hint and read-only mode are all produced from
:data:`COMMANDS`.  A new key is one entry here plus the action on the widget that owns it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from textual.binding import Binding, BindingType

#: ``app``: the App (works over dialogs too); ``console``: the console screen; a pane's name:
#: that pane, when it has the focus; ``queue_jobs``: the screen of a queue's waiting jobs;
#: ``worker_detail``: the worker detail screen; ``unacked``: the jobs taken but not acknowledged;
#: ``failures``: the failures grouped (``f``).
Scope = Literal[
    "app",
    "console",
    "queues",
    "workers",
    "tasks",
    "queue_jobs",
    "worker_detail",
    "unacked",
    "failures",
]

#: The panes, in Tab order, with the digit that focuses each.
PANES: tuple[Scope, ...] = ("queues", "workers", "tasks")
PANE_NUMBER: dict[str, int] = {"queues": 1, "workers": 2, "tasks": 3}


@dataclass(frozen=True, slots=True)
class Command:
    """One thing the operator can ask for.

    ``key`` is Textual's key list (``"plus"``, ``"escape,q"``) or ``""`` for a command that
    is only in the palette (or, with no action either, only in the help); ``keys`` is how the
    help shows it.  ``action`` runs on the widget of its scope (the App, the console screen
    or a pane).  ``mutating`` commands change the cluster:
    they are hidden from the footer and refused in read-only mode.  ``show`` puts the key
    in the footer; ``priority`` lets it beat a focused widget's own binding.
    """

    key: str
    keys: str
    action: str
    scope: Scope
    description: str
    mutating: bool = False
    show: bool = False
    footer: str = ""
    priority: bool = False
    palette: bool = True

    @property
    def name(self) -> str:
        """The action's name without its arguments (``revoke`` for ``revoke('kill')``)."""
        return self.action.split("(", 1)[0]

    @property
    def title(self) -> str:
        """The palette title: the description's first clause and the key."""
        head = self.description.split(":", 1)[0]
        if head.count("(") > head.count(")"):
            # the colon is inside a parenthesis ("(⏸; ⏸ 1/2: paused on 1 of 2), or resume…"):
            # leave that parenthesis out rather than cut it in half
            start = head.rfind("(")
            end = self.description.find(")", start)
            head = (head[:start].rstrip() + self.description[end + 1 :]).split(":", 1)[0]
        head = head[:1].upper() + head[1:]
        return f"{head} ({self.keys})" if self.keys else head


COMMANDS: tuple[Command, ...] = (
    # ---- anywhere ---------------------------------------------------------------------
    Command(
        "tab",
        "Tab / Shift+Tab",
        "cycle_pane(1)",
        "app",
        "next / previous pane (in a dialog: next / previous field)",
        priority=True,
    ),
    Command(
        "shift+tab", "", "cycle_pane(-1)", "app", "previous pane", priority=True, palette=False
    ),
    Command(
        "1",
        "1 2 3",
        "focus_pane('queues')",
        "console",
        "focus queues / workers / tasks",
        palette=False,
    ),
    Command("2", "", "focus_pane('workers')", "console", "focus the Workers pane", palette=False),
    Command("3", "", "focus_pane('tasks')", "console", "focus the Tasks pane"),
    Command(
        "",
        "↑ ↓ PgUp PgDn",
        "",
        "console",
        "move the cursor (it stays on its row as rows stream in)",
    ),
    Command("", "Home", "", "console", "back to the top row, follow the newest tasks"),
    Command(
        "slash",
        "/",
        "filter",
        "console",
        "filter tasks: words, state:failure queue:email worker:w1 name:pdf uuid:ab12 prio:>=8 "
        "exc:SMTP",
        show=True,
        footer="Filter",
    ),
    Command(
        "escape",
        "Esc",
        "escape",
        "console",
        "clear the marks, then the filter / close a dialog",
    ),
    Command(
        "c",
        "c",
        "switch_cluster",
        "console",
        "clusters: each one in config.toml ([clusters.NAME]) with its live state; Enter "
        "switches to it without a restart",
    ),
    Command(
        "z",
        "z",
        "zoom",
        "console",
        "zoom the focused pane (again to restore)",
        show=True,
        footer="Zoom",
    ),
    Command(
        "e",
        "e",
        "enqueue",
        "console",
        "enqueue a job: task, args, kwargs, queue, priority 1-10, countdown/ETA "
        "(after a send it opens with the last job: edit or send it again)",
        mutating=True,
        show=True,
        footer="Enqueue",
        # handled as it arrives (not after the key's round trip through the panes), and the
        # next keys wait until the form is up: a burst "e Tab Tab Tab 1 0 Enter" lands in it
        priority=True,
    ),
    Command(
        "H",
        "H",
        "search_history",
        "console",
        "search this cluster's persisted history (filter syntax + args:text since:2h until:30m;"
        " cluster:all for every cluster; E in the results exports that search)",
        show=True,
        footer="History",
    ),
    Command(
        "f",
        "f",
        "failures",
        "console",
        "failures grouped by task and exception type: count, first and last seen, workers, "
        "a sample message (the tasks in memory; Enter filters the Tasks pane to a group)",
    ),
    Command(
        "E",
        "E",
        "export",
        "console",
        "export this cluster's filtered history: CSV, Excel (.xlsx) or incident report (PDF)",
        show=True,
        footer="Export",
    ),
    Command(
        "u",
        "u",
        "unacked",
        "console",
        "jobs taken by a worker but not acknowledged (Redis unacked): who holds each, when "
        "Redis redelivers it, whether that worker is alive",
    ),
    Command(
        "",
        "Ctrl+P",
        "command_palette",
        "app",
        "command palette: every action by name",
        palette=False,
    ),
    Command("question_mark", "?", "help", "app", "this help", show=True, footer="Help"),
    Command("q", "q", "quit", "app", "quit", show=True, footer="Quit"),
    # ---- the Tasks pane ---------------------------------------------------------------
    Command("", "Enter", "open_detail", "tasks", "task detail (on the Tasks pane)"),
    Command(
        "",
        "Tasks: order, Runtime",
        "",
        "tasks",
        "latest activity first, Time is that activity's ('N new ↑': rows above a moved "
        "cursor, Home to see them); "
        "Runtime ▸3m12s: still running, !12m05s: longer than [console] long_running_after",
    ),
    Command(
        "space",
        "Space",
        "toggle_mark",
        "tasks",
        "mark / unmark the highlighted task: r t k R then act on every marked task "
        "(Tasks pane; * in the State column, the count in the status line)",
    ),
    Command(
        "asterisk",
        "*",
        "mark_all",
        "tasks",
        "mark every task the filter shows, after you confirm the count (Tasks pane)",
    ),
    Command(
        "s",
        "s",
        "cycle_order",
        "tasks",
        "order the tasks by latest activity, sent time, runtime or state (Tasks pane)",
    ),
    Command(
        "r",
        "r",
        "revoke('revoke')",
        "tasks",
        "revoke the highlighted task, or every marked one (Tasks pane)",
        mutating=True,
        show=True,
        footer="Revoke",
    ),
    Command(
        "t",
        "t",
        "revoke('terminate')",
        "tasks",
        "terminate the highlighted running task with SIGTERM, or every marked one (Tasks pane)",
        mutating=True,
    ),
    Command(
        "k",
        "k",
        "revoke('kill')",
        "tasks",
        "kill the highlighted running task with SIGKILL, or every marked one (Tasks pane)",
        mutating=True,
    ),
    Command(
        "R",
        "R",
        "retry",
        "tasks",
        "retry the highlighted task, or every marked one: same name, args, kwargs, queue and "
        "priority, args read from the result backend (Tasks pane)",
        mutating=True,
        show=True,
        footer="Retry",
    ),
    # ---- the Workers pane -------------------------------------------------------------
    Command(
        "plus",
        "+ / -",
        "resize(1)",
        "workers",
        "grow / shrink the highlighted worker's pool by one (Workers pane)",
        mutating=True,
        show=True,
        footer="Grow",
    ),
    Command(
        "minus",
        "",
        "resize(-1)",
        "workers",
        "shrink the highlighted worker's pool by one (Workers pane)",
        mutating=True,
        show=True,
        footer="Shrink",
    ),
    Command(
        "equals_sign",
        "=",
        "resize_form",
        "workers",
        "grow or shrink by N, this or all workers (Workers pane)",
        mutating=True,
    ),
    Command(
        "a",
        "a",
        "autoscale",
        "workers",
        "set autoscale max,min, this or all workers (Workers pane)",
        mutating=True,
    ),
    Command(
        "",
        "Enter",
        "worker_detail",
        "workers",
        "worker detail: stats, active/reserved/scheduled and registered tasks, queues (Workers pane)",
    ),
    Command("", "", "resize_all(1)", "console", "grow every worker's pool by one", mutating=True),
    Command(
        "", "", "resize_all(-1)", "console", "shrink every worker's pool by one", mutating=True
    ),
    Command("", "", "autoscale_all", "console", "set autoscale on every worker", mutating=True),
    # What the Workers pane's counters mean (help only: no key, no action).
    Command(
        "",
        "Workers: Conc",
        "",
        "workers",
        "pool processes now; '(auto 1–4)': the autoscaler's min–max; '+1': grown by hand",
    ),
    Command(
        "",
        "Workers: Done Fail",
        "",
        "workers",
        "tasks the worker succeeded / failed, both counted from the events this console saw "
        "since it started (a worker restart does not reset them; running tasks are not Done)",
    ),
    # ---- the Queues pane --------------------------------------------------------------
    Command(
        "p",
        "p",
        "pause_queue",
        "queues",
        "pause the highlighted queue on the workers consuming it (⏸; ⏸ 1/2: paused on 1 of 2), "
        "or resume it on exactly those (Queues pane)",
        mutating=True,
        show=True,
        footer="Pause",
    ),
    Command(
        "x",
        "x",
        "purge_queue",
        "queues",
        "purge the highlighted queue, after typing its name (Queues pane)",
        mutating=True,
        show=True,
        footer="Purge",
    ),
    Command(
        "",
        "Enter",
        "open_jobs",
        "queues",
        "the jobs waiting in the highlighted queue, by priority band (Queues pane)",
    ),
    # ---- a queue's waiting jobs (Enter on the Queues pane) ------------------------------
    Command(
        "d",
        "d",
        "delete_job",
        "queue_jobs",
        "delete the highlighted waiting job from its queue, after you confirm (queue's jobs)",
        mutating=True,
        show=True,
        footer="Delete",
    ),
    Command(
        "r",
        "r",
        "revoke_job",
        "queue_jobs",
        "revoke the highlighted waiting job: it stays queued, a worker discards it (queue's jobs)",
        mutating=True,
        show=True,
        footer="Revoke",
    ),
    Command(
        "circumflex_accent",
        "^",
        "move_job_to_front",
        "queue_jobs",
        "move the highlighted waiting job to the front: priority 10, runs next, after you "
        "confirm (queue's jobs)",
        mutating=True,
        show=True,
        footer="To front",
    ),
    Command(
        "pagedown",
        "PgDn / PgUp",
        "page(1)",
        "queue_jobs",
        "next / previous page of waiting jobs (queue's jobs)",
        priority=True,
    ),
    Command("pageup", "", "page(-1)", "queue_jobs", "previous page of waiting jobs", priority=True),
    # ---- failures grouped (f) ------------------------------------------------------------
    Command(
        "",
        "Enter",
        "filter_group",
        "failures",
        "show the highlighted group's tasks in the Tasks pane "
        "(state:failure name:… exc:…; failures grouped)",
    ),
    Command(
        "R",
        "R",
        "retry_group",
        "failures",
        "retry every task of the highlighted group, after a confirm with the count "
        "(failures grouped)",
        mutating=True,
        show=True,
        footer="Retry group",
    ),
    Command(
        "H",
        "H",
        "history",
        "failures",
        "search the persisted history for the highlighted group's older failures "
        "(failures grouped)",
        show=True,
        footer="History",
    ),
    # ---- the worker detail (Enter on the Workers pane) --------------------------------
    Command(
        "g,f5",
        "g / F5",
        "refresh",
        "worker_detail",
        "re-read the worker (worker detail)",
        show=True,
        footer="Refresh",
    ),
    Command(
        "c",
        "c",
        "consume",
        "worker_detail",
        "start or stop consuming a queue on this worker only (worker detail)",
        mutating=True,
        show=True,
        footer="Consume",
    ),
    Command(
        "L",
        "L",
        "limits",
        "worker_detail",
        "set a task type's rate limit or soft/hard time limits on this worker (worker detail)",
        mutating=True,
        show=True,
        footer="Limits",
    ),
    Command(
        "P",
        "P",
        "pool_restart",
        "worker_detail",
        "restart this worker's pool, after you confirm (worker detail; needs worker_pool_restarts)",
        mutating=True,
        show=True,
        footer="Pool restart",
    ),
    Command(
        "S",
        "S",
        "shutdown",
        "worker_detail",
        "shut this worker down, after you type its name (worker detail)",
        mutating=True,
        show=True,
        footer="Shutdown",
    ),
    # ---- jobs taken but not acknowledged (u) ------------------------------------------
    Command(
        "Q",
        "Q",
        "requeue_unacked",
        "unacked",
        "requeue the highlighted unacknowledged job now, only when its worker is offline "
        "(no heartbeat, no ping answer), after you confirm (unacked jobs)",
        mutating=True,
        show=True,
        footer="Requeue",
    ),
    Command(
        "pagedown",
        "PgDn / PgUp",
        "page(1)",
        "unacked",
        "next / previous page of unacknowledged jobs (unacked jobs)",
        priority=True,
    ),
    Command(
        "pageup", "", "page(-1)", "unacked", "previous page of unacknowledged jobs", priority=True
    ),
)


def bindings(scope: Scope, commands: Iterable[Command] = COMMANDS) -> list[BindingType]:
    """The ``BINDINGS`` of the widget that owns ``scope`` (the App for ``app``)."""
    out: list[BindingType] = []
    for cmd in commands:
        if cmd.scope == scope and cmd.key and cmd.action:
            out.append(
                Binding(
                    cmd.key,
                    cmd.action,
                    cmd.footer or cmd.description,
                    show=cmd.show,
                    priority=cmd.priority,
                )
            )
    return out


#: How the help marks a command that read-only mode disables.
READ_ONLY_NOTE = " (disabled: read-only)"


def help_rows(
    commands: Iterable[Command] = COMMANDS, read_only: bool = False
) -> list[tuple[str, str]]:
    """``(keys, what it does)`` for the help screen, in registry order; in read-only mode the
    commands that change the cluster say they are disabled."""
    return [
        (c.keys, c.description + (READ_ONLY_NOTE if read_only and c.mutating else ""))
        for c in commands
        if c.keys
    ]


def palette_commands(
    commands: Iterable[Command] = COMMANDS, read_only: bool = False
) -> list[Command]:
    """The commands the palette lists (those with an action to run); read-only mode omits the
    commands that change the cluster."""
    return [
        c
        for c in commands
        if c.palette
        and c.action
        and c.action != "command_palette"
        and not (read_only and c.mutating)
    ]


def mutating_actions(commands: Iterable[Command] = COMMANDS) -> frozenset[str]:
    """Action names that change the cluster (refused and hidden in read-only mode)."""
    return frozenset(c.name for c in commands if c.mutating)


def command_for_key(
    key: str, focused_pane: str | None, commands: Iterable[Command] = COMMANDS
) -> Command | None:
    """The console or pane command ``key`` runs with ``focused_pane`` focused (None: none)."""
    for c in commands:
        if c.action and key in c.key.split(",") and c.scope in ("console", focused_pane):
            return c
    return None


def read_only_refusal(command: Command) -> str:
    """What the console says when a command that changes the cluster is pressed in read-only."""
    what = command.description.split(":", 1)[0].split(" (", 1)[0]
    return f"read-only: {what} is disabled ({command.keys or command.key})"


def pane_of_key(key: str, commands: Iterable[Command] = COMMANDS) -> Command | None:
    """The pane command bound to ``key``, if any (to say where a key works when pressed elsewhere)."""
    for c in commands:
        if c.scope in PANES and key in c.key.split(","):
            return c
    return None


_MUTATING = mutating_actions()


def enabled(action: str, read_only: bool) -> bool:
    """For ``check_action``: False (hidden from the footer, not run) for a command that changes
    the cluster when the console is read-only; the console screen says why on the key press."""
    return not (read_only and action in _MUTATING)
