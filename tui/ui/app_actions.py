"""The console's mutating actions, from keys and the command palette: validate, confirm,
send in a thread worker, show the outcome.  Mixed into :class:`tui.ui.app.AfirgenApp`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual import work
from textual.screen import Screen

from afirgen_tasks.routing import QUEUES
from tui.ui.lifecycle import while_panes_exist
from tui.ui.messages import ActionCompleted
from tui.ui.widgets.keyed_table import KeyedTable
from tui.ui.widgets.panes import TasksPane


class ActionsMixin:
    """Enqueue, revoke/terminate/kill, pool resize, autoscale, pause/resume, purge."""

    # ---- mutating actions (issue: validated, confirmed, audited) ------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Grey out pane-specific keys in the footer when another pane has focus.
        pane = self.PANE_ACTIONS.get(action)
        if pane is None or not isinstance(self.screen, Screen) or self.screen is not self.screen_stack[0]:
            return True
        focused = self.focused
        return True if focused is not None and focused.id == pane else None

    def _pane_key(self, pane: str, what: str) -> str | None:
        table = self.query_one(f"#{pane}", KeyedTable)
        key = table.cursor_key() if self.focused is table else None
        if key is None:
            self.notify(f"highlight a {what} in the {pane.capitalize()} pane first "
                        f"({ {'queues': 1, 'workers': 2, 'tasks': 3}[pane]} focuses it)", severity="warning")
        return key

    def _refuse_read_only(self, action: str, target: str) -> bool:
        """In read-only mode: say why (and audit the refusal) instead of acting."""
        if not self.read_only:
            return False
        self.run_action_worker(action, target, None)
        return True

    def action_enqueue(self) -> None:
        """Open the enqueue form."""
        if self._refuse_read_only("enqueue", "-"):
            return
        if self.celery_app is None:
            self.notify("no broker connection to send jobs to", severity="error")
            return
        from afirgen_tasks.celery_app import task_names
        from tui.ui.screens.forms import EnqueueScreen

        queues = sorted(set(QUEUES) | set(self.queue_rows))
        self.push_screen(EnqueueScreen(self.celery_app, task_names(self.celery_app), queues), self._enqueue_chosen)

    def _enqueue_chosen(self, req: Any) -> None:
        if req is None:
            self.notify("enqueue cancelled: nothing sent", timeout=3)
            return
        self.last_enqueue = req
        self.run_action_worker("enqueue", req.task, lambda: self.actions.enqueue(req))

    def action_repeat_enqueue(self) -> None:
        """Send the previous job again (a new task id)."""
        if self._refuse_read_only("enqueue", "-"):
            return
        if self.last_enqueue is None:
            self.notify("nothing to repeat yet: enqueue a job with e first", severity="warning")
            return
        req = self.last_enqueue
        self.run_action_worker("enqueue", req.task, lambda: self.actions.enqueue(req))

    def action_revoke(self, mode: str) -> None:
        """Revoke, terminate (SIGTERM) or kill (SIGKILL) the highlighted task, after confirmation."""
        uuid = self._pane_key("tasks", "task")
        if uuid is None:
            return
        task = self.model.get_task(uuid)
        state = task.state if task is not None else None
        name = (task.short_name if task is not None else "?")
        if self.read_only or (task is not None and task.is_finished):
            # the action layer says why (read-only, or finished) and audits it; nothing is sent
            self.run_action_worker(mode, uuid, lambda: self.actions.revoke(uuid, state, mode))
            return
        verbs = {"revoke": "Revoke", "terminate": "Terminate (SIGTERM)", "kill": "Kill (SIGKILL)"}
        effect = {"revoke": "a waiting job is discarded when it reaches a worker; a scheduled one never runs",
                  "terminate": "the worker sends SIGTERM to the process running it",
                  "kill": "the worker sends SIGKILL to the process running it (no clean-up)"}[mode]
        from tui.ui.screens.forms import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if not yes:
                self.notify(f"{mode} cancelled: nothing sent", timeout=3)
                return
            self.model.mark_revoke_requested(uuid)
            self.tick()
            self.run_action_worker(mode, uuid, lambda: self.actions.revoke(uuid, state, mode))

        self.push_screen(ConfirmScreen(f"{verbs[mode]} task", f"{verbs[mode]} {name} [{uuid}] ({state})?\n{effect}."),
                         answered)

    def _worker_targets(self, all_workers: bool) -> list[str]:
        if all_workers:
            return [w.hostname for w in self.model.workers() if w.online]
        key = self._pane_key("workers", "worker")
        return [key] if key else []

    def _pool_sizes(self, hosts: list[str]) -> dict[str, int | None]:
        """Each worker's pool size as the Workers pane knows it (``inspect().stats()``); None
        when not inspected yet.  The action layer refuses a shrink that would empty a pool."""
        sizes: dict[str, int | None] = {}
        for host in hosts:
            worker = self.model.get_worker(host)
            sizes[host] = worker.concurrency if worker is not None else None
        return sizes

    def _resize(self, hosts: list[str], delta: int) -> None:
        sizes = self._pool_sizes(hosts)  # read on the UI thread, where the model lives
        self.run_action_worker("pool_grow" if delta > 0 else "pool_shrink", ",".join(hosts),
                               lambda: self.actions.pool_resize(hosts, delta, current=sizes), reinspect=True)

    def action_resize(self, delta: int, all_workers: bool = False) -> None:
        """Grow (+) or shrink (-) the highlighted worker's pool (or every worker's)."""
        hosts = self._worker_targets(all_workers)
        if not hosts:
            return
        self._resize(hosts, delta)

    def action_resize_all(self, delta: int) -> None:
        """Grow or shrink every online worker's pool (command palette)."""
        self.action_resize(delta, all_workers=True)

    def action_resize_form(self) -> None:
        """Ask for N (negative shrinks) and whether to apply to all workers."""
        target = self._pane_key("workers", "worker")
        if target is None:
            return
        from tui.ui.screens.forms import NumberFormScreen

        def chosen(values: dict[str, Any] | None) -> None:
            if values is not None:
                hosts = self._worker_targets(values["all"]) if values["all"] else [target]
                self._resize(hosts, values["n"])

        self.push_screen(NumberFormScreen("Resize pool", [("n", "By N", "1")], target,
                                          lambda v: None if v["n"] and abs(v["n"]) <= 64 else
                                          "N must be between -64 and 64, not 0"), chosen)

    def action_autoscale(self, all_workers: bool = False) -> None:
        """Set autoscale max,min on the highlighted worker (or all, from the form)."""
        target = "all workers" if all_workers else self._pane_key("workers", "worker")
        if target is None:
            return
        worker = self.model.get_worker(target) if not all_workers else None
        if worker is not None and worker.pool is not None and worker.autoscale is None:
            # Known from stats: no autoscaler, and Celery cannot start one at runtime.
            self.notify(f"{target} runs without an autoscaler and Celery cannot add one to a running worker: "
                        "restart it with --autoscale=MAX,MIN (or CELERY_WORKER_AUTOSCALE); "
                        "+ - = resize its pool now", severity="warning")
            return
        cur = worker.autoscale if worker is not None and worker.autoscale else (8, 2)
        from tui.ui.screens.forms import NumberFormScreen

        def chosen(values: dict[str, Any] | None) -> None:
            if values is not None:
                hosts = self._worker_targets(True) if (values["all"] or all_workers) else [target]
                self.run_action_worker("autoscale", ",".join(hosts),
                                       lambda: self.actions.autoscale(hosts, values["max"], values["min"]),
                                       reinspect=True)

        def check(v: dict[str, int]) -> str | None:
            if not 1 <= v["max"] <= 512 or not 0 <= v["min"] <= v["max"]:
                return "need 1 <= max <= 512 and 0 <= min <= max"
            return None

        self.push_screen(NumberFormScreen("Autoscale", [("max", "Max", str(cur[0])), ("min", "Min", str(cur[1]))],
                                          target, check), chosen)

    def action_autoscale_all(self) -> None:
        """Set autoscale on every online worker (command palette)."""
        self.action_autoscale(all_workers=True)

    def action_pause_queue(self) -> None:
        """Pause (or resume) consumption of the highlighted queue on every worker."""
        queue = self._pane_key("queues", "queue")
        if queue is None:
            return
        resume = queue in self.paused_queues
        action = "resume_queue" if resume else "pause_queue"
        self.run_action_worker(action, queue, lambda: self.actions.set_consuming(queue, consume=resume), reinspect=True)

    def action_purge_queue(self) -> None:
        """Purge the highlighted queue after the operator types its name."""
        queue = self._pane_key("queues", "queue")
        if queue is None:
            return
        if self._refuse_read_only("purge", queue):
            return
        row = self.queue_rows.get(queue)
        waiting = row.waiting if row is not None else None
        count = f"{waiting:,} waiting message(s)" if waiting is not None else "every waiting message (count unknown)"
        from tui.ui.screens.forms import TypedConfirmScreen

        def typed(name: str | None) -> None:
            if name is None:
                self.notify("purge cancelled: nothing deleted", timeout=3)
                return
            # Tasks sent before this instant were in the queue the purge empties.
            self.purge_sent_at[queue] = time.time()
            self.run_action_worker("purge", queue, lambda: self.actions.purge(queue, name, waiting))

        self.push_screen(TypedConfirmScreen(f"Purge {queue}",
                                            f"This deletes {count} from {queue}. Reserved (running) jobs are "
                                            f"not affected. Type the queue name to confirm.", queue), typed)

    @work(thread=True, group="actions")
    def run_action_worker(self, action: str, target: str, call: Callable[[], Any] | None,
                          reinspect: bool = False) -> None:
        """Run an action in a thread worker; the outcome comes back as :class:`ActionCompleted`.

        ``call`` None means "refuse": the action layer audits the refusal and says why.
        """
        # runs in a worker thread: the broker may be slow; the outcome is posted back
        from tui.actions import Outcome, ReadOnlyRefused, ValidationFailed

        try:
            if self.read_only or call is None:
                self.actions.guard(action, target, {})
                outcome = Outcome(False, f"{action}: not available")
            else:
                outcome = call()
        except ReadOnlyRefused as exc:
            outcome = Outcome(False, str(exc))
        except ValidationFailed as exc:
            outcome = Outcome(False, "; ".join(exc.errors.values()))
        except Exception as exc:  # never into the event loop: shown as words
            outcome = Outcome(False, self.redact(f"{action} failed: {type(exc).__name__}: {exc}"))
        self.post_message(ActionCompleted(action, target, outcome, reinspect))

    @while_panes_exist
    def on_action_completed(self, message: ActionCompleted) -> None:
        out = message.outcome
        self.action_log.append(message)
        text = out.message
        if out.replies:
            text += "\n" + "\n".join(f"{h}: {w}" for h, w in sorted(out.replies.items()))
        severity = "information" if out.ok else "warning" if out.warning else "error"
        self.notify(self.redact(text), severity=severity, timeout=6 if out.ok else 10)
        if message.action == "enqueue" and out.ok and out.task_id:
            req = self.last_enqueue
            self.model.merge_task_info(out.task_id, name=req.task if req else None, queue=req.queue if req else None,
                                       priority=req.priority if req else None, state="SENT")
            tasks = self.query_one("#tasks", TasksPane)
            previous, tasks.highlight_uuid = tasks.highlight_uuid, out.task_id
            self.tick()
            # redraw both rows: the mark moves even when the task-sent event came first
            for uuid in (previous, out.task_id):
                task = self.model.get_task(uuid) if uuid else None
                if task is not None and tasks.has_key(uuid):
                    tasks.upsert(uuid, tasks.cells(task))
            tasks.select(out.task_id)
        if message.action in ("revoke", "terminate", "kill") and not out.ok and not out.warning:
            task = self.model.get_task(message.target)
            if task is not None and task.revoke_requested and not task.is_finished:
                # nobody took the request: do not leave "revoke requested" on the row
                task.revoke_requested = False
                tasks = self.query_one("#tasks", TasksPane)
                if tasks.has_key(task.uuid):
                    tasks.upsert(task.uuid, tasks.cells(task))
        if message.action == "purge" and out.ok:
            sent_at = self.purge_sent_at.pop(message.target, None)
            if sent_at is not None and self.model.mark_purged(message.target, sent_at):
                self.tick()
        if message.action in ("pause_queue", "resume_queue") and out.ok:
            if message.action == "pause_queue":
                self.paused_queues.add(message.target)
            else:
                self.paused_queues.discard(message.target)
            self._show_queues()
        if message.action == "purge" and out.ok:
            self.poll_queues()
        if message.reinspect:
            self.inspect_workers()
        self._update_status()
