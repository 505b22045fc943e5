"""tui.core.formatting: durations that fit their column, runtime and wait derived at display time."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui.core.formatting import age, duration, span, task_runtime, task_wait
from tui.core.model import ClusterModel

T0 = 1_700_000_000.0


def _ev(kind: str, t: float, host: str = "celery@w1", **fields: object) -> dict[str, object]:
    return {
        "type": kind,
        "uuid": "u1",
        "hostname": host,
        "timestamp": T0 + t,
        "local_received": T0 + t,
        "clock": int(t * 1000),
        "pid": 1,
        **fields,
    }


def _failed_task(sent: float = 0.0, received: float = 0.010) -> object:
    """A task as the model keeps it after sent, received, started at .046, failed at .052."""
    m = ClusterModel()
    m.apply(
        [
            _ev(
                "task-sent",
                sent,
                host="publisher@api",
                name="afirgen_tasks.reports.generate_fir_pdf",
                queue="reports",
            ),
            _ev("task-received", received, name="afirgen_tasks.reports.generate_fir_pdf"),
            _ev("task-started", 0.046),
            _ev("task-failed", 0.052, exception="ValueError('x')", traceback="Traceback..."),
        ]
    )
    task = m.get_task("u1")
    assert task is not None and task.state == "FAILURE"
    return task


# ---- runtime --------------------------------------------------------------------------------
def test_failed_task_runtime_is_finished_minus_started() -> None:
    task = _failed_task()
    assert task.runtime is None  # task-failed carries none: the model keeps what the event said
    assert task_runtime(task) == pytest.approx(0.006, abs=1e-6)
    assert duration(task_runtime(task)) == "6ms"


def test_reported_runtime_wins_and_unknown_times_stay_unknown() -> None:
    assert task_runtime(SimpleNamespace(runtime=0.25, started=T0, finished=T0 + 9)) == 0.25
    assert task_runtime(SimpleNamespace(runtime=None, started=None, finished=T0)) is None
    assert task_runtime(SimpleNamespace(runtime=None, started=T0, finished=None)) is None
    assert task_runtime(SimpleNamespace()) is None


# ---- wait -------------------------------------------------------------------------------------
def test_wait_a_few_ms_negative_reads_as_zero() -> None:
    # the publisher stamps task-sent after publishing: the worker received and started first
    task = _failed_task(sent=0.050, received=0.010)
    assert task.wait_time == pytest.approx(-0.004, abs=1e-6)
    assert task_wait(task) == 0.0
    assert duration(task_wait(task)) == "0ms"


def test_wait_far_negative_is_clock_skew_and_stays_unknown() -> None:
    assert task_wait(SimpleNamespace(wait_time=-5.0)) is None
    assert duration(task_wait(SimpleNamespace(wait_time=-5.0))) == "-"
    assert task_wait(SimpleNamespace(wait_time=None)) is None
    assert task_wait(SimpleNamespace(wait_time=2.5)) == 2.5


def test_span_bounds() -> None:
    assert span(None, 1.0) is None and span(1.0, None) is None
    assert span(10.0, 10.0) == 0.0
    assert span(10.0, 9.0) == 0.0  # exactly the tolerance
    assert span(10.0, 8.9) is None


# ---- duration ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.002, "2ms"),
        (0.85, "850ms"),
        (0.9996, "1.0s"),
        (1.1, "1.1s"),
        (59.96, "1m00s"),
        (185, "3m05s"),
        (7800, "2h10m"),
        (99 * 3600 + 59 * 60, "99h59m"),
        (5 * 86400 + 3 * 3600, "5d03h"),
        (None, "-"),
        (-1.0, "-"),
        (float("nan"), "-"),
    ],
)
def test_duration_precise(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "width", "text"),
    [
        (0.002, 3, "2ms"),
        (0.85, 4, "0.8s"),
        (1.1, 4, "1.1s"),
        (185, 4, "3m"),
        (7800, 4, "2h"),
        (5 * 86400 + 3 * 3600, 4, "5d"),
        (0.002, 2, "0s"),
    ],
)
def test_duration_coarser_with_its_unit_when_narrow(seconds: float, width: int, text: str) -> None:
    assert duration(seconds, width) == text


@given(st.floats(min_value=0, max_value=99 * 86400), st.integers(min_value=3, max_value=8))
def test_duration_fits_and_always_ends_with_a_unit(seconds: float, width: int) -> None:
    text = duration(seconds, width)
    assert len(text) <= width
    assert len(duration(seconds)) <= 6
    assert text.endswith(("ms", "s", "m", "h", "d"))
    assert text[0].isdigit()


def test_age_narrow() -> None:
    assert age(T0 - 605, now=T0) == "10m05s"
    assert age(T0 - 605, now=T0, width=5) == "10m"
    assert age(None) == "never"


def test_sparkline_one_waiting_job_is_a_low_bar_and_big_counts_still_scale():
    from tui.core.formatting import sparkline

    assert sparkline([0, 0, 1]) == "▁▁▂"
    assert sparkline([0, 7]) == "▁█"
    assert sparkline([0, 50, 100]) == "▁▅█"
    assert sparkline([]) == "" and sparkline([0, 0]) == "▁▁"


def test_elapsed_of_a_running_task_is_marked_and_flagged_past_the_threshold() -> None:
    from tui.core.formatting import elapsed, threshold

    assert elapsed(T0, T0 + 192, 7) == ("▸3m12s", False)
    assert elapsed(T0, T0 + 725, 7, long_after=600) == ("!12m05s", True)
    assert elapsed(T0, T0 + 725, 7, long_after=0) == ("▸12m05s", False)  # 0: never flagged
    assert elapsed(None, T0, 7) == ("▸-", False)  # start unknown
    assert len(elapsed(T0, T0 + 40 * 3600, 7)[0]) <= 7
    assert [threshold(s) for s in (600, 3600, 90, 2.0)] == ["10m", "1h", "90s", "2s"]
