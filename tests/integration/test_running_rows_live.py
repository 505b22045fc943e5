"""Issue 14, item 8, against a real worker: a running task's Runtime counts up while it runs,
is flagged past ``[console] long_running_after`` and counted in the status line, and reads
as a plain runtime once it finished."""

from __future__ import annotations

import pytest

from tests.integration.test_actions_live import (
    EMAIL,
    cell,
    has_state,
    live_console,
    live_settings,  # noqa: F401 - a fixture
    until,
)
from tui.demo import SMTPSink
from tui.ui.widgets.panes import TasksPane

pytestmark = pytest.mark.integration

SMTP_DELAY_S = 6.0


@pytest.fixture
def smtp_6s():
    sink = SMTPSink(delay=(SMTP_DELAY_S, SMTP_DELAY_S), refuse_rate=0.0, seed=1).start()
    yield sink
    sink.stop()


def status(console) -> str:
    return str(console.query_one("#status").render())


async def test_running_row_counts_up_and_is_flagged_while_the_job_runs(
    live_settings,  # noqa: F811
    afirgen_app,
    afirgen_env,
    worker_factory,
    smtp_6s,
):
    env = {
        **afirgen_env,
        "AFIRGEN_SMTP_HOST": "127.0.0.1",
        "AFIRGEN_SMTP_PORT": str(smtp_6s.port),
        "AFIRGEN_SMTP_SECURITY": "none",
        "AFIRGEN_SMTP_TIMEOUT": "60",
    }
    settings = live_settings.model_copy(update={"console_long_running_after": 2.0})
    worker_factory(queues=("email",), env=env)
    async with live_console(settings, afirgen_app) as (console, pilot):
        job = afirgen_app.send_task(EMAIL, args=["officer9@police.example.in", "slow", "six s"])
        tasks = console.query_one("#tasks", TasksPane)
        await until(
            pilot,
            lambda: has_state(tasks, job.id, "STARTED") and smtp_6s.sessions >= 1,
            message="job running and talking to the slow SMTP sink",
        )
        first = cell(tasks, job.id, "runtime")
        assert first.startswith("▸"), first  # running: elapsed so far, not "-"
        seen = {first}
        await until(
            pilot,
            lambda: seen.add(cell(tasks, job.id, "runtime")) or len(seen) >= 2,
            timeout=5,
            message="the runtime cell changes while the job runs",
        )
        # past long_running_after (2 s): flagged on the row and counted in the status line
        await until(
            pilot,
            lambda: (
                cell(tasks, job.id, "runtime").startswith("!")
                and "1 running > 2s" in status(console)
            ),
            timeout=6,
            message="the job flagged as long-running",
        )
        await until(
            pilot,
            lambda: has_state(tasks, job.id, "SUCCESS"),
            timeout=30,
            message="job SUCCESS",
        )
        done = cell(tasks, job.id, "runtime")
        assert done[0].isdigit() and done.endswith("s"), done  # a plain finished runtime
        assert console.model.get_task(job.id).runtime >= SMTP_DELAY_S - 1
        await until(
            pilot,
            lambda: "running >" not in status(console),
            timeout=3,
            message="the long-running count gone",
        )
