"""The exception-type parser and the failure groups (``f``), and the ``exc:`` filter term.

The exception texts are made the way a worker makes them: the exception raised for real,
its repr by kombu's ``safe_repr`` of Celery's ``get_pickled_exception`` and its traceback by
billiard's ``ExceptionInfo`` (what ``task-failed`` carries, see ``celery.worker.request``).
"""

from __future__ import annotations

import smtplib
import sys

import pytest
from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.utils.serialization import get_pickled_exception
from kombu.utils.encoding import safe_repr

from afirgen_tasks.base import PermanentTaskError
from tui.core.failures import UNKNOWN, exception_type, failure_type, group_failures
from tui.core.model import TaskRecord
from tui.core.query import TaskFilter, parse_query
from tui.core.states import FAILURE, RETRY, SUCCESS


def celery_texts(exc: BaseException) -> tuple[str, str]:
    """``(exception, traceback)`` as a worker's ``task-failed`` event carries them."""
    try:
        raise exc
    except BaseException:
        einfo = ExceptionInfo()
    # a prefork pool pickles the wrapper, which unpickles as the exception itself
    return safe_repr(get_pickled_exception(einfo.exception.exc)), einfo.traceback


def _chained() -> None:
    try:
        {}["fir"]
    except KeyError as exc:
        raise RuntimeError("lookup failed") from exc


def chained_texts() -> tuple[str, str]:
    try:
        _chained()
    except RuntimeError:
        einfo = ExceptionInfo()
    return safe_repr(einfo.exception.exc), einfo.traceback


@pytest.mark.parametrize(
    "exc, expected",
    [
        (PermanentTaskError("FIR 99999 does not exist"), "PermanentTaskError"),
        (smtplib.SMTPConnectError(421, b"Service not available"), "SMTPConnectError"),
        (TimeLimitExceeded(60), "TimeLimitExceeded"),
        (SoftTimeLimitExceeded(), "SoftTimeLimitExceeded"),
        (
            WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL) Job: 0."),
            "WorkerLostError",
        ),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError"),
        (KeyError("[/] 'x'"), "KeyError"),
    ],
)
def test_type_of_real_celery_exception_texts(exc: BaseException, expected: str) -> None:
    exception, traceback = celery_texts(exc)
    assert exception_type(exception, traceback) == expected
    # the traceback alone (module-qualified there: smtplib.SMTPConnectError) names the same
    assert exception_type("", traceback) == expected
    assert exception_type(None, traceback) == expected


def test_a_bare_message_falls_back_to_the_traceback_last_exception_line() -> None:
    _, traceback = celery_texts(ValueError("FIR 99999 does not exist"))
    assert exception_type("FIR 99999 does not exist", traceback) == "ValueError"
    # chained exceptions: the one raised last
    exception, traceback = chained_texts()
    assert "KeyError" in traceback and exception.startswith("RuntimeError(")
    assert exception_type("lookup failed", traceback) == "RuntimeError"
    # no traceback: nothing names a type
    assert exception_type("FIR 99999 does not exist") == UNKNOWN
    assert exception_type("boom") == UNKNOWN  # a lowercase word is a message, not a class
    assert exception_type("12:30 it broke") == UNKNOWN
    assert exception_type(None, None) == UNKNOWN


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11+")
def test_a_note_after_the_exception_line_is_not_taken_for_the_type() -> None:
    exc = ValueError("bad fir")
    exc.add_note("while importing batch 7")
    _, traceback = celery_texts(exc)
    assert traceback.rstrip().endswith("while importing batch 7")
    assert exception_type("bad fir", traceback) == "ValueError"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("smtplib.SMTPConnectError: (421, b'down')", "SMTPConnectError"),
        ("celery.exceptions.TimeLimitExceeded: TimeLimitExceeded(60,)", "TimeLimitExceeded"),
        ("SMTPRecipientsRefused({'a@b': (550, b'no')})", "SMTPRecipientsRefused"),
        ("KeyError", "KeyError"),
        ("  OSError(28, 'No space left on device')", "OSError"),
        ("Error: bad thing", "Error"),
        ("[bold]x[/]", UNKNOWN),
    ],
)
def test_type_of_texts_seen_in_history_and_backends(text: str, expected: str) -> None:
    assert exception_type(text) == expected


def test_failure_type_says_none_only_for_tasks_without_an_exception() -> None:
    assert failure_type(None, None, SUCCESS) is None
    assert failure_type(None, None, FAILURE) == UNKNOWN
    assert failure_type("SMTPConnectError(421)", None, RETRY) == "SMTPConnectError"


def _failed(
    uuid: str,
    name: str,
    exception: str | None,
    finished: float,
    host: str = "w1@box",
    traceback: str | None = None,
    state: str = FAILURE,
) -> TaskRecord:
    t = TaskRecord(uuid)
    t.name, t.state, t.hostname = name, state, host
    t.exception, t.traceback, t.finished = exception, traceback, finished
    return t


EMAIL = "afirgen_tasks.email.send_fir_email"
PDF = "afirgen_tasks.reports.generate_pdf_report"


def _tasks() -> list[TaskRecord]:
    _, vtb = celery_texts(ValueError("FIR 1 does not exist"))
    return [
        _failed("e1", EMAIL, "SMTPConnectError(421, b'down')", 100.0, "w1@box"),
        _failed("p1", PDF, "PermanentTaskError('FIR 99999 does not exist')", 101.0, "w1@box"),
        _failed("e2", EMAIL, "SMTPConnectError(421, b'busy')", 105.0, "w2@box"),
        _failed("p2", PDF, "FIR 1 does not exist", 106.0, "w3@box", traceback=vtb),
        _failed("e3", EMAIL, "SMTPConnectError(421, b'later')", 103.0, "w1@box"),
        _failed("p3", PDF, "PermanentTaskError('FIR 5 does not exist')", 110.0, "w2@box"),
        _failed("s1", PDF, None, 111.0, state=SUCCESS),
        _failed("r1", EMAIL, "SMTPConnectError(421)", 112.0, state=RETRY),
        _failed("x1", EMAIL, "boom", 90.0, "w4@box"),
    ]


def test_groups_count_first_last_workers_and_the_latest_sample() -> None:
    groups = group_failures(_tasks())
    assert [(g.name, g.exc_type, g.count) for g in groups] == [
        (EMAIL, "SMTPConnectError", 3),
        (PDF, "PermanentTaskError", 2),
        (PDF, "ValueError", 1),  # the bare message, typed by its traceback
        (EMAIL, UNKNOWN, 1),  # equal counts: the latest failure first
    ]
    smtp = groups[0]
    assert (smtp.first, smtp.last) == (100.0, 105.0)
    assert list(smtp.workers) == ["w1@box", "w2@box"]
    assert smtp.sample == "SMTPConnectError(421, b'busy')"  # the latest, not the last listed
    assert sorted(smtp.uuids) == ["e1", "e2", "e3"]
    assert groups[1].sample == "PermanentTaskError('FIR 5 does not exist')"


def test_workers_are_capped_with_a_count_of_the_rest() -> None:
    tasks = [_failed(f"t{i}", EMAIL, "OSError(1)", 100.0 + i, f"w{i}@box") for i in range(5)]
    (group,) = group_failures(tasks)
    assert group.workers_text() == "w0@box, w1@box, w2@box, +2"


def test_each_group_filter_shows_exactly_that_group_in_the_pane() -> None:
    tasks = _tasks()
    groups = group_failures(tasks)
    assert groups[0].filter_text() == f"state:failure name:{EMAIL} exc:SMTPConnectError"
    for group in groups:
        flt = TaskFilter(group.filter_text())
        assert not flt.errors, flt.errors
        assert sorted(t.uuid for t in tasks if flt(t)) == sorted(group.uuids), group


@pytest.mark.parametrize(
    "query, expected",
    [
        ("exc:SMTPConnectError", ["e1", "e2", "e3", "r1"]),  # a retry carries one too
        ("exc:smtp", ["e1", "e2", "e3", "r1"]),  # prefix, any case
        ("exc:ConnectError", ["e1", "e2", "e3", "r1"]),  # a substring of the text
        ("exc:busy", ["e2"]),  # the message
        ("exc:valueerror", ["p2"]),  # typed by its traceback: not in the text
        ("exc:permanent,value", ["p1", "p2", "p3"]),  # alternatives
        ("exception:unknown", ["x1"]),
        ("exc:SMTP state:failure", ["e1", "e2", "e3"]),
        ("exc:nothing", []),
    ],
)
def test_exc_term_in_the_pane_filter(query: str, expected: list[str]) -> None:
    flt = TaskFilter(query)
    assert not flt.errors
    assert sorted(t.uuid for t in _tasks() if flt(t)) == expected


def test_exc_term_parses_for_the_history_search() -> None:
    parsed = parse_query("exc:SMTP,Perm name:email")
    assert [(t.kind, t.needles) for t in parsed.terms] == [
        ("exc", ["smtp", "perm"]),
        ("name", ["email"]),
    ]
    assert "exc" in TaskFilter("nope:x").errors[0]  # named among the fields
