"""The FIR records database: schema, connections, lookups and a deterministic sample set.

The database is one SQLite file (``settings.fir_db_path``, in the data directory) in WAL
mode, so report and e-mail tasks keep reading while analytics and cleanup tasks write.
Tables:

``firs``             one row per First Information Report (timestamps are UTC ISO,
                     ``2025-03-14T08:21:00Z``, so text order is time order)
``dashboard_stats``  aggregates the analytics tasks upsert, keyed by name, for dashboards
``cache``            key/value entries with ``expires_at``; cleanup removes expired ones
``email_deliveries`` which task delivery already sent which Message-ID over SMTP

A locked database surfaces as :class:`~afirgen_tasks.base.DatabaseLockedError`, which the
task layer retries.  ``python -m afirgen_tasks.records seed --count 500`` fills a database
with realistic sample FIRs (Indian districts, police stations and BNS offences).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from .base import DatabaseLockedError, PermanentTaskError
from .cli_parser import OneLineErrorParser

#: Bumped when the schema changes; ``ensure_schema`` is a no-op once the file is at it.
SCHEMA_VERSION = 1

#: Seconds a connection waits for another writer before "database is locked".
DEFAULT_BUSY_TIMEOUT = 5.0

#: Seed of the sample set when none is given (the demo and the docs use it).
DEFAULT_SEED = 2024

STATUSES: tuple[str, ...] = (
    "registered",
    "under_investigation",
    "chargesheeted",
    "closed",
    "archived",
)
OPEN_STATUSES: tuple[str, ...] = ("registered", "under_investigation", "chargesheeted")

FIR_FIELDS: tuple[str, ...] = (
    "id",
    "fir_number",
    "complainant",
    "contact_email",
    "contact_phone",
    "state",
    "district",
    "police_station",
    "offence",
    "act_section",
    "description",
    "status",
    "filed_at",
    "archived_at",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS firs (
    id             INTEGER PRIMARY KEY,
    fir_number     TEXT NOT NULL UNIQUE,
    complainant    TEXT NOT NULL,
    contact_email  TEXT NOT NULL,
    contact_phone  TEXT NOT NULL,
    state          TEXT NOT NULL,
    district       TEXT NOT NULL,
    police_station TEXT NOT NULL,
    offence        TEXT NOT NULL,
    act_section    TEXT NOT NULL,
    description    TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    filed_at       TEXT NOT NULL,
    archived_at    TEXT
);
CREATE INDEX IF NOT EXISTS firs_status_filed ON firs (status, filed_at);
CREATE INDEX IF NOT EXISTS firs_filed ON firs (filed_at);
CREATE INDEX IF NOT EXISTS firs_district ON firs (district);
CREATE TABLE IF NOT EXISTS dashboard_stats (
    key         TEXT PRIMARY KEY,
    value_json  TEXT NOT NULL,
    computed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cache (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_expires ON cache (expires_at);
CREATE TABLE IF NOT EXISTS email_deliveries (
    task_id      TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    delivered_at TEXT NOT NULL,
    PRIMARY KEY (task_id, message_id)
);
PRAGMA user_version = {SCHEMA_VERSION};
"""


@dataclass(frozen=True)
class FIR:
    """One First Information Report as stored in ``firs``."""

    id: int
    fir_number: str
    complainant: str
    contact_email: str
    contact_phone: str
    state: str
    district: str
    police_station: str
    offence: str
    act_section: str
    description: str
    status: str
    filed_at: str
    archived_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict (field order as in the table)."""
        return asdict(self)


# ---- time ----------------------------------------------------------------------------
def utc_now() -> datetime:
    """The current time in UTC, whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


def utc_iso(moment: datetime) -> str:
    """``moment`` as the stored form ``YYYY-MM-DDTHH:MM:SSZ`` (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- connections ---------------------------------------------------------------------
def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower()


def connect(path: str | os.PathLike[str], timeout: float | None = None) -> sqlite3.Connection:
    """Open the FIR database at ``path`` (created if missing) in WAL mode with a busy timeout.

    Rows come back as :class:`sqlite3.Row`.  The connection is in autocommit mode; use
    :func:`transaction` for writes.  Raises :class:`DatabaseLockedError` when another
    writer holds the file for longer than ``timeout`` seconds.
    """
    timeout = DEFAULT_BUSY_TIMEOUT if timeout is None else timeout
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.OperationalError as exc:
        conn.close()
        if _is_locked(exc):
            raise DatabaseLockedError(
                f"FIR database {path} is locked by another writer: {exc}"
            ) from exc
        raise
    except BaseException:
        conn.close()
        raise
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables and indexes if missing (a no-op, taking no lock, once they exist)."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    conn.executescript("BEGIN IMMEDIATE;\n" + _SCHEMA + "\nCOMMIT;")


@contextmanager
def open_db(
    path: str | os.PathLike[str], timeout: float | None = None
) -> Iterator[sqlite3.Connection]:
    """``connect`` + ``ensure_schema``; closes the connection and turns "locked" into
    :class:`DatabaseLockedError` (transient: the task is retried)."""
    conn = connect(path, timeout)
    try:
        ensure_schema(conn)
        yield conn
    except sqlite3.OperationalError as exc:
        if _is_locked(exc):
            raise DatabaseLockedError(
                f"FIR database {path} is locked by another writer: {exc}"
            ) from exc
        raise
    finally:
        conn.close()


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction: a consistent WAL snapshot that does not block writers (use it for
    long aggregations, then write the result in :func:`transaction`)."""
    conn.execute("BEGIN DEFERRED")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``: take the write lock up front, so a busy
    database fails fast at the start instead of midway), committed or rolled back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# ---- lookups -------------------------------------------------------------------------
def parse_fir_id(value: object) -> int:
    """``value`` as a FIR id (a positive whole number), or :class:`PermanentTaskError`."""
    if isinstance(value, bool):
        raise PermanentTaskError(f"FIR id {value!r} is not a positive whole number")
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value < 1:
        raise PermanentTaskError(f"FIR id {value!r} is not a positive whole number")
    return value


def _row_to_fir(row: sqlite3.Row) -> FIR:
    return FIR(**{k: row[k] for k in FIR_FIELDS})


def get_fir(conn: sqlite3.Connection, fir_id: int) -> FIR | None:
    """The FIR with ``fir_id``, or None."""
    row = conn.execute(
        f"SELECT {', '.join(FIR_FIELDS)} FROM firs WHERE id = ?", (fir_id,)
    ).fetchone()
    return _row_to_fir(row) if row is not None else None


def require_fir(conn: sqlite3.Connection, fir_id: object) -> FIR:
    """The FIR with ``fir_id``; an unknown or malformed id is a :class:`PermanentTaskError`."""
    fid = parse_fir_id(fir_id)
    fir = get_fir(conn, fid)
    if fir is None:
        total = conn.execute("SELECT count(*) FROM firs").fetchone()[0]
        raise PermanentTaskError(f"FIR {fid} does not exist (the database holds {total} FIRs)")
    return fir


def get_firs(conn: sqlite3.Connection, fir_ids: Iterable[int]) -> dict[int, FIR]:
    """The FIRs among ``fir_ids`` that exist, by id (queried in chunks under SQLite's
    bound-parameter limit)."""
    ids = sorted(set(fir_ids))
    found: dict[int, FIR] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ", ".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT {', '.join(FIR_FIELDS)} FROM firs WHERE id IN ({marks})", chunk
        ):
            found[row["id"]] = _row_to_fir(row)
    return found


def count_firs(conn: sqlite3.Connection) -> int:
    """How many FIRs the database holds."""
    return conn.execute("SELECT count(*) FROM firs").fetchone()[0]


def get_stat(conn: sqlite3.Connection, key: str) -> Any:
    """The decoded ``dashboard_stats`` value for ``key``, or None."""
    row = conn.execute("SELECT value_json FROM dashboard_stats WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row is not None else None


def put_stat(conn: sqlite3.Connection, key: str, value: Any, computed_at: str) -> None:
    """Upsert one ``dashboard_stats`` row (call inside :func:`transaction`)."""
    conn.execute(
        "INSERT INTO dashboard_stats (key, value_json, computed_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value_json = excluded.value_json, computed_at = excluded.computed_at",
        (key, json.dumps(value, sort_keys=True, separators=(",", ":")), computed_at),
    )


def cache_put(
    conn: sqlite3.Connection,
    key: str,
    value: str,
    expires_at: datetime,
    now: datetime | None = None,
) -> None:
    """Insert or replace one cache entry."""
    conn.execute(
        "INSERT INTO cache (key, value, created_at, expires_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, created_at = excluded.created_at, "
        "expires_at = excluded.expires_at",
        (key, value, utc_iso(now or utc_now()), utc_iso(expires_at)),
    )


# ---- files ---------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``,
    so readers (and a crash) never see half a file.  Temp names start with a dot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# ---- the sample set ------------------------------------------------------------------
#: state -> district -> police stations (real station names).
PLACES: dict[str, dict[str, tuple[str, ...]]] = {
    "Maharashtra": {
        "Pune": ("Shivajinagar", "Kothrud", "Hadapsar", "Yerawada", "Deccan Gymkhana"),
        "Mumbai City": ("Colaba", "Azad Maidan", "Byculla", "Dadar", "Worli"),
        "Nagpur": ("Sitabuldi", "Sadar", "Dhantoli", "Ajni"),
    },
    "Karnataka": {
        "Bengaluru Urban": (
            "Koramangala",
            "Indiranagar",
            "Jayanagar",
            "Whitefield",
            "Malleshwaram",
        ),
        "Mysuru": ("Devaraja", "Lashkar", "Vijayanagar"),
    },
    "Tamil Nadu": {
        "Chennai": ("T. Nagar", "Adyar", "Mylapore", "Egmore", "Anna Nagar"),
        "Coimbatore": ("Race Course", "R.S. Puram", "Peelamedu"),
    },
    "Telangana": {
        "Hyderabad": ("Banjara Hills", "Jubilee Hills", "Abids", "Charminar", "Begumpet")
    },
    "West Bengal": {"Kolkata": ("Park Street", "Gariahat", "Shyampukur", "Jadavpur", "Bowbazar")},
    "Uttar Pradesh": {
        "Lucknow": ("Hazratganj", "Gomti Nagar", "Aliganj", "Chowk", "Aminabad"),
        "Varanasi": ("Dashashwamedh", "Lanka", "Cantonment"),
    },
    "Rajasthan": {"Jaipur": ("Malviya Nagar", "Vaishali Nagar", "Sindhi Camp", "Bajaj Nagar")},
    "Kerala": {"Ernakulam": ("Ernakulam Central", "Kadavanthra", "Palarivattom", "Fort Kochi")},
    "Bihar": {"Patna": ("Gandhi Maidan", "Kankarbagh", "Patliputra", "Pirbahore")},
    "Delhi": {
        "New Delhi": ("Connaught Place", "Parliament Street", "Chanakyapuri", "Tughlak Road")
    },
    "Gujarat": {"Ahmedabad": ("Navrangpura", "Ellisbridge", "Maninagar", "Vastrapur")},
    "Madhya Pradesh": {"Bhopal": ("TT Nagar", "Habibganj", "Kohefiza", "Shahjahanabad")},
}

_STATE_CODES = {
    "Maharashtra": "MH",
    "Karnataka": "KA",
    "Tamil Nadu": "TN",
    "Telangana": "TG",
    "West Bengal": "WB",
    "Uttar Pradesh": "UP",
    "Rajasthan": "RJ",
    "Kerala": "KL",
    "Bihar": "BR",
    "Delhi": "DL",
    "Gujarat": "GJ",
    "Madhya Pradesh": "MP",
}

#: (offence, section of the Bharatiya Nyaya Sanhita / IT Act, relative frequency, what happened)
OFFENCES: tuple[tuple[str, str, int, str], ...] = (
    (
        "Theft",
        "BNS 303(2)",
        22,
        "an unknown person stole {item} from {place} while the complainant was away for about {minutes} minutes",
    ),
    (
        "Vehicle theft",
        "BNS 303(2)",
        12,
        "{vehicle} parked near {place} was found missing; the ignition lock was broken",
    ),
    (
        "Snatching",
        "BNS 304",
        8,
        "two persons on a motorcycle snatched {item} from the complainant near {place} and fled",
    ),
    (
        "Cheating",
        "BNS 318(4)",
        10,
        "the accused took Rs. {amount} from the complainant near {place}, promising {promise}, and stopped answering calls",
    ),
    (
        "Online fraud",
        "IT Act 66D",
        10,
        "a caller posing as a bank officer obtained an OTP and Rs. {amount} was debited from the complainant's account",
    ),
    (
        "Voluntarily causing hurt",
        "BNS 115(2)",
        9,
        "after an argument about {dispute} near {place}, the accused hit the complainant, causing injuries to the arm",
    ),
    (
        "Criminal intimidation",
        "BNS 351(2)",
        7,
        "the accused threatened the complainant near {place} over {dispute} and warned of consequences",
    ),
    (
        "House-breaking",
        "BNS 331(4)",
        8,
        "the lock of the complainant's house near {place} was broken at night and {item} had been taken",
    ),
    (
        "Criminal breach of trust",
        "BNS 316(2)",
        4,
        "an employee entrusted with Rs. {amount} for deposit near {place} did not deposit it",
    ),
    (
        "Mischief",
        "BNS 324(4)",
        5,
        "the accused damaged {vehicle} parked near {place} after an argument about {dispute}",
    ),
    (
        "Rash driving",
        "BNS 281",
        5,
        "{vehicle} driven at high speed near {place} hit the complainant's scooter",
    ),
)

_FIRST = (
    "Aarav",
    "Aditi",
    "Akash",
    "Ananya",
    "Arjun",
    "Deepa",
    "Farhan",
    "Gurpreet",
    "Harish",
    "Ishita",
    "Kavya",
    "Lakshmi",
    "Manoj",
    "Meera",
    "Mohammed",
    "Neha",
    "Pooja",
    "Pradeep",
    "Rahul",
    "Rekha",
    "Rohan",
    "Sanjay",
    "Shreya",
    "Sneha",
    "Sunil",
    "Suresh",
    "Tanvi",
    "Vikram",
    "Vijay",
    "Zoya",
)
_LAST = (
    "Sharma",
    "Patel",
    "Iyer",
    "Reddy",
    "Nair",
    "Banerjee",
    "Chatterjee",
    "Singh",
    "Khan",
    "Gupta",
    "Deshmukh",
    "Kulkarni",
    "Menon",
    "Pillai",
    "Rao",
    "Joshi",
    "Verma",
    "Mishra",
    "Das",
    "Shaikh",
)
_ITEMS = (
    "a mobile phone (Samsung Galaxy)",
    "a gold chain of about 15 grams",
    "a laptop bag with a Dell laptop",
    "a wallet with Rs. 4,500 and an Aadhaar card",
    "two silver anklets",
    "an iPhone 13",
)
_VEHICLES = (
    "a Honda Activa scooter",
    "a Hero Splendor motorcycle",
    "a Maruti Swift car",
    "a Bajaj Pulsar motorcycle",
    "an auto-rickshaw",
    "a Tata Nexon car",
)
_LANDMARKS = (
    "the bus stand",
    "the railway station",
    "the vegetable market",
    "the temple gate",
    "the main bazaar",
    "the metro station",
    "the complainant's shop",
    "the ATM on the main road",
    "the college gate",
)
_DISPUTES = (
    "a parking space",
    "a property boundary",
    "an unpaid loan",
    "loud music",
    "a shop rent",
)
_PROMISES = (
    "a government job",
    "a plot of land",
    "a visa to Dubai",
    "double returns on an investment",
)
_DOMAINS = ("example.com", "example.org", "example.net")


def _inr(amount: int) -> str:
    """Indian digit grouping: 257000 -> 2,57,000."""
    text = str(amount)
    head, tail = text[:-3], text[-3:]
    groups: list[str] = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    return ",".join([*groups, tail])


def _status_for(age_days: int, rng: random.Random) -> str:
    """Older cases are further along: fresh FIRs are registered, old ones mostly closed."""
    if age_days < 7:
        weights = (80, 20, 0, 0)
    elif age_days < 60:
        weights = (25, 60, 10, 5)
    elif age_days < 365:
        weights = (5, 35, 35, 25)
    else:
        weights = (2, 13, 30, 55)
    return rng.choices(("registered", "under_investigation", "chargesheeted", "closed"), weights)[0]


def sample_firs(
    count: int, seed: int = DEFAULT_SEED, end: date | None = None, span_days: int = 730
) -> list[FIR]:
    """``count`` realistic FIRs, the same for the same ``seed``, ``end`` and ``span_days``.

    Filing times fall in the ``span_days`` days before ``end`` (default: today, UTC; the
    newest FIR is filed before midnight starting ``end``, never in the future), recent days
    more often; ids run from 1 in filing order.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    rng = random.Random(seed)
    end = end or utc_now().date()
    end_moment = datetime.combine(end, time(0, 0), UTC) - timedelta(seconds=1)
    moments = sorted(
        end_moment - timedelta(seconds=int(span_days * 86400 * (1 - rng.random() ** 0.7)))
        for _ in range(count)
    )
    places = [
        (s, d, ps)
        for s, districts in PLACES.items()
        for d, stations in districts.items()
        for ps in stations
    ]
    per_station_year: dict[tuple[str, int], int] = {}
    firs: list[FIR] = []
    for i, moment in enumerate(moments, start=1):
        state, district, station = rng.choice(places)
        offence, section, _weight, what = rng.choices(OFFENCES, [o[2] for o in OFFENCES])[0]
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        seq = per_station_year[(station, moment.year)] = (
            per_station_year.get((station, moment.year), 0) + 1
        )
        station_code = "".join(ch for ch in station.upper() if ch.isalpha())[:6]
        fir_number = f"{_STATE_CODES[state]}/{station_code}/{moment.year}/{seq:04d}"
        facts = what.format(
            item=rng.choice(_ITEMS),
            place=rng.choice(_LANDMARKS),
            minutes=rng.randint(5, 40),
            vehicle=rng.choice(_VEHICLES),
            amount=_inr(rng.randint(5, 450) * 1000),
            dispute=rng.choice(_DISPUTES),
            promise=rng.choice(_PROMISES),
        )
        incident = moment - timedelta(hours=rng.randint(1, 72))
        description = (
            f"The complainant, {first} {last}, reported at {station} police station that on "
            f"{incident:%d %B %Y} at about {incident:%H:%M} hours {facts}.\n\n"
            f"The complainant requests that the matter be investigated and action be taken under "
            f"{section}. A copy of this FIR was given to the complainant free of cost."
        )
        age = (end_moment - moment).days
        firs.append(
            FIR(
                id=i,
                fir_number=fir_number,
                complainant=f"{first} {last}",
                contact_email=f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(_DOMAINS)}",
                contact_phone=f"+91 {rng.choice('6789')}{rng.randint(0, 999_999_999):09d}",
                state=state,
                district=district,
                police_station=station,
                offence=offence,
                act_section=section,
                description=description,
                status=_status_for(age, rng),
                filed_at=utc_iso(moment),
            )
        )
    return firs


def insert_firs(conn: sqlite3.Connection, firs: Sequence[FIR]) -> None:
    """Insert or replace ``firs`` (call inside :func:`transaction`)."""
    conn.executemany(
        f"INSERT OR REPLACE INTO firs ({', '.join(FIR_FIELDS)}) VALUES ({', '.join('?' * len(FIR_FIELDS))})",
        [tuple(getattr(f, k) for k in FIR_FIELDS) for f in firs],
    )


def create_sample_db(
    path: str | os.PathLike[str],
    count: int = 500,
    seed: int = DEFAULT_SEED,
    end: date | None = None,
) -> Path:
    """Fill the FIR database at ``path`` with ``count`` sample FIRs (see :func:`sample_firs`).

    Every existing FIR is replaced, so running it twice leaves the same data.  A few dozen
    cache entries are added too (a third already expired) so ``clear_expired_cache`` has work.
    Returns ``path``.
    """
    path = Path(path)
    firs = sample_firs(count, seed, end)
    rng = random.Random(seed + 1)
    now = utc_now()
    with open_db(path) as conn, transaction(conn):
        conn.execute("DELETE FROM firs")
        insert_firs(conn, firs)
        for n in range(max(3, count // 10)):
            expires = now + timedelta(
                minutes=rng.randint(-720, 1440) if n % 3 else -rng.randint(1, 720)
            )
            cache_put(conn, f"sample:fir-summary:{n}", json.dumps({"n": n}), expires, now)
    return path


# ---- command line --------------------------------------------------------------------
def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 1 and 1000000")
    return value


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2025-06-30") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m afirgen_tasks.records`` argument parser."""
    p = OneLineErrorParser(
        prog="python -m afirgen_tasks.records", description="The AFIRGen FIR records database."
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    seed = sub.add_parser(
        "seed", help="fill the database with realistic sample FIRs (replaces existing FIRs)"
    )
    seed.add_argument("--count", type=_count, default=500, help="how many FIRs (default 500)")
    seed.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})"
    )
    seed.add_argument(
        "--end", type=_iso_date, help="last filing date, YYYY-MM-DD (default today, UTC)"
    )
    seed.add_argument(
        "--replace", action="store_true", help="replace the FIRs a non-empty database holds"
    )
    seed.add_argument(
        "--db", metavar="PATH", help="database file (default: firs.sqlite3 in [paths] data_dir)"
    )
    seed.add_argument(
        "--config", metavar="PATH", help="settings file (default: $AFIRGEN_CONFIG or ./config.toml)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m afirgen_tasks.records``."""
    args = build_parser().parse_args(argv)
    if args.db:
        db = Path(args.db).expanduser()
    else:
        from .settings import load_settings_or_exit

        db = load_settings_or_exit(args.config).fir_db_path
    if db.is_dir():
        print(f"records: --db {db} is a directory, not a database file", file=sys.stderr)
        return 2
    try:
        if db.exists() and not args.replace:
            with open_db(db) as conn:
                existing = count_firs(conn)
            if existing:
                print(
                    f"records: {db} already holds {existing} FIRs; pass --replace to replace them",
                    file=sys.stderr,
                )
                return 2
        create_sample_db(db, args.count, args.seed, args.end)
        with open_db(db) as conn:
            total = count_firs(conn)
    except (OSError, sqlite3.Error, DatabaseLockedError) as exc:
        print(f"records: cannot write {db}: {exc}", file=sys.stderr)
        return 1
    print(f"records: {db} now holds {total} sample FIRs (seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
