"""schema_version 2: which station (and socket) tested the unit, for yield and rig-fault rates
per station. Runs recorded before it get their host's name.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("station", sa.String(64)))
        batch.create_index("ix_runs_station", ["station"])
    op.execute("UPDATE runs SET station = host WHERE station IS NULL")
    op.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_station")
        batch.drop_column("station")
    op.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
