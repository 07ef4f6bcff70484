"""The requirements catalogue and the limits file, as data.

The project's copy must carry every requirement of REQUIREMENTS.md (the list is also kept
here, so the check holds in a checkout without the shared documents), and every limit a
requirement names must exist in the limits file the suite asserts against.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rig.product.requirements import (
    DEFAULT_LIMITS,
    SOURCE_TAGS,
    Limit,
    LimitsFileError,
    limit,
    load_limits,
    load_requirements,
)

REPO = Path(__file__).resolve().parents[2]

#: REQUIREMENTS.md's IDs: prefix -> how many (LED-01 .. LED-12, ...)
ID_COUNTS = {"LED": 12, "CP": 10, "PP": 3, "MTR": 5, "RCD": 6, "PEN": 7, "MODE": 9, "LOCK": 2,
             "BOOT": 2, "OFF": 2, "OCPP": 2, "FW": 2, "NET": 4, "SEC": 2}
MARKDOWN_IDS = [f"{prefix}-{n:02d}" for prefix, count in ID_COUNTS.items() for n in range(1, count + 1)]
#: the project's own additions, after REQUIREMENTS.md's of the same group: OCPP 1.6J conformance (issue 16)
ADDED_IDS = {"OCPP-02": ["OCPP-03", "OCPP-04", "OCPP-05", "OCPP-06", "OCPP-07", "OCPP-08", "OCPP-09", "OCPP-10",
                        "OCPP-11", "OCPP-12", "OCPP-13", "OCPP-14", "OCPP-15", "OCPP-16", "OCPP-17", "OCPP-18", "OCPP-19", "OCPP-20", "OCPP-21", "OCPP-22", "OCPP-23", "OCPP-24"]}
SHIPPED_IDS = [rid for md in MARKDOWN_IDS for rid in [md, *ADDED_IDS.get(md, [])]]
NOT_M1 = {"MTR-04", "MTR-05", "PEN-07", "MODE-07", "FW-02", "NET-01", "NET-02", "NET-03", "NET-04",
          "SEC-01", "SEC-02", *(rid for added in ADDED_IDS.values() for rid in added)}

REQUIREMENTS_MD = next((p for p in (Path("/work/shared/REQUIREMENTS.md"), REPO.parent / "shared" / "REQUIREMENTS.md")
                        if p.is_file()), None)
ROW = re.compile(r"^\|\s*([A-Z]+-\d{2})\s*\|(.*)\|\s*(M1)?\s*\|\s*$")


def markdown_rows() -> dict[str, tuple[str, bool]]:
    """ID -> (requirement text, M1) from the tables of REQUIREMENTS.md."""
    rows = {}
    for line in REQUIREMENTS_MD.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = (match.group(2).strip(), match.group(3) == "M1")
    return rows


# --- requirements -----------------------------------------------------------------------------

def test_catalogue_has_exactly_the_shipped_ids_in_order():
    assert list(load_requirements()) == SHIPPED_IDS


def test_m1_flags():
    assert {rid for rid, req in load_requirements().items() if not req.m1} == NOT_M1


needs_markdown = pytest.mark.skipif(
    REQUIREMENTS_MD is None,
    reason="REQUIREMENTS.md is not beside this checkout (/work/shared or ../shared); "
           "the shipped ID list above still checks the catalogue",
)


@needs_markdown
def test_shipped_ids_are_those_of_requirements_md():
    assert list(markdown_rows()) == MARKDOWN_IDS


@needs_markdown
def test_text_and_m1_match_requirements_md_or_a_note_says_why():
    requirements = load_requirements()
    for rid, (text, m1) in markdown_rows().items():
        req = requirements[rid]
        assert req.m1 == m1, rid
        assert req.text == text or req.note, f"{rid} differs from REQUIREMENTS.md without a note"


def test_every_requirement_is_complete():
    for rid, req in load_requirements().items():
        assert req.id == rid
        assert req.group and req.text and req.source, rid
        assert all(part.split(":")[0] in SOURCE_TAGS for part in req.sources), rid
        assert all(re.fullmatch(r"[a-z]+\.[a-z0-9_]+", key) for key in req.limits), rid


def test_pen_04_states_the_green_versus_blue_conflict():
    note = load_requirements()["PEN-04"].note
    assert "green light" in note and "blue solid" in note and "LED table governs" in note


def test_requirements_with_numbers_name_their_limits():
    requirements = load_requirements()
    for rid in ("CP-01", "CP-02", "CP-03", "CP-04", "CP-05", "CP-06", "CP-07", "PP-03", "MTR-02",
                "RCD-01", "RCD-02", "RCD-03", "RCD-04", "RCD-05", "PEN-01", "PEN-02", "PEN-04", "PEN-05",
                "MODE-01", "MODE-02"):
        assert requirements[rid].limits, f"{rid} states a number but names no limit"


# --- limits -----------------------------------------------------------------------------------

def test_every_limit_a_requirement_names_is_in_the_limits_file():
    assert DEFAULT_LIMITS.is_file(), f"the lead's limits file {DEFAULT_LIMITS} does not exist yet"
    limits = load_limits()
    missing = {key: rid for rid, req in load_requirements().items() for key in req.limits if key not in limits}
    assert not missing, f"limits named by requirements but absent from {DEFAULT_LIMITS}: {missing}"


def test_every_limit_has_value_unit_source_and_confidence():
    for key, item in load_limits().items():
        assert isinstance(item, Limit) and item.key == key
        assert isinstance(item.value, (int, float)) and not isinstance(item.value, bool), key
        assert item.source and item.confidence in ("N", "S", "V"), key


def test_limit_lookup_and_unknown_key_names_the_file():
    assert limit("pen.v_max").value == 253.0
    assert limit("pen.v_max").unit == "V"
    with pytest.raises(KeyError) as caught:
        limit("pen.v_maks")
    assert str(DEFAULT_LIMITS) in str(caught.value) and "did you mean 'pen.v_max'?" in str(caught.value)


def limits_file(tmp_path: Path, text: str, name: str = "limits.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = """
[cp.contactor_close_max_s]
value = 3.0
unit = "s"
source = "IEC 61851-1:2017 Table A.6 (B2->C2)"
confidence = "S"

[pen.max_resumes]
value = 10
unit = "count"
source = "PlugStream PEN fault detection support page"
confidence = "S"
"""


def test_limit_file_format_and_printed_form(tmp_path):
    limits = load_limits(limits_file(tmp_path, BASE))
    assert limits["cp.contactor_close_max_s"] == Limit(
        "cp.contactor_close_max_s", 3.0, "s", "IEC 61851-1:2017 Table A.6 (B2->C2)", "S")
    assert str(limits["pen.max_resumes"]) == "pen.max_resumes = 10 count [S] PlugStream PEN fault detection support page"


def test_override_merges_field_by_field(tmp_path):
    base = limits_file(tmp_path, BASE)
    override = limits_file(tmp_path, "[cp.contactor_close_max_s]\nvalue = 2.0\n", "customer.toml")
    limits = load_limits(base, [override])
    changed = limits["cp.contactor_close_max_s"]
    assert (changed.value, changed.unit, changed.confidence) == (2.0, "s", "S")
    assert changed.source == "override customer.toml (was 3: IEC 61851-1:2017 Table A.6 (B2->C2))"
    assert limits["pen.max_resumes"].value == 10
    assert limits.files == (base, override)


def test_override_of_an_unknown_limit_is_refused(tmp_path):
    base = limits_file(tmp_path, BASE)
    override = limits_file(tmp_path, "[cp.contactor_close_max]\nvalue = 2.0\n", "typo.toml")
    with pytest.raises(LimitsFileError, match=r"cp\.contactor_close_max: not a limit of limits\.toml; "
                                              r"did you mean 'cp\.contactor_close_max_s'\?"):
        load_limits(base, [override])


@pytest.mark.parametrize("text, key, problem", [
    ('[a.b]\nvalue = "3"\nunit = "s"\nsource = "x"\nconfidence = "S"\n', "a.b.value", "expected a number"),
    ('[a.b]\nvalue = 3\nunit = "s"\nsource = "x"\nconfidence = "Q"\n', "a.b.confidence", "'Q' is not one of N, S, V"),
    ('[a.b]\nvalue = 3\nunit = "s"\nconfidence = "S"\n', "a.b.source", "missing"),
    ('[a.b]\nvalue = 3\nunits = "s"\nsource = "x"\nconfidence = "S"\n', "a.b.units", "unknown field; did you mean 'unit'?"),
    ("[a]\nb = 3\n", "a.b", "unknown field; known: value, unit, source, confidence, note"),
    ("[a]\nb = 3\n[a.c]\nvalue = 1\n", "a.b", "expected a table [a.b]"),
    ("[a.b\nvalue = 3\n", "(file)", "TOML syntax error"),
])
def test_broken_limits_file_is_one_line_naming_the_key(tmp_path, text, key, problem):
    path = limits_file(tmp_path, text)
    with pytest.raises(LimitsFileError) as caught:
        load_limits(path)
    assert str(caught.value).startswith(f"{path}: {key}: {problem}")
    assert "\n" not in str(caught.value)


def test_missing_limits_file_is_named(tmp_path):
    with pytest.raises(LimitsFileError, match="no such limits file"):
        load_limits(tmp_path / "absent.toml")
