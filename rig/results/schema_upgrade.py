"""The results schema's versions, owned by Alembic (rig/results/migrations/).

A new database gets the current tables and is stamped at the head revision. The station's own
journal (SQLite) is upgraded when it is opened: the station owns it. A shared database is
upgraded only on purpose, by `rig records upgrade --db URL` (the site's quality team decides
when); until then a newer station does not forward to it, and an older station refuses to write
to an upgraded one: both say so in one line and keep their runs in the journal.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

HEAD = "0002"
FIRST = "0001"  # the schema stores had before Alembic owned it (schema_version 1)


def _config(connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "rig.results:migrations")
    cfg.attributes["connection"] = connection
    return cfg


def current_revision(connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def stamp_head(connection) -> None:
    command.stamp(_config(connection), HEAD)


def upgrade(engine, to: str = "head") -> tuple[str | None, str]:
    """Bring a store to the head revision; returns (from, to). A store made before Alembic (tables,
    no revision) is taken as revision 0001, which is what it is."""
    with engine.begin() as conn:
        before = current_revision(conn)
        if before is None and inspect(conn).has_table("runs"):
            command.stamp(_config(conn), FIRST)
            before = FIRST
        command.upgrade(_config(conn), to)
        return before, current_revision(conn)
