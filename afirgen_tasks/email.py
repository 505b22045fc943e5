"""E-mail tasks: FIR confirmations and free-form notifications.

Each message is a real MIME message (:class:`email.message.EmailMessage`).  With
``[smtp] host`` set it is delivered over SMTP (starttls, ssl or none, optional login);
otherwise it is written as an ``.eml`` file to ``[paths] outbox_dir``.

At-least-once delivery means a task can run twice for one request.  The Message-ID and
the ``.eml`` name are derived from the inputs, so a re-run overwrites the same file and a
receiving mail system sees the same Message-ID; over SMTP a re-delivered task (same
Celery task id) that already sent its message skips sending it again.

Errors: a malformed address or an unknown FIR is permanent (no retry); an SMTP server
that cannot be reached, drops the connection or answers 4xx is transient (retried).

Header values are untrusted (task arguments, FIR records).  Every header is checked, raw
and once RFC 2047 encoded words are decoded, for line breaks, NUL and other control
characters (:func:`check_header_value`): ``=?utf-8?q?x=0D=0ABcc:_y?=`` passes a check of
the raw string but the email package decodes it into a real ``Bcc:`` line.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import ssl
import time
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any

from celery import Task

from . import records
from .base import PermanentTaskError, TransientTaskError, afirgen_task, result, task_settings
from .settings import Settings

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,63}}")

#: Longest subject accepted (RFC 5322 caps a header line at 998 characters).
MAX_SUBJECT = 900
#: Largest notification body accepted, in characters.
MAX_BODY = 1_000_000

#: What no header value may hold: C0 controls but TAB (CR, LF and NUL among them), DEL, C1
#: controls, the Unicode line and paragraph separators (str.splitlines and some mail
#: readers end a line at NEL, U+2028 and U+2029), and lone surrogates (not encodable).
_HEADER_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _rfc2047_decoded(value: str) -> str | None:
    """``value`` with its RFC 2047 encoded words decoded, as a mail reader shows it (None: undecodable)."""
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        # an unknown charset or bad base64: the header registry's own decoding (checked
        # after the header is set, see build_message) still judges what is written
        return None


def check_header_value(name: str, value: str) -> str:
    """``value`` unchanged, or :class:`PermanentTaskError` when it is not one safe line.

    The raw string and its RFC 2047 decoding must both be free of :data:`_HEADER_FORBIDDEN`
    characters: an encoded CR LF becomes a real header line when the message is written.
    """
    for text, how in (
        (value, ""),
        (_rfc2047_decoded(value), " once its RFC 2047 encoded words are decoded"),
    ):
        found = _HEADER_FORBIDDEN.search(text) if text is not None else None
        if found:
            raise PermanentTaskError(
                f"{name} header must be one line without control characters, but holds {found.group()!r}{how}"
            )
    return value


def validate_address(value: object, what: str = "recipient") -> str:
    """``value`` as a plain ``local@domain.tld`` address, or :class:`PermanentTaskError`."""
    if not isinstance(value, str):
        raise PermanentTaskError(f"{what} e-mail address {value!r} is not a string")
    address = value.strip()
    if len(address) > 254 or not _ADDRESS.fullmatch(address) or len(address.partition("@")[0]) > 64:
        raise PermanentTaskError(
            f"{what} e-mail address {value!r} is malformed (expected name@domain.tld)"
        )
    return address


def _sender(settings: Settings) -> tuple[str, str]:
    """(From header, envelope sender domain) from ``[smtp] sender``."""
    _name, addr = parseaddr(settings.smtp_sender)
    if not _ADDRESS.fullmatch(addr or ""):
        # a configuration error: retrying cannot fix it, the operator must
        raise PermanentTaskError(
            f"AFIRGEN_SMTP_SENDER={settings.smtp_sender!r} is not a valid sender address"
        )
    return settings.smtp_sender, addr.partition("@")[2]


def message_key(*parts: str) -> str:
    """A stable hex digest of ``parts`` (the Message-ID and file name of one request)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


def build_message(
    settings: Settings, recipient: str, subject: str, body: str, key: str
) -> EmailMessage:
    """A text/plain message with a Message-ID derived from ``key``."""
    sender, domain = _sender(settings)
    headers: dict[str, str | Address] = {
        "From": sender,
        "To": Address(addr_spec=recipient),
        "Subject": subject,
        "Date": formatdate(usegmt=True),
        "Message-ID": f"<{key}@{domain}>",
        "X-AFIRGen-Key": key,
    }
    msg = EmailMessage()
    for name, value in headers.items():
        if isinstance(value, str):
            check_header_value(name, value)
        try:
            msg[name] = value
        except ValueError as exc:  # the header registry refuses some CR/LF itself
            raise PermanentTaskError(f"{name} header is not valid: {exc}") from None
        # The header registry decodes encoded words by its own rules (it accepts charsets
        # decode_header does not): what it decoded is what will be written, so judge that too.
        check_header_value(name, str(msg[name]))
    msg.set_content(body)
    return msg


def _deliver_smtp(settings: Settings, msg: EmailMessage) -> None:
    """Send ``msg`` over SMTP; classify failures as transient or permanent."""
    host, port, timeout = settings.smtp_host, settings.smtp_port, settings.smtp_timeout
    context = ssl.create_default_context(cafile=settings.tls_ca_certs or None)
    try:
        if settings.smtp_security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            client.ehlo()
            if settings.smtp_security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if settings.smtp_username:
                client.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            client.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _reply in exc.recipients.values()]
        detail = "; ".join(
            f"{rcpt}: {code} {reply.decode(errors='replace')}"
            for rcpt, (code, reply) in exc.recipients.items()
        )
        if codes and all(400 <= c < 500 for c in codes):
            raise TransientTaskError(
                f"SMTP {host}:{port} deferred the recipient: {detail}"
            ) from exc
        raise PermanentTaskError(f"SMTP {host}:{port} refused the recipient: {detail}") from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise PermanentTaskError(
            f"SMTP {host}:{port}: {exc} (check AFIRGEN_SMTP_SECURITY)"
        ) from exc
    except (
        smtplib.SMTPResponseException,
        smtplib.SMTPServerDisconnected,
        smtplib.SMTPConnectError,
    ):
        raise  # base.is_transient: 4xx and lost connections retry, 5xx fail
    except smtplib.SMTPException as exc:
        raise PermanentTaskError(f"SMTP {host}:{port}: {exc}") from exc
    except OSError as exc:
        # refused, unreachable, DNS, TLS handshake: the server may be back shortly
        raise TransientTaskError(f"cannot reach SMTP server {host}:{port}: {exc}") from exc


def _write_outbox(settings: Settings, msg: EmailMessage, name: str) -> Path:
    path = settings.paths_outbox_dir / name
    records.atomic_write_bytes(path, msg.as_bytes())
    return path


def _dispatch(
    task: Task, settings: Settings, msg: EmailMessage, file_name: str, recipient: str
) -> dict[str, Any]:
    """Deliver ``msg`` (SMTP or outbox) and return the result fields."""
    message_id = str(msg["Message-ID"])
    if not settings.smtp_host:
        path = _write_outbox(settings, msg, file_name)
        return {"delivery": "outbox", "path": str(path), "message_id": message_id}
    task_id = getattr(task.request, "id", None)
    with records.open_db(settings.fir_db_path) as conn:
        if (
            task_id
            and conn.execute(
                "SELECT 1 FROM email_deliveries WHERE task_id = ? AND message_id = ?",
                (task_id, message_id),
            ).fetchone()
        ):
            return {"delivery": "smtp", "message_id": message_id, "already_sent": True}
    _deliver_smtp(settings, msg)
    if task_id:
        with records.open_db(settings.fir_db_path) as conn, records.transaction(conn):
            conn.execute(
                "INSERT OR IGNORE INTO email_deliveries (task_id, message_id, recipient, delivered_at) VALUES (?, ?, ?, ?)",
                (task_id, message_id, recipient, records.utc_iso(records.utc_now())),
            )
    return {"delivery": "smtp", "message_id": message_id, "already_sent": False}


def confirmation_body(fir: records.FIR) -> str:
    """The text of a FIR confirmation e-mail."""
    return (
        f"Dear {fir.complainant},\n\n"
        f"Your First Information Report has been registered.\n\n"
        f"  FIR number:     {fir.fir_number}\n"
        f"  FIR id:         {fir.id}\n"
        f"  Police station: {fir.police_station}, {fir.district}, {fir.state}\n"
        f"  Offence:        {fir.offence} ({fir.act_section})\n"
        f"  Filed at (UTC): {fir.filed_at}\n"
        f"  Status:         {fir.status.replace('_', ' ')}\n\n"
        f"Please quote the FIR number in any correspondence with the police station.\n\n"
        f"-- AFIRGen (this message was sent automatically; do not reply)\n"
    )


@afirgen_task("afirgen_tasks.email.send_fir_confirmation_email")
def send_fir_confirmation_email(self: Task, fir_id: int, recipient_email: str) -> dict[str, Any]:
    """E-mail the complainant a confirmation of FIR ``fir_id``."""
    started = time.monotonic()
    settings = task_settings(self)
    recipient = validate_address(recipient_email)
    with records.open_db(settings.fir_db_path) as conn:
        fir = records.require_fir(conn, fir_id)
    key = message_key("fir-confirmation", str(fir.id), recipient.lower())
    msg = build_message(
        settings,
        recipient,
        f"FIR {fir.fir_number} registered at {fir.police_station}",
        confirmation_body(fir),
        key,
    )
    fields = _dispatch(
        self, settings, msg, f"fir-{fir.id:06d}-confirmation-{key[:16]}.eml", recipient
    )
    return result("ok", started, fir_id=fir.id, fir_number=fir.fir_number, **fields)


@afirgen_task("afirgen_tasks.email.send_notification_email")
def send_notification_email(
    self: Task, recipient_email: str, subject: str, body: str
) -> dict[str, Any]:
    """E-mail ``body`` with ``subject`` to ``recipient_email``."""
    started = time.monotonic()
    settings = task_settings(self)
    recipient = validate_address(recipient_email)
    if not isinstance(subject, str) or not subject.strip():
        raise PermanentTaskError("subject must be a non-empty string")
    check_header_value("Subject", subject)
    if len(subject) > MAX_SUBJECT:
        raise PermanentTaskError(
            f"subject is {len(subject)} characters; at most {MAX_SUBJECT} are allowed"
        )
    if not isinstance(body, str):
        raise PermanentTaskError(f"body must be a string, not {type(body).__name__}")
    if len(body) > MAX_BODY:
        raise PermanentTaskError(f"body is {len(body)} characters; at most {MAX_BODY} are allowed")
    try:
        body.encode("utf-8")
    except UnicodeEncodeError as exc:  # a JSON "\\ud800" arrives as a lone surrogate
        raise PermanentTaskError(
            f"body is not valid Unicode: {exc.reason} at character {exc.start}"
        ) from None
    key = message_key("notification", recipient.lower(), subject, body)
    msg = build_message(settings, recipient, subject.strip(), body, key)
    fields = _dispatch(self, settings, msg, f"notification-{key[:16]}.eml", recipient)
    return result("ok", started, **fields)
