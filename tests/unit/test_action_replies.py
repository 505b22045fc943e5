"""Workers' control replies in words: the exact texts of celery/worker/control.py, made readable."""

from __future__ import annotations

from tui.actions import _replies_to_words

A = "87ed1a27-5a0e-4c43-9f6f-3f0d1c2b9e11"
B = "0c1d2e3f-aaaa-bbbb-cccc-ddddeeeeffff"


def test_revoke_reply_shows_short_ids_not_a_python_set():
    ok, words = _replies_to_words([{"w1@box": {"ok": f"tasks {{'{A}'}} flagged as revoked"}}], None)
    assert ok and words == {"w1@box": "flagged 87ed1a27 as revoked"}
    ok, words = _replies_to_words(
        [{"w1@box": {"ok": f"tasks {{'{A}', '{B}'}} flagged as revoked"}}], None
    )
    assert words == {"w1@box": "flagged 87ed1a27, 0c1d2e3f as revoked"}


def test_terminate_replies_say_whether_the_worker_ran_it():
    ok, words = _replies_to_words(
        [{"w1@box": {"ok": "terminate: tasks unknown"}}, {"w2@box": {"ok": f"terminate: {A}"}}],
        None,
    )
    assert words == {"w1@box": "was not running it", "w2@box": "terminating 87ed1a27"}


def test_other_replies_errors_and_missing_hosts_unchanged():
    ok, words = _replies_to_words(
        [
            {"w1@box": {"ok": "pool will grow"}},
            {"w2@box": {"error": "pool_grow is not supported with autoscale."}},
        ],
        ["w1@box", "w2@box", "w3@box"],
    )
    assert not ok
    assert words == {
        "w1@box": "pool will grow",
        "w2@box": "refused: pool_grow is not supported with autoscale.",
        "w3@box": "no reply (worker down or busy?)",
    }
    assert _replies_to_words([], None) == (False, {"*": "no worker replied"})
