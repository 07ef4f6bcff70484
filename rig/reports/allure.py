"""The Allure report's own parts: requirement labels, links and severity, the catalogue page,
environment.properties and attachments. The steps themselves come from the rig's call journal
(rig/bench/journal.py)."""

from __future__ import annotations

import functools
import re
import html
import uuid
from pathlib import Path

from rig.bench.journal import _allure, _reporter, raw

REQUIREMENT_LINK_TYPE = "requirement"
#: where a requirement link points unless --allure-link-pattern requirement:URL/{} says otherwise:
#: the catalogue page the plugin writes next to the reports (reports/requirements.html)
DEFAULT_REQUIREMENT_URL = "../requirements.html#{}"

# Severity of a requirement, from the catalogue: the protective functions are blocker (a unit
# that fails them can hurt someone), the pilot and proximity faults the unit must catch are
# critical. Rules over the catalogue's own fields, not a list of tests: a requirement added to
# the "PEN fault" group is a blocker without anyone touching this file.
BLOCKER_GROUPS = ("Residual DC protection", "PEN fault")
CRITICAL_ID_FAMILIES = ("PP",)  # proximity pilot: the cable's rating and presence
CRITICAL_TEXT = re.compile(r"\bfault reported\b|\bshort", re.IGNORECASE)  # CP-08 diode, CP-09 state E
SEVERITY_RANK = ("blocker", "critical", "normal", "minor", "trivial")


# ---------------------------------------------------------------------- requirements
@functools.lru_cache(maxsize=1)
def catalogue() -> dict:
    """The requirement catalogue, read once per process."""
    from rig.product.requirements import load_requirements

    return load_requirements()


def severity_of(requirement_ids, catalogue: dict) -> str:
    """The most severe of the requirements' severities; `normal` for none or unknown IDs."""
    found = [_requirement_severity(catalogue[r]) for r in requirement_ids if r in catalogue]
    return min(found, key=SEVERITY_RANK.index) if found else "normal"


def _requirement_severity(req) -> str:
    if req.group in BLOCKER_GROUPS:
        return "blocker"
    if req.id.split("-")[0] in CRITICAL_ID_FAMILIES or CRITICAL_TEXT.search(req.text):
        return "critical"
    return "normal"


def label_test(requirement_ids: list[str], catalogue: dict, hazardous: bool, doc: str | None = None,
               link_url: str = DEFAULT_REQUIREMENT_URL) -> None:
    """Requirement labels and links, the Behaviors tree, severity and a description that
    says what each requirement asks, for the running test."""
    if _allure() is None:
        return
    import allure

    for rid in requirement_ids:
        req = catalogue.get(rid)
        allure.dynamic.label(REQUIREMENT_LINK_TYPE, rid)
        allure.dynamic.link(rid, link_type=REQUIREMENT_LINK_TYPE, name=rid)  # short: Allure lists links in a row
        if req is not None:
            allure.dynamic.feature(req.group)
            allure.dynamic.story(f"{rid} {req.text}")
    allure.dynamic.severity(severity_of(requirement_ids, catalogue))
    if hazardous:
        allure.dynamic.tag("hazardous")
    allure.dynamic.description_html(_description(requirement_ids, catalogue, doc, link_url))


def _description(requirement_ids, catalogue: dict, doc: str | None, link_url: str) -> str:
    parts = [f"<p>{html.escape(' '.join(doc.split()))}</p>"] if doc else []
    items = []
    for rid in requirement_ids:
        req = catalogue.get(rid)
        text = html.escape(req.text) if req else "(not in the requirement catalogue)"
        severity = f" <i>({_requirement_severity(req)})</i>" if req and _requirement_severity(req) != "normal" else ""
        items.append(f"<li><a href='{html.escape(link_url.format(rid))}' target='_blank'><b>{rid}</b></a> "
                     f"{text}{severity}</li>")
    if items:
        parts.append("<p>Requirements checked:</p><ul>" + "".join(items) + "</ul>")
    return "".join(parts)


def requirement_url(config) -> str:
    """The URL pattern requirement links use in this run."""
    for kind, pattern in getattr(config.option, "allure_link_pattern", None) or ():
        if kind == REQUIREMENT_LINK_TYPE:
            return pattern
    return DEFAULT_REQUIREMENT_URL


def requirement_link_pattern(config) -> None:
    """Point requirement links at the catalogue page unless the user gave a pattern of their own."""
    patterns = getattr(config.option, "allure_link_pattern", None)
    if patterns is None:
        return
    if not any(kind == REQUIREMENT_LINK_TYPE for kind, _ in patterns):
        patterns.append((REQUIREMENT_LINK_TYPE, DEFAULT_REQUIREMENT_URL))


def write_requirements_page(path: Path, catalogue: dict) -> None:
    """reports/requirements.html: the catalogue, one anchor per ID, for the requirement links."""
    rows = []
    for rid, req in catalogue.items():
        sources = "<br>".join(html.escape(s) for s in req.sources)
        limits = ", ".join(html.escape(k) for k in req.limits) or "&ndash;"
        note = f"<div class=note>{html.escape(req.note)}</div>" if req.note else ""
        rows.append(
            f"<tr id='{rid}'><th>{rid}</th><td>{html.escape(req.group)}</td>"
            f"<td>{html.escape(req.text)}{note}</td><td>{sources}</td><td>{limits}</td>"
            f"<td>{_requirement_severity(req)}</td></tr>")
    page = (
        "<!doctype html><meta charset=utf-8><title>PlugStream requirements</title>"
        "<style>body{font:14px sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}"
        "tr:target{background:#fff3b0}.note{color:#666;font-size:12px;margin-top:4px}</style>"
        "<h1>PlugStream requirement catalogue</h1>"
        "<table><tr><th>ID</th><th>group</th><th>requirement</th><th>sources</th><th>limits</th><th>severity</th></tr>"
        + "".join(rows) + "</table>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------------- environment
def environment(rig, options: dict) -> dict[str, str]:
    """What environment.properties says: the bench, the unit and every instrument's identity."""
    env = {
        "rig.file": str(options.get("rig_file") or ""),
        "rig.bench": "emulated" if rig.bench is not None else "real",
        "unit.model": rig.model_name,
        "unit.serial": rig.serial,
        "unit.charge_point_id": rig.cp_id,
        "unit.firmware": unit_firmware(rig) or "(not yet reported)",
        "run.seed": str(options.get("seed")),
        "run.defect": str(options.get("defect") or "none"),
    }
    for name, identity in instrument_identities(rig).items():
        env[f"instrument.{name}"] = identity
    return env


def unit_firmware(rig) -> str | None:
    """The firmware the unit arrived with: its first BootNotification's (no console round trip; the
    firmware tests install images of their own later in the run)."""
    central = raw(getattr(rig, "central", None))
    if central is None:
        return None
    boots = central.history(action="BootNotification", direction="in")
    for message in boots:
        payload = message.payload or {}
        if payload.get("firmwareVersion"):
            return str(payload["firmwareVersion"])
    return None


def instrument_identities(rig) -> dict[str, str]:
    out = {}
    for attr in ("pilot", "meter", "load", "source", "injector", "led", "console", "central"):
        driver = raw(getattr(rig, attr, None))
        if driver is not None:
            out[attr] = _identity(attr, driver)
    return out


def _identity(attr: str, driver) -> str:
    session = getattr(driver, "session", None)
    if session is not None and getattr(session, "identity", None):
        return f"{session.identity} at {session.resource_name}"  # SCPI *IDN?
    if getattr(driver, "identity", None):
        return f"{driver.identity} on {getattr(driver, 'port', '?')}"  # LED sensor ID?
    if attr == "meter":
        s = driver.settings
        where = f"{s.host}:{s.port}" if s.transport == "tcp" else f"{s.port} {s.baudrate} baud"
        return f"Eastron {driver.model}, Modbus unit {s.unit} over {s.transport} {where}"
    if attr == "pilot":
        factory = type(driver.factory).__name__ if driver.factory is not None else "closed"
        return f"pilot-signal box, gpiozero {factory}"
    if attr == "central":
        return f"OCPP 1.6J central system at {driver.url_for('<charge point id>')}"
    if attr == "console":
        return f"service console on {getattr(driver, 'port', '?')}"
    return type(driver).__name__


def write_environment(results_dir: Path, env: dict[str, str]) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{_prop(k)}={_prop(v)}" for k, v in env.items()]
    tmp = results_dir / "environment.properties.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(results_dir / "environment.properties")


def _prop(text: str) -> str:
    """Java properties escaping: backslash, and ':' / '=' / spaces in keys."""
    return str(text).replace("\\", "\\\\").replace("\n", " ").replace("=", "\\=").replace(":", "\\:")


def attach(body, name: str, kind: str) -> None:
    """Attach `body` to the running test (kind: "png", "csv", "json", "text")."""
    if _allure() is None:
        return
    import allure

    types = {"png": allure.attachment_type.PNG, "csv": allure.attachment_type.CSV,
             "json": allure.attachment_type.JSON, "text": allure.attachment_type.TEXT}
    allure.attach(body, name=name, attachment_type=types[kind])


def reserver(results_dir):
    """`reserve(name, kind)` for rig.reports.timeline_plot.close: registers an attachment on the running test
    now and returns the path its file must be written to later (by the PNG worker)."""
    if results_dir is None or _allure() is None:
        return None

    def reserve(name: str, kind: str) -> Path | None:
        import allure

        logger = _reporter(_allure())
        if logger is None or not hasattr(logger, "_attach"):
            return None
        types = {"png": allure.attachment_type.PNG, "csv": allure.attachment_type.CSV}
        file_name = logger._attach(uuid.uuid4(), name=name, attachment_type=types[kind])
        return Path(results_dir) / file_name

    return reserve
