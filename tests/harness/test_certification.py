"""`--certification`: the standards-derived selection and its dossier (HTML and PDF). Every
catalogue ID is in the dossier with the verdict traceability.json gives it, or NO TEST; a failing
unit's clause shows FAILED with the measurement out of its limit and the test's timeline."""

from __future__ import annotations

import json
import os
import re
from html import escape, unescape

import pytest

from rig.product.requirements import load_requirements
from rig.reports.dossier import (MANUFACTURER, certification_requirements, clause_verdict, load_uk_matrix, sections, standard_of,
                                 standards_requirements)
from tests.harness.plugin_runs import run_pytest

BLOCK = re.compile(r'<div class="req" id="req-([A-Z0-9-]+)" data-verdict="([a-z-]+)">(.*?)</div>', re.S)


def blocks(html: str) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for rid, verdict, body in BLOCK.findall(html):
        out.setdefault(rid, []).append((verdict, body))
    return out


def pdf_expected() -> bool:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError):
        if os.environ.get("RIG_REQUIRE_PDF") == "1":
            pytest.fail("WeasyPrint cannot run (apt-get install -y libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core)")
        return False
    return True


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("certification")
    run = run_pytest(["rig/spec", "--certification"], tmp, timeout=900)
    assert run.returncode == 0, run.output[-3000:]
    return run


def test_the_selection_is_every_standards_derived_requirement(good_run):
    run_json = json.loads((good_run.reports / "run.json").read_text())
    checked = {rid for t in run_json["tests"] for rid in t["requirements"]}
    standards = certification_requirements(load_requirements())
    assert standards_requirements(load_requirements()) < standards and "SEC-01" in standards
    assert all(set(t["requirements"]) & standards for t in run_json["tests"]), "only standards-derived tests"
    assert len(standards - checked) <= 2, standards - checked  # PEN-07 applies to PS22-E only


def test_every_catalogue_id_is_in_the_dossier_with_the_verdict_traceability_gives(good_run):
    html = (good_run.reports / "certification" / "dossier.html").read_text()
    trace = json.loads((good_run.reports / "traceability.json").read_text())
    found = blocks(html)
    assert set(found) == set(load_requirements()), set(load_requirements()) ^ set(found)
    for rid, entries in found.items():
        assert {v for v, _ in entries} == {trace[rid]["verdict"]}, rid
        if trace[rid]["verdict"] == "not-covered":
            assert all("NO TEST" in body and "PASSED" not in body for _, body in entries), rid
    assert "plugstream-rig" in html and "SIM-0001" in html and "calibration due" in html
    assert f"<h2>{escape(MANUFACTURER)}</h2>" in html and "<h2>IEC 62955</h2>" in html
    pdf = good_run.reports / "certification" / "dossier.pdf"
    if pdf_expected():
        from pypdf import PdfReader

        reader = PdfReader(pdf)
        assert len(reader.pages) > 20 and "dossier.pdf" in good_run.output
        assert "Certification pre-check dossier" in reader.pages[0].extract_text()
        text = "".join(page.extract_text() for page in reader.pages)
        assert all(rid in text for rid in load_requirements()), "every catalogue ID in the PDF too"


def test_the_uk_regulations_matrix_is_in_the_dossier_clause_by_clause(good_run):
    html = (good_run.reports / "certification" / "dossier.html").read_text()
    trace = json.loads((good_run.reports / "traceability.json").read_text())
    matrix = load_uk_matrix(load_requirements())
    rows = dict(re.findall(r'<tr class="clause" data-clause="([^"]+)">(.*?)</tr>', html, re.S))
    assert set(rows) == {escape(c) for c in matrix}
    for clause, entry in matrix.items():
        row = rows[escape(clause)]
        if entry.get("tests"):
            assert all(f"#req-{rid}" in row for rid in entry["tests"])
            assert clause_verdict(entry, trace) == "passed" and "PASSED" in row, (clause, row)
        else:
            assert "manual evidence" in row and entry["evidence"][:30] in unescape(row)


@pytest.mark.parametrize("text, words", [
    ('["reg 7"]\ntitle = "x"\nstatus = "maybe"\n', "reg 7.status: 'maybe'"),
    ('["reg 7"]\ntitle = "x"\nstatus = "bench"\ntests = ["NOPE-1"]\n', "reg 7.tests: unknown requirement ID(s) NOPE-1"),
    ('["reg 8"]\ntitle = "x"\nstatus = "manual"\n', "reg 8.evidence: a manual clause needs its evidence"),
])
def test_a_mistake_in_the_matrix_is_one_line_naming_the_clause(tmp_path, text, words):
    from rig.core.errors import RigFileError

    path = tmp_path / "uk.toml"
    path.write_text(text)
    with pytest.raises(RigFileError, match=re.escape(words)):
        load_uk_matrix(load_requirements(), path)


def test_a_failing_unit_shows_the_clause_failed_with_its_timeline(tmp_path):
    run = run_pytest(["rig/spec", "--certification", "--req", "CP-02,CP-06", "--sim-defect", "duty-offset",
                      "--rig-timeline-png", "all"], tmp_path, timeout=600)
    assert run.returncode == 1, run.output[-2000:]
    found = blocks((run.reports / "certification" / "dossier.html").read_text())
    verdict, body = found["CP-06"][0]
    assert verdict == "failed" and "FAILED" in body and 'class="fail">OUT' in body
    assert 'src="data:image/png;base64,' in body, "the failed test's timeline is in the dossier"
    assert found["LED-01"][0][0] == "not-covered"


def test_standards_and_clauses_are_read_from_the_sources():
    assert standard_of("IEC 61851-1:2017 Table A.6 (C2 -> C1)") == ("IEC 61851-1:2017", "Table A.6 (C2 -> C1)")
    assert standard_of("SI 2021/1467 reg 11") == ("SI 2021/1467", "reg 11")
    assert standard_of("IEC 62955 9.9.2.1 (sudden DC)") == ("IEC 62955", "9.9.2.1 (sudden DC)")
    assert standard_of("BS 7671:2018+A1:2020 722.411.4.1(iv)") == ("BS 7671:2018+A1:2020", "722.411.4.1(iv)")
    every = [rid for entries in sections(load_requirements()).values() for rid, _ in entries]
    assert set(every) == set(load_requirements())


def test_the_front_page_names_the_firmware_the_unit_arrived_with(good_run):
    """OCPP-19's test installs PS-FW 4.3.0 half-way through the run; the unit judged arrived with
    the emulated unit's own firmware, and that is what the dossier and the record must name."""
    from rig.sim.charger import FIRMWARE_VERSION

    run_json = json.loads((good_run.reports / "run.json").read_text())
    updated = [t for t in run_json["tests"] if "OCPP-19" in t["requirements"]]
    assert updated and all(t["outcome"] == "passed" for t in updated), "the firmware update test did not run"
    html = (good_run.reports / "certification" / "dossier.html").read_text()
    assert f"<td>firmware</td><td>{escape(FIRMWARE_VERSION)}</td>" in html, re.findall(r"<td>firmware</td><td>[^<]*", html)
