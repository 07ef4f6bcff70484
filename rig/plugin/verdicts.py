"""Who is to blame for each failed phase, carried on the test's report to every record.

Only an assertion about the unit fails a test; a rig fault (an instrument, or one of the rig's own
services failing during the test) and any other exception (the harness's own bug) are errors,
counted apart (rig/core/errors.py `blame`). The tags travel as report user properties, so the xdist
controller, which writes the records, sees what the worker saw.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest

from rig.core.errors import HARNESS, RIG, UNIT, Blame, blame

# user properties a report carries from the process that ran the test to the one that records it
BLAME = "blame"  # unit | rig | harness, for a failed phase
RIG_FAULT = "rig_fault"  # "instrument: what happened"
HARNESS_ERROR = "harness_error"  # "ExceptionType: message"
REQUIREMENTS = "req"

rig_key = pytest.StashKey["object"]()  # the open Rig of this process, for the hooks that need it
fault_mark_key = pytest.StashKey[int]()  # where the rig's service faults stood when the test began


def item_requirements(item: pytest.Item) -> list[str]:
    return [rid for mark in item.iter_markers("req") for rid in mark.args]


def tag_report(item: pytest.Item, call: pytest.CallInfo, rep: pytest.TestReport) -> None:
    """Put the requirement IDs (setup) and, for a failed phase, whose fault it is on the report."""
    if rep.when == "setup":
        rep.user_properties.append((REQUIREMENTS, item_requirements(item)))
    if call.excinfo is None or not rep.failed:
        return
    who = blame(call.excinfo.value)
    if who.kind == UNIT:
        who = _unless_a_rig_service_failed(item, who)
    elif who.kind == RIG:
        who = _naming_a_dead_service(item, who)
    rep.user_properties.append((BLAME, who.kind))
    if who.kind == RIG:
        # The rig could not measure: an error naming the instrument, never a charger failure.
        rep.user_properties.append((RIG_FAULT, who.text))
    elif who.kind == HARNESS:
        # Our own bug: an error of the harness, never the unit's failure.
        rep.user_properties.append((HARNESS_ERROR, who.text))


def mark_service_faults(item: pytest.Item) -> None:
    rig = item.config.stash.get(rig_key, None)
    item.stash[fault_mark_key] = rig.service_faults.mark() if rig is not None else 0


def _unless_a_rig_service_failed(item: pytest.Item, who: Blame) -> Blame:
    """A unit is blamed only when the rig can show its own side worked: if a rig service (central
    system, DHCP, DNS, NTP, firmware server) failed during this test, "the unit did not register"
    may be the service's doing, so the test is a rig fault naming that service."""
    rig = item.config.stash.get(rig_key, None)
    if rig is None:
        return who
    faults = rig.service_faults.since(item.stash.get(fault_mark_key, 0)) + rig.dead_services()
    if not faults:
        return who
    return Blame(RIG, f"{faults[0]} (the rig's own service failed during the test; "
                      f"the unit was not judged: {_first_line(who.text)})")


def _naming_a_dead_service(item: pytest.Item, who: Blame) -> Blame:
    """A rig fault seen while one of the rig's services had died: the dead service is what to fix."""
    rig = item.config.stash.get(rig_key, None)
    dead = rig.dead_services() if rig is not None else []
    return Blame(RIG, f"{dead[0]} (then: {_first_line(who.text)})") if dead else who


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def prop(report, key: str):
    for k, value in getattr(report, "user_properties", []):
        if k == key:
            return value
    return None


def test_status(report: pytest.TestReport):
    """What the terminal shows for a failed phase: the verdict class, not pytest's own word."""
    if not report.failed:
        return None
    kind = prop(report, BLAME)
    if kind == RIG:
        return "error", "E", ("ERROR (rig fault)", {"red": True})
    if kind == HARNESS:
        return "error", "E", ("ERROR (harness)", {"red": True})
    if kind == UNIT and report.when != "call":
        return "failed", "F", (f"FAILED (unit, in {report.when})", {"red": True})
    return None


def phase_outcome(report: pytest.TestReport) -> str:
    """One phase's verdict: passed, skipped, failed (the unit), error (a rig fault) or
    harness-error (anything else). A failure without a blame tag (raised where the plugin did not
    see it) is the harness's: only what was shown to be the unit's fails the unit."""
    if report.passed:
        return "passed"
    if report.skipped:
        return "skipped"
    kind = prop(report, BLAME)
    if kind == UNIT:
        return "failed"
    if kind == RIG:
        return "error"
    return "harness-error"


def mark_errors_in_junit(path: str | None, tests) -> None:
    """junit.xml files call-phase rig faults and harness errors <failure>; CI dashboards must see
    <error> instead (type RigFault or HarnessError), since neither is the unit's failure."""
    faulted = {t.nodeid: ("RigFault" if t.outcome == "error" else "HarnessError")
               for t in tests if t.outcome in ("error", "harness-error")}
    if not path or not faulted or not os.path.exists(path):
        return
    tree = ET.parse(path)
    for case in tree.iter("testcase"):
        name = f"{case.get('classname', '')}.{case.get('name', '')}"
        kind = next((k for n, k in faulted.items() if _junit_name(n) == name), None)
        if kind is None:
            continue
        for failure in case.findall("failure") + case.findall("error"):
            failure.tag = "error"
            failure.set("type", kind)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _junit_name(nodeid: str) -> str:
    path, _, rest = nodeid.partition("::")
    module = path.removesuffix(".py").replace("/", ".")
    parts = rest.split("::")
    return ".".join([module, *parts[:-1]]) + "." + parts[-1]
