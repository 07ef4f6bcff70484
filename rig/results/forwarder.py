"""Local first, then forward: a station records into its own SQLite journal (every finished test
committed at once, surviving SIGKILL) and forwards complete runs to the site's shared database.

* A run is forwarded whole, in one transaction on the shared database (all of it or none), and
  exactly once: its run_id is the shared table's primary key, so a run already there (forwarded
  by another process, or forwarded just before a crash that kept the journal from noting it) is
  only noted, never written twice.
* The shared database down, slow or refusing never blocks a test: forwarding runs after the
  run's verdict, in a background thread with bounded timeouts (connect, statement); what it
  cannot forward stays pending in the journal with the reason, and the next run, or
  `rig records sync`, forwards it.
* A shared database whose schema is newer than this station's code is not written to: one line
  says so, and the runs stay pending in the journal until the station is upgraded.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from rig.results.store import (RUN_FIELDS, SCHEMA_VERSION, ResultsStore, measurement_row, describe_error,
                               forward_errors, forwarded, measurements, runs, test_requirements, tests, utcnow)

TEST_FIELDS = ("seq", "nodeid", "verdict", "rig_fault", "instrument", "message", "finished_at", "wall_seconds",
               "sim_seconds")

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5  # a server that does not answer: give up quickly, the run stays pending
STATEMENT_TIMEOUT_MS = 15000  # a server that accepts but never answers
FORWARD_WAIT_S = 8.0  # how long the end of a run waits for its forwarding before saying "pending"

class SchemaTooNew(Exception):
    """The shared database's schema is not the one this station's code writes (newer or older)."""


@dataclass
class ForwardResult:
    forwarded: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)
    pending: int = 0
    error: str | None = None

    def line(self, target: str) -> str:
        done = len(self.forwarded) + len(self.already_there)
        if self.error:
            return f"{self.pending} run(s) pending forwarding to {target}: {self.error}"
        return f"forwarded {done} run(s) to {target}; {self.pending} pending"


def server_engine(url: str):
    """An engine for the shared database with every wait bounded."""
    from sqlalchemy import create_engine

    args: dict = {}
    if url.startswith("postgresql"):
        args = {"connect_timeout": CONNECT_TIMEOUT_S, "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"}
    return create_engine(url, connect_args=args, pool_pre_ping=True)


def target_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def check_url(url: str) -> None:
    """Malformed URL or missing driver: raises (describe_error words it) without connecting."""
    server_engine(url).dispose()


class Forwarder:
    def __init__(self, journal: ResultsStore, shared_url: str):
        self.journal, self.url, self.target = journal, shared_url, target_name(shared_url)

    def pending_run_ids(self) -> list[str]:
        """Complete runs (they have an end) not yet forwarded to this target, oldest first."""
        done = select(forwarded.c.run_id).where(forwarded.c.target == self.target)
        q = (select(runs.c.run_id).where(runs.c.ended_at.is_not(None), runs.c.run_id.not_in(done))
             .order_by(runs.c.started_at))
        with self.journal.engine.connect() as conn:
            return list(conn.execute(q).scalars())

    def forward(self, limit: int | None = None) -> ForwardResult:
        result = ForwardResult()
        pending = self.pending_run_ids()
        if not pending:
            return result
        engine = None
        try:
            engine = server_engine(self.url)
            shared = ResultsStore(self.url, engine)  # its schema, made with the bounded waits
            self._check_schema(shared)
            for run_id in pending[:limit]:
                if self._copy(engine, run_id):
                    result.forwarded.append(run_id)
                else:
                    result.already_there.append(run_id)
                self._note(run_id)
            self._clear_error()
        except Exception as exc:
            result.error = describe_error(exc, self.url) or f"{type(exc).__name__}: {exc}"
            if isinstance(exc, SchemaTooNew):
                result.error = str(exc)
            self._note_error(result.error)
            log.info("forwarding to %s: %s", self.target, result.error)  # the caller reports it
        finally:
            if engine is not None:
                engine.dispose()
        result.pending = len(self.pending_run_ids())
        return result

    def _check_schema(self, shared: ResultsStore) -> None:
        version = shared.schema_version()
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(f"the shared database's schema is version {version}, this station's code knows "
                               f"{SCHEMA_VERSION}: upgrade the station's plugstream-rig; runs stay in the local journal")
        if version < SCHEMA_VERSION:
            raise SchemaTooNew(f"the shared database's schema is version {version}, this station writes version "
                               f"{SCHEMA_VERSION}: upgrade the database with `rig records upgrade --db URL`; "
                               f"runs stay in the local journal")

    def _copy(self, engine, run_id: str) -> bool:
        """The whole run in one transaction; False if the shared database already has it."""
        return insert_whole_run(engine, self.journal.run_detail(run_id))

    def _note(self, run_id: str) -> None:
        with self.journal.engine.begin() as conn:
            if conn.execute(select(forwarded.c.run_id).where(forwarded.c.target == self.target,
                                                             forwarded.c.run_id == run_id)).first() is None:
                conn.execute(insert(forwarded).values(target=self.target, run_id=run_id, forwarded_at=utcnow()))

    def _note_error(self, error: str) -> None:
        try:
            with self.journal.engine.begin() as conn:
                conn.execute(forward_errors.delete().where(forward_errors.c.target == self.target))
                conn.execute(insert(forward_errors).values(target=self.target, at=utcnow(), error=error[:1000]))
        except SQLAlchemyError as exc:  # the journal itself is in trouble: the recorder reports that
            log.error("could not note the forwarding error in the journal: %s", exc)

    def _clear_error(self) -> None:
        with self.journal.engine.begin() as conn:
            conn.execute(forward_errors.delete().where(forward_errors.c.target == self.target))

    def last_error(self) -> tuple | None:
        with self.journal.engine.connect() as conn:
            row = conn.execute(select(forward_errors.c.at, forward_errors.c.error)
                               .where(forward_errors.c.target == self.target)).first()
        return tuple(row) if row else None


def insert_whole_run(engine, detail: dict) -> bool:
    """A run with its tests, requirements and measurements (as run_detail gives it) in one
    transaction: all of it or none. False, writing nothing, if the store already has that run.
    Forwarding and `rig records import` both write this way, so an interruption never leaves a
    partial run that a later attempt would take for a complete one."""
    run_id = detail["run_id"]
    try:
        with engine.begin() as conn:
            if conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is not None:
                return False
            conn.execute(insert(runs).values(**{k: v for k, v in detail.items() if k in RUN_FIELDS}))
            for t in detail["tests"]:
                row = {k: v for k, v in t.items() if k in TEST_FIELDS}
                test_id = conn.execute(insert(tests).values(run_id=run_id, **row)).inserted_primary_key[0]
                if t["requirements"]:
                    conn.execute(insert(test_requirements),
                                 [{"test_id": test_id, "requirement": r} for r in dict.fromkeys(t["requirements"])])
                if t["measurements"]:
                    conn.execute(insert(measurements), [{"test_id": test_id, "seq": i, **measurement_row(m)}
                                                        for i, m in enumerate(t["measurements"], 1)])
        return True
    except IntegrityError:  # another writer put it there between our look and our write
        with engine.connect() as conn:
            if conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is not None:
                return False
        raise


class BackgroundForward(threading.Thread):
    """Forwarding after a run's verdict, off the test's path; the end of the run waits a bounded time."""

    def __init__(self, journal_url: str, shared_url: str):
        super().__init__(daemon=True, name="records-forwarder")
        self.journal_url, self.shared_url = journal_url, shared_url
        self.result: ForwardResult | None = None

    def run(self) -> None:
        journal = ResultsStore(self.journal_url)
        try:
            self.result = Forwarder(journal, self.shared_url).forward()
        except Exception as exc:  # the journal could not be read: say so, the records are still there
            self.result = ForwardResult(error=f"{type(exc).__name__}: {exc}")
        finally:
            journal.close()

    def outcome(self, wait_s: float = FORWARD_WAIT_S) -> ForwardResult | None:
        self.join(wait_s)
        return self.result
