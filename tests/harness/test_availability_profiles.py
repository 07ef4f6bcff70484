"""OCPP-22 follows the product profile's [lock] during_transaction, and so does the emulated unit:
with "scheduled" (OCPP 1.6 5.2) instead of the manual's "stop", the same spec test judges the
Scheduled branch, and MODE-09's lock stop no longer applies. A rig file next to its own copy of
the profile is how a station would state the manufacturer's answer."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness.plugin_runs import run_pytest

REPO = Path(__file__).resolve().parents[2]


def test_a_profile_that_schedules_the_lock_is_judged_on_the_scheduled_branch(tmp_path):
    profile = (REPO / "rig" / "data" / "profiles" / "plugstream.toml").read_text()
    assert 'during_transaction = "stop"' in profile
    (tmp_path / "profiles").mkdir()
    (tmp_path / "rigs").mkdir()
    (tmp_path / "profiles" / "plugstream-ocpp-lock.toml").write_text(
        profile.replace('during_transaction = "stop"', 'during_transaction = "scheduled"'))
    rig_text = (REPO / "rig" / "data" / "rigs" / "emulated.toml").read_text()
    assert 'profile = "plugstream"' in rig_text
    rig_file = tmp_path / "rigs" / "scheduled-lock.toml"  # a rig file finds profiles in ../profiles
    rig_file.write_text(rig_text.replace('profile = "plugstream"', 'profile = "plugstream-ocpp-lock"'))
    run = run_pytest(["rig/spec/test_ocpp_conformance.py", "rig/spec/test_manual_and_lock.py", "--rig", str(rig_file),
                      "-k", "availability or each_stop", "-rs"], tmp_path, timeout=600)
    assert run.returncode == 0, run.output[-3000:]
    outcomes = {t["nodeid"].split("::")[-1]: t["outcome"] for t in json.loads((run.reports / "run.json").read_text())["tests"]}
    assert outcomes["test_change_availability_idle_and_during_a_transaction"] == "passed", outcomes
    assert outcomes["test_each_stop_ends_energy[lock]"] == "skipped", outcomes
    assert "waits for the transaction's end" in run.output
