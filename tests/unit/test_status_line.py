"""What gives way on the status line, and what never does (tui/ui/status_line.py)."""

from __future__ import annotations

from tui.ui.status_line import GIVE_WAY, RANK, StatusFacts, status_line


def facts(**over) -> StatusFacts:
    base = dict(
        broker="redis://:***@redis.internal:6379/0",
        connection="● connected",
        workers_online=2,
        workers=2,
        rate=3.2,
        received=1204,
        applied=1204,
    )
    base.update(over)
    return StatusFacts(**base)


def test_a_line_that_fits_is_whole() -> None:
    line = str(status_line(facts(), 120))
    assert (
        line
        == "redis://:***@redis.internal:6379/0 ● connected │ 2/2 workers │ 3.2/s │ ev 1,204↓ 1,204✓ 0✗"
    )


def test_the_least_important_goes_first() -> None:
    full = facts(order="newest sent first", buffered=5, dropped=3)
    assert str(status_line(full, 200)) == (
        "redis://:***@redis.internal:6379/0 ● connected │ newest sent first (s) │ 2/2 workers │ "
        "3.2/s │ ev 1,204↓ 1,204✓ 3✗ 5 buffered"
    )
    assert str(status_line(full, 100)) == (
        "redis://:***@redis.internal:6379/0 ● connected │ 2/2 workers │ 3.2/s │ ev 1,204↓ 1,204✓ 3✗"
    )
    assert str(status_line(full, 60)) == "redis.internal:6379/0 ● connected │ 2/2 workers │ ev 3✗"
    # narrower than what must stay: nothing of that is cut
    assert str(status_line(full, 10)) == "● connected │ ev 3✗"


def test_a_worker_offline_stays_longer_than_when_all_are_online() -> None:
    # same width: with every worker online the count gives way before the broker's host
    all_online = str(status_line(facts(dropped=1), 50))
    one_offline = str(status_line(facts(dropped=1, workers_online=1), 50))
    assert "workers" not in all_online, all_online
    assert "1/2 workers" in one_offline, one_offline


def test_the_connection_state_stays_and_its_reason_goes() -> None:
    lost = "✘ disconnected, retry in 4s (ConnectionError: Error 111 connecting to redis.internal)"
    line = str(status_line(facts(connection=lost, filter_text="state:failure"), 80))
    assert "✘ disconnected, retry in 4s" in line and "ConnectionError" not in line, line
    assert "filter: state:failure" in line and line.endswith("0✗"), line


def test_a_filter_too_long_for_the_line_keeps_whole_terms_and_says_how_many_are_left_out() -> None:
    terms = [f"name:task{i:02d}" for i in range(12)]
    line = str(status_line(facts(filter_text=" ".join(terms), dropped=7, bad=2), 80))
    assert len(line) <= 80, line
    shown = line.split("filter: ", 1)[1].split(" │ ", 1)[0]
    kept, more = shown.split(" … +")  # noqa: RUF001
    assert kept.split() == terms[: len(kept.split())], shown  # whole terms, in order
    assert int(more) == len(terms) - len(kept.split())
    assert line.endswith("│ ev 7✗ │ 2 bad"), line


def test_filter_errors_are_shortened_never_dropped() -> None:
    errors = ["no state 'nope' (states: pending received started success failure retry)"]
    wide = str(status_line(facts(filter_text="state:nope", filter_errors=errors), 200))
    assert "⚠ no state 'nope' (states:" in wide, wide
    narrow = str(status_line(facts(filter_text="state:nope", filter_errors=errors), 80))
    assert "filter: state:nope ⚠ no state 'nope'" in narrow and "states:" not in narrow, narrow
    tight = str(status_line(facts(filter_text="state:nope", filter_errors=errors), 50))
    assert tight == "● connected │ filter: state:nope ⚠ 1 error │ ev 0✗", tight
    narrower = str(status_line(facts(filter_text="state:nope", filter_errors=errors), 40))
    assert narrower == "● connected │ filter: … +1 ⚠ 1 error │ ev 0✗", narrower  # noqa: RUF001
    # at 80 columns, three terms and their error: the terms stay whole, the error is counted
    line = str(
        status_line(
            facts(
                filter_text="state:failure queue:reports prio:>=11",
                filter_errors=["priority 11 is outside 1–10"],  # noqa: RUF001
            ),
            80,
        )
    )
    assert "filter: state:failure queue:reports prio:>=11 ⚠ 1 error" in line, line


def test_the_cluster_name_and_read_only_always_stay() -> None:
    line = str(status_line(facts(cluster="prod", read_only=True, filter_text="queue:email"), 60))
    assert line.startswith("prod: ● connected │ READ-ONLY │ filter: queue:email"), line


def test_every_step_has_a_rank_the_higher_the_sooner() -> None:
    assert len(set(GIVE_WAY)) == len(GIVE_WAY)
    ranks = [RANK[step] for step in GIVE_WAY]
    assert ranks == sorted(ranks, reverse=True) and min(ranks) > 0


def test_a_broker_without_a_host_gives_way_whole() -> None:
    line = str(status_line(facts(broker="memory://", filter_text="queue:email"), 50))
    assert line == "● connected │ filter: queue:email │ ev 0✗", repr(line)


def test_received_and_applied_outlast_the_cleaned_count() -> None:
    """Operator review: during a flood the line read "ev 255,708✗ │ 99,145 cleaned" and hid
    what was received and applied, the figures being watched."""
    busy = facts(received=1_021_284, applied=863_186, dropped=108_098, cleaned=99_145)
    for width in range(40, 160):
        line = str(status_line(busy, width))
        if "cleaned" in line:
            assert "1,021,284↓" in line, (width, line)
    assert RANK["clipped and cleaned"] > RANK["received and applied"]
