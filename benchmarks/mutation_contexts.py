"""pytest plugin for the mutation measurement's coverage pass: each spec test's lines in its own
coverage context, so a mutant runs only the tests that execute its line (mutation_coverage.py).

Loaded with `-p mutation_contexts` under `python -m coverage run -m pytest ...`: coverage starts
before pytest, so the lines run at import are recorded too (in the empty context).

The session's rig is opened in the first test's setup and closed in the last test's teardown;
those phases get contexts of their own ("session-setup", "session-teardown"), since what runs there
reaches every test of a session, not just the first or the last.
"""

from __future__ import annotations

import json
import os

import coverage
import pytest

SESSION_CONTEXTS = ("", "session-setup", "session-teardown")
_first = True
_seconds: dict[str, float] = {}  # each test's setup, call and teardown: the mutants' runs are timed from them
_requirements: dict[str, list[str]] = {}  # each test's requirement IDs: a mutant runs only its groups' tests


def _switch(context: str) -> None:
    cov = coverage.Coverage.current()
    if cov is not None:
        cov.switch_context(context)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _switch(item.nodeid)
    try:
        return (yield)
    finally:
        _switch("")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    global _first
    first, _first = _first, False
    if first:
        _switch("session-setup")
    try:
        return (yield)
    finally:
        _switch(item.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    if nextitem is None:
        _switch("session-teardown")
    try:
        return (yield)
    finally:
        _switch(item.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    from rig.plugin.verdicts import item_requirements

    for item in items:
        _requirements[item.nodeid] = sorted(item_requirements(item))


def pytest_runtest_logreport(report):
    _seconds[report.nodeid] = _seconds.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    path = os.environ.get("MUTATION_DURATIONS")
    if path:
        with open(path, "w") as f:
            json.dump({"seconds": _seconds, "requirements": _requirements}, f)
