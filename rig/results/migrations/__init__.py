"""Alembic migrations of the results schema (the station's journal and the shared database).
`rig records upgrade --db URL` applies them; rig/results/schema_upgrade.py is how the code does."""
