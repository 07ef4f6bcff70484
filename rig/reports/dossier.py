"""The certification dossier (`--certification`): reports/certification/dossier.html and the same
as dossier.pdf (WeasyPrint, fonts from the operating system's packages, e.g. Debian's
fonts-dejavu-core).

One section per standard, one entry per clause: each requirement of the catalogue whose source
names that standard, with its text and sources, the tests that checked it, each measurement with
its limit, the limit's source and the resolution, the verdict (the same one traceability.json
gives), and the timeline picture of every test that failed or came within 10 % of a limit. The
manufacturer's own requirements follow, so every catalogue ID is in the dossier. A requirement no
test checked is shown as NO TEST, never as passed. The front page names the unit, firmware, rig,
its instruments with their calibration due dates, the operator, the date, and the harness's
version and commit.
"""

from __future__ import annotations

import base64
import logging
import re
import subprocess
from collections import defaultdict
from html import escape
from pathlib import Path

from rig.core.errors import plain_message

log = logging.getLogger(__name__)

BORDERLINE = 0.10  # within 10 % of a limit: the timeline goes into the dossier with the numbers
VERDICT_WORDS = {"passed": ("PASSED", "pass"), "failed": ("FAILED", "fail"), "error": ("RIG FAULT", "warn"),
                 "harness-error": ("HARNESS ERROR", "warn"), "interrupted": ("INTERRUPTED", "warn"),
                 "not-covered": ("NO TEST", "none")}
STANDARD = re.compile(r"^(IEC \d+(?:-\d+)*(?::\d{4})?|BS \d+(?::\S+)?|SI \d{4}/\d+|OCPP [\d.]+J?|"
                      r"IET Code of Practice[^()]*?(?= \(|$))")
MANUFACTURER = "The manufacturer's documents (not a standard)"

STYLE = """
@page { size: A4; margin: 16mm 14mm; @bottom-right { content: "page " counter(page) " of " counter(pages);
        font-size: 8pt; color: #555; } }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 9.5pt; color: #111; }
h1 { font-size: 17pt; margin: 0 0 .3em 0; } h2 { font-size: 13pt; margin-top: 1.4em; page-break-before: always; }
h3 { font-size: 10.5pt; margin: 1em 0 .2em 0; page-break-after: avoid; }
table { border-collapse: collapse; width: 100%; margin: .3em 0 .6em 0; }
th, td { border: 1px solid #999; padding: 2px 5px; text-align: left; vertical-align: top; }
th { background: #eee; } .front td:first-child { width: 30%; font-weight: bold; }
.v { font-weight: bold; padding: 1px 6px; border: 1.5px solid; }
.pass { color: #0a6b1f; } .fail { color: #b00000; } .warn { color: #9a5b00; } .none { color: #555; }
.border { color: #9a5b00; font-weight: bold; } .src { color: #444; font-size: 8.5pt; }
img, tr { max-width: 100%; page-break-inside: avoid; }
"""


# ---------------------------------------------------------------------- what goes in
def standard_of(source_part: str) -> tuple[str, str]:
    """("IEC 61851-1:2017", "Table A.6 (C2 -> C1)") from one STD source part."""
    text = source_part.strip()
    m = STANDARD.match(text)
    if not m:
        head, _, rest = text.partition(" (")
        return head.strip(), f"({rest}" if rest else ""
    return m.group(1).strip(), text[m.end():].strip()


def sections(catalogue: dict) -> dict[str, list[tuple[str, str]]]:
    """standard -> [(requirement ID, clause)], every ID of the catalogue in at least one section."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for rid, req in catalogue.items():
        parts = [p.strip()[4:].strip() for p in req.source.split(";") if p.strip().startswith("STD:")]
        for part in parts:
            std, clause = standard_of(part)
            out[std].append((rid, clause))
        if not parts:
            out[MANUFACTURER].append((rid, ""))
    return {k: out[k] for k in sorted(out, key=lambda s: (s == MANUFACTURER, s))}


def standards_requirements(catalogue: dict) -> set[str]:
    return {rid for rid, req in catalogue.items() if "STD:" in req.source}


def certification_requirements(catalogue: dict) -> set[str]:
    """What --certification runs: every standards-derived requirement, and every requirement the UK
    regulations matrix tests a clause with (e.g. SEC-01 for Schedule 1's encrypted communications)."""
    from_matrix = {rid for entry in load_uk_matrix(catalogue).values() for rid in entry.get("tests", [])}
    return standards_requirements(catalogue) | from_matrix


def borderline(m: dict) -> bool:
    value, low, high = m.get("value"), m.get("low"), m.get("high")
    if value is None:
        return False
    if low is not None and high is not None and high > low:
        return min(value - low, high - value) <= BORDERLINE * (high - low)
    limit = high if high is not None else low
    return limit is not None and abs(value - limit) <= BORDERLINE * max(abs(limit), 1e-12)


def harness_identity() -> tuple[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("plugstream-rig")
    except PackageNotFoundError:
        ver = "unknown (not installed)"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    return ver, (commit + (" (with uncommitted changes)" if dirty else "")) if commit else "not a git checkout"


def instruments(reports: Path, rig_data: dict) -> list[tuple[str, str, str]]:
    """(instrument, identity, calibration due) from the run's Allure environment and the rig file."""
    env: dict[str, str] = {}
    props = reports / "allure-results" / "environment.properties"
    if props.exists():
        for line in props.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith("instrument."):
                env[key[len("instrument."):]] = value.replace("\\:", ":").replace("\\=", "=")
    due = (rig_data.get("calibration") or {}) if isinstance(rig_data, dict) else {}
    names = sorted(set(env) | {k for k, v in due.items() if v})
    return [(n, env.get(n, "(not identified in this run)"), due.get(n) or "not recorded") for n in names]


# ---------------------------------------------------------------------- the page
def _verdict(v: str) -> str:
    word, cls = VERDICT_WORDS.get(v, (v.upper(), "warn"))
    return f'<span class="v {cls}">{escape(word)}</span>'


def _measurements(ms: list[dict]) -> str:
    if not ms:
        return ""
    rows = []
    for m in ms:
        value = "nothing observed" if m.get("value") is None else f"{m['value']:.6g}"
        lo = "-inf" if m.get("low") is None else f"{m['low']:g}"
        hi = "+inf" if m.get("high") is None else f"{m['high']:g}"
        flag = ("in" if m.get("passed", True) else '<span class="fail">OUT</span>') + (
            ' <span class="border">within 10 % of a limit</span>' if m.get("passed", True) and borderline(m) else "")
        resolution = "" if m.get("resolution") is None else f"{m['resolution']:g}"
        rows.append(f"<tr><td>{escape(str(m.get('name')))}</td><td>{escape(value)} {escape(str(m.get('unit') or ''))}"
                    f"</td><td>[{lo} .. {hi}]</td><td class=\"src\">{escape(str(m.get('limit_source') or ''))}</td>"
                    f"<td>{resolution}</td><td>{flag}</td></tr>")
    return ("<table><tr><th>measurement</th><th>value</th><th>limit</th><th>limit's source</th><th>resolution</th>"
            "<th></th></tr>" + "".join(rows) + "</table>")


def _timeline(reports: Path, nodeid: str) -> str:
    from rig.reports.timeline import safe_name

    png = reports / "timelines" / f"{safe_name(nodeid)}.png"
    if not png.exists():
        return f'<p class="src">timeline picture not found ({escape(png.name)})</p>'
    return f'<img alt="timeline of {escape(nodeid)}" src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">'


def _requirement(rid: str, clause: str, req, trace: dict, tests: dict, reports: Path) -> str:
    entry = trace.get(rid, {"tests": [], "verdict": "not-covered"})
    out = [f'<div class="req" id="req-{escape(rid)}" data-verdict="{escape(entry["verdict"])}">'
           f'<h3>{escape(rid)} {_verdict(entry["verdict"])} {escape(clause)}</h3>',
           f"<p>{escape(req.text)}</p>", f'<p class="src">source: {escape(req.source)}</p>']
    if not entry["tests"]:
        out.append('<p class="none">No test of this run checked this requirement: it is not shown as passed.</p>')
    for nodeid in entry["tests"]:
        t = tests.get(nodeid, {})
        outcome = t.get("outcome", "?")
        out.append(f"<p>test <code>{escape(nodeid)}</code>: {_verdict(outcome)}</p>")
        if t.get("message") and outcome != "passed":
            out.append(f'<p class="src">{escape(plain_message(str(t["message"])))}</p>')
        out.append(_measurements(t.get("measurements", [])))
        if outcome == "failed" or any(borderline(m) for m in t.get("measurements", [])):
            out.append(_timeline(reports, nodeid))
    return "\n".join(out) + "</div>"


# ---------------------------------------------------------------------- the UK regulations, clause by clause
STATUSES = {"bench": "tested on the bench", "partly": "bench tests part; manual evidence for the rest",
            "manual": "manual evidence", "not-applicable": "not applicable"}


def load_uk_matrix(catalogue: dict, path: Path | None = None) -> dict[str, dict]:
    """rig/data/uk_regulations.toml, checked: a mistake is one line naming the clause and key."""
    import tomllib

    from rig.core.errors import RigFileError
    from rig.data import DATA_DIR

    path = path or DATA_DIR / "uk_regulations.toml"
    matrix = tomllib.loads(path.read_text(encoding="utf-8"))
    for clause, entry in matrix.items():
        status = entry.get("status")
        if status not in STATUSES:
            raise RigFileError(str(path), f"{clause}.status", f"{status!r}: expected one of {', '.join(STATUSES)}")
        unknown = [rid for rid in entry.get("tests", []) if rid not in catalogue]
        if unknown:
            raise RigFileError(str(path), f"{clause}.tests", f"unknown requirement ID(s) {', '.join(unknown)}")
        needs = {"bench": "tests", "partly": "evidence", "manual": "evidence", "not-applicable": "reason"}[status]
        if not entry.get(needs) or (status == "partly" and not entry.get("tests")):
            raise RigFileError(str(path), f"{clause}.{needs}", f"a {status} clause needs its {needs}")
    return matrix


def clause_verdict(entry: dict, trace: dict) -> str:
    """The bench part's verdict: the worst of its requirements', NO TEST if any went unchecked."""
    from rig.reports.run_record import VERDICT_ORDER

    verdicts = [trace.get(rid, {}).get("verdict", "not-covered") for rid in entry.get("tests", [])]
    if not verdicts:
        return "not-covered"
    if "not-covered" in verdicts:
        return "not-covered"
    return next(v for v in VERDICT_ORDER if v in verdicts)


def _uk_matrix(catalogue: dict, trace: dict) -> str:
    rows = []
    for clause, entry in load_uk_matrix(catalogue).items():
        tested = ", ".join(f'<a href="#req-{escape(r)}">{escape(r)}</a>' for r in entry.get("tests", []))
        verdict = _verdict(clause_verdict(entry, trace)) if entry.get("tests") else ""
        note = entry.get("evidence") or entry.get("reason") or ""
        rows.append(f'<tr class="clause" data-clause="{escape(clause)}"><td>{escape(clause)}</td>'
                    f"<td>{escape(entry['title'])}</td><td>{escape(STATUSES[entry['status']])}</td>"
                    f"<td>{tested} {verdict}</td><td>{escape(note)}</td></tr>")
    return ("<h2>UK Smart Charge Points Regulations 2021 (SI 2021/1467), clause by clause</h2>"
            '<p class="src">From rig/data/uk_regulations.toml: what the bench tests (with this run\'s verdict), and '
            "the manual evidence the engineer attaches for the rest.</p>"
            "<table><tr><th>clause</th><th>asks</th><th>how</th><th>bench tests</th><th>manual evidence</th></tr>"
            + "".join(rows) + "</table>")


def render(run: dict, trace: dict, catalogue: dict, reports: Path, unit: dict, rig_data: dict) -> str:
    version, commit = harness_identity()
    tests = {t["nodeid"]: t for t in run.get("tests", [])}
    counts: dict[str, int] = defaultdict(int)
    for entry in trace.values():
        counts[entry["verdict"]] += 1
    front = [("unit", f"{unit.get('serial') or '?'}: {unit.get('model') or ''} ({unit.get('variant') or '?'})"),
             ("firmware", unit.get("firmware") or "(not reported)"),
             ("rig", f"{unit.get('rig_name') or '?'} ({run.get('rig', {}).get('rig_file')}), bench "
                     f"{run.get('rig', {}).get('bench') or '?'}"),
             ("operator", unit.get("operator") or "?"), ("date (UTC)", str(run.get("started"))),
             ("run", str(run.get("run_id"))), ("harness", f"plugstream-rig {version}, commit {commit}"),
             ("requirements", ", ".join(f"{n} {VERDICT_WORDS.get(v, (v,))[0]}" for v, n in sorted(counts.items())))]
    body = ["<h1>Certification pre-check dossier</h1>",
            "<table class=\"front\">" + "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>"
                                                 for k, v in front) + "</table>",
            "<h3>Instruments</h3><table><tr><th>instrument</th><th>identity</th><th>calibration due</th></tr>"
            + "".join(f"<tr><td>{escape(n)}</td><td>{escape(i)}</td><td>{escape(d)}</td></tr>"
                      for n, i, d in instruments(reports, rig_data)) + "</table>"]
    body.append(_uk_matrix(catalogue, trace))
    for standard, entries in sections(catalogue).items():
        body.append(f"<h2>{escape(standard)}</h2>")
        body += [_requirement(rid, clause, catalogue[rid], trace, tests, reports) for rid, clause in entries]
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Certification dossier "
            f"{escape(str(unit.get('serial') or ''))}</title><style>{STYLE}</style></head><body>"
            + "\n".join(body) + "</body></html>")


def write(reports: Path, run: dict, trace: dict, unit: dict, rig_data: dict) -> tuple[Path, Path | None, str | None]:
    """(html, pdf or None, why there is no pdf)."""
    from rig.product.requirements import load_requirements

    out = reports / "certification"
    out.mkdir(parents=True, exist_ok=True)
    html = render(run, trace, load_requirements(), reports, unit, rig_data)
    html_path = out / "dossier.html"
    html_path.write_text(html, encoding="utf-8")
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # OSError: the system's Pango is missing
        return html_path, None, f"no PDF: WeasyPrint cannot run here ({' '.join(str(exc).split())[:160]})"
    pdf_path = out / "dossier.pdf"
    HTML(string=html, base_url=str(out)).write_pdf(pdf_path)
    return html_path, pdf_path, None

