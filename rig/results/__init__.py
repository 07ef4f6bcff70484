"""Unit records: the results store (store.py), its pytest writer (recorder.py), run verdicts
(verdict.py), yield over a period (yields.py) and the per-unit JSON export (export.py)."""
