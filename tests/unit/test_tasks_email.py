"""E-mail tasks: .eml outbox, SMTP delivery against a real local server, idempotency, errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from celery import Celery, Task

from afirgen_tasks import records
from afirgen_tasks.base import PermanentTaskError, TransientTaskError
from afirgen_tasks.factory import create_app
from afirgen_tasks.settings import Settings, load_settings

CONFIRM = "afirgen_tasks.email.send_fir_confirmation_email"
NOTIFY = "afirgen_tasks.email.send_notification_email"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(
        None,
        paths_data_dir=tmp_path / "data",
        paths_report_dir=tmp_path / "reports",
        paths_outbox_dir=tmp_path / "outbox",
        paths_temp_dir=tmp_path / "tmp",
        celery_task_max_retries=2,
        **overrides,
    )


def make_app(tmp_path: Path, **overrides: Any) -> Celery:
    settings = make_settings(tmp_path, **overrides)
    app = create_app(settings)
    records.create_sample_db(settings.fir_db_path, count=20, seed=9)
    return app


def spy_retries(monkeypatch: pytest.MonkeyPatch, task: Task) -> list[BaseException]:
    """Record every ``self.retry`` call of ``task`` (then let it do its work)."""
    calls: list[BaseException] = []
    original = task.retry

    def retry(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("exc"))
        return original(*args, **kwargs)

    monkeypatch.setattr(task, "retry", retry)
    return calls


def read_eml(path: Path) -> EmailMessage:
    with path.open("rb") as fh:
        return BytesParser(policy=policy.default).parse(fh)  # type: ignore[return-value]


def names(directory: Path) -> list[str]:
    """File names in ``directory`` (none when it was never created)."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def fir(app: Celery, fir_id: int) -> records.FIR:
    with records.open_db(app.afirgen_settings.fir_db_path) as conn:
        return records.require_fir(conn, fir_id)


# ---- outbox -----------------------------------------------------------------------------


def test_confirmation_is_a_real_mime_message_in_the_outbox(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    res = app.tasks[CONFIRM].apply(args=(4, "Citizen.Four@example.com"))
    assert res.state == "SUCCESS", res.traceback
    out = res.result
    assert out["status"] == "ok" and out["delivery"] == "outbox" and out["fir_id"] == 4
    assert out["duration_s"] >= 0
    path = Path(out["path"])
    assert path.parent == tmp_path / "outbox" and path.suffix == ".eml"
    msg = read_eml(path)
    record = fir(app, 4)
    assert msg["To"] == "Citizen.Four@example.com"
    assert msg["From"] == "AFIRGen <no-reply@afirgen.local>"
    assert record.fir_number in msg["Subject"] and record.police_station in msg["Subject"]
    assert msg["Message-ID"] == out["message_id"]
    assert msg["Message-ID"].endswith("@afirgen.local>")
    assert msg["Date"] is not None
    body = msg.get_content()
    for value in (
        record.complainant,
        record.fir_number,
        record.police_station,
        record.district,
        record.offence,
        record.act_section,
    ):
        assert value in body
    assert msg.get_content_type() == "text/plain"


def test_confirmation_rerun_overwrites_the_same_file(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    first = app.tasks[CONFIRM].apply(args=(4, "a@example.com")).result
    second = app.tasks[CONFIRM].apply(args=(4, "A@example.com ")).result
    other = app.tasks[CONFIRM].apply(args=(5, "a@example.com")).result
    assert first["path"] == second["path"] and first["message_id"] == second["message_id"]
    assert other["path"] != first["path"] and other["message_id"] != first["message_id"]
    assert names(tmp_path / "outbox") == sorted(
        {Path(first["path"]).name, Path(other["path"]).name}
    )


def test_notification_eml_and_idempotency(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    args = ("officer@example.org", "Hearing on 3 July", "Please attend the hearing.\nRoom 4.")
    a = app.tasks[NOTIFY].apply(args=args).result
    b = app.tasks[NOTIFY].apply(args=args).result
    c = app.tasks[NOTIFY].apply(args=(*args[:2], "A different body")).result
    assert a["path"] == b["path"] and a["path"] != c["path"]
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2
    msg = read_eml(Path(a["path"]))
    assert msg["Subject"] == "Hearing on 3 July"
    assert msg["To"] == "officer@example.org"
    assert msg.get_content() == "Please attend the hearing.\nRoom 4.\n"


@pytest.mark.parametrize(
    "address",
    [
        "not-an-email",
        "a@b",
        "a@@example.com",
        "a b@example.com",
        "x@example.com\nBcc: y@example.com",
        ".x@example.com",
        "x@-example.com",
        "",
        42,
        None,
    ],
)
def test_malformed_address_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, address: object
) -> None:
    app = make_app(tmp_path)
    task = app.tasks[CONFIRM]
    retries = spy_retries(monkeypatch, task)
    res = task.apply(args=(1, address))
    assert res.state == "FAILURE"
    assert isinstance(res.result, PermanentTaskError)
    assert "e-mail address" in str(res.result)
    assert retries == []
    assert names(tmp_path / "outbox") == []


def test_unknown_fir_fails_at_once_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tmp_path)
    task = app.tasks[CONFIRM]
    retries = spy_retries(monkeypatch, task)
    res = task.apply(args=(999_999, "a@example.com"))
    assert res.state == "FAILURE"
    assert isinstance(res.result, PermanentTaskError)
    assert str(res.result) == "FIR 999999 does not exist (the database holds 20 FIRs)"
    assert retries == []


@pytest.mark.parametrize(
    ("subject", "body", "message"),
    [
        ("", "b", "non-empty"),
        ("line\r\nBcc: x@example.com", "b", "one line"),
        ("s", None, "body must be a string"),
        ("x" * 1000, "b", "at most"),
    ],
)
def test_bad_notification_input_is_permanent(
    tmp_path: Path, subject: str, body: object, message: str
) -> None:
    app = make_app(tmp_path)
    res = app.tasks[NOTIFY].apply(args=("a@example.com", subject, body))
    assert res.state == "FAILURE"
    assert isinstance(res.result, PermanentTaskError)
    assert message in str(res.result)


# ---- header injection -------------------------------------------------------------------

#: The subject of issue 12: harmless as a raw string, a Bcc and a Reply-To once decoded.
INJECTED_SUBJECT = "=?utf-8?q?Hello=0D=0ABcc:_evil@x.example=0D=0AReply-To:_attacker@evil.example?="
#: Every header the tasks write; anything else in a written message was injected.
EXPECTED_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "x-afirgen-key",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
}

HOSTILE_SUBJECTS = {
    "issue-12 q-encoded CRLF": INJECTED_SUBJECT,
    "b-encoded CRLF": "=?utf-8?b?SGVsbG8NCkJjYzogZXZpbEB4LmV4YW1wbGU=?=",
    "encoded LF mid-word": "x=?utf-8?q?a=0ABcc:_evil@x.example?=y",
    "raw NUL": "Hello\x00World",
    "encoded NUL": "=?utf-8?q?Hello=00World?=",
    "unknown charset, LF": "=?x-bogus?q?Hi=0ABcc:_evil@x.example?=",
    "raw CRLF": "line\r\nBcc: evil@x.example",
    "raw ESC": "Hi \x1b]2;pwned\x07",
    "encoded NEL (C1)": "=?utf-8?q?a=C2=85Bcc:_evil@x.example?=",
    "encoded U+2028": "=?utf-8?q?a=E2=80=A8Bcc:_evil@x.example?=",
    "lone surrogate": "Hi \ud800",
}


@pytest.mark.parametrize("subject", HOSTILE_SUBJECTS.values(), ids=HOSTILE_SUBJECTS.keys())
def test_hostile_subject_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subject: str
) -> None:
    app = make_app(tmp_path)
    task = app.tasks[NOTIFY]
    retries = spy_retries(monkeypatch, task)
    res = task.apply(args=("a@example.com", subject, "body"))
    assert res.state == "FAILURE"
    assert isinstance(res.result, PermanentTaskError)
    assert "Subject header must be one line without control characters" in str(res.result)
    assert retries == []
    assert names(tmp_path / "outbox") == []


def test_hostile_fir_record_cannot_inject_into_the_confirmation(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    with records.open_db(app.afirgen_settings.fir_db_path) as conn, records.transaction(conn):
        conn.execute("UPDATE firs SET police_station = ? WHERE id = 3", (INJECTED_SUBJECT,))
    res = app.tasks[CONFIRM].apply(args=(3, "a@example.com"))
    assert res.state == "FAILURE" and isinstance(res.result, PermanentTaskError)
    assert "once its RFC 2047 encoded words are decoded" in str(res.result)
    assert names(tmp_path / "outbox") == []


@pytest.mark.parametrize(
    "sender",
    [
        "=?utf-8?q?AFIRGen=0D=0ABcc:_evil@x.example?= <no-reply@afirgen.local>",
        '"=?utf-8?q?AFIRGen=0ABcc:_evil@x.example?=" <no-reply@afirgen.local>',
        "AFIRGen\x00 <no-reply@afirgen.local>",
    ],
)
def test_hostile_sender_name_is_refused(tmp_path: Path, sender: str) -> None:
    app = make_app(tmp_path, smtp_sender=sender)
    res = app.tasks[NOTIFY].apply(args=("a@example.com", "s", "b"))
    assert res.state == "FAILURE" and isinstance(res.result, PermanentTaskError)
    # refused by the header check, or earlier when parseaddr cannot find the address
    assert "From header" in str(res.result) or "not a valid sender address" in str(res.result)
    assert names(tmp_path / "outbox") == []


@pytest.mark.parametrize(
    ("subject", "shown"),
    [
        ("Sunwāi: FIR 12/2024 — हिन्दी 日本語 ✓", "Sunwāi: FIR 12/2024 — हिन्दी 日本語 ✓"),
        ("=?utf-8?q?Caf=C3=A9_hearing?=", "Café hearing"),
        ("Tab\tseparated", "Tab\tseparated"),
    ],
)
def test_legit_subjects_are_written_and_read_back_without_extra_headers(
    tmp_path: Path, subject: str, shown: str
) -> None:
    app = make_app(tmp_path)
    res = app.tasks[NOTIFY].apply(args=("a@example.com", subject, "body"))
    assert res.state == "SUCCESS", res.traceback
    raw = Path(res.result["path"]).read_bytes()
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert msg["Subject"] == shown
    assert {name.lower() for name in msg.keys()} == EXPECTED_HEADERS
    head = raw.split(b"\n\n", 1)[0]
    assert b"\x00" not in head and b"\r" not in head


def test_body_with_a_lone_surrogate_is_permanent(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    res = app.tasks[NOTIFY].apply(args=("a@example.com", "s", "bad \udc80 body"))
    assert res.state == "FAILURE" and isinstance(res.result, PermanentTaskError)
    assert "body is not valid Unicode" in str(res.result)


# ---- SMTP -------------------------------------------------------------------------------


class RecordingHandler:
    """aiosmtpd handler: keeps each message; answers RCPT with ``rcpt_reply`` when set."""

    def __init__(self, rcpt_reply: str | None = None) -> None:
        self.rcpt_reply = rcpt_reply
        self.rcpt_attempts = 0
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        self.rcpt_attempts += 1
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, RecordingHandler]]:
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def smtp_app(tmp_path: Path, controller: Controller, **overrides: Any) -> Celery:
    options: dict[str, Any] = {"smtp_security": "none", "smtp_timeout": 5.0, **overrides}
    return make_app(tmp_path, smtp_host="127.0.0.1", smtp_port=controller.port, **options)


def test_smtp_delivers_the_message(
    tmp_path: Path, smtp_server: tuple[Controller, RecordingHandler]
) -> None:
    controller, handler = smtp_server
    app = smtp_app(tmp_path, controller)
    res = app.tasks[CONFIRM].apply(args=(2, "complainant@example.com"))
    assert res.state == "SUCCESS", res.traceback
    assert res.result["delivery"] == "smtp" and res.result["already_sent"] is False
    assert len(handler.messages) == 1
    mail_from, rcpts, content = handler.messages[0]
    assert mail_from == "no-reply@afirgen.local"
    assert rcpts == ["complainant@example.com"]
    msg = BytesParser(policy=policy.default).parsebytes(content)
    assert msg["Message-ID"] == res.result["message_id"]
    assert fir(app, 2).fir_number in msg.get_content()
    assert names(tmp_path / "outbox") == []


def test_smtp_redelivered_task_does_not_send_twice(
    tmp_path: Path, smtp_server: tuple[Controller, RecordingHandler]
) -> None:
    controller, handler = smtp_server
    app = smtp_app(tmp_path, controller)
    args = ("a@example.com", "Status", "Your FIR moved on.")
    first = app.tasks[NOTIFY].apply(args=args, task_id="task-1").result
    again = app.tasks[NOTIFY].apply(args=args, task_id="task-1").result
    assert again["already_sent"] is True and again["message_id"] == first["message_id"]
    assert len(handler.messages) == 1
    # a new request (new task id) for the same text is a deliberate re-send
    app.tasks[NOTIFY].apply(args=args, task_id="task-2")
    assert len(handler.messages) == 2


def test_smtp_unreachable_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(
        tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_security="none",
        smtp_timeout=2.0,
    )
    task = app.tasks[CONFIRM]
    retries = spy_retries(monkeypatch, task)
    res = task.apply(args=(1, "a@example.com"))
    # two retries (celery_task_max_retries=2), then the last attempt's error is the result
    assert len(retries) == 2
    assert all(isinstance(exc, TransientTaskError) for exc in retries)
    assert res.state == "FAILURE"
    assert isinstance(res.result, TransientTaskError)
    assert "cannot reach SMTP server 127.0.0.1" in str(res.result)


def test_smtp_4xx_is_retried_and_5xx_is_not(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    smtp_server: tuple[Controller, RecordingHandler],
) -> None:
    controller, handler = smtp_server
    app = smtp_app(tmp_path, controller)
    task = app.tasks[NOTIFY]
    retries = spy_retries(monkeypatch, task)

    handler.rcpt_reply = "451 4.7.1 Greylisted, try again later"
    res = task.apply(args=("a@example.com", "s", "b"))
    assert res.state == "FAILURE" and isinstance(res.result, TransientTaskError)
    assert handler.rcpt_attempts == 3 and len(retries) == 2

    retries.clear()
    handler.rcpt_attempts = 0
    handler.rcpt_reply = "550 5.1.1 No such user"
    res = task.apply(args=("a@example.com", "s", "b"))
    assert res.state == "FAILURE" and isinstance(res.result, PermanentTaskError)
    assert "550" in str(res.result)
    assert handler.rcpt_attempts == 1 and retries == []
    assert handler.messages == []


def test_starttls_against_a_server_without_it_is_permanent(
    tmp_path: Path, smtp_server: tuple[Controller, RecordingHandler]
) -> None:
    controller, _handler = smtp_server
    app = smtp_app(tmp_path, controller, smtp_security="starttls")
    res = app.tasks[NOTIFY].apply(args=("a@example.com", "s", "b"))
    assert res.state == "FAILURE"
    assert isinstance(res.result, PermanentTaskError)
    assert "AFIRGEN_SMTP_SECURITY" in str(res.result)


def test_smtp_header_injection_never_reaches_the_wire(
    tmp_path: Path, smtp_server: tuple[Controller, RecordingHandler]
) -> None:
    controller, handler = smtp_server
    app = smtp_app(tmp_path, controller)
    res = app.tasks[NOTIFY].apply(args=("a@example.com", INJECTED_SUBJECT, "b"))
    assert res.state == "FAILURE" and isinstance(res.result, PermanentTaskError)
    # smtplib.send_message would have added the injected Bcc to the envelope recipients
    assert handler.rcpt_attempts == 0 and handler.messages == []

    res = app.tasks[NOTIFY].apply(args=("a@example.com", "Sunwāi — हिन्दी", "b"))
    assert res.state == "SUCCESS", res.traceback
    [(_from, rcpts, content)] = handler.messages
    assert rcpts == ["a@example.com"]
    msg = BytesParser(policy=policy.default).parsebytes(content)
    assert msg["Subject"] == "Sunwāi — हिन्दी"
    assert {name.lower() for name in msg.keys()} <= EXPECTED_HEADERS | {
        "x-peer",
        "x-mailfrom",
        "x-rcptto",
    }
    assert "bcc" not in {name.lower() for name in msg.keys()}
