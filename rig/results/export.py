"""A unit's records as one JSON document, and back.

The export is what a factory hands on with a unit (or moves from a station's local file to
the site's server): every run of the serial number, each with its tests, requirement IDs,
verdicts and measurements with limits and sources. `import_records` writes such a document
into another store, so export -> import -> export gives the same document.
Times are UTC, ISO 8601 with a trailing Z.
"""

from __future__ import annotations

from datetime import datetime

from rig.results.store import RUN_FIELDS, ResultsStore, TestResult, run_state

FORMAT = "plugstream-rig unit record"
FORMAT_VERSION = 1
_TIMES = ("started_at", "ended_at", "finished_at")


def export_unit(store: ResultsStore, serial: str) -> dict:
    runs = [store.run_detail(run_id) for run_id in store.run_ids_for(serial)]
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "serial": serial,
        "runs": [_jsonable(run) for run in runs if run is not None],
    }


def import_records(store: ResultsStore, doc: dict) -> list[str]:
    """Write every run of an exported document into `store`; runs it already has are left alone."""
    if doc.get("format") != FORMAT:
        raise ValueError(f"not a unit record export (format {doc.get('format')!r})")
    from rig.results.forwarder import insert_whole_run

    imported = []
    for run in doc["runs"]:
        detail = {k: _parse_time(k, run.get(k)) for k in RUN_FIELDS if k in run}
        detail["tests"] = [_test_row(i, t) for i, t in enumerate(run["tests"], 1)]
        if insert_whole_run(store.engine, detail):  # the whole run or nothing: an interrupted import is redone
            imported.append(run["run_id"])
    return imported


def _test_row(seq: int, t: dict) -> dict:
    result = TestResult(nodeid=t["nodeid"], verdict=t["verdict"], rig_fault=t["rig_fault"])  # its instrument
    return {"seq": seq, "nodeid": t["nodeid"], "verdict": t["verdict"], "rig_fault": t["rig_fault"],
            "instrument": result.instrument, "message": t["message"], "wall_seconds": t["wall_seconds"],
            "sim_seconds": t["sim_seconds"], "finished_at": _parse_time("finished_at", t["finished_at"]),
            "requirements": list(t["requirements"]), "measurements": list(t["measurements"])}


def _jsonable(run: dict) -> dict:
    out = {k: _fmt_time(v) for k, v in run.items() if k != "tests"}
    out["state"] = run_state(run)
    out["tests"] = [{k: _fmt_time(v) for k, v in t.items() if k not in ("seq", "instrument")} for t in run["tests"]]
    return out


def _fmt_time(value):
    return value.isoformat(timespec="microseconds") + "Z" if isinstance(value, datetime) else value


def _parse_time(key: str, value):
    if key in _TIMES and isinstance(value, str):
        return datetime.fromisoformat(value.removesuffix("Z"))
    return value
