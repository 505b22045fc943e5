"""Mutating actions: enqueue, revoke/terminate, scale, pause/resume and purge.

Every action is validated first (nothing is sent when input is bad), refused in
read-only mode *here* (not only by hiding keys), audited (the attempt line is on disk
before anything is sent: no audit, no action), sent, and its outcome written to the audit
log as a JSON line — refused or failed alike.  Workers' replies, including
refusals ("pool_grow is not supported by the solo pool"), come back as words.

No Textual here: the screens call these from thread workers and show the outcome.
"""

from __future__ import annotations

import errno
import getpass
import inspect
import json
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery

from afirgen_tasks.factory import RETRY_OF_HEADER
from afirgen_tasks.priority import PriorityError, validate_priority
from afirgen_tasks.routing import route_for
from tui.core.pauses import PauseRecord
from tui.core.states import is_final
from tui.sources.control import ClusterControl
from tui.sources.pause_records import PauseRecordStore
from tui.sources.queue_jobs import QueuedJob, QueueJobs
from tui.sources.unacked import GONE, REQUEUED, UnackedJob, UnackedJobs
from tui.sources.validate import StoredJob, is_key

MAX_COUNTDOWN_S = 30 * 86400
#: Longest time limit the worker detail's ``L`` accepts (seconds).
MAX_TIME_LIMIT_S = 7 * 86400
#: Highest rate limit (tasks per second, minute or hour) ``L`` accepts.
MAX_RATE = 1_000_000
#: Celery's rate-limit strings (celery.utils.time.rate): a number, optionally per s/m/h.
_RATE_LIMIT = re.compile(r"(\d+(?:\.\d+)?)(?:/([smh]))?")
#: How long a shutdown waits for the worker to stop answering pings before saying so.
SHUTDOWN_WAIT_S = 15.0
POOL_RESTARTS_OFF = (
    "pool restarts are off on {host}: start it with worker_pool_restarts=True "
    "([celery] worker_pool_restarts = true, or CELERY_WORKER_POOL_RESTARTS=true)"
)


class ValidationFailed(Exception):
    """Bad input: ``errors`` maps each form field to its message. Nothing was sent."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class ReadOnlyRefused(Exception):
    """The console is read-only; the action was not sent."""


@dataclass(slots=True)
class EnqueueRequest:
    """A validated job, ready to send."""

    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    countdown: float | None = None
    eta: datetime | None = None


@dataclass(slots=True)
class Outcome:
    """What happened, in words for the operator; ``replies`` holds each worker's answer.

    ``warning``: not done as asked, yet the workers took the request (a terminate that found
    nothing running: the id stays revoked).  ``ok`` is False; the console shows a warning,
    not an error, and keeps the row's "revoke requested".
    """

    ok: bool
    message: str
    task_id: str | None = None
    replies: dict[str, str] = field(default_factory=dict)
    count: int | None = None
    warning: bool = False
    #: retries sent: original task id -> the new task's id
    retried: dict[str, str] = field(default_factory=dict)


# ---- validation (pure) -----------------------------------------------------------------
def parse_json(text: str, kind: type, label: str) -> Any:
    """Parse ``text`` as a JSON array (``kind=list``) or object (``dict``); empty means empty.

    Errors name the line, column and character position.
    """
    text = text.strip()
    if not text:
        return kind()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            {
                label: f"invalid JSON at line {exc.lineno} column {exc.colno} (char {exc.pos}): {exc.msg}"
            }
        ) from None
    except RecursionError:
        raise ValidationFailed({label: "JSON nested too deeply"}) from None
    if not isinstance(value, kind):
        want = 'a JSON array like [1, "x"]' if kind is list else 'a JSON object like {"days": 30}'
        raise ValidationFailed({label: f"must be {want}, not {type(value).__name__}"})
    return value


def task_parameters(app: Celery, name: str) -> inspect.Signature | None:
    """The call signature of task ``name`` (without ``self``), or None when unknown."""
    task = app.tasks.get(name)
    if task is None:
        return None
    try:
        return inspect.signature(task.run)
    except (TypeError, ValueError):
        return None


def describe_parameters(app: Celery, name: str) -> str:
    """``fir_id, recipient_email`` / ``days=365`` — what the enqueue form shows for a task."""
    sig = task_parameters(app, name)
    if sig is None:
        return "?"
    parts = [str(p) for p in sig.parameters.values()]
    return ", ".join(parts) or "(no parameters)"


def validate_enqueue(
    app: Celery,
    task: str,
    args_text: str,
    kwargs_text: str,
    queue: str,
    priority_text: str,
    countdown_text: str = "",
    eta_text: str = "",
    known_queues: Sequence[str] = (),
) -> EnqueueRequest:
    """Check every field of the enqueue form; raise :class:`ValidationFailed` naming each bad one."""
    errors: dict[str, str] = {}
    task = task.strip()
    if task not in app.tasks or not task.startswith("afirgen_tasks."):
        errors["task"] = f"unknown task {task!r}" if task else "choose a task"
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    try:
        args = parse_json(args_text, list, "args")
    except ValidationFailed as exc:
        errors.update(exc.errors)
    try:
        kwargs = parse_json(kwargs_text, dict, "kwargs")
    except ValidationFailed as exc:
        errors.update(exc.errors)
    if "task" not in errors and "args" not in errors and "kwargs" not in errors:
        sig = task_parameters(app, task)
        if sig is not None:
            try:
                sig.bind(*args, **kwargs)
            except TypeError as exc:
                errors["args"] = (
                    f"arguments do not fit {task.rsplit('.', 1)[-1]}({describe_parameters(app, task)}): {exc}"
                )
    # An emptied field is an error, never silently the route's default: the form pre-fills
    # both, so empty means the operator cleared it (or typed too fast for it).
    queue = queue.strip()
    if not queue:
        route = f" (this task's route: {route_for(task).queue})" if "task" not in errors else ""
        errors["queue"] = f"queue is empty: type one{route}"
    elif known_queues and queue not in known_queues:
        errors["queue"] = f"queue {queue!r} does not exist (known: {', '.join(known_queues)})"
    priority = 0
    if not priority_text.strip():
        default = (
            f" (this task's default: {route_for(task).priority})" if "task" not in errors else ""
        )
        errors["priority"] = f"priority is empty: type 1-10{default}"
    else:
        try:
            priority = validate_priority(priority_text.strip())
        except PriorityError as exc:
            errors["priority"] = str(exc)
    countdown: float | None = None
    if countdown_text.strip():
        try:
            countdown = float(countdown_text)
            if not 0 <= countdown <= MAX_COUNTDOWN_S or countdown != countdown:
                raise ValueError
        except ValueError:
            errors["countdown"] = (
                f"countdown {countdown_text.strip()!r} must be seconds from 0 to {MAX_COUNTDOWN_S}"
            )
    eta: datetime | None = None
    if eta_text.strip():
        if countdown is not None:
            errors["eta"] = "give a countdown or an ETA, not both"
        else:
            try:
                eta = datetime.fromisoformat(eta_text.strip())
                if eta.tzinfo is None:
                    eta = eta.astimezone()  # local time, as typed
                if (
                    eta < datetime.now(UTC).replace(microsecond=0)
                    and (datetime.now(UTC) - eta).total_seconds() > 60
                ):
                    errors["eta"] = f"ETA {eta_text.strip()!r} is in the past"
            except ValueError:
                errors["eta"] = f"ETA {eta_text.strip()!r} is not an ISO time like 2026-11-24T15:30"
    if errors:
        raise ValidationFailed(errors)
    return EnqueueRequest(task, args, kwargs, queue, priority, countdown, eta)


def validate_rate_limit(text: str) -> str | None:
    """``10/m``, ``5/s``, ``100/h`` or a plain number (per second); ``off`` or ``0`` -> None
    (no limit).  Raises :class:`ValidationFailed` (field ``value``) otherwise."""
    text = text.strip()
    if text.lower() in ("off", "none", "0"):
        return None
    match = _RATE_LIMIT.fullmatch(text)
    if match is None or not 0 < float(match[1]) <= MAX_RATE:
        raise ValidationFailed(
            {
                "value": f"rate limit {text!r} must look like 10/m, 5/s or 100/h "
                f"(1 to {MAX_RATE:,} per second, minute or hour), or off"
            }
        )
    return text


def validate_time_limits(text: str) -> tuple[float, float]:
    """``"soft,hard"`` seconds (``50,60``): both above 0, at most a week, soft below hard."""
    parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    try:
        if len(parts) != 2:
            raise ValueError
        soft, hard = float(parts[0]), float(parts[1])
        if not (0 < soft <= MAX_TIME_LIMIT_S and 0 < hard <= MAX_TIME_LIMIT_S):
            raise ValueError
    except ValueError:
        raise ValidationFailed(
            {
                "value": f"time limits {text.strip()!r} must be two numbers of seconds, soft,hard "
                f"(e.g. 50,60), each from 0 to {MAX_TIME_LIMIT_S:,}"
            }
        ) from None
    if soft >= hard:
        raise ValidationFailed(
            {"value": f"the soft limit ({soft:g} s) must be below the hard limit ({hard:g} s)"}
        )
    return soft, hard


def _check_registered(task: str, registered: Sequence[str]) -> None:
    if task not in registered:
        raise ValidationFailed(
            {"task": f"{task!r} is not registered on this worker" if task else "choose a task"}
        )


# ---- audit -----------------------------------------------------------------------------
def operator_identity() -> dict[str, str]:
    """Who is acting: the local user, and the SSH client address when over SSH."""
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    who = {"user": user}
    ssh = os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_CLIENT")
    if ssh:
        who["ssh_client"] = ssh.split()[0]
    return who


class AuditUnavailable(Exception):
    """The audit log cannot be written: the action it was to record is refused."""


class AuditLog:
    """Append-only JSON lines, created with mode 0600; secrets are scrubbed from every line.

    An action that sends anything is recorded twice: an ``attempt`` line, written and
    fsynced before the command goes out (no audit, no action), then its ``outcome`` line,
    which carries the attempt's ``id``.  Refusals (read-only, invalid) are one outcome line.
    The log is never written through a symbolic link (``O_NOFOLLOW``): a link planted at the
    path could send the operators' record anywhere.
    """

    def __init__(
        self,
        path: Path,
        scrub: Callable[[str], str] | None = None,
        redact_value: Callable[[Any], Any] | None = None,
        cluster: str | None = None,
        cluster_name: str | None = None,
    ):
        """``scrub`` masks secrets in the finished line; ``redact_value`` masks personal data in
        parameter values before they are serialised (so the line stays valid JSON).
        ``cluster`` (the broker's identity without credentials,
        :attr:`afirgen_tasks.settings.Settings.cluster_id`) goes in every line: one log may
        record actions on several clusters; ``cluster_name`` (the name the operator knows it
        by, :attr:`~afirgen_tasks.settings.Settings.cluster_name`) beside it."""
        self.path = Path(path)
        self.scrub = scrub or (lambda s: s)
        self.redact_value = redact_value or (lambda v: v)
        self.identity = operator_identity()
        self.cluster = cluster
        self.cluster_name = cluster_name

    def attempt(self, action: str, target: str, params: dict[str, Any]) -> str:
        """Record that ``action`` is about to be sent; returns the id its outcome line repeats.

        Raises :class:`AuditUnavailable` (saying why) when the line cannot be written and
        flushed to disk: the caller must not send.
        """
        attempt_id = uuid.uuid4().hex[:12]
        self._append(self._line(action, target, params, "attempt", None, attempt_id, "attempt"))
        return attempt_id

    def write(
        self,
        action: str,
        target: str,
        params: dict[str, Any],
        outcome: str,
        ok: bool,
        attempt_id: str | None = None,
    ) -> None:
        """Append one outcome line: who, when, what, target, parameters, outcome.

        Raises :class:`AuditUnavailable` when it cannot be written.
        """
        self._append(self._line(action, target, params, outcome, ok, attempt_id, "outcome"))

    def _line(
        self,
        action: str,
        target: str,
        params: dict[str, Any],
        outcome: str,
        ok: bool | None,
        attempt_id: str | None,
        phase: str,
    ) -> str:
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            **self.identity,
            **({"cluster": self.cluster} if self.cluster is not None else {}),
            **({"cluster_name": self.cluster_name} if self.cluster_name is not None else {}),
            "phase": phase,
            "action": action,
            "target": target,
            "params": self.redact_value(params),
            "ok": ok,
            "outcome": outcome,
        }
        if attempt_id is not None:
            record["id"] = attempt_id
        return self.scrub(json.dumps(record, default=str, ensure_ascii=False)) + "\n"

    def _append(self, line: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise AuditUnavailable(
                f"cannot write the audit log {self.path}: {self.path.parent} is not a directory"
            ) from None
        except OSError as exc:
            raise AuditUnavailable(self._why(exc)) from None
        try:
            # O_NOFOLLOW: never through a link; O_NONBLOCK: a FIFO at the path cannot hang us
            fd = os.open(
                self.path,
                os.O_WRONLY
                | os.O_APPEND
                | os.O_CREAT
                | os.O_NOFOLLOW
                | os.O_NONBLOCK
                | os.O_CLOEXEC,
                0o600,
            )
        except OSError as exc:
            raise AuditUnavailable(self._why(exc)) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise AuditUnavailable(
                    f"cannot write the audit log {self.path}: not a regular file"
                )
            data = line.encode("utf-8")
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)  # on disk before the command it records goes out
        except OSError as exc:
            raise AuditUnavailable(self._why(exc)) from None
        finally:
            os.close(fd)

    def _why(self, exc: OSError) -> str:
        if exc.errno == errno.ELOOP:
            reason = (
                "it is a symbolic link (refused: the audit log is never written through a link)"
            )
        else:
            reason = exc.strerror or type(exc).__name__
            if exc.filename is not None and os.fspath(exc.filename) != os.fspath(self.path):
                reason += f" ({exc.filename})"
        return f"cannot write the audit log {self.path}: {reason}"

    def read(self, every_line: bool = False) -> list[dict[str, Any]]:
        """One record per action (for reports and tests): the outcome lines, plus each
        attempt that has no outcome (sent, result never recorded: the console died).
        ``every_line``: attempt and outcome lines alike, in file order."""
        if not self.path.exists():
            return []
        records = [
            json.loads(line)
            for line in self.path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        if every_line:
            return records
        finished = {r.get("id") for r in records if r.get("phase") != "attempt"}
        return [r for r in records if r.get("phase") != "attempt" or r.get("id") not in finished]


# ---- sending ---------------------------------------------------------------------------
_REVOKED_REPLY = re.compile(r"tasks \{(.*)\} flagged as revoked")
_SET_REPR = re.compile(r"\{('[^']*'(?:, '[^']*')*)\}")
#: celery/worker/control.py ``_revoke``: the reply when a terminate found none of the ids
TERMINATE_UNKNOWN = "terminate: tasks unknown"


def _short_ids(text: str) -> str:
    """``'87ed1a27-5a0e-...', 'b...'`` -> ``87ed1a27, b...``: the 8 characters the panes show."""
    return ", ".join(i[:8] for i in re.findall(r"'([^']*)'", text))


def _readable_reply(text: str) -> str:
    """A worker's reply text without Python reprs: Celery puts a ``set`` of ids in some."""
    if match := _REVOKED_REPLY.fullmatch(text):
        return f"flagged {_short_ids(match[1])} as revoked"
    if text == TERMINATE_UNKNOWN:
        return "was not running it"
    if text.startswith("terminate: "):
        return "terminating " + ", ".join(
            i.strip()[:8] for i in text[len("terminate: ") :].split(",")
        )
    return _SET_REPR.sub(lambda m: _short_ids(m[1]), text)


def _replies_to_words(
    replies: list[dict[str, Any]] | None, hosts: Sequence[str] | None
) -> tuple[bool, dict[str, str]]:
    """Map control replies to ``{host: words}``; a missing reply is a failure too."""
    words: dict[str, str] = {}
    ok = True
    for reply in replies or []:
        if not isinstance(reply, dict):
            continue
        for host, body in reply.items():
            if isinstance(body, dict) and "error" in body:
                words[host] = f"refused: {body['error']}"
                ok = False
            elif isinstance(body, dict) and "ok" in body:
                words[host] = _readable_reply(str(body["ok"]))
            else:
                words[host] = str(body)
    for host in hosts or []:
        if host not in words:
            words[host] = "no reply (worker down or busy?)"
            ok = False
    if not words:
        return False, {"*": "no worker replied"}
    return ok, words


class Actions:
    """The action layer: validate, refuse when read-only, send, audit, return an :class:`Outcome`."""

    def __init__(
        self,
        app: Celery | None,
        audit: AuditLog,
        read_only: bool = False,
        timeout: float = 2.0,
        pause_records: PauseRecordStore | None = None,
        queue_jobs: Callable[[], QueueJobs] | None = None,
        unacked_jobs: Callable[[], UnackedJobs] | None = None,
    ):
        #: the app's task registry validates jobs; every send goes through ``control``
        self.app = app
        #: the waiting jobs' editor (Redis only: it raises, saying why, elsewhere)
        self.queue_jobs = queue_jobs
        #: the unacknowledged jobs' requeuer (Redis only: it raises, saying why, elsewhere)
        self.unacked_jobs = unacked_jobs
        self.control = ClusterControl(app, timeout, pause_records) if app is not None else None
        self.audit = audit
        self.read_only = read_only
        self._timeout = timeout
        # pool resizes run one at a time; {host: (size the caller reported, size after our
        # change)}: a caller's figure that predates our last change is read as the newer one
        self._pool_lock = threading.Lock()
        self._pool_after: dict[str, tuple[int | None, int]] = {}

    @property
    def timeout(self) -> float:
        """Seconds each command waits for the workers' replies."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._timeout = value
        if self.control is not None:
            self.control.timeout = value

    def _control(self) -> ClusterControl:
        if self.control is None:
            raise RuntimeError("no broker connection to send to")
        return self.control

    def guard(self, action: str, target: str, params: dict[str, Any]) -> None:
        """Refuse (and audit the refusal) when read-only; every mutating path calls this first."""
        if self.read_only:
            message = (
                f"{action} refused: the console is read-only (--read-only or [console] read_only)"
            )
            try:
                self.audit.write(action, target, params, "refused: read-only mode", ok=False)
            except AuditUnavailable as exc:
                message += f"; the refusal is not audited: {exc}"
            raise ReadOnlyRefused(message)

    def _done(
        self,
        action: str,
        target: str,
        params: dict[str, Any],
        outcome: Outcome,
        attempt_id: str | None = None,
    ) -> Outcome:
        detail = outcome.message
        if outcome.replies:
            detail += " | " + "; ".join(f"{h}: {w}" for h, w in sorted(outcome.replies.items()))
        try:
            self.audit.write(action, target, params, detail, outcome.ok, attempt_id=attempt_id)
        except AuditUnavailable as exc:
            # the attempt line is on disk; what happened must still reach the operator
            outcome.message += f" (outcome not audited: {exc})"
        return outcome

    def _send_audited(
        self, action: str, target: str, params: dict[str, Any], send: Callable[[], Outcome]
    ) -> Outcome:
        """Audit the attempt (written and fsynced), then send, then audit the outcome.

        No audit, no action: when the attempt cannot be written nothing is sent and the
        refusal says why.
        """
        try:
            attempt_id = self.audit.attempt(action, target, params)
        except AuditUnavailable as exc:
            return Outcome(False, f"{action} refused: {exc}")
        try:
            outcome = send()
        except Exception as exc:  # broker down, timeouts: an outcome, never a crash
            outcome = Outcome(
                False, self.audit.scrub(f"{action} failed: {type(exc).__name__}: {exc}")
            )
        return self._done(action, target, params, outcome, attempt_id)

    def _attempt(
        self, action: str, target: str, params: dict[str, Any], send: Callable[[], Outcome]
    ) -> Outcome:
        self.guard(action, target, params)
        return self._send_audited(action, target, params, send)

    # -- enqueue --
    def enqueue(self, req: EnqueueRequest) -> Outcome:
        """Send a validated job with the operator's priority."""
        params = {
            "args": req.args,
            "kwargs": req.kwargs,
            "queue": req.queue,
            "priority": req.priority,
            "countdown": req.countdown,
            "eta": req.eta.isoformat() if req.eta else None,
        }

        def send() -> Outcome:
            task_id = self._control().send_task(
                req.task,
                req.args,
                req.kwargs,
                req.queue,
                req.priority,
                countdown=req.countdown,
                eta=req.eta,
            )
            when = (
                f", runs in {req.countdown:g} s"
                if req.countdown is not None
                else f", runs at {req.eta.isoformat(timespec='seconds')}"
                if req.eta is not None
                else ""
            )
            return Outcome(
                True,
                f"sent {req.task.rsplit('.', 1)[-1]} to {req.queue} at priority {req.priority}"
                f" as {task_id[:8]}{when}",
                task_id=task_id,
            )

        return self._attempt("enqueue", req.task, params, send)

    # -- revoke / terminate / kill --
    def revoke(self, task_id: str, state: str | None, mode: str = "revoke") -> Outcome:
        """``mode``: revoke (discard when it reaches a worker), terminate (SIGTERM) or kill (SIGKILL)."""
        params = {"mode": mode, "state": state}
        self.guard(mode, task_id, params)
        if is_final(state):
            return self._done(
                mode,
                task_id,
                params,
                Outcome(False, f"task {task_id[:8]} already finished ({state}): nothing to {mode}"),
            )

        def send() -> Outcome:
            terminate = mode in ("terminate", "kill")
            signal = {"terminate": "SIGTERM", "kill": "SIGKILL"}.get(mode)
            replies = self._control().revoke(task_id, terminate=terminate, signal=signal)
            ok, words = _replies_to_words(replies, None)
            verb = {
                "revoke": "revoke",
                "terminate": "terminate (SIGTERM)",
                "kill": "kill (SIGKILL)",
            }[mode]
            if not ok and words.get("*"):
                # No live worker answered: the id is still broadcast and persisted by the
                # workers that come up later only if they were running; say so plainly.
                return Outcome(
                    False,
                    f"{verb} of {task_id[:8]} sent, but no worker acknowledged it",
                    task_id=task_id,
                )
            if ok and terminate and not _any_terminated(replies):
                # Every worker flagged the id revoked but none held it: it finished (or has not
                # started) since the operator looked.  Nothing was terminated: not a success.
                return Outcome(
                    False,
                    f"{verb}: no worker was running {task_id[:8]} (it had already finished or "
                    "not started); it stays marked revoked",
                    task_id=task_id,
                    replies=words,
                    warning=True,
                )
            return Outcome(ok, f"{verb} of {task_id[:8]} requested", task_id=task_id, replies=words)

        return self._attempt_sent(mode, task_id, params, send)

    def _attempt_sent(
        self, action: str, target: str, params: dict[str, Any], send: Callable[[], Outcome]
    ) -> Outcome:
        # guarded by the caller already
        return self._send_audited(action, target, params, send)

    def revoke_many(self, tasks: Sequence[tuple[str, str | None]], mode: str = "revoke") -> Outcome:
        """Revoke (terminate, kill) several tasks, ``(id, state)`` each, in one broadcast.

        Each task is its own audit record: a finished one is refused (one outcome line); each
        of the others has its attempt line on disk before the broadcast goes out, and an
        outcome line after it.  The outcome counts them: ``revoked 12 of 12; 0 refused``.
        """
        if not tasks:
            raise ValidationFailed({"tasks": "no task marked"})
        self.guard(mode, ",".join(t for t, _ in tasks), {"mode": mode, "count": len(tasks)})
        refused: dict[str, str] = {}
        attempts: dict[str, tuple[str, dict[str, Any]]] = {}
        for task_id, state in tasks:
            params = {"mode": mode, "state": state, "bulk": len(tasks)}
            if not is_key(task_id):
                refused[str(task_id)[:8]] = "not a task id"
            elif is_final(state):
                why = f"already finished ({state}): nothing to {mode}"
                refused[task_id[:8]] = why
                self._done(mode, task_id, params, Outcome(False, f"task {task_id[:8]} {why}"))
            else:
                try:
                    attempts[task_id] = (self.audit.attempt(mode, task_id, params), params)
                except AuditUnavailable as exc:
                    refused[task_id[:8]] = f"not sent: {exc}"
        verb = {"revoke": "revoked", "terminate": "terminated", "kill": "killed"}[mode]
        words: dict[str, str] = {}
        ok = False
        if attempts:
            terminate = mode in ("terminate", "kill")
            signal = {"terminate": "SIGTERM", "kill": "SIGKILL"}.get(mode)
            try:
                replies = self._control().revoke(list(attempts), terminate=terminate, signal=signal)
                ok, words = _replies_to_words(replies, None)
                detail = f"{mode} sent with {len(attempts)} other(s) in one broadcast"
            except Exception as exc:  # broker down: every attempt failed, said per task
                detail = self.audit.scrub(f"{mode} failed: {type(exc).__name__}: {exc}")
                words = {"*": detail}
            for task_id, (attempt_id, params) in attempts.items():
                self._done(mode, task_id, params, Outcome(ok, detail, replies=words), attempt_id)
        done = len(attempts) if ok else 0
        message = f"{verb} {done} of {len(tasks)}; {len(refused)} refused"
        if attempts and not ok:
            message += f"; {len(attempts)} sent but no worker acknowledged"
        return Outcome(
            done == len(tasks),
            message,
            replies={**words, **refused},
            count=done,
            warning=0 < done < len(tasks),
        )

    # -- retry --
    def retry(
        self,
        task_id: str,
        fetch: Callable[[str], StoredJob | str],
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        known_queues: Sequence[str] = (),
    ) -> Outcome:
        """Send task ``task_id`` again: the same name, args, kwargs, queue and priority.

        The args and kwargs come from the result backend (``fetch``: the record
        ``result_extended`` keeps, uncut); the events' reprs are truncated, so without a record
        the retry is refused, saying why.  ``name``, ``queue`` and ``priority`` are what the
        console knows of the original (its ``task-sent`` event); the backend's name and queue
        fill gaps.  The new task carries the original's id in :data:`RETRY_OF_HEADER`.
        Refusals are audited (one outcome line), as is every send (attempt first).
        """
        params: dict[str, Any] = {"name": name, "queue": queue, "priority": priority}
        self.guard("retry", task_id, params)

        def refuse(why: str) -> Outcome:
            return self._done(
                "retry", task_id, params, Outcome(False, f"retry of {task_id[:8]} refused: {why}")
            )

        if not is_key(task_id):
            return refuse("not a task id")
        try:
            job = fetch(task_id)
        except Exception as exc:  # backend down: said, nothing sent
            return refuse(
                self.audit.scrub(
                    f"the result backend could not be read: {type(exc).__name__}: {exc}"
                )
            )
        if isinstance(job, str):
            return refuse(job)
        name = job.name or name
        queue = queue or job.queue
        note = ""
        if name is None or self.app is None or name not in self.app.tasks:
            return refuse(f"task {name!r} is not registered in this console's app")
        if priority is None:
            priority = route_for(name).priority
            note = f" (its priority was not seen: the route's default {priority})"
        try:
            priority = validate_priority(priority)
        except PriorityError as exc:
            return refuse(str(exc))
        if not queue:
            return refuse("its queue is not known")
        if known_queues and queue not in known_queues:
            return refuse(f"queue {queue!r} does not exist (known: {', '.join(known_queues)})")
        params.update(name=name, queue=queue, priority=priority, args=job.args, kwargs=job.kwargs)

        def send() -> Outcome:
            new_id = self._control().send_task(
                name, job.args, job.kwargs, queue, priority, headers={RETRY_OF_HEADER: task_id}
            )
            params["retried_as"] = new_id
            return Outcome(
                True,
                f"retried {name.rsplit('.', 1)[-1]} {task_id[:8]} as {new_id[:8]} on {queue} "
                f"at priority {priority}{note}",
                task_id=new_id,
                retried={task_id: new_id},
            )

        return self._send_audited("retry", task_id, params, send)

    # -- worker pool --
    def pool_resize(
        self, hosts: Sequence[str], delta: int, current: Mapping[str, int | None] | None = None
    ) -> Outcome:
        """Grow (delta > 0) or shrink (delta < 0) each worker's pool by ``abs(delta)``.

        ``current`` holds the pool sizes the caller knows (``inspect().stats()``).  A shrink
        that would leave a worker with no pool process is refused and audited, nothing sent:
        the jobs it has reserved would sit RECEIVED, never started, until the pool grew again.
        """
        if delta == 0 or abs(delta) > 64:
            raise ValidationFailed({"n": f"pool change {delta} must be between 1 and 64 processes"})
        if not hosts:
            raise ValidationFailed({"worker": "no worker selected"})
        action = "pool_grow" if delta > 0 else "pool_shrink"
        target = ",".join(hosts)
        current = current or {}
        with self._pool_lock:
            known = self._known_pool_sizes(hosts, current)
            params: dict[str, Any] = {"n": abs(delta), "workers": list(hosts)}
            if known:
                params["current"] = known
            self.guard(action, target, params)
            emptied = [h for h, size in known.items() if size + delta < 1]
            if emptied:
                each = "; ".join(
                    f"would leave {h} with no pool process (it has {known[h]})" for h in emptied
                )
                return self._done(
                    action,
                    target,
                    params,
                    Outcome(
                        False,
                        f"{action} refused: {each}: jobs {'it has' if len(emptied) == 1 else 'they have'} "
                        f"reserved could not run; use pause (p) to stop {'it' if len(emptied) == 1 else 'them'} "
                        "taking jobs",
                    ),
                )

            def send() -> Outcome:
                replies = self._control().resize_pool(delta, hosts)
                ok, words = _replies_to_words(replies, hosts)
                for host, size in known.items():
                    if _acknowledged(replies, host):
                        self._pool_after[host] = (current[host], size + delta)
                verb = "grow" if delta > 0 else "shrink"
                return Outcome(
                    ok,
                    f"{verb} pool by {abs(delta)} on {len(hosts)} worker(s)"
                    + ("" if ok else ": refused or no reply"),
                    replies=words,
                )

            return self._attempt_sent(action, target, params, send)

    def _known_pool_sizes(
        self, hosts: Sequence[str], current: Mapping[str, int | None]
    ) -> dict[str, int]:
        """The caller's sizes, corrected by our own resizes it has not seen yet (a second ``-``
        pressed before the next ``inspect`` must not count the process the first one removed)."""
        known: dict[str, int] = {}
        for host in hosts:
            size = current.get(host)
            if not isinstance(size, int) or isinstance(size, bool):
                continue
            reported, after = self._pool_after.get(host, (None, None))
            if reported == size and after is not None:
                size = after
            else:
                self._pool_after.pop(host, None)  # the caller has a newer figure than ours
            known[host] = size
        return known

    def autoscale(self, hosts: Sequence[str], max_c: int, min_c: int) -> Outcome:
        """Set the autoscaler's bounds on each worker."""
        if not (1 <= max_c <= 512) or not (0 <= min_c <= max_c):
            raise ValidationFailed(
                {"autoscale": f"need 1 <= max ({max_c}) <= 512 and 0 <= min ({min_c}) <= max"}
            )
        if not hosts:
            raise ValidationFailed({"worker": "no worker selected"})
        params = {"max": max_c, "min": min_c, "workers": list(hosts)}

        def send() -> Outcome:
            replies = self._control().autoscale(max_c, min_c, hosts)
            ok, words = _replies_to_words(replies, hosts)
            return Outcome(
                ok,
                f"autoscale {max_c},{min_c} on {len(hosts)} worker(s)"
                + ("" if ok else ": refused or no reply"),
                replies=words,
            )

        return self._attempt("autoscale", ",".join(hosts), params, send)

    # -- queues --
    @property
    def operator(self) -> str:
        """Who acts, in one line for a pause record: ``alice`` or ``alice from 203.0.113.7``."""
        who = self.audit.identity
        return who["user"] + (f" from {who['ssh_client']}" if who.get("ssh_client") else "")

    def pause_queue(self, queue: str) -> Outcome:
        """Stop exactly the workers that consume ``queue`` now (``cancel_consumer`` to them), and
        keep who they were in the broker: resume gives the queue back to them and nobody else.

        The consumers are asked live (``active_queues``), after the attempt is audited; the
        outcome line lists them.  The record is written before the command goes out (a record
        that cannot be written: nothing is sent).  On a broker that keeps no record (neither
        Redis nor RabbitMQ) the queue is paused all the same and the outcome says so.
        """
        params: dict[str, Any] = {"workers": "the consumers at pause time"}

        def send() -> Outcome:
            control = self._control()
            answered, hosts = control.consumers(queue)
            params["workers"] = hosts
            if not answered:
                return Outcome(
                    False, f"pause {queue}: no worker replied", replies={"*": "no worker replied"}
                )
            if not hosts:
                return Outcome(
                    False,
                    f"no worker consumes {queue}: nothing to pause "
                    f"({len(answered)} worker(s) answered)",
                )
            store = control.pause_records
            note = ""
            if store.available:
                store.put(PauseRecord(queue, tuple(hosts), time.time(), self.operator))
            else:
                params["record"] = "not kept"
                note = (
                    f"; record not kept ({store.why_not}): the console cannot show it paused "
                    f"or resume it; resume with: celery control add_consumer {queue} "
                    f"-d {','.join(hosts)}"
                )
            replies = control.consume(queue, False, hosts)
            ok, words = _replies_to_words(replies, hosts)
            return Outcome(
                ok,
                (
                    f"{queue} paused on {len(hosts)} worker(s): {', '.join(hosts)}"
                    if ok
                    else f"pause {queue}: some workers did not confirm"
                )
                + note,
                replies=words,
            )

        return self._attempt("pause_queue", queue, params, send)

    def resume_queue(
        self, queue: str, hosts: Sequence[str], offline: Sequence[str] = ()
    ) -> Outcome:
        """Give ``queue`` back (``add_consumer``) to ``hosts``: the workers its pause record
        names that are online and not consuming it.  ``offline``: recorded workers that are
        not online (not sent to; said).  Every host confirmed: the record is deleted."""
        params: dict[str, Any] = {"workers": list(hosts), "offline": list(offline)}
        self.guard("resume_queue", queue, params)
        if not hosts:
            raise ValidationFailed({"workers": f"no online worker to give {queue} back to"})

        def send() -> Outcome:
            control = self._control()
            replies = control.consume(queue, True, hosts)
            ok, words = _replies_to_words(replies, hosts)
            note = ""
            if offline:
                note = (
                    f"; not resumed on {', '.join(offline)} (offline): a worker restarted "
                    f"with -Q {queue} consumes it again"
                )
            if ok and control.pause_records.available:
                control.pause_records.delete(queue)
            return Outcome(
                ok,
                (
                    f"{queue} resumed on {len(hosts)} worker(s): {', '.join(hosts)}"
                    if ok
                    else f"resume {queue}: some workers did not confirm (still marked paused)"
                )
                + note,
                replies=words,
            )

        return self._attempt_sent("resume_queue", queue, params, send)

    # -- one worker (the worker detail screen) --
    def worker_consume(self, host: str, queue: str, start: bool) -> Outcome:
        """``add_consumer`` (``start``) or ``cancel_consumer`` of ``queue`` on ``host`` alone."""
        if not queue.strip():
            raise ValidationFailed({"queue": "choose a queue"})
        action = "add_consumer" if start else "cancel_consumer"
        params = {"queue": queue}

        def send() -> Outcome:
            replies = self._control().consume(queue, start, [host])
            ok, words = _replies_to_words(replies, [host])
            verb = "now consumes" if start else "stopped consuming"
            return Outcome(
                ok,
                f"{host} {verb} {queue}"
                if ok
                else f"{action} {queue} on {host}: refused or no reply",
                replies=words,
            )

        return self._attempt(action, host, params, send)

    def rate_limit(self, host: str, task: str, text: str, registered: Sequence[str]) -> Outcome:
        """Set task type ``task``'s rate limit on ``host`` (``10/m``; ``off`` removes it)."""
        _check_registered(task, registered)
        rate = validate_rate_limit(text)
        params = {"task": task, "rate_limit": rate}

        def send() -> Outcome:
            replies = self._control().rate_limit(task, rate, [host])
            ok, words = _replies_to_words(replies, [host])
            what = f"rate limit {rate}" if rate else "no rate limit"
            return Outcome(
                ok,
                f"{task.rsplit('.', 1)[-1]} on {host}: {what}"
                if ok
                else f"rate_limit {task} on {host}: refused or no reply",
                replies=words,
            )

        return self._attempt("rate_limit", host, params, send)

    def time_limit(self, host: str, task: str, text: str, registered: Sequence[str]) -> Outcome:
        """Set task type ``task``'s soft and hard time limits on ``host`` (``"soft,hard"`` s)."""
        _check_registered(task, registered)
        soft, hard = validate_time_limits(text)
        params = {"task": task, "soft": soft, "hard": hard}

        def send() -> Outcome:
            replies = self._control().time_limit(task, soft, hard, [host])
            ok, words = _replies_to_words(replies, [host])
            return Outcome(
                ok,
                f"{task.rsplit('.', 1)[-1]} on {host}: soft {soft:g} s, hard {hard:g} s"
                if ok
                else f"time_limit {task} on {host}: refused or no reply",
                replies=words,
            )

        return self._attempt("time_limit", host, params, send)

    def pool_restart(self, host: str, enabled: bool | None) -> Outcome:
        """Restart ``host``'s pool; ``enabled`` is its ``worker_pool_restarts`` (None: unknown).

        Refused (audited, nothing sent) when the worker said it has pool restarts off; the
        worker's own refusal says the same when it was not known.
        """
        params: dict[str, Any] = {"worker_pool_restarts": enabled}
        self.guard("pool_restart", host, params)
        if enabled is False:
            return self._done(
                "pool_restart",
                host,
                params,
                Outcome(False, "pool_restart refused: " + POOL_RESTARTS_OFF.format(host=host)),
            )

        def send() -> Outcome:
            replies = self._control().pool_restart([host])
            ok, words = _replies_to_words(replies, [host])
            if "not enabled" in words.get(host, ""):
                return Outcome(
                    False,
                    "pool_restart refused by the worker: " + POOL_RESTARTS_OFF.format(host=host),
                    replies=words,
                )
            return Outcome(
                ok,
                f"{host}: pool restart started (each process is replaced after its current or next task)"
                if ok
                else f"pool_restart on {host}: refused or no reply",
                replies=words,
            )

        return self._attempt_sent("pool_restart", host, params, send)

    def shutdown(self, host: str, typed_name: str) -> Outcome:
        """Warm shutdown of ``host``; ``typed_name`` must equal its name.

        The worker gives no reply (it exits); the outcome says whether it stopped answering
        pings within :data:`SHUTDOWN_WAIT_S`.
        """
        if typed_name.strip() != host:
            raise ValidationFailed(
                {
                    "confirm": f"type the worker name {host!r} to confirm (got {typed_name.strip()!r})"
                }
            )
        params: dict[str, Any] = {}

        def send() -> Outcome:
            control = self._control()
            control.shutdown([host])
            deadline = time.monotonic() + SHUTDOWN_WAIT_S
            while time.monotonic() < deadline:
                if host not in control.ping([host], timeout=0.5):
                    return Outcome(True, f"{host} shut down: it no longer answers pings")
            return Outcome(
                False,
                f"shutdown sent to {host}, but it still answers pings after "
                f"{SHUTDOWN_WAIT_S:g} s (a warm shutdown waits for its running tasks)",
                warning=True,
            )

        return self._attempt("shutdown", host, params, send)

    def purge(self, queue: str, typed_name: str, expected_count: int | None) -> Outcome:
        """Delete every waiting message of ``queue``; ``typed_name`` must equal the queue name."""
        params = {"expected": expected_count}
        if typed_name.strip() != queue:
            raise ValidationFailed(
                {
                    "confirm": f"type the queue name {queue!r} to confirm (got {typed_name.strip()!r})"
                }
            )

        def send() -> Outcome:
            deleted = self._control().purge(queue)
            params["purged"] = deleted  # the audit line keeps both numbers
            message = f"purged {deleted:,} message(s) from {queue}"
            # the operator confirmed the count the prompt showed; jobs keep arriving (or being
            # taken) until the purge runs: say so when the numbers differ
            if expected_count is not None and deleted > expected_count:
                message += f" (the prompt said {expected_count:,}; {deleted - expected_count:,} more arrived since)"
            elif expected_count is not None and deleted < expected_count:
                message += f" (the prompt said {expected_count:,}; {expected_count - deleted:,} fewer: taken meanwhile)"
            return Outcome(True, message, count=deleted)

        return self._attempt("purge", queue, params, send)

    # -- one waiting job --
    def _job_editor(self) -> QueueJobs:
        if self.queue_jobs is None:
            raise RuntimeError("no broker connection to change waiting jobs")
        return self.queue_jobs()

    def delete_job(self, job: QueuedJob) -> Outcome:
        """Remove one waiting job from its queue (atomically: only if it is still there)."""
        job = _check_job(job)
        params = _job_params(job)

        def send() -> Outcome:
            if self._job_editor().delete(job):
                return Outcome(
                    True,
                    f"deleted {job.short_name} {job.id[:8]} from {job.queue}: it will not run",
                    task_id=job.id,
                )
            return _gone(job)

        return self._attempt("delete_job", job.id, params, send)

    def move_job_to_front(self, job: QueuedJob) -> Outcome:
        """Make one waiting job the next to run in its queue, at priority 10 (atomically)."""
        job = _check_job(job)
        params = _job_params(job)

        def send() -> Outcome:
            if self._job_editor().move_to_front(job):
                return Outcome(
                    True,
                    f"moved {job.short_name} {job.id[:8]} to the front of {job.queue} "
                    "(priority 10): it runs next",
                    task_id=job.id,
                )
            return _gone(job)

        return self._attempt("move_job_to_front", job.id, params, send)

    # -- one job taken but not acknowledged --
    def requeue_unacked(
        self,
        job: UnackedJob,
        holder: str | None,
        holder_online: bool,
        ping_timeout: float = 1.0,
    ) -> Outcome:
        """Put one unacknowledged job back in its queue now, as the visibility timeout would.

        Only when the worker holding it (``holder``, from the events) is offline: no heartbeat
        (``holder_online`` is the model's liveness) and no answer to a ping sent now.  A worker
        that is alive may still run the job, and a requeue would run it twice.  Refusals are
        audited; the requeue is one script that does nothing when the job left ``unacked``.
        """
        if not isinstance(job, UnackedJob) or not is_key(job.tag) or not job.value:
            raise ValidationFailed({"job": "no unacknowledged job selected"})
        params: dict[str, Any] = {
            "task": job.task,
            "id": job.id,
            "queue": job.queue,
            "worker": holder,
            "delivered_at": job.delivered_at,
        }
        self.guard("requeue_unacked", job.tag, params)
        what = f"{job.short_name} {job.id[:8]}"
        wait = "wait for it or for the visibility timeout"

        def refuse(why: str) -> Outcome:
            return self._done(
                "requeue_unacked", job.tag, params, Outcome(False, why, task_id=job.id)
            )

        if not holder:
            return refuse(
                f"requeue of {what} refused: the console saw no event saying which worker holds "
                f"it, so it cannot tell whether that worker still runs it; {wait}"
            )
        if holder_online:
            return refuse(
                f"requeue of {what} refused: {holder} is alive (heartbeats): it may still run "
                f"this job; {wait}"
            )
        answered = self._control().ping([holder], timeout=ping_timeout)
        if holder in answered:
            return refuse(
                f"requeue of {what} refused: {holder} is alive (answered ping): it may still run "
                f"this job; {wait}"
            )
        params["ping"] = "no answer"

        def send() -> Outcome:
            if self.unacked_jobs is None:
                raise RuntimeError("no broker connection to requeue jobs")
            try:
                result, queues = self.unacked_jobs().requeue(job)
            except LookupError as exc:
                return Outcome(False, f"requeue of {what} refused: {exc}", task_id=job.id)
            where = ", ".join(queues)
            if result == REQUEUED:
                return Outcome(
                    True,
                    f"requeued {what} to {where} (it runs next there); it was held by {holder}, "
                    "offline",
                    task_id=job.id,
                )
            if result == GONE:
                return Outcome(
                    False,
                    f"{what} is already acked or restored (no longer in unacked): nothing "
                    "was pushed",
                    task_id=job.id,
                    warning=True,
                )
            return Outcome(
                False,
                f"{what} changed in unacked since it was read: nothing was pushed; read it again",
                task_id=job.id,
                warning=True,
            )

        return self._send_audited("requeue_unacked", job.tag, params, send)


def _gone(job: QueuedJob) -> Outcome:
    return Outcome(
        False,
        f"{job.short_name} {job.id[:8]} is no longer waiting in {job.queue}: already taken by "
        "a worker (or removed meanwhile); nothing was changed",
        task_id=job.id,
        warning=True,
    )


def _job_params(job: QueuedJob) -> dict[str, Any]:
    return {
        "queue": job.queue,
        "task": job.task,
        "band": job.band,
        "position": job.position,
        "delivery_tag": job.delivery_tag,
    }


def _check_job(job: Any) -> QueuedJob:
    """``job`` is a waiting job read from the broker, with a usable id and payload."""
    if not isinstance(job, QueuedJob) or not is_key(job.id) or not job.payload:
        raise ValidationFailed({"job": "no waiting job selected"})
    return job


def _replies_by_host(replies: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {h: b for r in replies or [] if isinstance(r, dict) for h, b in r.items()}


def _acknowledged(replies: list[dict[str, Any]] | None, host: str) -> bool:
    """``host`` answered without an error."""
    body = _replies_by_host(replies).get(host)
    return isinstance(body, dict) and "ok" in body


def _any_terminated(replies: list[dict[str, Any]] | None) -> bool:
    """Some worker held the task and terminated it (``terminate: <id>``, not ``tasks unknown``)."""
    for body in _replies_by_host(replies).values():
        text = body.get("ok") if isinstance(body, dict) else None
        if isinstance(text, str) and text.startswith("terminate: ") and text != TERMINATE_UNKNOWN:
            return True
    return False
