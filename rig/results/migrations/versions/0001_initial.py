"""The schema as the first stations wrote it (schema_version 1): runs, tests, requirements,
measurements, meta, and the journal's forwarding notes.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table("meta", sa.Column("key", sa.String(32), primary_key=True),
                    sa.Column("value", sa.String(64), nullable=False))
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(40), primary_key=True),
        *[sa.Column(name, sa.String(64)) for name in ("serial", "expected_serial", "model")],
        sa.Column("variant", sa.String(32)),
        *[sa.Column(name, sa.String(64)) for name in ("firmware", "vendor", "rig_name")],
        sa.Column("rig_file", sa.String(255)),
        sa.Column("operator", sa.String(64)), sa.Column("host", sa.String(64)), sa.Column("mode", sa.String(16)),
        sa.Column("seed", sa.Integer), sa.Column("defect", sa.String(64)),
        sa.Column("started_at", sa.DateTime, nullable=False), sa.Column("ended_at", sa.DateTime),
        sa.Column("verdict", sa.String(16)), sa.Column("verdict_detail", sa.Text))
    for column in ("serial", "expected_serial", "started_at"):
        op.create_index(f"ix_runs_{column}", "runs", [column])
    op.create_table(
        "tests",
        sa.Column("test_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False), sa.Column("nodeid", sa.String(512), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False), sa.Column("rig_fault", sa.Text),
        sa.Column("instrument", sa.String(64)), sa.Column("message", sa.Text),
        sa.Column("finished_at", sa.DateTime, nullable=False), sa.Column("wall_seconds", sa.Float),
        sa.Column("sim_seconds", sa.Float), sa.UniqueConstraint("run_id", "nodeid", name="uq_tests_run_nodeid"))
    op.create_index("ix_tests_run_id", "tests", ["run_id"])
    op.create_table(
        "test_requirements",
        sa.Column("test_id", sa.Integer, sa.ForeignKey("tests.test_id"), primary_key=True),
        sa.Column("requirement", sa.String(32), primary_key=True))
    op.create_index("ix_test_requirements_requirement", "test_requirements", ["requirement"])
    op.create_table(
        "measurements",
        sa.Column("measurement_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("test_id", sa.Integer, sa.ForeignKey("tests.test_id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False), sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.Float), sa.Column("unit", sa.String(16)), sa.Column("low", sa.Float),
        sa.Column("high", sa.Float), sa.Column("limit_source", sa.Text), sa.Column("resolution", sa.Float),
        sa.Column("passed", sa.Boolean, nullable=False))
    op.create_index("ix_measurements_test_id", "measurements", ["test_id"])
    op.create_table("forwarded", sa.Column("target", sa.String(255), primary_key=True),
                    sa.Column("run_id", sa.String(40), primary_key=True),
                    sa.Column("forwarded_at", sa.DateTime, nullable=False))
    op.create_table("forward_errors", sa.Column("target", sa.String(255), primary_key=True),
                    sa.Column("at", sa.DateTime, nullable=False), sa.Column("error", sa.Text, nullable=False))
    op.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")


def downgrade() -> None:
    for table in ("forward_errors", "forwarded", "measurements", "test_requirements", "tests", "runs", "meta"):
        op.drop_table(table)
