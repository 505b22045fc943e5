"""The console's mutating actions: from a key (or the palette) to a confirmed, audited command.

:class:`ActionRunner` is a plain object with declared inputs: the console screen it works
for (its model, panes and polls), the action layer (:class:`tui.actions.Actions`, which
validates, audits and sends through :mod:`tui.sources.control`) and the read-only flag.  It
opens the confirm dialogs, runs each send in a thread worker and shows the outcome.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from celery import Celery

from afirgen_tasks.routing import QUEUES
from tui.actions import Actions, Outcome, ReadOnlyRefused, ValidationFailed
from tui.sources.queue_jobs import QueuedJob
from tui.sources.unacked import UnackedJob
from tui.ui.commands import PANE_NUMBER, Command, read_only_refusal
from tui.ui.messages import ActionCompleted

if TYPE_CHECKING:
    from textual.widget import AwaitMount

    from tui.ui.console import ConsoleScreen

#: actions that change what a queue's jobs screen shows
JOB_ACTIONS = frozenset({"delete_job", "move_job_to_front", "revoke"})

#: how a bulk action on the marked tasks names its target ("12 marked tasks")
MARKED = "marked tasks"

#: pane -> what its rows are, for "highlight a ... first"
_ROW_NOUN = {"queues": "queue", "workers": "worker", "tasks": "task"}


class ActionRunner:
    """Enqueue, revoke/terminate/kill, pool resize, autoscale, pause/resume, purge."""

    def __init__(
        self, screen: ConsoleScreen, actions: Actions, read_only: bool, celery_app: Celery | None
    ) -> None:
        self.screen = screen
        self.actions = actions
        self.read_only = read_only
        self.celery_app = celery_app
        self.model = screen.model
        #: every outcome, in order (tests and the incident report read it)
        self.action_log: list[ActionCompleted] = []
        self.last_enqueue: Any = None
        #: queue -> when this console sent its purge (the tasks sent before it are marked PURGED)
        self.purge_sent_at: dict[str, float] = {}

    # ---- dispatch ------------------------------------------------------------------------
    def request(self, action: str, args: tuple[Any, ...], target: str | None) -> None:
        """A pane's command on its highlighted row (``target``; None: nothing highlighted)."""
        if action in ("revoke", "retry") and self.screen.tasks_pane.marked:
            # marked tasks: the key acts on every one of them, not on the highlighted row
            marked = self.marked_tasks()
            if action == "retry":
                self.retry_tasks(marked, bulk=True, from_marks=True)
            else:
                self.revoke_tasks(marked, str(args[0]), from_marks=True)
            return
        pane = {
            "revoke": "tasks",
            "retry": "tasks",
            "resize": "workers",
            "resize_form": "workers",
            "autoscale": "workers",
            "pause_queue": "queues",
            "purge_queue": "queues",
        }.get(action)
        if pane is None:
            self.screen.notify(f"unknown command {action!r}", severity="error")
            return
        if target is None:
            self.screen.notify(
                f"highlight a {_ROW_NOUN[pane]} in the {pane.capitalize()} pane first "
                f"({PANE_NUMBER[pane]} focuses it)",
                severity="warning",
            )
            return
        if action == "revoke":
            self.revoke(target, *args)
        elif action == "retry":
            self.retry_tasks([target])
        elif action == "resize":
            self.resize(args[0], target=target)
        elif action == "resize_form":
            self.resize_form(target)
        elif action == "autoscale":
            self.autoscale(target)
        elif action == "pause_queue":
            self.pause(target)
        elif action == "purge_queue":
            self.purge(target)

    def refuse_read_only(self, command: Command, target: str | None) -> None:
        """A key that changes the cluster, pressed in read-only mode: say so at once, audit it."""
        self.screen.notify(read_only_refusal(command), severity="warning", timeout=5)
        action = command.name
        if action == "revoke":
            action = command.action.split("'")[1]  # revoke('kill') -> kill, as when it is sent
        elif action == "resize":
            action = "pool_shrink" if "-" in command.action else "pool_grow"
        elif action == "resize_form":
            action = "pool_resize"
        elif action == "purge_queue":
            action = "purge"
        elif action == "pause_queue" and target in self.screen.pauses:
            action = "resume_queue"  # p on a paused queue resumes it
        self.run(action, target or "-", None, quiet=True)

    def _refuse_read_only(self, action: str, target: str) -> bool:
        """In read-only mode: say why (and audit the refusal) instead of acting."""
        if not self.read_only:
            return False
        self.run(action, target, None)
        return True

    # ---- enqueue -------------------------------------------------------------------------
    def enqueue(self) -> AwaitMount | None:
        """Open the enqueue form, filled with the last job sent (if any) to edit or send again.

        Returns what to await for the form to be mounted (None: no form opened)."""
        if self._refuse_read_only("enqueue", "-"):
            return None
        if self.celery_app is None:
            self.screen.notify("no broker connection to send jobs to", severity="error")
            return None
        from afirgen_tasks.factory import task_names
        from tui.ui.screens.forms import EnqueueScreen

        queues = sorted(set(QUEUES) | set(self.screen.queue_rows))
        return self.screen.app.push_screen(
            EnqueueScreen(
                self.celery_app,
                task_names(self.celery_app),
                queues,
                initial=self._last_job_values(),
            ),
            self._enqueue_chosen,
        )

    def _last_job_values(self) -> dict[str, Any] | None:
        """The last job sent, as the enqueue form's fields (None before the first send)."""
        req = self.last_enqueue
        if req is None:
            return None
        values: dict[str, Any] = {
            "task": req.task,
            "args": json.dumps(req.args),
            "kwargs": json.dumps(req.kwargs),
            "queue": req.queue,
            "priority": req.priority,
        }
        if req.countdown is not None:
            values["countdown"] = f"{req.countdown:g}"
        elif req.eta is not None and req.eta > datetime.now(UTC):
            values["eta"] = req.eta.isoformat(timespec="seconds")
        return values

    def _enqueue_chosen(self, req: Any) -> None:
        if req is None:
            self.screen.notify("enqueue cancelled: nothing sent", timeout=3)
            return
        self.last_enqueue = req
        self.run("enqueue", req.task, lambda: self.actions.enqueue(req))

    # ---- tasks ---------------------------------------------------------------------------
    def revoke(self, uuid: str, mode: str) -> None:
        """Revoke, terminate (SIGTERM) or kill (SIGKILL) ``uuid``, after confirmation."""
        task = self.model.get_task(uuid)
        state = task.state if task is not None else None
        name = task.short_name if task is not None else "?"
        if self.read_only or (task is not None and task.is_finished):
            # the action layer says why (read-only, or finished) and audits it; nothing is sent
            self.run(mode, uuid, lambda: self.actions.revoke(uuid, state, mode))
            return
        verbs = {"revoke": "Revoke", "terminate": "Terminate (SIGTERM)", "kill": "Kill (SIGKILL)"}
        effect = {
            "revoke": "a waiting job is discarded when it reaches a worker; a scheduled one never runs",
            "terminate": "the worker sends SIGTERM to the process running it",
            "kill": "the worker sends SIGKILL to the process running it (no clean-up)",
        }[mode]
        from tui.ui.screens.forms import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if not yes:
                self.screen.notify(f"{mode} cancelled: nothing sent", timeout=3)
                return
            self.model.mark_revoke_requested(uuid)
            self.screen.tick()
            self.run(mode, uuid, lambda: self.actions.revoke(uuid, state, mode))

        self.screen.app.push_screen(
            ConfirmScreen(
                f"{verbs[mode]} task", f"{verbs[mode]} {name} [{uuid}] ({state})?\n{effect}."
            ),
            answered,
        )

    def marked_tasks(self) -> list[str]:
        """The marked tasks, in the order the pane shows them (those not shown last)."""
        marked = self.screen.tasks_pane.marked
        shown = [u for u in self.screen.tasks_pane.order if u in marked]
        return shown + sorted(marked.difference(shown))

    def _describe(self, uuids: Sequence[str], limit: int = 8) -> str:
        """``3 × send_email (email)`` lines: what a bulk confirm lists."""
        kinds: Counter[tuple[str, str]] = Counter()
        for uuid in uuids:
            task = self.model.get_task(uuid)
            name = task.short_name if task is not None else "?"
            queue = (task.queue if task is not None else None) or "?"
            kinds[(name, queue)] += 1
        lines = [f"  {n:,} × {name} ({queue})" for (name, queue), n in kinds.most_common(limit)]
        if len(kinds) > limit:
            rest = sum(n for _, n in kinds.most_common()[limit:])
            lines.append(f"  … and {rest:,} more of {len(kinds) - limit:,} other kind(s)")
        return "\n".join(lines)

    def revoke_tasks(self, uuids: Sequence[str], mode: str, from_marks: bool = False) -> None:
        """Revoke, terminate or kill every task of ``uuids``: one confirm listing them, then one
        broadcast; each is validated and audited (see :meth:`Actions.revoke_many`).
        ``from_marks``: they are the marked tasks (the marks are cleared once sent)."""
        uuids = list(uuids)
        target = f"{len(uuids)} {MARKED if from_marks else 'tasks'}"
        if not uuids:
            return
        tasks = [(u, t.state if (t := self.model.get_task(u)) is not None else None) for u in uuids]
        if self.read_only:
            self.run(mode, target, lambda: self.actions.revoke_many(tasks, mode))
            return
        finished = sum(1 for u in uuids if (t := self.model.get_task(u)) and t.is_finished)
        verbs = {"revoke": "Revoke", "terminate": "Terminate (SIGTERM)", "kill": "Kill (SIGKILL)"}
        note = f"\n{finished:,} of them finished already: those are refused." if finished else ""
        from tui.ui.screens.forms import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if not yes:
                self.screen.notify(f"{mode} cancelled: nothing sent", timeout=3)
                return
            for uuid in uuids:
                self.model.mark_revoke_requested(uuid)
            self.screen.tick()
            self.run(f"bulk_{mode}", target, lambda: self.actions.revoke_many(tasks, mode))

        self.screen.app.push_screen(
            ConfirmScreen(
                f"{verbs[mode]} {len(uuids):,} marked tasks",
                f"{verbs[mode]} {len(uuids):,} marked task(s)?\n{self._describe(uuids)}{note}",
            ),
            answered,
        )

    def retry_tasks(
        self, uuids: Sequence[str], bulk: bool = False, from_marks: bool = False
    ) -> None:
        """Retry ``uuids`` (the highlighted task, the marked ones, a failure group): after one
        confirm listing the count, names and queues, each is sent again with the same name,
        args, kwargs, queue and priority, its args read from the result backend (refused,
        saying why, where they were not stored).  Each send is validated and audited; one
        outcome sums them up (``retried 12 of 12; 0 refused``); ``bulk`` (the marked tasks,
        a group) always so, even for one task.  ``from_marks``: they are the marked tasks (the
        marks are cleared once sent).  Another screen (the failure groups) calls this."""
        uuids = [u for u in dict.fromkeys(uuids) if u]
        target = f"{len(uuids)} {MARKED if from_marks else 'tasks'}"
        if not uuids:
            self.screen.notify("no task to retry", severity="warning")
            return
        if self._refuse_read_only("retry", uuids[0] if len(uuids) == 1 else target):
            return
        if self.celery_app is None:
            self.screen.notify("no broker connection to send jobs to", severity="error")
            return
        # read on the UI thread, where the model lives
        known = [
            (
                u,
                t.name if (t := self.model.get_task(u)) is not None else None,
                t.queue if t is not None else None,
                t.priority if t is not None else None,
            )
            for u in uuids
        ]
        queues = sorted(set(QUEUES) | set(self.screen.queue_rows))
        fetch = self.screen.sources.fetch_stored_job
        from tui.ui.screens.forms import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if not yes:
                self.screen.notify("retry cancelled: nothing sent", timeout=3)
                return
            if len(known) == 1 and not bulk:
                u, name, queue, prio = known[0]
                self.run(
                    "retry", u, lambda: self.actions.retry(u, fetch, name, queue, prio, queues)
                )
            else:
                self.run(
                    "bulk_retry",
                    target,
                    lambda: self._retry_each(known, fetch, queues),
                )

        if len(uuids) == 1:
            task = self.model.get_task(uuids[0])
            what = (
                f"Retry {task.short_name if task else '?'} [{uuids[0]}] "
                f"({task.state if task else 'unknown'}) on {(task.queue if task else None) or '?'}"
                f" at priority {(task.priority if task else None) or '?'}?"
            )
        else:
            what = f"Retry {len(uuids):,} tasks?\n{self._describe(uuids)}"
        self.screen.app.push_screen(
            ConfirmScreen(
                "Retry task" if len(uuids) == 1 else f"Retry {len(uuids):,} tasks",
                f"{what}\nEach is sent again with the args and kwargs the result backend "
                "stored; one whose args were not stored is refused.",
            ),
            answered,
        )

    def _retry_each(
        self,
        known: list[tuple[str, str | None, str | None, int | None]],
        fetch: Callable[[str], Any],
        queues: list[str],
    ) -> Outcome:
        # runs in a worker thread: one backend read and one send per task, each audited
        retried: dict[str, str] = {}
        refused: dict[str, str] = {}
        for uuid, name, queue, prio in known:
            try:
                out = self.actions.retry(uuid, fetch, name, queue, prio, queues)
            except (ValidationFailed, ReadOnlyRefused) as exc:
                out = Outcome(False, str(exc))
            if out.ok:
                retried.update(out.retried)
            else:
                refused[uuid[:8]] = out.message
        total = len(known)
        return Outcome(
            len(retried) == total,
            f"retried {len(retried):,} of {total:,}; {len(refused):,} refused",
            replies=refused,
            count=len(retried),
            warning=0 < len(retried) < total,
            retried=retried,
        )

    # ---- workers -------------------------------------------------------------------------
    def _worker_targets(self, all_workers: bool, target: str | None) -> list[str]:
        if all_workers:
            return [w.hostname for w in self.model.workers() if w.online]
        return [target] if target else []

    def _pool_sizes(self, hosts: list[str]) -> dict[str, int | None]:
        """Each worker's pool size as the Workers pane knows it (``inspect().stats()``); None
        when not inspected yet.  The action layer refuses a shrink that would empty a pool."""
        sizes: dict[str, int | None] = {}
        for host in hosts:
            worker = self.model.get_worker(host)
            sizes[host] = worker.concurrency if worker is not None else None
        return sizes

    def resize(self, delta: int, target: str | None = None, all_workers: bool = False) -> None:
        """Grow (+) or shrink (-) ``target``'s pool (or every online worker's)."""
        hosts = self._worker_targets(all_workers, target)
        if not hosts:
            return
        sizes = self._pool_sizes(hosts)  # read on the UI thread, where the model lives
        self.run(
            "pool_grow" if delta > 0 else "pool_shrink",
            ",".join(hosts),
            lambda: self.actions.pool_resize(hosts, delta, current=sizes),
            reinspect=True,
        )

    def resize_form(self, target: str) -> None:
        """Ask for N (negative shrinks) and whether to apply to all workers."""
        from tui.ui.screens.forms import NumberFormScreen

        def chosen(values: dict[str, Any] | None) -> None:
            if values is not None:
                self.resize(values["n"], target, all_workers=bool(values["all"]))

        self.screen.app.push_screen(
            NumberFormScreen(
                "Resize pool",
                [("n", "By N", "1")],
                target,
                lambda v: (
                    None if v["n"] and abs(v["n"]) <= 64 else "N must be between -64 and 64, not 0"
                ),
            ),
            chosen,
        )

    def autoscale(self, target: str | None, all_workers: bool = False) -> None:
        """Set autoscale max,min on ``target`` (or all, from the form)."""
        label = "all workers" if all_workers else target
        if label is None:
            return
        worker = self.model.get_worker(label) if not all_workers else None
        if worker is not None and worker.pool is not None and worker.autoscale is None:
            # Known from stats: no autoscaler, and Celery cannot start one at runtime.
            self.screen.notify(
                f"{label} runs without an autoscaler and Celery cannot add one to a running worker: "
                "restart it with --autoscale=MAX,MIN (or CELERY_WORKER_AUTOSCALE); "
                "+ - = resize its pool now",
                severity="warning",
            )
            return
        cur = worker.autoscale if worker is not None and worker.autoscale else (8, 2)
        from tui.ui.screens.forms import NumberFormScreen

        def chosen(values: dict[str, Any] | None) -> None:
            if values is not None:
                hosts = self._worker_targets(bool(values["all"]) or all_workers, target)
                self.run(
                    "autoscale",
                    ",".join(hosts),
                    lambda: self.actions.autoscale(hosts, values["max"], values["min"]),
                    reinspect=True,
                )

        def check(v: dict[str, int]) -> str | None:
            if not 1 <= v["max"] <= 512 or not 0 <= v["min"] <= v["max"]:
                return "need 1 <= max <= 512 and 0 <= min <= max"
            return None

        self.screen.app.push_screen(
            NumberFormScreen(
                "Autoscale",
                [("max", "Max", str(cur[0])), ("min", "Min", str(cur[1]))],
                label,
                check,
            ),
            chosen,
        )

    # ---- queues --------------------------------------------------------------------------
    def pause(self, queue: str) -> None:
        """Pause ``queue`` on the workers consuming it, or resume it where it is paused.

        Paused (derived from the pause record and the workers' queues, see
        :mod:`tui.core.pauses`): resume on the recorded workers that are online and not
        consuming it.  Otherwise: pause on whoever consumes it now (asked live).
        """
        pause = self.screen.pauses.get(queue)
        if pause is None:
            self.run("pause_queue", queue, lambda: self.actions.pause_queue(queue), reinspect=True)
            return
        skip = set(pause.offline) | set(pause.consuming)
        hosts = [h for h in pause.record.workers if h not in skip]
        offline = list(pause.offline)

        def resume() -> None:
            self.run(
                "resume_queue",
                queue,
                lambda: self.actions.resume_queue(queue, hosts, offline),
                reinspect=True,
            )

        # The record is in the broker, where anyone with its URL can write one naming any
        # worker: a worker this console never saw consume the queue is confirmed first.
        seen = getattr(self.screen, "seen_consuming", {}).get(queue, set())
        unseen = [h for h in hosts if h not in seen]
        if not unseen or self.read_only:
            resume()
            return
        from tui.ui.screens.forms import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                resume()
            else:
                self.screen.notify("resume cancelled: nothing sent", timeout=3)

        by = f" by {pause.record.by}" if pause.record.by else ""
        self.screen.app.push_screen(
            ConfirmScreen(
                "Resume queue",
                f"{queue} is marked paused by a record in the broker{by}. Resume gives it "
                f"to {', '.join(hosts)}.\nThis console never saw {', '.join(unseen)} "
                f"consume {queue}: anyone with the broker URL can write that record. "
                "Send add_consumer?",
            ),
            answered,
        )

    def purge(self, queue: str) -> None:
        """Purge ``queue`` after the operator types its name."""
        if self._refuse_read_only("purge", queue):
            return
        row = self.screen.queue_rows.get(queue)
        waiting = row.waiting if row is not None else None
        count = (
            f"{waiting:,} waiting message(s)"
            if waiting is not None
            else "every waiting message (count unknown)"
        )
        from tui.ui.screens.forms import TypedConfirmScreen

        def typed(name: str | None) -> None:
            if name is None:
                self.screen.notify("purge cancelled: nothing deleted", timeout=3)
                return
            # Tasks sent before this instant were in the queue the purge empties.
            self.purge_sent_at[queue] = time.time()
            self.run("purge", queue, lambda: self.actions.purge(queue, name, waiting))

        self.screen.app.push_screen(
            TypedConfirmScreen(
                f"Purge {queue}",
                f"This deletes {count} from {queue}. Reserved (running) jobs "
                f"are not affected. Type the queue name to confirm.",
                queue,
            ),
            typed,
        )

    # ---- one waiting job (the queue's jobs screen) ------------------------------------------
    def delete_job(self, job: QueuedJob) -> None:
        """Delete one waiting job from its queue, after confirmation."""
        self._change_job(
            "delete_job",
            job,
            "Delete waiting job",
            f"Delete {job.task} [{job.id}] from {job.queue} (priority {job.band}, "
            f"#{job.position + 1} in run order)?\nIt is removed from the queue and never "
            "runs; this cannot be undone. If a worker takes it first, nothing is deleted.",
            "delete cancelled: nothing changed",
            lambda: self.actions.delete_job(job),
        )

    def move_job_to_front(self, job: QueuedJob) -> None:
        """Make one waiting job the next to run (priority 10), after confirmation: it changes
        the order every other job in the queue is served in."""
        self._change_job(
            "move_job_to_front",
            job,
            "Move waiting job to the front",
            f"Move {job.task} [{job.id}] to the front of {job.queue}?\nIt is #{job.position + 1} "
            f"in run order at priority {job.band}; it becomes priority 10 and runs next, ahead "
            "of every job waiting there. If a worker takes it first, nothing is changed.",
            "move cancelled: nothing changed",
            lambda: self.actions.move_job_to_front(job),
        )

    def _change_job(
        self,
        action: str,
        job: QueuedJob,
        title: str,
        question: str,
        cancelled: str,
        send: Callable[[], Outcome],
    ) -> None:
        """A change to one waiting job: refused at once in read-only mode (and audited), else
        asked first; the action layer audits the attempt before it touches the broker."""
        if self._refuse_read_only(action, job.id):
            return
        from tui.ui.screens.forms import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if not yes:
                self.screen.notify(cancelled, timeout=3)
                return
            self.run(action, job.id, send)

        self.screen.app.push_screen(ConfirmScreen(title, question), answered)

    def revoke_job(self, job: QueuedJob) -> None:
        """Revoke one waiting job, after confirmation: it stays queued, a worker discards it."""
        task = self.model.get_task(job.id)
        state = task.state if task is not None else None
        if self.read_only:
            self.run("revoke", job.id, lambda: self.actions.revoke(job.id, state, "revoke"))
            return
        from tui.ui.screens.forms import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if not yes:
                self.screen.notify("revoke cancelled: nothing sent", timeout=3)
                return
            if self.model.mark_revoke_requested(job.id):
                self.screen.tick()
            self.run("revoke", job.id, lambda: self.actions.revoke(job.id, state, "revoke"))

        self.screen.app.push_screen(
            ConfirmScreen(
                "Revoke waiting job",
                f"Revoke {job.task} [{job.id}] waiting in {job.queue}?\nIt stays in the "
                "queue and is discarded when a worker takes it (d deletes it from the queue "
                "now).",
            ),
            answered,
        )

    # ---- one job taken but not acknowledged (the u screen) --------------------------------
    def requeue_unacked(self, job: UnackedJob) -> None:
        """Requeue one unacknowledged job after confirmation; the action layer checks (the
        model's heartbeats, then a ping) that the worker holding it is offline."""
        if self._refuse_read_only("requeue_unacked", job.tag):
            return
        from tui.ui.screens.forms import ConfirmScreen

        task = self.model.get_task(job.id)
        holder = task.hostname if task is not None else None

        def answered(yes: bool | None) -> None:
            if not yes:
                self.screen.notify("requeue cancelled: nothing changed", timeout=3)
                return
            # liveness read now (not when the question was asked), then a ping in the thread
            worker = self.model.get_worker(holder) if holder else None
            online = worker is not None and worker.online
            self.run(
                "requeue_unacked",
                job.tag,
                lambda: self.actions.requeue_unacked(job, holder, online),
            )

        self.screen.app.push_screen(
            ConfirmScreen(
                "Requeue unacknowledged job",
                f"Put {job.task} [{job.id}] back in {job.queue or job.routing_key} now?\n"
                f"Held by {holder or 'an unknown worker'}. It is requeued only if that worker is "
                "offline (no heartbeat and no answer to a ping sent now) and the job is still "
                "unacknowledged; otherwise nothing changes.",
            ),
            answered,
        )

    # ---- send and show -------------------------------------------------------------------
    def run(
        self,
        action: str,
        target: str,
        call: Callable[[], Outcome] | None,
        reinspect: bool = False,
        quiet: bool = False,
    ) -> None:
        """Run an action in a thread worker; the outcome comes back as :class:`ActionCompleted`.

        ``call`` None means "refuse": the action layer audits the refusal and says why.
        ``quiet``: the operator was told already; the outcome is logged, not shown again.
        """
        self.screen.run_worker(
            lambda: self._send(action, target, call, reinspect, quiet),
            thread=True,
            group="actions",
        )

    def _send(
        self,
        action: str,
        target: str,
        call: Callable[[], Outcome] | None,
        reinspect: bool,
        quiet: bool = False,
    ) -> None:
        # runs in a worker thread: the broker may be slow; the outcome is posted back
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
            outcome = Outcome(
                False, self.screen.redact(f"{action} failed: {type(exc).__name__}: {exc}")
            )
        self.screen.post_message(ActionCompleted(action, target, outcome, reinspect, quiet))

    def completed(self, message: ActionCompleted) -> None:
        """Show an outcome and bring the panes up to date with what it changed."""
        screen = self.screen
        out = message.outcome
        self.action_log.append(message)
        text = out.message
        if out.replies:
            text += "\n" + "\n".join(f"{h}: {w}" for h, w in sorted(out.replies.items()))
        severity: Literal["information", "warning", "error"] = (
            "information" if out.ok else "warning" if out.warning else "error"
        )
        if not message.quiet or "not audited" in text:
            screen.notify(screen.redact(text), severity=severity, timeout=6 if out.ok else 10)
        if message.action == "enqueue" and out.ok and out.task_id:
            self._show_enqueued(out.task_id)
        if out.retried:
            self._show_retried(out.retried)
        if message.action.startswith("bulk_") and message.target.endswith(MARKED) and out.count:
            self._clear_marks_after_bulk()
        if message.action in ("revoke", "terminate", "kill") and not out.ok and not out.warning:
            task = self.model.get_task(message.target)
            if task is not None and task.revoke_requested and not task.is_finished:
                # nobody took the request: do not leave "revoke requested" on the row
                task.revoke_requested = False
                tasks = screen.tasks_pane
                if tasks.has_key(task.uuid):
                    tasks.upsert(task.uuid, tasks.cells(task))
        if message.action == "purge" and out.ok:
            sent_at = self.purge_sent_at.pop(message.target, None)
            if sent_at is not None and self.model.mark_purged(message.target, sent_at):
                screen.tick()
            screen.poll_queues()
        if message.action == "delete_job" and out.ok and self.model.mark_deleted(message.target):
            screen.tick()  # it never runs: the row must not read SENT for ever
        if message.action in JOB_ACTIONS:
            if message.action != "revoke" and out.ok:
                screen.poll_queues()
            self._reload_job_screens()
        if message.action == "requeue_unacked":
            if out.ok:
                screen.poll_queues()
            self._reload_unacked_screens()
        if message.reinspect:
            screen.inspect_workers()
        screen.update_status()

    def _reload_unacked_screens(self) -> None:
        from tui.ui.screens.unacked import UnackedScreen

        for open_screen in self.screen.app.screen_stack:
            if isinstance(open_screen, UnackedScreen):
                open_screen.reload()

    def _show_retried(self, retried: dict[str, str]) -> None:
        """Keep the link both ways in the model (the new task's ``retry_of``; the original
        finds it with :meth:`ClusterModel.retried_as`) and show the new rows."""
        for original, new in retried.items():
            task = self.model.get_task(original)
            self.model.merge_task_info(
                new,
                retry_of=original,
                name=task.name if task else None,
                queue=task.queue if task else None,
                priority=task.priority if task else None,
                state="SENT",
            )
        self.screen.tick()
        if len(retried) == 1:
            self.screen.tasks_pane.select(next(iter(retried.values())))

    def _clear_marks_after_bulk(self) -> None:
        # the bulk action acted on them: marks left behind would be acted on again (when
        # nothing was done, they stay for another try)
        pane = self.screen.tasks_pane
        marked, pane.marked = pane.marked, set()
        pane.redraw(self.model.get_task, marked)

    def _reload_job_screens(self) -> None:
        from tui.ui.screens.queue_jobs import QueueJobsScreen

        for open_screen in self.screen.app.screen_stack:
            if isinstance(open_screen, QueueJobsScreen):
                open_screen.reload()

    def _show_enqueued(self, task_id: str) -> None:
        req = self.last_enqueue
        self.model.merge_task_info(
            task_id,
            name=req.task if req else None,
            queue=req.queue if req else None,
            priority=req.priority if req else None,
            state="SENT",
        )
        tasks = self.screen.tasks_pane
        previous, tasks.highlight_uuid = tasks.highlight_uuid, task_id
        self.screen.tick()
        # redraw both rows: the mark moves even when the task-sent event came first
        for uuid in (previous, task_id):
            task = self.model.get_task(uuid) if uuid else None
            if task is not None and uuid and tasks.has_key(uuid):
                tasks.upsert(uuid, tasks.cells(task))
        tasks.select(task_id)
