"""`rig records`: the unit records in the results store, the station's journal and its
forwarding to the shared database, schema upgrades, and the quality report. Every problem with a
store (a bad URL, a dead server, a file that is no database) is one line and exit status 1."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from rig.core.errors import RigFileError, UserMistake

EXIT_OK = 0
EXIT_PROBLEMS = 1

DEFAULT_STORE = Path("reports") / "results.sqlite"


def _open_store(args: argparse.Namespace, must_exist: bool = True):
    """The store named by --db, else $RIG_RESULTS_DB, else reports/results.sqlite here."""
    from rig.results.store import ENV_URL, ResultsStore

    url = args.db or os.environ.get(ENV_URL) or f"sqlite:///{DEFAULT_STORE.resolve()}"
    if must_exist and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            raise RigFileError(str(path), "results store", f"no such file (give --db URL or set {ENV_URL})")
    if url.startswith("sqlite"):
        return ResultsStore(url)
    from rig.results.forwarder import server_engine

    return ResultsStore(url, server_engine(url))  # a server that hangs: bounded waits, then one line


def store_problem(exc: Exception, args: argparse.Namespace) -> str | None:
    """One line for a results store that cannot be used; None for anything else (a bug: traceback)."""
    from rig.results.store import ENV_URL, describe_error

    if args.command != "records":  # only `rig records` opens the store: anything else is not its fault
        return None
    url = getattr(args, "db", None) or os.environ.get(ENV_URL) or "reports/results.sqlite"
    return describe_error(exc, url)


def _when(value) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _date(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)") from None


def _records_list(args: argparse.Namespace) -> int:
    from rig.results.store import run_state

    store = _open_store(args)
    rows = store.recent_runs(args.limit, serial=args.serial)
    print(f"{'started (UTC)':<19}  {'serial':<14} {'model':<22} {'mode':<5} {'verdict':<11} {'tests':<22} run")
    for r in rows:
        counts = ", ".join(f"{n} {v}" for v, n in sorted(r["counts"].items())) or "-"
        model = f"{r['model'] or '?'} {r['variant'] or ''}".strip()
        serial = r["serial"] or r["expected_serial"] or "?"
        if r["expected_serial"] and r["expected_serial"] != serial:
            serial += f" (scanned {r['expected_serial']})"
        print(f"{_when(r['started_at']):<19}  {serial:<14} {model:<22} {r['mode'] or '':<5} "
              f"{run_state(r):<11} {counts:<22} {r['run_id']}")
    return EXIT_OK


def _records_show(args: argparse.Namespace) -> int:
    store = _open_store(args)
    run_ids = store.run_ids_for(args.key)
    if not run_ids:
        print(f"no runs for {args.key!r} (neither a serial number nor a run id)", file=sys.stderr)
        return EXIT_PROBLEMS
    for run_id in run_ids:
        _print_run(store.run_detail(run_id))
    return EXIT_OK


def _print_run(run: dict) -> None:
    from rig.results.store import run_state

    print(f"run {run['run_id']}  {run_state(run).upper()}"
          + (f"  ({run['verdict_detail']})" if run.get("verdict_detail") else ""))
    expected = f" (scanned {run['expected_serial']})" if run["expected_serial"] not in (None, run["serial"]) else ""
    print(f"  unit     {run['serial'] or '?'}{expected}  {run['model'] or '?'} ({run['variant'] or '?'})  "
          f"firmware {run['firmware'] or '?'}  vendor {run['vendor'] or '?'}")
    print(f"  rig      {run['rig_name'] or '?'} ({run['rig_file'] or '?'})  host {run['host'] or '?'}  "
          f"mode {run['mode']}" + (f"  seed {run['seed']}" if run["seed"] is not None else "")
          + (f"  defect {run['defect']}" if run["defect"] else ""))
    print(f"  operator {run['operator'] or '?'}  started {_when(run['started_at'])}  ended {_when(run['ended_at'])} UTC")
    for t in run["tests"]:
        reqs = " ".join(t["requirements"])
        print(f"  {t['verdict'].upper():<8} {t['nodeid']}  [{reqs}]")
        if t["rig_fault"]:
            print(f"           rig fault: {t['rig_fault']}")
        elif t["message"] and t["verdict"] != "passed":
            print(f"           {_headline(t['message'])[:200]}")
        for m in t["measurements"]:
            print(f"           {'ok ' if m['passed'] else 'OUT'} {_measurement(m)}")
    print()


def _headline(message: str) -> str:
    """The exception's own line ("E   ...") of a failure report, else its last line."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    said = [ln[1:].strip() for ln in lines if ln.startswith("E ")]
    return said[0] if said else lines[-1] if lines else ""


def _measurement(m: dict) -> str:
    value = "nothing observed" if m["value"] is None else f"{m['value']:.6g} {m['unit'] or ''}".strip()
    from rig.core.measure import limit_range

    res = f" (resolution {m['resolution']:g})" if m["resolution"] else ""
    return (f"{m['name']} = {value}{res}, limit {limit_range(m['low'], m['high'])} {m['unit'] or ''} "
            f"per {m['limit_source'] or '?'}")


def _records_yield(args: argparse.Namespace) -> int:
    from rig.results.yields import yield_report

    report = yield_report(_open_store(args), args.since, args.until, mode=args.mode, top=args.top)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return EXIT_OK
    until = _when(args.until) if args.until else "now"
    print(f"period {_when(args.since)} .. {until} UTC{f', mode {args.mode}' if args.mode else ''}: {report.runs} runs")
    print(f"{'model':<18} {'units':>5} {'first pass':>10} {'yield':>7} {'runs':>5}")
    for m in report.models:
        fpy = "-" if m.fpy is None else f"{100 * m.fpy:.1f} %"
        print(f"{m.model:<18} {m.units:>5} {m.first_pass:>10} {fpy:>7} {m.runs:>5}")
    print("most frequent failing requirements (failed runs, units):")
    for rid, runs, units in report.failing:
        print(f"  {rid:<8} {runs:>4} runs  {units:>4} units")
    if not report.failing:
        print("  none")
    by = ", ".join(f"{i} {n}" for i, n in report.rig_faults_by_instrument.items()) or "-"
    print(f"counted apart (not unit failures): rig faults {report.rig_fault_runs} runs ({by}); "
          f"wrong unit {report.wrong_unit_runs}; interrupted {report.interrupted_runs}")
    return EXIT_OK


def _records_export(args: argparse.Namespace) -> int:
    from rig.results.export import export_unit

    doc = export_unit(_open_store(args), args.serial)
    if not doc["runs"]:
        print(f"no runs for serial {args.serial!r}", file=sys.stderr)
        return EXIT_PROBLEMS
    text = json.dumps(doc, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
        print(f"{len(doc['runs'])} run(s) of {args.serial} written to {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _records_import(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import IntegrityError

    from rig.results.export import import_records

    try:
        doc = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserMistake(f"{args.file}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise UserMistake(f"{args.file}: not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise UserMistake(f"{args.file}: not a records export (`rig records export` writes one: "
                          "an object with a \"runs\" list)")
    try:
        done = import_records(_open_store(args, must_exist=False), doc)
    except (KeyError, TypeError, ValueError, IntegrityError) as exc:  # that run is not written at all
        raise UserMistake(f"{args.file}: a run in it is incomplete or malformed ({type(exc).__name__}: {exc})") from None
    print(f"{len(done)} run(s) imported, {len(doc['runs']) - len(done)} already present")
    return EXIT_OK


def _journal_and_shared(args: argparse.Namespace):
    from rig.results.store import ENV_URL, ResultsStore

    shared = args.db or os.environ.get(ENV_URL)
    if not shared or shared.startswith("sqlite"):
        raise UserMistake(f"which shared database? give --db URL (a server, e.g. postgresql+psycopg://...) or set {ENV_URL}")
    path = Path(args.journal)
    if not path.exists():
        raise RigFileError(str(path), "journal", "no such file (give --journal PATH: the station's results.sqlite)")
    return ResultsStore(f"sqlite:///{path.resolve()}"), shared


def _records_sync(args: argparse.Namespace) -> int:
    from rig.results.forwarder import Forwarder, target_name

    journal, shared = _journal_and_shared(args)
    result = Forwarder(journal, shared).forward()
    print(result.line(target_name(shared)), file=sys.stderr if result.error else sys.stdout)
    return EXIT_PROBLEMS if result.error else EXIT_OK


def _records_status(args: argparse.Namespace) -> int:
    from rig.results.forwarder import Forwarder

    journal, shared = _journal_and_shared(args)
    forwarder = Forwarder(journal, shared)
    pending = forwarder.pending_run_ids()
    print(f"journal {args.journal}: schema version {journal.schema_version()}; "
          f"{len(pending)} complete run(s) pending forwarding to {forwarder.target}")
    if pending:
        print(f"  oldest pending: {pending[0]}, newest: {pending[-1]}")
    error = forwarder.last_error()
    print(f"  last forwarding error: {_when(error[0])} UTC: {error[1]}" if error else "  last forwarding: no error")
    return EXIT_OK


def _records_upgrade(args: argparse.Namespace) -> int:
    from rig.results import schema_upgrade
    from rig.results.forwarder import server_engine, target_name
    from rig.results.store import ENV_URL, make_engine

    url = args.db or os.environ.get(ENV_URL)
    if not url:
        raise UserMistake(f"which database? give --db URL or set {ENV_URL}")
    engine = make_engine(url) if url.startswith("sqlite") else server_engine(url)
    try:
        before, after = schema_upgrade.upgrade(engine)
    finally:
        engine.dispose()
    print(f"{target_name(url)}: schema at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))
    return EXIT_OK


def _records_report(args: argparse.Namespace) -> int:
    from rig.results import quality

    store = _open_store(args)
    period = quality.Period(args.since, args.until)
    if args.html:
        from rig.results.quality_report import write_report

        path = write_report(store, Path(args.html), period, args.title)
        print(f"quality report: {path}")
        return EXIT_OK
    figures = {"yield": quality.yields(store, period), "pareto": quality.pareto(store, period),
               "capability": quality.capability(store, period), "rig_faults": quality.rig_fault_rates(store, period)}
    print(json.dumps(figures, indent=2, default=str))
    return EXIT_OK


def add_records(commands) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", metavar="URL", help="SQLAlchemy URL of the results store "
                    "(default: $RIG_RESULTS_DB, else sqlite:///reports/results.sqlite)")
    records = commands.add_parser("records", help="unit records: list, show, yield, export, import")
    sub = records.add_subparsers(dest="records_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("list", parents=[db], help="recent runs: start, serial, model, verdict")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="how many (default 20)")
    p.add_argument("--serial", metavar="SN", help="only this unit's runs")
    p.set_defaults(run=_records_list)

    p = sub.add_parser("show", parents=[db], help="a unit's runs (or one run) with tests and measurements")
    p.add_argument("key", metavar="SERIAL|RUN_ID")
    p.set_defaults(run=_records_show)

    p = sub.add_parser("yield", parents=[db], help="first-pass yield per model and the most frequent failing requirements")
    p.add_argument("--since", type=_date, required=True, metavar="DATE", help="from this date (UTC), inclusive")
    p.add_argument("--until", type=_date, default=None, metavar="DATE", help="up to this date (UTC), exclusive")
    p.add_argument("--mode", choices=("eol", "suite"), default=None, help="only end-of-line or only suite runs")
    p.add_argument("--top", type=int, default=10, metavar="N", help="how many failing requirements (default 10)")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(run=_records_yield)

    p = sub.add_parser("export", parents=[db], help="every run of one unit as JSON")
    p.add_argument("serial", metavar="SERIAL")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    p.set_defaults(run=_records_export)

    p = sub.add_parser("import", parents=[db], help="load an export into the store (e.g. a site server)")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(run=_records_import)

    journal = argparse.ArgumentParser(add_help=False)
    journal.add_argument("--journal", default=str(DEFAULT_STORE), metavar="PATH",
                         help="the station's local journal (default reports/results.sqlite)")
    p = sub.add_parser("sync", parents=[db, journal], help="forward the journal's complete runs to the shared database now")
    p.set_defaults(run=_records_sync)
    p = sub.add_parser("status", parents=[db, journal], help="runs pending forwarding and the last forwarding error")
    p.set_defaults(run=_records_status)
    p = sub.add_parser("report", parents=[db], help="quality figures: yield per station, model and day; failing "
                       "requirements (Pareto); Cpk and control charts; rig-fault rates (JSON, or --html DIR)")
    p.add_argument("--since", type=_date, default=None, metavar="DATE", help="from this date (UTC), inclusive")
    p.add_argument("--until", type=_date, default=None, metavar="DATE", help="up to this date (UTC), exclusive")
    p.add_argument("--html", metavar="DIR", help="write DIR/index.html: one self-contained page with the charts")
    p.add_argument("--title", default="PlugStream end-of-line quality", help="the page's title")
    p.set_defaults(run=_records_report)

    p = sub.add_parser("upgrade", parents=[db], help="apply the schema's migrations (Alembic) to a results database")
    p.set_defaults(run=_records_upgrade)


