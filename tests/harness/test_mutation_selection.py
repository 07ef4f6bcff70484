"""The mutation benchmark's test selection (benchmarks/mutation_coverage.py): a mutant runs only
the tests that execute its line, so a wrong context or a lost line would score a live mutant as a
survivor, or skip the tests that would kill it. Checked on a designed test module under coverage.py
with the benchmark's own pytest plugin (mutation_contexts.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import mutation_coverage  # noqa: E402
import mutation_score  # noqa: E402

CODE = '''\
LIMIT = 3  # import: every test


def opened():
    return "open"  # the session's fixture: every test


def only_b(x):
    total = (x +
             LIMIT)  # a statement over two lines: recorded on its first
    return total


def never():
    return 1  # no test
'''

TESTS = '''\
import pytest
import code_under_test as c


@pytest.fixture(scope="session")
def bench():
    yield c.opened()


@pytest.mark.req("A-01")
def test_a(bench):
    assert bench == "open"


@pytest.mark.req("B-01")
@pytest.mark.parametrize("x", [1, 2])
def test_b(bench, x):
    assert c.only_b(x) == x + 3
'''


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> mutation_coverage.LineTests:
    root = tmp_path_factory.mktemp("selection")
    (root / "code_under_test.py").write_text(CODE)
    (root / "test_designed.py").write_text(TESTS)
    (root / "conftest.py").write_text("def pytest_configure(config):\n"
                                      "    config.addinivalue_line('markers', 'req(*ids): requirement IDs')\n")
    data, durations = root / ".coverage", root / "durations.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCHMARKS), str(root)]),
           "MUTATION_DURATIONS": str(durations)}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run([sys.executable, "-m", "coverage", "run", f"--data-file={data}",
                           f"--include={root}/code_under_test.py", "-m", "pytest", "test_designed.py", "-q",
                           "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "-p", "mutation_contexts"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return mutation_coverage.read_pass(data, durations, ok=True, seconds=1.0)


def kind_of(measured, line: int, wanted=frozenset({"A-01", "B-01"})):
    return measured.tests_for("code_under_test.py", CODE, line, set(wanted))


def test_import_and_session_setup_lines_reach_every_test(measured):
    assert kind_of(measured, 1)[0] == "global"  # LIMIT = 3
    assert kind_of(measured, 5)[0] == "global"  # the session fixture, opened in test_a's setup


def test_a_line_one_test_runs_selects_that_test_each_parameter(measured):
    kind, tests = kind_of(measured, 9)
    assert kind == "tests"
    assert tests == ("test_designed.py::test_b[1]", "test_designed.py::test_b[2]")


def test_the_second_line_of_a_statement_selects_what_its_first_does(measured):
    assert kind_of(measured, 10) == kind_of(measured, 9)


def test_a_line_no_test_runs_is_unexecuted(measured):
    assert kind_of(measured, 15) == ("unexecuted", ())


def test_only_the_tests_of_the_wanted_requirements_are_selected(measured):
    assert kind_of(measured, 9, {"A-01"}) == ("tests", ())


def test_each_test_is_timed_and_the_budget_includes_the_session_setup(measured):
    assert set(measured.durations) == {"test_designed.py::test_a", "test_designed.py::test_b[1]",
                                       "test_designed.py::test_b[2]"}
    first = measured.durations["test_designed.py::test_a"]
    assert measured.budget_s(("test_designed.py::test_b[1]",)) == pytest.approx(
        first + measured.durations["test_designed.py::test_b[1]"])


def test_a_mutant_runs_the_selected_tests_first_then_its_whole_groups_only_if_global(measured, monkeypatch):
    monkeypatch.setitem(mutation_score.TARGETS, "code_under_test.py", ("cp",))
    monkeypatch.setattr(mutation_score, "requirement_ids", lambda groups: "A-01,B-01")
    passes = {None: measured}

    def plan(line):
        m = mutation_score.Mutant("code_under_test.py", line, 0, "x", "y")
        return mutation_score.plan(m, CODE, passes, "coverage")

    assert plan(9) == [(None, ("test_designed.py::test_b[1]", "test_designed.py::test_b[2]"))]
    assert plan(15) == []
    assert plan(5) == [(None, None)]  # only the session's setup runs it: nothing to run first
    m = mutation_score.Mutant("code_under_test.py", 9, 0, "x", "y")
    assert mutation_score.plan(m, CODE, passes, "groups") == [(None, None)]
