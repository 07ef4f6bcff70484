"""Alembic's environment: run on the connection the caller hands over (rig/results/schema_upgrade.py)."""

from alembic import context

from rig.results.store import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
