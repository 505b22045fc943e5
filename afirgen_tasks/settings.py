"""AFIRGen settings: one model, read from ``config.toml`` and overridden by the environment.

Every setting has a *field name* (``celery_broker_url``), an *environment name*
(``CELERY_BROKER_URL`` for the Celery ones operators already know, ``AFIRGEN_<FIELD>``
for the rest) and a place in ``config.toml`` (``[celery] broker_url``: the section
is the field name's first word).  Precedence, highest first: keyword arguments,
environment, ``config.toml`` (``AFIRGEN_CONFIG`` names another file), defaults.

Bad values raise :class:`SettingsError`, whose ``lines`` hold one message per problem,
naming the setting, the value given and what is allowed.  Callers print the lines and
exit 2 (see :func:`load_settings_or_exit`).  Secrets are ``SecretStr`` and URLs are
shown only through :func:`mask_url`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from collections.abc import Iterable
from contextvars import ContextVar
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

QUEUE_NAMES: tuple[str, ...] = ("default", "email", "reports", "analytics", "cleanup")

#: config.toml sections; a field ``<section>_<key>`` lives at ``[section] key``.
SECTIONS: tuple[str, ...] = (
    "celery",
    "sentinel",
    "rabbitmq",
    "paths",
    "smtp",
    "console",
    "check",
    "history",
    "redact",
    "tls",
)

_DEFAULT_CONFIG = "config.toml"

#: ``[clusters.NAME]`` tables: another cluster each, its keys overriding these settings.
CLUSTERS_SECTION = "clusters"

#: A ``[clusters.NAME]`` key -> the setting it overrides for that cluster.
CLUSTER_KEYS: dict[str, str] = {
    "broker": "celery_broker_url",
    "backend": "celery_result_backend",
    "master_name": "sentinel_master_name",
    "management_url": "rabbitmq_management_url",
    "ca_certs": "tls_ca_certs",
    "certfile": "tls_certfile",
    "keyfile": "tls_keyfile",
    "cert_reqs": "tls_cert_reqs",
    "backlog_warn": "check_backlog_warn",
    "backlog_fail": "check_backlog_fail",
    "min_workers": "check_min_workers",
}
_FIELD_TO_CLUSTER_KEY = {field: key for key, field in CLUSTER_KEYS.items()}

#: What a cluster may be called (``--cluster NAME``, the status line, audit lines).
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class SettingsError(Exception):
    """Settings could not be loaded; ``lines`` holds one human message per problem."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


#: ``scheme://`` at the start of a URL (RFC 3986 scheme characters).
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
#: kombu takes several URLs joined by ``;`` (failover, sentinel): split before each scheme.
_NEXT_URL = re.compile(r";(?=[A-Za-z][A-Za-z0-9+.-]*://)")
_SECRET_QUERY = re.compile(r"(?i)((?:pass(?:word)?|secret|token)=)[^&#]*")
#: Characters that end the authority for every URL parser (``urlsplit``, kombu, redis-py):
#: in a password they must be percent-encoded, or the client connects somewhere else.
_AUTHORITY_ENDS = "/?#"


def _split_userinfo(url: str) -> tuple[str, str | None, str] | None:
    """``(scheme, userinfo or None, host-and-rest)`` of one URL, or None without ``scheme://``.

    The credentials end at the LAST ``@`` whatever the password holds (``/``, ``#``, ``?``,
    ``@``, ``:``): ``urlsplit`` ends the authority at the first ``/`` and would show part of
    such a password as a host or a path.  An ``@`` in a path or query is read as part of the
    credentials too: that masks too much, never too little.
    """
    m = _SCHEME.match(url)
    if m is None:
        return None
    rest = url[m.end() :]
    if "@" not in rest:
        return m.group(1), None, rest
    userinfo, _, after = rest.rpartition("@")
    return m.group(1), userinfo, after


def _mask_one(url: str) -> str:
    parts = _split_userinfo(url)
    if parts is None:
        return url
    scheme, userinfo, after = parts
    after = _SECRET_QUERY.sub(r"\1***", after)
    if userinfo is None:
        return f"{scheme}://{after}"
    user, sep, _password = userinfo.partition(":")  # a user name holds no raw ':'
    if sep:
        return f"{scheme}://{user}:***@{after}"
    if user and scheme.startswith("redis"):
        # redis://secret@host is a password-only URL (redis-py reads it as password)
        return f"{scheme}://***@{after}"
    return f"{scheme}://{user}@{after}"


def mask_url(url: str | None) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe to show or log).

    ``redis://:s3cret@host:6379/0`` -> ``redis://:***@host:6379/0``;
    ``amqp://user:pw@host//`` -> ``amqp://user:***@host//``;
    ``redis://:p@ss:w/rd#1@host`` -> ``redis://:***@host`` (split at the last ``@``).
    Query parameters that look like secrets (``password=``) are masked as well, and each
    URL of a ``;``-joined list.  The one URL masker: :func:`scrub_secrets` uses it for
    URLs found in free text.
    """
    if not url:
        return ""
    return ";".join(_mask_one(part) for part in _NEXT_URL.split(url))


#: The history's cluster for rows written before the history knew clusters (schema 1).
LEGACY_CLUSTER = "legacy"
_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "sentinel": 26379, "amqp": 5672, "amqps": 5671}
_SCHEME_ALIASES = {"pyamqp": "amqp", "librabbitmq": "amqp"}


def _host_port(hostport: str, default_port: int | None) -> str:
    """``host:port``, lowercased, with the scheme's default port filled in (IPv6 in brackets)."""
    hostport = unquote(hostport).strip().lower()
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        host, port = f"[{host}]", rest[1:] if rest.startswith(":") else ""
    elif hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
    else:
        host, port = hostport, ""
    host = host or "localhost"
    port = port.lstrip("0") or ("0" if port else "")
    if not port and default_port is not None:
        port = str(default_port)
    return f"{host}:{port}" if port else host


def _db_of(path: str, query: str) -> str:
    """The Redis db of a URL: its path (``/3``), else ``?db=`` / ``?virtual_host=``, else 0."""
    value = path.strip("/")
    if not value:
        for pair in query.split("&"):
            key, _, v = pair.partition("=")
            if key.lower() in ("db", "virtual_host") and v:
                value = unquote(v).strip("/")
    value = value.strip()
    return str(int(value)) if value.isascii() and value.isdigit() else value or "0"


def cluster_identity(url: str | None, master_name: str = "") -> str:
    """Which cluster a broker URL points at, WITHOUT its credentials: the history's key.

    Scheme, hosts and ports, and the Redis db or AMQP vhost, normalised: lowercase, the
    default port filled in, the hosts of a failover list (``;``-joined URLs) sorted.
    ``redis://:pw@H:6379/0``, ``redis://h/0`` and ``redis://user:other@h:6379`` are all
    ``redis://h:6379/0``; ``redis://h:6379/1`` is another cluster.  A ``sentinel://`` broker
    is named by its sentinels and the master they watch:
    ``sentinel://s1:26379,s2:26379/0?master=mymaster``.  User names, passwords and other
    query options never take part.  No DNS lookups: ``localhost`` and ``127.0.0.1`` differ.
    """
    text = (url or "").strip()
    if not text:
        return "unknown"
    scheme = ""
    hosts: list[str] = []
    first_path = first_query = None
    for part in _NEXT_URL.split(text):
        parts = _split_userinfo(part.strip())
        if parts is None:
            continue
        raw_scheme, _userinfo, after = parts
        raw_scheme = raw_scheme.lower()
        scheme = scheme or _SCHEME_ALIASES.get(raw_scheme, raw_scheme)
        after = after.partition("#")[0]
        after, _, query = after.partition("?")
        hostpart, slash, path = after.partition("/")
        if first_path is None:
            first_path, first_query = slash + path, query
        if scheme == "redis+socket":
            hosts.append(unquote(hostpart + slash + path))
            continue
        default = _DEFAULT_PORTS.get(scheme)
        names = [h for h in hostpart.split(",") if h.strip()] or [""]  # "" is localhost
        hosts.extend(_host_port(h, default) for h in names)
    if not scheme:
        return "unknown"
    path, query = first_path or "", first_query or ""
    hostlist = ",".join(sorted(dict.fromkeys(hosts)))
    if scheme in ("redis", "rediss", "sentinel"):
        where = f"{scheme}://{hostlist}/{_db_of(path, query)}"
        if scheme == "sentinel" and master_name.strip():
            where += f"?master={master_name.strip()}"
        return where
    if scheme == "redis+socket":
        return f"{scheme}://{hostlist.partition('?')[0]}?db={_db_of('', query)}"
    if scheme in ("amqp", "amqps"):
        vhost = unquote(path[1:]) if path.startswith("/") else ""
        vhost = vhost or "/"
        return f"{scheme}://{hostlist}/{vhost if vhost == '/' else quote(vhost, safe='')}"
    return f"{scheme}://{hostlist}{path}"


def state_home() -> Path:
    """Where an operator's console keeps its own state when nothing else is configured:
    ``$XDG_STATE_HOME/afirgen-tui``, else ``~/.local/state/afirgen-tui`` (the XDG base
    directory rules: a relative ``$XDG_STATE_HOME`` is ignored)."""
    base = os.environ.get("XDG_STATE_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "afirgen-tui"


def is_sentinel_url(url: str | None) -> bool:
    """True when ``url`` (or its first ``;``-joined URL) is a ``sentinel://`` URL."""
    return (url or "").split("://", 1)[0].strip().lower() == "sentinel"


def is_postgres_url(value: object) -> bool:
    """True when ``value`` is a ``postgresql://`` (or ``postgres://``) URL: ``[history] db``
    then names a shared PostgreSQL history instead of a SQLite file."""
    return isinstance(value, str) and value.split("://", 1)[0].strip().lower() in (
        "postgresql",
        "postgres",
    )


def url_secrets(url: str) -> list[str]:
    """The secrets in ``url``: its password, or the user part of a password-only Redis URL.

    Split like :func:`mask_url` (at the last ``@``); the percent-decoded form is listed too,
    since that is what the client sends and what an error message may quote.
    """
    found: list[str] = []
    for part in _NEXT_URL.split(url or ""):
        parts = _split_userinfo(part)
        if parts is None or parts[1] is None:
            continue
        scheme, userinfo, _after = parts
        assert userinfo is not None
        user, sep, password = userinfo.partition(":")
        if not sep:
            # redis://secret@host is a password (redis-py reads it so)
            password = user if scheme.startswith("redis") else ""
        if password:
            found.extend((password, unquote(password)))
    return list(dict.fromkeys(found))


def raw_delimiter_in_credentials(url: str) -> str | None:
    """The first of ``/ ? #`` found raw in the credentials of ``url`` (or of one of its
    ``;``-joined URLs), else None.

    kombu and redis-py end the authority at the first of them, so such a URL connects to
    a host made of part of the password (or fails quoting it): it must be percent-encoded.
    """
    for part in _NEXT_URL.split(url or ""):
        parts = _split_userinfo(part)
        if parts is None or parts[1] is None:
            continue
        for ch in parts[1]:
            if ch in _AUTHORITY_ENDS:
                return ch
    return None


def _secret_variants(secret: str) -> list[str]:
    """``secret`` as it may appear in text: raw, and escaped inside JSON (both ways)."""
    return [secret, json.dumps(secret, ensure_ascii=False)[1:-1], json.dumps(secret)[1:-1]]


class SecretScrubber:
    """Masks secrets in free text: the password of every URL in it (:func:`mask_url`), then
    each known secret (raw or JSON-escaped) wherever it appears.

    The one secret scrubber: ``--check`` output, the audit log and the console's error
    messages all go through it (``tui.core.redaction.Redactor`` holds one).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        variants = {v for s in secrets if s for v in _secret_variants(s) if v}
        #: longest first, so a secret that contains another is masked whole
        self.secrets = sorted(variants, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """``text`` with every URL password and every known secret replaced by ``***``."""
        if not text:
            return text
        text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


#: A URL in free text: runs to the next blank or quote (a password may hold anything else).
_URL_IN_TEXT = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def env_name(field: str) -> str:
    """The environment variable that overrides ``field``."""
    return field.upper() if field.startswith("celery_") else f"AFIRGEN_{field.upper()}"


def toml_location(field: str) -> str:
    """Where ``field`` lives in config.toml, e.g. ``[celery] broker_url``."""
    section, _, key = field.partition("_")
    return f"[{section}] {key}"


def _env(field: str) -> AliasChoices:
    return AliasChoices(env_name(field))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads config.toml and flattens ``[section] key`` into ``section_key`` fields."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None):
        super().__init__(settings_cls)
        self.path = path
        self.unknown: list[str] = []

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # unused: __call__ returns the whole mapping at once
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            raw = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(
                [f"config file {self.path} does not exist (AFIRGEN_CONFIG or --config)"]
            ) from None
        except OSError as exc:
            raise SettingsError(
                [f"config file {self.path} cannot be read: {exc.strerror}"]
            ) from None
        except UnicodeDecodeError as exc:
            # TOML is UTF-8 by definition; a Latin-1 file is an operator error, not a crash
            line = exc.object[: exc.start].count(b"\n") + 1
            raise SettingsError(
                [
                    f"config file {self.path} is not UTF-8 (byte 0x{exc.object[exc.start]:02x} on line {line}); save it as UTF-8"
                ]
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError([f"config file {self.path} is not valid TOML: {exc}"]) from None
        fields = self.settings_cls.model_fields
        out: dict[str, Any] = {}
        problems: list[str] = []
        for section, body in raw.items():
            if section == CLUSTERS_SECTION and isinstance(body, dict):
                for name, table in body.items():
                    if not isinstance(table, dict):
                        problems.append(
                            f"{self.path}: [{CLUSTERS_SECTION}] {name} must be a table:"
                            f' [{CLUSTERS_SECTION}.{name}] with broker = "redis://..."'
                        )
                out[CLUSTERS_SECTION] = body
                continue
            if section not in SECTIONS or not isinstance(body, dict):
                known = ", ".join((*SECTIONS, f"{CLUSTERS_SECTION}.NAME"))
                problems.append(f"{self.path}: unknown section [{section}] (known: {known})")
                continue
            for key, value in body.items():
                name = f"{section}_{key}"
                if name not in fields:
                    problems.append(f"{self.path}: unknown setting [{section}] {key}")
                    continue
                out[name] = value
        if problems:
            raise SettingsError(problems)
        return out


class ClusterConfig(BaseModel):
    """One ``[clusters.NAME]`` table: another cluster the console and ``--check`` can watch.

    Each key overrides one top-level setting for that cluster (:data:`CLUSTER_KEYS`); what a
    table leaves out is the top-level value.  The values are checked like the settings they
    override, by :meth:`Settings.for_cluster` (:func:`load_settings` tries every cluster).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: str
    backend: str | None = None
    master_name: str | None = None
    management_url: str | None = None
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cert_reqs: str | None = None
    backlog_warn: int | None = None
    backlog_fail: int | None = None
    min_workers: int | None = None

    def overrides(self) -> dict[str, Any]:
        """``{setting field: value}`` for the keys this table sets."""
        return {
            CLUSTER_KEYS[key]: value
            for key, value in self.model_dump().items()
            if value is not None and key in CLUSTER_KEYS
        }

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            if name in ("broker", "backend", "management_url") and isinstance(value, str):
                value = mask_url(value)
            yield name, value


class Settings(BaseSettings):
    """Every AFIRGen setting.  See ``config.toml`` for each one's meaning and default."""

    model_config = SettingsConfigDict(
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
        validate_default=True,
    )

    # ---- [celery] -------------------------------------------------------------------
    celery_broker_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=_env("celery_broker_url")
    )
    celery_result_backend: str = Field(
        "redis://127.0.0.1:6379/1", validation_alias=_env("celery_result_backend")
    )
    celery_worker_pool: Literal["prefork", "solo", "threads", "gevent"] = Field(
        "prefork", validation_alias=_env("celery_worker_pool")
    )
    celery_worker_concurrency: int = Field(
        4, ge=1, le=512, validation_alias=_env("celery_worker_concurrency")
    )
    celery_worker_prefetch_multiplier: int = Field(
        4, ge=0, le=1000, validation_alias=_env("celery_worker_prefetch_multiplier")
    )
    celery_worker_max_tasks_per_child: int = Field(
        1000, ge=0, validation_alias=_env("celery_worker_max_tasks_per_child")
    )
    celery_worker_autoscale: str = Field("", validation_alias=_env("celery_worker_autoscale"))
    #: Run Celery's gossip bootstep (``--without-gossip`` when False, the default): it makes a
    #: worker parse every other worker's heartbeat, and one forged heartbeat kills it.
    celery_worker_gossip: bool = Field(False, validation_alias=_env("celery_worker_gossip"))
    #: Let the console (or ``celery control pool_restart``) restart a worker's pool: each
    #: process is replaced after its current task.  Off by default, as in Celery.
    celery_worker_pool_restarts: bool = Field(
        False, validation_alias=_env("celery_worker_pool_restarts")
    )
    celery_visibility_timeout: int = Field(
        3600, ge=1, validation_alias=_env("celery_visibility_timeout")
    )
    celery_task_time_limit: int = Field(600, ge=1, validation_alias=_env("celery_task_time_limit"))
    celery_task_soft_time_limit: int = Field(
        540, ge=1, validation_alias=_env("celery_task_soft_time_limit")
    )
    celery_result_expires: int = Field(86400, ge=0, validation_alias=_env("celery_result_expires"))
    celery_broker_connection_max_retries: int = Field(
        10, ge=0, validation_alias=_env("celery_broker_connection_max_retries")
    )
    celery_task_max_retries: int = Field(
        3, ge=0, le=100, validation_alias=_env("celery_task_max_retries")
    )
    celery_task_retry_backoff_max: int = Field(
        300, ge=1, validation_alias=_env("celery_task_retry_backoff_max")
    )

    # ---- [sentinel] -----------------------------------------------------------------
    #: The name the sentinels monitor the master under (``sentinel monitor <name> ...``);
    #: required when the broker or the result backend is a ``sentinel://`` URL.
    sentinel_master_name: str = Field("", validation_alias=_env("sentinel_master_name"))
    #: The password of the sentinels themselves (``requirepass`` in sentinel.conf); the
    #: master's password is the one in the ``sentinel://:password@host`` URL.
    sentinel_password: SecretStr = Field(SecretStr(""), validation_alias=_env("sentinel_password"))
    #: Connect and read timeout, in seconds, for each question asked of a sentinel.
    sentinel_socket_timeout: float = Field(
        2.0, gt=0, le=60, validation_alias=_env("sentinel_socket_timeout")
    )

    # ---- [rabbitmq] -----------------------------------------------------------------
    #: The RabbitMQ management HTTP API (reserved counts, queue discovery), e.g.
    #: ``http://monitor:pw@rabbit.internal:15672``.  Empty: derived from the broker URL (its
    #: host on port 15672, https on 15671 for amqps://, the broker's user and password).
    rabbitmq_management_url: str = Field("", validation_alias=_env("rabbitmq_management_url"))

    # ---- [tls] ----------------------------------------------------------------------
    tls_ca_certs: str = Field("", validation_alias=_env("tls_ca_certs"))
    tls_certfile: str = Field("", validation_alias=_env("tls_certfile"))
    tls_keyfile: str = Field("", validation_alias=_env("tls_keyfile"))
    tls_cert_reqs: Literal["required", "optional", "none"] = Field(
        "required", validation_alias=_env("tls_cert_reqs")
    )

    # ---- [paths] --------------------------------------------------------------------
    paths_data_dir: Path = Field(Path("var"), validation_alias=_env("paths_data_dir"))
    paths_report_dir: Path = Field(Path("var/reports"), validation_alias=_env("paths_report_dir"))
    paths_outbox_dir: Path = Field(Path("var/outbox"), validation_alias=_env("paths_outbox_dir"))
    paths_temp_dir: Path = Field(Path("var/tmp"), validation_alias=_env("paths_temp_dir"))

    # ---- [smtp] ---------------------------------------------------------------------
    smtp_host: str = Field("", validation_alias=_env("smtp_host"))
    smtp_port: int = Field(587, ge=1, le=65535, validation_alias=_env("smtp_port"))
    smtp_username: str = Field("", validation_alias=_env("smtp_username"))
    smtp_password: SecretStr = Field(SecretStr(""), validation_alias=_env("smtp_password"))
    smtp_security: Literal["starttls", "ssl", "none"] = Field(
        "starttls", validation_alias=_env("smtp_security")
    )
    smtp_sender: str = Field(
        "AFIRGen <no-reply@afirgen.local>", validation_alias=_env("smtp_sender")
    )
    smtp_timeout: float = Field(10.0, gt=0, le=300, validation_alias=_env("smtp_timeout"))

    # ---- [console] ------------------------------------------------------------------
    console_max_tasks: int = Field(
        100_000, ge=100, le=10_000_000, validation_alias=_env("console_max_tasks")
    )
    console_event_buffer: int = Field(
        50_000, ge=1000, validation_alias=_env("console_event_buffer")
    )
    #: How the console reads Celery events.  On a Redis broker: ``auto`` (the default) or
    #: ``process``: a direct pub/sub reader in a process of its own; ``redis``: the same
    #: reader as a thread of the console; ``kombu``: Celery's own receiver.  Other brokers
    #: (AMQP) always use kombu's (tui/sources/redis_events.py: ``make_event_receiver``).
    console_event_reader: Literal["auto", "process", "redis", "kombu"] = Field(
        "auto", validation_alias=_env("console_event_reader")
    )
    console_refresh_interval: float = Field(
        0.25, ge=0.05, le=5, validation_alias=_env("console_refresh_interval")
    )
    console_queue_poll_interval: float = Field(
        1.0, ge=0.1, le=60, validation_alias=_env("console_queue_poll_interval")
    )
    console_inspect_interval: float = Field(
        5.0, ge=0.5, le=600, validation_alias=_env("console_inspect_interval")
    )
    console_heartbeat_timeout: float = Field(
        6.0, ge=1, le=600, validation_alias=_env("console_heartbeat_timeout")
    )
    console_read_only: bool = Field(False, validation_alias=_env("console_read_only"))
    #: Default: ``audit.log`` in the user's state directory (:func:`state_home`), not in
    #: ``[paths]``: an operator's console keeps its own state.
    console_audit_log: Path = Field(
        default_factory=lambda: state_home() / "audit.log",
        validation_alias=_env("console_audit_log"),
    )
    console_control_timeout: float = Field(
        2.0, gt=0, le=60, validation_alias=_env("console_control_timeout")
    )
    #: Seconds after which a running task is flagged in the Tasks pane and counted in the
    #: status line ("2 running > 10m"); 0 turns the flag off.
    console_long_running_after: float = Field(
        600.0, ge=0, le=30 * 86400, validation_alias=_env("console_long_running_after")
    )
    #: The name of the cluster the top-level settings describe (the status line, audit
    #: lines, ``--cluster``), beside the ``[clusters.NAME]`` tables.
    console_cluster_name: str = Field("default", validation_alias=_env("console_cluster_name"))

    # ---- [check] --------------------------------------------------------------------
    check_min_workers: int = Field(1, ge=0, validation_alias=_env("check_min_workers"))
    check_timeout: float = Field(5.0, gt=0, le=300, validation_alias=_env("check_timeout"))
    check_backlog_warn: int = Field(1000, ge=0, validation_alias=_env("check_backlog_warn"))
    check_backlog_fail: int = Field(10_000, ge=0, validation_alias=_env("check_backlog_fail"))
    check_queue_backlog_warn: dict[str, int] = Field(
        default_factory=dict, validation_alias=_env("check_queue_backlog_warn")
    )
    check_queue_backlog_fail: dict[str, int] = Field(
        default_factory=dict, validation_alias=_env("check_queue_backlog_fail")
    )
    check_busy_seconds: float = Field(0.0, ge=0, validation_alias=_env("check_busy_seconds"))

    # ---- [history] ------------------------------------------------------------------
    #: Default: ``history.sqlite3`` in the user's state directory (:func:`state_home`).  A
    #: ``postgresql://user:pw@host/db`` URL (kept as a str) is a history a team's consoles share.
    history_db: Path | str = Field(
        default_factory=lambda: state_home() / "history.sqlite3",
        validation_alias=_env("history_db"),
    )
    history_max_rows: int = Field(1_000_000, ge=1000, validation_alias=_env("history_max_rows"))
    history_max_age_days: float = Field(30.0, gt=0, validation_alias=_env("history_max_age_days"))

    # ---- [redact] -------------------------------------------------------------------
    redact_arg_names: list[str] = Field(
        default_factory=lambda: [
            "recipient_email",
            "email",
            "contact_email",
            "phone",
            "complainant",
        ],
        validation_alias=_env("redact_arg_names"),
    )
    redact_emails: bool = Field(True, validation_alias=_env("redact_emails"))
    redact_phones: bool = Field(True, validation_alias=_env("redact_phones"))
    redact_patterns: list[str] = Field(
        default_factory=list, validation_alias=_env("redact_patterns")
    )

    # ---- [clusters.NAME] ---------------------------------------------------------------
    #: The other clusters, by name (``[clusters.NAME]`` tables; ``AFIRGEN_CLUSTERS`` as JSON).
    clusters: dict[str, ClusterConfig] = Field(
        default_factory=dict, validation_alias=_env("clusters")
    )

    #: The config file these settings were read from (None: defaults and environment only).
    _config_path: Path | None = PrivateAttr(None)
    #: :meth:`for_cluster`: the top-level settings this copy was made from, and its name
    _base: Settings | None = PrivateAttr(None)
    _cluster_name: str = PrivateAttr("")

    # ---- validation -----------------------------------------------------------------
    @field_validator("celery_broker_url", "celery_result_backend")
    @classmethod
    def _url_has_scheme(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be a URL like redis://host:6379/0")
        scheme = value.split("://", 1)[0]
        if scheme not in {
            "redis",
            "rediss",
            "amqp",
            "amqps",
            "pyamqp",
            "memory",
            "redis+socket",
            "sentinel",
            "db+sqlite",
            "rpc",
            "cache+memory",
            "disabled",
        }:
            raise ValueError(f"has unsupported scheme {scheme!r}")
        if (ch := raw_delimiter_in_credentials(value)) is not None:
            # kombu and redis-py would read part of the password as the host (or quote it in
            # their error): refuse before anything connects
            raise ValueError(
                f"the credentials hold a raw {ch!r}, which ends the host part for kombu and redis-py:"
                " percent-encode it in the password (/ as %2F, ? as %3F, # as %23; an @ in a path or"
                " query as %40)"
            )
        return value

    @field_validator("history_db", mode="before")
    @classmethod
    def _history_db(cls, value: Any) -> Any:
        if is_postgres_url(value):
            value = value.strip()
            if (ch := raw_delimiter_in_credentials(value)) is not None:
                raise ValueError(f"the credentials hold a raw {ch!r}: percent-encode it")
            return value
        return Path(value) if isinstance(value, str) else value

    @field_validator("rabbitmq_management_url")
    @classmethod
    def _management_url(cls, value: str) -> str:
        value = value.strip()
        if value and value.split("://", 1)[0].lower() not in {"http", "https"}:
            raise ValueError("must be an http:// or https:// URL like http://host:15672")
        if (ch := raw_delimiter_in_credentials(value)) is not None:
            raise ValueError(f"the credentials hold a raw {ch!r}: percent-encode it")
        return value

    @field_validator("sentinel_master_name")
    @classmethod
    def _master_name(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"[!-~]{1,200}", value):
            raise ValueError(
                "must be the name the sentinels monitor: printable characters, no spaces"
            )
        return value

    @field_validator("console_cluster_name")
    @classmethod
    def _cluster_name_ok(cls, value: str) -> str:
        value = value.strip()
        if not _CLUSTER_NAME.fullmatch(value):
            raise ValueError(
                "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("celery_worker_autoscale")
    @classmethod
    def _autoscale(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        m = re.fullmatch(r"(\d+)\s*,\s*(\d+)", value)
        if not m:
            raise ValueError("must be 'max,min' like 8,2")
        hi, lo = int(m.group(1)), int(m.group(2))
        if hi < 1 or lo < 0 or lo > hi:
            raise ValueError("must be 'max,min' with max >= min >= 0 and max >= 1")
        return f"{hi},{lo}"

    @field_validator("redact_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern {pattern!r} is not a valid regular expression: {exc}"
                ) from None
        return value

    @field_validator("check_queue_backlog_warn", "check_queue_backlog_fail")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [q for q, n in value.items() if n < 0]
        if bad:
            raise ValueError(f"thresholds must be >= 0 (queue {bad[0]!r})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.celery_task_soft_time_limit >= self.celery_task_time_limit:
            raise ValueError(
                f"CELERY_TASK_SOFT_TIME_LIMIT={self.celery_task_soft_time_limit} must be below "
                f"CELERY_TASK_TIME_LIMIT={self.celery_task_time_limit}"
            )
        if self.celery_visibility_timeout <= self.celery_task_time_limit:
            raise ValueError(
                f"CELERY_VISIBILITY_TIMEOUT={self.celery_visibility_timeout} must exceed "
                f"CELERY_TASK_TIME_LIMIT={self.celery_task_time_limit}, or running jobs are redelivered twice"
            )
        if self.check_backlog_warn > self.check_backlog_fail:
            raise ValueError(
                f"AFIRGEN_CHECK_BACKLOG_WARN={self.check_backlog_warn} must not exceed "
                f"AFIRGEN_CHECK_BACKLOG_FAIL={self.check_backlog_fail}"
            )
        for field in ("celery_broker_url", "celery_result_backend"):
            if is_sentinel_url(getattr(self, field)) and not self.sentinel_master_name:
                raise ValueError(
                    f"{env_name(field)} is a sentinel:// URL but AFIRGEN_SENTINEL_MASTER_NAME is not set: "
                    "name the master the sentinels monitor (config.toml [sentinel] master_name, e.g. mymaster)"
                )
        self._config_path = _CONFIG_PATH.get()
        if self._config_path is not None:
            base = self._config_path.parent
            for name in (
                "paths_data_dir",
                "paths_report_dir",
                "paths_outbox_dir",
                "paths_temp_dir",
                "console_audit_log",
                "history_db",
            ):
                path = getattr(self, name)
                if isinstance(path, str):
                    continue  # a postgresql:// history
                path = path.expanduser()
                if not path.is_absolute():
                    path = base / path
                object.__setattr__(self, name, path)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls, _CONFIG_PATH.get()))

    def __repr_args__(self):
        # repr() and str() must not show URL passwords (SecretStr already hides the SMTP one).
        for name, value in super().__repr_args__():
            if name in ("celery_broker_url", "celery_result_backend", "history_db") and isinstance(
                value, str
            ):
                value = mask_url(value)
            yield name, value

    # ---- derived values -------------------------------------------------------------
    @cached_property
    def autoscale(self) -> tuple[int, int] | None:
        """``(max, min)`` from ``celery_worker_autoscale``, or None."""
        if not self.celery_worker_autoscale:
            return None
        hi, lo = self.celery_worker_autoscale.split(",")
        return int(hi), int(lo)

    @property
    def config_path(self) -> Path | None:
        """The config file these settings were read from (None: defaults and environment only)."""
        return self._config_path

    @property
    def cluster_name(self) -> str:
        """The name of the cluster these settings point at: a ``[clusters.NAME]`` table's
        name, or ``[console] cluster_name`` (``default``) for the top-level settings."""
        return self._cluster_name or self.console_cluster_name

    @property
    def base_settings(self) -> Settings:
        """The top-level settings (these, unless they come from :meth:`for_cluster`)."""
        return self._base or self

    def cluster_names(self) -> list[str]:
        """Every cluster these settings know, the top-level one first."""
        base = self.base_settings
        return [base.console_cluster_name, *base.clusters]

    @property
    def has_several_clusters(self) -> bool:
        """True when ``[clusters.NAME]`` tables are configured (the status line names the
        cluster then)."""
        return bool(self.base_settings.clusters)

    def for_cluster(self, name: str) -> Settings:
        """The settings of cluster ``name``: the top-level settings with its
        ``[clusters.NAME]`` table's values in place (the top-level name: the top-level
        settings).  Everything downstream (sources, history, ``--check``) takes the result.

        Raises :class:`SettingsError`: an unknown name (one line listing the known ones), or
        the table's values, one line per problem.
        """
        base = self.base_settings
        if name == base.console_cluster_name:
            return base
        table = base.clusters.get(name)
        if table is None:
            raise SettingsError(
                [f"unknown cluster {name!r} (known: {', '.join(base.cluster_names())})"]
            )
        data = {
            field: getattr(base, field) for field in type(base).model_fields if field != "clusters"
        }
        data.update(table.overrides())
        data["clusters"] = base.clusters
        try:
            copy = type(base).model_validate(data)
        except ValidationError as exc:
            raise SettingsError(
                [_format_cluster_error(name, dict(e)) for e in exc.errors()]
            ) from None
        copy._config_path = base._config_path
        copy._base = base
        copy._cluster_name = name
        return copy

    def cluster_problems(self) -> list[str]:
        """One line per problem with the ``[clusters.NAME]`` tables (names and values)."""
        problems: list[str] = []
        seen = {
            self.console_cluster_name.lower(): f"[console] cluster_name = {self.console_cluster_name!r}"
        }
        for name in self.clusters:
            where = f"[{CLUSTERS_SECTION}.{name}]"
            if not _CLUSTER_NAME.fullmatch(name):
                problems.append(
                    f"{where}: a cluster name is 1-64 letters, digits, '.', '_' or '-',"
                    " starting with a letter or digit"
                )
                continue
            if (other := seen.get(name.lower())) is not None:
                problems.append(
                    f"{where}: the name is already taken by {other} (names are compared"
                    " without case)"
                )
                continue
            seen[name.lower()] = f"[{CLUSTERS_SECTION}.{name}]"
            try:
                self.for_cluster(name)
            except SettingsError as exc:
                problems.extend(exc.lines)
        return problems

    @property
    def cluster_id(self) -> str:
        """The cluster the broker URL points at, without credentials (:func:`cluster_identity`):
        the key of the console's history and of its audit lines."""
        return cluster_identity(self.celery_broker_url, self.sentinel_master_name)

    @property
    def broker_display(self) -> str:
        """The broker URL with its password masked, for screens and logs."""
        return mask_url(self.celery_broker_url)

    @property
    def backend_display(self) -> str:
        """The result backend URL with its password masked."""
        return mask_url(self.celery_result_backend)

    @property
    def fir_db_path(self) -> Path:
        """The SQLite database of FIR records the tasks read."""
        return self.paths_data_dir / "firs.sqlite3"

    def ssl_options(self) -> dict[str, Any]:
        """The [tls] settings as ``ssl_*`` options (redis-py, kombu and Celery's backend take these names)."""
        import ssl

        reqs = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
        opts: dict[str, Any] = {"ssl_cert_reqs": reqs[self.tls_cert_reqs]}
        for key, value in (
            ("ssl_ca_certs", self.tls_ca_certs),
            ("ssl_certfile", self.tls_certfile),
            ("ssl_keyfile", self.tls_keyfile),
        ):
            if value:
                opts[key] = value
        return opts

    def sentinel_kwargs(self, socket_timeout: float | None = None) -> dict[str, Any]:
        """Connection options for the sentinels themselves (redis-py's and kombu's
        ``sentinel_kwargs``): the timeouts and, if set, the sentinels' password."""
        timeout = self.sentinel_socket_timeout if socket_timeout is None else socket_timeout
        opts: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if self.sentinel_password.get_secret_value():
            opts["password"] = self.sentinel_password.get_secret_value()
        return opts

    def sentinel_transport_options(self) -> dict[str, Any]:
        """``master_name`` and ``sentinel_kwargs`` for a ``sentinel://`` broker or result backend."""
        return {"master_name": self.sentinel_master_name, "sentinel_kwargs": self.sentinel_kwargs()}

    def secrets(self) -> list[str]:
        """Every secret value these settings hold, for leak tests and scrubbing (every
        configured cluster's too: one console may show any of them)."""
        found = [self.smtp_password.get_secret_value(), self.sentinel_password.get_secret_value()]
        urls = [
            self.celery_broker_url,
            self.celery_result_backend,
            self.rabbitmq_management_url,
            self.history_db if isinstance(self.history_db, str) else "",
        ]
        for table in self.base_settings.clusters.values():
            urls.extend(u for u in (table.broker, table.backend, table.management_url) if u)
        for url in urls:
            found.extend(url_secrets(url))
        return list(dict.fromkeys(s for s in found if s))

    def ensure_dirs(self) -> None:
        """Create the data, report, outbox and temp directories."""
        for path in (
            self.paths_data_dir,
            self.paths_report_dir,
            self.paths_outbox_dir,
            self.paths_temp_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)


#: Which config file the ``Settings()`` being built reads (pydantic sources cannot take
#: arguments).  A ContextVar, not a module global: the console, the demo's job thread and
#: tests build settings concurrently, each from its own file.
_CONFIG_PATH: ContextVar[Path | None] = ContextVar("afirgen_config_path", default=None)


def resolve_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read: ``explicit``, else ``$AFIRGEN_CONFIG``, else ./config.toml if present."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("AFIRGEN_CONFIG")
    if env:
        return Path(env).expanduser()
    default = Path(_DEFAULT_CONFIG)
    return default if default.is_file() else None


_FIELD_BY_ENV = {env_name(f): f for f in Settings.model_fields}


def fields_from_env(env: dict[str, str]) -> dict[str, Any]:
    """Keyword overrides for :func:`load_settings` from environment-style names (``CELERY_BROKER_URL``...)."""
    return {_FIELD_BY_ENV[name]: value for name, value in env.items() if name in _FIELD_BY_ENV}


def _format_error(err: dict[str, Any]) -> str:
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else ""
    if field not in Settings.model_fields:
        field = _FIELD_BY_ENV.get(field.upper(), field)
    value = err.get("input")
    msg = err.get("msg", "is invalid")
    kind = err.get("type", "")
    if field in Settings.model_fields:
        where = env_name(field)
        if field in ("smtp_password", "sentinel_password"):
            value = "***"
        elif isinstance(value, str) and "://" in value:
            value = mask_url(value)
        if kind == "literal_error":
            expected = (err.get("ctx") or {}).get("expected", "")
            allowed = ", ".join(re.findall(r"'([^']*)'", expected)) or expected
            return f"{where}={value!r} is not one of {allowed}"
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif kind.startswith(("int_", "float_", "bool_", "greater", "less")):
            msg = msg[0].lower() + msg[1:]
        return f"{where}={value!r}: {msg} (config.toml {toml_location(field)})"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg


def _format_cluster_error(name: str, err: dict[str, Any]) -> str:
    """One line for a problem with a value of the ``[clusters.NAME]`` table ``name``, in the
    table's own words (``[clusters.b] broker='ftp://h': has unsupported scheme 'ftp'``)."""
    where = f"[{CLUSTERS_SECTION}.{name}]"
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else ""
    if field not in Settings.model_fields:
        field = _FIELD_BY_ENV.get(field.upper(), field)
    key = _FIELD_TO_CLUSTER_KEY.get(field)
    if key is None:
        # a check across settings (backlog_warn above backlog_fail, a sentinel:// broker
        # without master_name): say it with the table's keys where it names them
        line = _format_error(err)
        for other_field, other_key in _FIELD_TO_CLUSTER_KEY.items():
            line = line.replace(env_name(other_field), other_key)
        return f"{where} {line}"
    value = err.get("input")
    if isinstance(value, str) and "://" in value:
        value = mask_url(value)
    msg = err.get("msg", "is invalid")
    kind = err.get("type", "")
    if kind == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        allowed = ", ".join(re.findall(r"'([^']*)'", expected)) or expected
        return f"{where} {key}={value!r} is not one of {allowed}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    else:
        msg = msg[:1].lower() + msg[1:]
    return f"{where} {key}={value!r}: {msg}"


def _format_table_error(err: dict[str, Any]) -> str | None:
    """One line for a structural problem of a ``[clusters.NAME]`` table (unknown or missing
    key, wrong type), or None for an error elsewhere."""
    loc = err.get("loc") or ()
    if not loc or str(loc[0]) not in (CLUSTERS_SECTION, env_name(CLUSTERS_SECTION)):
        return None
    if len(loc) < 2:
        return f"[{CLUSTERS_SECTION}] must hold [{CLUSTERS_SECTION}.NAME] tables"
    where = f"[{CLUSTERS_SECTION}.{loc[1]}]"
    key = str(loc[2]) if len(loc) > 2 else ""
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return f"{where}: unknown setting {key!r} (known: {', '.join(CLUSTER_KEYS)})"
    if kind == "missing":
        return f"{where}: {key} is required (the cluster's broker URL)"
    if not key:
        return f'{where} must be a table with broker = "redis://..."'
    msg = err.get("msg", "is invalid")
    return f"{where} {key}={err.get('input')!r}: {msg[:1].lower()}{msg[1:]}"


def load_settings(config: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load settings from ``config`` (or ``AFIRGEN_CONFIG`` / ./config.toml) and the environment.

    Every ``[clusters.NAME]`` table is checked too (:meth:`Settings.cluster_problems`).
    Raises :class:`SettingsError` with one line per problem.
    """
    path = resolve_config_path(config)
    token = _CONFIG_PATH.set(path.resolve() if path else None)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(
            [_format_table_error(dict(e)) or _format_error(dict(e)) for e in exc.errors()]
        ) from None
    except PydanticSettingsError as exc:
        # An environment value for a list/dict setting that is not JSON.
        match = re.search(r'field "([a-z_]+)"', str(exc))
        field = match.group(1) if match else "?"
        raise SettingsError(
            [f"{env_name(field)}: not valid JSON (this setting takes a JSON list or object)"]
        ) from None
    finally:
        _CONFIG_PATH.reset(token)
    if problems := settings.cluster_problems():
        raise SettingsError(problems)
    return settings


def load_settings_or_exit(
    config: str | os.PathLike[str] | None = None, **overrides: Any
) -> Settings:
    """Like :func:`load_settings`, but print each problem on one line and exit 2."""
    try:
        return load_settings(config, **overrides)
    except SettingsError as exc:
        for line in exc.lines:
            print(f"afirgen: config error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
