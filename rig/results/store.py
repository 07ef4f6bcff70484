"""The results store: every run against a unit, each test's verdict and measurements.

A factory keeps a record per serial number that must survive anything, so every finished test
is committed in its own transaction: a run killed with SIGKILL (or a power cut, SQLite being
in WAL mode with full sync) keeps every test that finished, and its run row simply never gets
an end time, which the queries show as "interrupted".

SQLAlchemy Core, so a station writes to a local SQLite file by default
(`reports/results.sqlite`) and to a site's shared server (PostgreSQL, MySQL, ...) when given
any SQLAlchemy URL. Times are stored in UTC (naive datetimes: SQLite keeps no zone).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

ENV_URL = "RIG_RESULTS_DB"  # a site's shared database, for every station without --results-db
DEFAULT_FILE = "results.sqlite"  # under the reports directory
SCHEMA_VERSION = 2  # = the Alembic head's (rig/results/migrations/versions/): each migration sets it

# run verdicts (the unit's, except rig-fault and wrong-unit, which say nothing about the unit)
PASS, FAIL, RIG_FAULT, WRONG_UNIT, NO_TESTS = "pass", "fail", "rig-fault", "wrong-unit", "no-tests"
INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM; a SIGKILLed run has no end time at all
# test verdicts, as in run.json
# error: a rig fault (instrument named); harness-error: the harness's own exception; interrupted:
# the run stopped inside the test. None of the three says anything about the unit.
TEST_VERDICTS = ("passed", "failed", "error", "harness-error", "interrupted", "skipped")

metadata = MetaData()

meta = Table(
    "meta", metadata,
    Column("key", String(32), primary_key=True),
    Column("value", String(64), nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("run_id", String(40), primary_key=True),
    Column("serial", String(64), index=True),            # as the unit reports it (BootNotification)
    Column("expected_serial", String(64), index=True),   # end-of-line: scanned or --serial
    Column("model", String(64)),                         # chargePointModel
    Column("variant", String(32)),                       # the rig's product model (PS22-S, ...)
    Column("firmware", String(64)),                      # firmwareVersion
    Column("vendor", String(64)),
    Column("rig_name", String(64)),
    Column("rig_file", String(255)),
    Column("operator", String(64)),
    Column("host", String(64)),
    Column("station", String(64), index=True),           # the station (and socket) that tested the unit
    Column("mode", String(16)),                          # eol | suite
    Column("seed", Integer),
    Column("defect", String(64)),                        # emulated bench only
    Column("started_at", DateTime, index=True, nullable=False),
    Column("ended_at", DateTime),                        # NULL: still running, or interrupted
    Column("verdict", String(16)),                       # pass | fail | rig-fault | wrong-unit | no-tests | interrupted
    Column("verdict_detail", Text),
)

tests = Table(
    "tests", metadata,
    Column("test_id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40), ForeignKey("runs.run_id"), nullable=False, index=True),
    Column("seq", Integer, nullable=False),              # order of finishing within the run
    Column("nodeid", String(512), nullable=False),
    Column("verdict", String(16), nullable=False),       # one of TEST_VERDICTS
    Column("rig_fault", Text),                           # "instrument: what happened"
    Column("instrument", String(64)),
    Column("message", Text),
    Column("finished_at", DateTime, nullable=False),
    Column("wall_seconds", Float),
    Column("sim_seconds", Float),
    UniqueConstraint("run_id", "nodeid", name="uq_tests_run_nodeid"),
)

test_requirements = Table(
    "test_requirements", metadata,
    Column("test_id", Integer, ForeignKey("tests.test_id"), primary_key=True),
    Column("requirement", String(32), primary_key=True, index=True),
)

measurements = Table(
    "measurements", metadata,
    Column("measurement_id", Integer, primary_key=True, autoincrement=True),
    Column("test_id", Integer, ForeignKey("tests.test_id"), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("name", String(255), nullable=False),
    Column("value", Float),                              # NULL: nothing observed
    Column("unit", String(16)),
    Column("low", Float),
    Column("high", Float),
    Column("limit_source", Text),
    Column("resolution", Float),
    Column("passed", Boolean, nullable=False),
)

# the journal's side of forwarding (rig/results/forwarder.py): which runs went to which shared database
forwarded = Table(
    "forwarded", metadata,
    Column("target", String(255), primary_key=True),     # the shared URL, password hidden
    Column("run_id", String(40), primary_key=True),
    Column("forwarded_at", DateTime, nullable=False),
)
forward_errors = Table(
    "forward_errors", metadata,
    Column("target", String(255), primary_key=True),
    Column("at", DateTime, nullable=False),
    Column("error", Text, nullable=False),
)

RUN_FIELDS = tuple(c.name for c in runs.columns)
MEASUREMENT_FIELDS = ("name", "value", "unit", "low", "high", "limit_source", "resolution", "passed")


def describe_error(exc: BaseException, url: str) -> str | None:
    """One line for a store that cannot be used (a malformed URL, a missing driver, a server that
    refuses, a file that is no database, a disk that is full); None for anything else (a bug)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        where = make_url(url).render_as_string(hide_password=True)
    except Exception:  # the URL itself is what is wrong
        where = url
    if isinstance(exc, (ArgumentError, NoSuchModuleError)):
        return f"results store {where!r}: not a usable database URL: {' '.join(str(exc).split())[:200]}"
    if isinstance(exc, ModuleNotFoundError):
        return f"results store {where!r}: its database driver is not installed ({exc.name})"
    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None) or exc
        return f"results store {where!r}: {' '.join(str(orig).split())[:200]}"
    if isinstance(exc, OSError):
        return f"results store {where!r}: {exc.strerror or exc}"
    return None


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_run_id(started: datetime) -> str:
    return f"{started:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def default_url(reports_dir: Path | str) -> str:
    return f"sqlite:///{Path(reports_dir).resolve() / DEFAULT_FILE}"


@dataclass
class TestResult:
    """One finished test as it goes into the store."""

    __test__ = False  # a data class named Test*, not a pytest test class

    nodeid: str
    verdict: str
    requirements: list[str] = field(default_factory=list)
    rig_fault: str | None = None
    message: str | None = None
    wall_seconds: float = 0.0
    sim_seconds: float = 0.0
    measurements: list[dict] = field(default_factory=list)
    finished_at: datetime = field(default_factory=utcnow)

    @property
    def instrument(self) -> str | None:
        return self.rig_fault.split(":", 1)[0].strip() if self.rig_fault else None


# ---------------------------------------------------------------------- engine
def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files get WAL (a reader can look while a run writes) and full sync."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # a committed test survives a power cut, not only a kill
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class _BeingCreated(Exception):
    """Another process is creating the store's schema at this moment."""


class ResultsStore:
    """Schema, writer and queries over one database."""

    def __init__(self, url: str, engine: Engine | None = None):
        self.url = url
        self.engine = engine if engine is not None else make_engine(url)
        self._create_schema()

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        return int(value) if value is not None else 0

    def _create_schema(self, attempts: int = 50) -> None:
        """Tables and schema version, if missing. Several stations (or a station's sockets) may open
        a new store at the same moment: the loser of that race finds the tables made and looks again."""
        from sqlalchemy import inspect

        from rig.results import schema_upgrade

        for attempt in range(attempts):
            try:
                with self.engine.begin() as conn:
                    if not inspect(conn).has_table("runs"):  # a new store: today's tables, at the head revision
                        metadata.create_all(conn)
                        conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                        schema_upgrade.stamp_head(conn)
                        return
                version = self.schema_version()
                if version == 0:  # tables, but no version yet: another process is creating this store now
                    raise _BeingCreated()
                if self.url.startswith("sqlite") and version < SCHEMA_VERSION:
                    schema_upgrade.upgrade(self.engine)  # the station's own file: it owns the schema
                return
            except _BeingCreated:
                if attempt == attempts - 1:
                    raise OperationalError("schema", {}, Exception("the store's tables exist but it has no "
                                                                   "schema version (a creation cut short?)")) from None
                time.sleep(0.1)
            except (OperationalError, IntegrityError, ProgrammingError) as exc:
                if attempt == attempts - 1 or "exist" not in str(exc).lower() and not isinstance(exc, IntegrityError):
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ writing
    def start_run(self, fields: dict) -> str:
        """Insert a run row; returns its id. `fields` are columns of `runs`."""
        row = {k: v for k, v in fields.items() if k in RUN_FIELDS}
        row.setdefault("started_at", utcnow())
        row.setdefault("run_id", new_run_id(row["started_at"]))
        with self.engine.begin() as conn:
            conn.execute(runs.insert().values(**row))
        return row["run_id"]

    def record_test(self, run_id: str, result: TestResult, run_update: dict | None = None) -> int:
        """One finished test (its requirements and measurements) in one transaction."""
        with self.engine.begin() as conn:
            if run_update:
                conn.execute(update(runs).where(runs.c.run_id == run_id).values(**_run_columns(run_update)))
            seq = conn.execute(select(tests.c.seq).where(tests.c.run_id == run_id)
                               .order_by(tests.c.seq.desc()).limit(1)).scalar()
            test_id = conn.execute(tests.insert().values(
                run_id=run_id, seq=(seq or 0) + 1, nodeid=result.nodeid, verdict=result.verdict,
                rig_fault=result.rig_fault, instrument=result.instrument, message=result.message,
                finished_at=result.finished_at, wall_seconds=result.wall_seconds, sim_seconds=result.sim_seconds,
            )).inserted_primary_key[0]
            for rid in dict.fromkeys(result.requirements):
                conn.execute(test_requirements.insert().values(test_id=test_id, requirement=rid))
            for i, m in enumerate(result.measurements, 1):
                conn.execute(measurements.insert().values(test_id=test_id, seq=i, **measurement_row(m)))
        return test_id

    def update_run(self, run_id: str, **fields) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(**_run_columns(fields)))

    def finish_run(self, run_id: str, verdict: str, detail: str = "", ended_at: datetime | None = None) -> None:
        self.update_run(run_id, ended_at=ended_at or utcnow(), verdict=verdict, verdict_detail=detail)

    # ------------------------------------------------------------------ reading
    def recent_runs(self, limit: int = 20, serial: str | None = None) -> list[dict]:
        q = select(runs).order_by(runs.c.started_at.desc()).limit(limit)
        if serial:
            q = q.where((runs.c.serial == serial) | (runs.c.expected_serial == serial))
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
            counts = self._test_counts(conn, [r["run_id"] for r in rows])
        for r in rows:
            r["counts"] = counts.get(r["run_id"], {})
        return rows

    def run_ids_for(self, serial_or_run_id: str) -> list[str]:
        """The runs of a serial number (oldest first), or the one run with that id."""
        key = serial_or_run_id
        with self.engine.connect() as conn:
            ids = conn.execute(select(runs.c.run_id).where((runs.c.serial == key) | (runs.c.expected_serial == key))
                               .order_by(runs.c.started_at)).scalars().all()
            if not ids:
                ids = conn.execute(select(runs.c.run_id).where(runs.c.run_id == key)).scalars().all()
        return list(ids)

    def run_detail(self, run_id: str) -> dict | None:
        """A run with its tests, each with requirements and measurements."""
        with self.engine.connect() as conn:
            run = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
            if run is None:
                return None
            out = dict(run._mapping)
            rows = conn.execute(select(tests).where(tests.c.run_id == run_id).order_by(tests.c.seq)).all()
            ids = [t.test_id for t in rows]
            reqs: dict[int, list[str]] = {}
            for tid, rid in conn.execute(select(test_requirements.c.test_id, test_requirements.c.requirement)
                                         .where(test_requirements.c.test_id.in_(ids))):
                reqs.setdefault(tid, []).append(rid)
            meas: dict[int, list[dict]] = {}
            for m in conn.execute(select(measurements).where(measurements.c.test_id.in_(ids))
                                  .order_by(measurements.c.test_id, measurements.c.seq)):
                meas.setdefault(m.test_id, []).append({k: getattr(m, k) for k in MEASUREMENT_FIELDS})
        out["tests"] = []
        for t in rows:
            d = {k: v for k, v in t._mapping.items() if k not in ("test_id", "run_id")}
            d["requirements"] = sorted(reqs.get(t.test_id, []))
            d["measurements"] = meas.get(t.test_id, [])
            out["tests"].append(d)
        return out

    def runs_between(self, since: datetime | None, until: datetime | None) -> list[dict]:
        q = select(runs).order_by(runs.c.started_at)
        if since is not None:
            q = q.where(runs.c.started_at >= since)
        if until is not None:
            q = q.where(runs.c.started_at < until)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def failed_requirements(self, run_ids: list[str]) -> list[tuple[str, str, str]]:
        """(run_id, requirement, nodeid) of every failed test of these runs."""
        if not run_ids:
            return []
        q = (select(tests.c.run_id, test_requirements.c.requirement, tests.c.nodeid)
             .join(test_requirements, test_requirements.c.test_id == tests.c.test_id)
             .where(tests.c.run_id.in_(run_ids), tests.c.verdict == "failed"))
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(q)]

    def rig_faults(self, run_ids: list[str]) -> list[tuple[str, str | None]]:
        """(run_id, instrument) of every test that errored on a rig fault in these runs; a harness
        error's instrument is "test harness"."""
        if not run_ids:
            return []
        q = select(tests.c.run_id, tests.c.instrument, tests.c.verdict).where(
            tests.c.run_id.in_(run_ids), tests.c.verdict.in_(("error", "harness-error")))
        with self.engine.connect() as conn:
            return [(r[0], "test harness" if r[2] == "harness-error" else r[1]) for r in conn.execute(q)]

    @staticmethod
    def _test_counts(conn, run_ids: list[str]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        if not run_ids:
            return out
        for run_id, verdict in conn.execute(select(tests.c.run_id, tests.c.verdict).where(tests.c.run_id.in_(run_ids))):
            c = out.setdefault(run_id, {})
            c[verdict] = c.get(verdict, 0) + 1
        return out


def _run_columns(fields: dict) -> dict:
    return {k: v for k, v in fields.items() if k in RUN_FIELDS and k != "run_id"}


def measurement_row(m: dict) -> dict:
    row = {k: m.get(k) for k in MEASUREMENT_FIELDS}
    row["passed"] = bool(m.get("passed", True))
    row["name"] = str(row["name"] or "")
    return row


def run_state(run: dict) -> str:
    """What a run row says: its verdict, or "running/interrupted" while it has no end."""
    if run.get("ended_at") is None:
        return INTERRUPTED  # (or still running: a killed run looks the same, by design)
    return run.get("verdict") or "no-tests"
