"""The results schema under Alembic: a store of the previous schema, with records in it, upgraded
to the current one (SQLite here, PostgreSQL in test_forwarding's server); a station's own journal
upgraded when opened; a shared database never upgraded behind the quality team's back."""

from __future__ import annotations

import random
import sqlite3
import subprocess

import pytest
from sqlalchemy import create_engine, text

from rig.results import schema_upgrade
from rig.results.forwarder import Forwarder
from rig.results.store import SCHEMA_VERSION, ResultsStore
from tests.records.synthetic import write_run
from tests.station.station_process import RIG

V1_RUN = ("INSERT INTO runs (run_id, serial, host, started_at, ended_at, verdict) "
          "VALUES ('R1', 'PS-1', 'eol-station-3', '2026-11-30 08:00:00', '2026-11-30 08:01:00', 'pass')")
V1_TEST = ("INSERT INTO tests (run_id, seq, nodeid, verdict, finished_at) "
           "VALUES ('R1', 1, 'test_control_pilot.py::test_state_a', 'passed', '2026-11-30 08:00:30')")
V1_MEASUREMENT = ("INSERT INTO measurements (test_id, seq, name, value, unit, low, high, passed) "
                  "VALUES (1, 1, 'CP high level in state A', 12.0, 'V', 11.4, 12.6, true)")


def store_at_v1(url: str) -> None:
    engine = create_engine(url)
    schema_upgrade.upgrade(engine, to=schema_upgrade.FIRST)
    with engine.begin() as conn:
        for sql in (V1_RUN, V1_TEST, V1_MEASUREMENT):
            conn.execute(text(sql))
    engine.dispose()


def upgrade_cli(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RIG), "records", "upgrade", "--db", url], capture_output=True, text=True, timeout=120)


def check_upgraded(url: str) -> None:
    store = ResultsStore.__new__(ResultsStore)  # read as it is, without opening (which could upgrade it)
    store.url, store.engine = url, create_engine(url)
    assert store.schema_version() == SCHEMA_VERSION
    run = store.run_detail("R1")
    assert run["serial"] == "PS-1" and run["station"] == "eol-station-3", "the old run kept, station from its host"
    assert run["tests"][0]["measurements"][0]["value"] == 12.0
    with store.engine.connect() as conn:
        assert schema_upgrade.current_revision(conn) == schema_upgrade.HEAD
    store.engine.dispose()


def test_a_shared_sqlite_store_of_the_previous_schema_is_upgraded_with_its_records(tmp_path):
    url = f"sqlite:///{tmp_path / 'site.sqlite'}"
    store_at_v1(url)
    done = upgrade_cli(url)
    assert done.returncode == 0 and f"revision {schema_upgrade.HEAD} (was 0001)" in done.stdout, done.stderr
    check_upgraded(url)
    again = upgrade_cli(url)
    assert again.returncode == 0 and "(was" not in again.stdout  # nothing to do, said so


def test_a_store_from_before_alembic_is_taken_as_the_first_revision(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    store_at_v1(url)
    conn = sqlite3.connect(tmp_path / "old.sqlite")
    conn.execute("DROP TABLE alembic_version")  # as every store written before this change
    conn.commit()
    conn.close()
    assert upgrade_cli(url).returncode == 0
    check_upgraded(url)


def test_the_station_journal_is_upgraded_when_opened(tmp_path):
    url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    store_at_v1(url)
    ResultsStore(url).close()
    check_upgraded(url)


@pytest.mark.postgres
def test_a_shared_postgresql_of_the_previous_schema_refuses_forwards_until_upgraded(pg, tmp_path):
    engine = create_engine(pg.url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    store_at_v1(pg.url)
    journal = ResultsStore(f"sqlite:///{tmp_path / 'journal.sqlite'}")
    write_run(journal, "st1", "PS-2", random.Random(2))
    refused = Forwarder(journal, pg.url).forward()
    assert refused.pending == 1 and "rig records upgrade" in refused.error, refused.error
    assert upgrade_cli(pg.url).returncode == 0
    check_upgraded(pg.url)
    assert Forwarder(journal, pg.url).forward().pending == 0
