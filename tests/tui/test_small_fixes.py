"""Issue 14, item 12: the smaller things an operator tripped over on a night shift."""

from __future__ import annotations

import random

from tui.core.query import TaskFilter, parse_query
from tui.demo import sandbox as demo
from tui.ui.app import AfirgenApp
from tui.ui.widgets.panes import WorkersPane

DEMO_QUEUES = ["default", "email", "reports", "analytics", "cleanup"]


async def test_prio_outside_the_scale_is_named_like_other_bad_terms(console):
    assert TaskFilter("prio:11").errors == ["priority 11 is outside 1–10"]
    assert TaskFilter("prio:>=8 prio:3-7").errors == []
    assert parse_query("prio:0,5").errors == ["priority 0 is outside 1–10"]
    async with console.run_test(size=(160, 30)) as pilot:
        await pilot.press("slash", *"prio:11")
        await pilot.pause()
        status = str(console.query_one("#status").render())
        assert "⚠ priority 11 is outside 1–10" in status, status


async def test_status_shows_only_the_counters_that_counted(console, sources, events):
    async with console.run_test(size=(200, 30)) as pilot:
        console.console_screen.tick()
        await pilot.pause()
        assert "skipped" not in str(console.query_one("#status").render())
        sources.feed(events.task("success")[1])
        sources.boundary.events.skip("event is not a JSON object")
        console.console_screen.tick()
        await pilot.pause()
        status = str(console.query_one("#status").render())
        assert "1 bad/unknown events skipped" in status, status
        assert "fields clipped" not in status and "cleaned" not in status, status


async def test_workers_queues_column_says_how_many_more_at_120_columns(console, sources, events):
    async with console.run_test(size=(120, 36)) as pilot:
        sources.feed([events.worker_online("demo-a@box"), events.worker_online("w1@box")])
        console.console_screen.tick()
        console.model.set_worker_queues("demo-a@box", DEMO_QUEUES)
        console.model.set_worker_queues("w1@box", ["default", "email"])
        pane = console.query_one("#workers", WorkersPane)
        pane.show(console.model.workers())
        await pilot.pause()
        assert (
            str(pane.get_cell("demo-a@box", "queues")) == "analytics,cleanup,+3"
        )  # sorted by the model
        assert str(pane.get_cell("w1@box", "queues")) == "default,email"
        # the whole column is on screen at 120 columns: nothing is cut at the edge
        used = sum(col.get_render_width(pane) for col in pane.ordered_columns)
        assert used <= pane.scrollable_content_region.width, (used, pane.size)


def test_the_demo_failure_note_matches_what_the_generator_sends():
    class Counter:
        def __init__(self) -> None:
            self.sent: list[tuple[str, list]] = []

        def send_task(self, name: str, args=(), kwargs=None, priority=None) -> None:  # noqa: ANN001
            self.sent.append((name, list(args or [])))

    app, rng = Counter(), random.Random(3)
    for _ in range(20_000):
        demo.Sandbox._send_one(app, rng, list(range(1, 301)))
    failing = sum(1 for name, args in app.sent if name.endswith("pdf_report") and args[0] > 300)
    emails = sum(1 for name, _ in app.sent if ".email." in name)
    assert abs(failing / len(app.sent) - demo.FAILING_REPORT_SHARE) < 0.01
    assert abs(emails / len(app.sent) - demo.EMAIL_SHARE) < 0.015
    note = demo.Sandbox.failure_note()
    assert "1 job in 17" in note and "generate_pdf_report" in note, note
    assert "~15% of e-mails with 421" in note and "RETRY" in note, note
    assert demo.SMTPSink().refuse_rate == demo.SMTP_REFUSE_RATE


async def test_demo_banner_and_quit_say_what_the_sandbox_does(screen_settings, sources):
    banner = f"demo sandbox: …; {demo.Sandbox.failure_note()}"
    app = AfirgenApp(
        screen_settings,
        sources,
        autostart=False,
        banner=banner,
        quit_note="stopping the demo sandbox…",
    )
    said: list[str] = []
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        assert any("failures are injected on purpose" in n.message for n in app._notifications)
        original = app.notify

        def spy(message: str, **kwargs: object) -> None:
            said.append(message)
            original(message, **kwargs)  # type: ignore[arg-type]

        app.notify = spy  # type: ignore[method-assign]
        await pilot.press("q")
        await pilot.pause()
    assert said == ["stopping the demo sandbox…"], "said on screen as q is pressed"
