"""Property tests: any input to the validators is accepted or rejected with a message, never a crash,
and nothing is sent when it is rejected."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afirgen_tasks.factory import create_app, task_names
from afirgen_tasks.priority import PriorityError, validate_priority
from afirgen_tasks.routing import QUEUES
from afirgen_tasks.settings import load_settings
from tui.actions import (
    Actions,
    AuditLog,
    EnqueueRequest,
    ValidationFailed,
    parse_json,
    validate_enqueue,
)
from tui.core.query import TaskFilter


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prop")
    (tmp / "c.toml").write_text("")
    settings = load_settings(
        tmp / "c.toml",
        celery_broker_url="memory://",
        celery_result_backend="cache+memory://",
        paths_data_dir=tmp / "var",
    )
    app = create_app(settings, main="prop")
    yield app
    app.close()


json_text = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, min_size=1, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, min_size=1, max_size=4)
    ),
    max_leaves=10,
).map(json.dumps)
any_text = st.one_of(
    st.text(max_size=60),
    json_text,
    st.sampled_from(
        ["", " ", "[", "{", "[]", "{}", "null", "1e999", "[" * 2000, "NaN", "\x00", "ünïcödé"]
    ),
)

FIELDS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FIELDS
@given(
    task=st.one_of(
        st.text(max_size=30),
        st.sampled_from(
            [
                "afirgen_tasks.cleanup.archive_old_records",
                "afirgen_tasks.email.send_notification_email",
                "afirgen_tasks.reports.generate_excel_report",
            ]
        ),
    ),
    args=any_text,
    kwargs=any_text,
    queue=st.one_of(st.text(max_size=12), st.sampled_from(QUEUES)),
    priority=any_text,
    countdown=any_text,
    eta=any_text,
)
def test_enqueue_validation_accepts_or_names_the_problem(
    app, task, args, kwargs, queue, priority, countdown, eta
):
    try:
        req = validate_enqueue(
            app, task, args, kwargs, queue, priority, countdown, eta, known_queues=QUEUES
        )
    except ValidationFailed as exc:
        assert exc.errors, "a rejection names at least one field"
        for field, message in exc.errors.items():
            assert field in {"task", "args", "kwargs", "queue", "priority", "countdown", "eta"}
            assert isinstance(message, str) and message.strip()
        return
    # accepted: everything is well-formed and within bounds
    assert req.task in task_names(app)
    assert isinstance(req.args, list) and isinstance(req.kwargs, dict)
    assert req.queue in QUEUES and 1 <= req.priority <= 10
    assert req.countdown is None or 0 <= req.countdown
    assert not (req.countdown is not None and req.eta is not None)


@FIELDS
@given(text=any_text)
def test_parse_json_never_crashes(text):
    for kind in (list, dict):
        try:
            value = parse_json(text, kind, "field")
        except ValidationFailed as exc:
            assert "field" in exc.errors
        else:
            assert isinstance(value, kind)


@FIELDS
@given(value=st.one_of(st.text(max_size=10), st.integers(), st.floats(), st.booleans(), st.none()))
def test_priority_is_one_to_ten_or_a_clear_error(value):
    try:
        p = validate_priority(value)
    except PriorityError as exc:
        assert "priority" in str(exc)
    else:
        assert isinstance(p, int) and 1 <= p <= 10


@FIELDS
@given(query=st.text(max_size=40))
def test_task_filter_compiles_any_text(query):
    flt = TaskFilter(query)
    from tui.core.model import TaskRecord

    task = TaskRecord("0123456789abcdef")
    task.name, task.state, task.queue, task.hostname, task.priority = (
        "afirgen_tasks.x.y",
        "SUCCESS",
        "email",
        "w@h",
        5,
    )
    assert flt(task) in (True, False)


def test_rejected_input_sends_nothing(app, tmp_path):
    """The action layer only takes a validated request; a rejected form never reaches it."""
    audit = AuditLog(tmp_path / "audit.log")
    actions = Actions(app, audit)
    with pytest.raises(ValidationFailed):
        validate_enqueue(
            app, "afirgen_tasks.cleanup.archive_old_records", "[1, 2, 3]", "", "cleanup", "5"
        )
    assert audit.read() == []
    out = actions.enqueue(
        EnqueueRequest("afirgen_tasks.cleanup.archive_old_records", [], {"days": 5}, "cleanup", 5)
    )
    assert out.ok and len(audit.read()) == 1
    with app.connection_for_write() as conn:
        assert conn.default_channel.queue_purge("cleanup") == 1


@FIELDS
@given(spec=st.text(max_size=8), op=st.sampled_from(["", ">=", "<=", ">", "<", "="]))
def test_priority_filter_terms_never_crash(spec, op):
    # found by the property test above: '𑁒'.isdigit() is True but int('𑁒') raises
    from tui.history import parse_query

    flt = TaskFilter(f"prio:{op}{spec}")
    assert isinstance(flt.errors, list)
    assert isinstance(parse_query(f"prio:{op}{spec}").errors, list)


@pytest.mark.parametrize("text", ["𑁒", "٣", "3-٣", "١٠"])
def test_non_ascii_digits_are_rejected_with_a_message(text):
    from afirgen_tasks.base import PermanentTaskError
    from afirgen_tasks.records import parse_fir_id

    with pytest.raises(PriorityError):
        validate_priority(text)
    with pytest.raises(PermanentTaskError):
        parse_fir_id(text)
    assert TaskFilter(f"prio:{text}").errors
