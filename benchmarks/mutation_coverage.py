"""Which spec tests execute each line of the emulated charger: a mutant need only run those.

One coverage pass per model runs the spec suite under coverage.py with each test in its own
context (mutation_contexts.py). A mutated line then falls in one of three kinds:
- "unexecuted": no test and no import runs it, so the mutant cannot change what the suite sees;
- "global": it runs at import, or while the session's rig is opened or closed (booting the unit,
  a default value), so it reaches every test: the mutant runs the whole requirement group;
- otherwise the tests that run it: the mutant runs those, and only if they pass, the group too
  when the line is also global (a kill found fast; a survivor still judged by the whole group).

Why coverage.py and not a tracer of our own: it records per-context line data for threads too,
maps a multi-line statement's lines to its first line the same way for every Python version, and
its data file is readable afterwards from another process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import coverage
from coverage.parser import PythonParser

from mutation_contexts import SESSION_CONTEXTS

HERE = Path(__file__).resolve().parent


@dataclass
class LineTests:
    """One model's coverage pass: per file, per statement line, the contexts that ran it."""
    ok: bool  # the good unit passed the whole pass (else nothing measured on this model is trusted)
    seconds: float
    durations: dict[str, float] = field(default_factory=dict)
    requirements: dict[str, set[str]] = field(default_factory=dict)
    lines: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    first_lines: dict[str, PythonParser] = field(default_factory=dict)

    def tests_for(self, file: str, source: str, line: int, wanted: set[str]) -> tuple[str, tuple[str, ...]]:
        """("unexecuted" | "global" | "tests", the tests of a `wanted` requirement that run the line)."""
        if file not in self.first_lines:
            parser = PythonParser(text=source)
            parser.parse_source()
            self.first_lines[file] = parser
        first = self.first_lines[file].first_line(line)
        contexts = self.lines.get(file, {}).get(first, set()) | self.lines.get(file, {}).get(line, set())
        if not contexts:
            return "unexecuted", ()
        tests = tuple(sorted(c for c in contexts
                             if c not in SESSION_CONTEXTS and self.requirements.get(c, set()) & wanted))
        return ("global" if contexts & set(SESSION_CONTEXTS) else "tests"), tests

    def budget_s(self, tests: tuple[str, ...] | None) -> float:
        """What those tests took in the pass (None: all of them), the session's setup included."""
        if tests is None:
            return self.seconds
        session = next(iter(self.durations.values()), 0.0)  # the first test's setup opened the rig
        return session + sum(self.durations.get(t, 0.0) for t in tests)


def spec_env() -> dict[str, str]:
    """The environment of a spec run on a private copy: no bytecode left beside the mutated file,
    and none of the caller's PYTEST_ADDOPTS (the run's options are the benchmark's)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return env


def coverage_pass(copy: Path, reqs: str, model: str | None, reports: Path) -> LineTests:
    """The spec tests of `reqs` on `model` (None: the rig file's) under coverage, in `copy`."""
    data_file = copy / f".coverage-{model or 'rig'}"
    durations_file = copy / f".durations-{model or 'rig'}.json"
    env = {**spec_env(), "MUTATION_DURATIONS": str(durations_file),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "coverage", "run", f"--data-file={data_file}", "--include=*/rig/sim/*",
           "-m", "pytest", "rig/spec", "--hazardous", "--req", reqs, "-q", "-p", "no:randomly",
           "-p", "no:cacheprovider", "-p", "mutation_contexts", "--rig-reports", str(reports)]
    if model is not None:
        cmd += ["--sim-model", model]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True)
    return read_pass(data_file, durations_file, proc.returncode == 0, time.monotonic() - started)


def read_pass(data_file: Path, durations_file: Path, ok: bool, seconds: float) -> LineTests:
    """A coverage pass's record: the line data and each test's time and requirement IDs."""
    result = LineTests(ok=ok, seconds=seconds)
    if not ok:
        return result
    recorded = json.loads(durations_file.read_text())
    result.durations = recorded["seconds"]
    result.requirements = {test: set(ids) for test, ids in recorded["requirements"].items()}
    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    for measured in data.measured_files():
        by_line = data.contexts_by_lineno(measured)
        result.lines[Path(measured).name] = {line: set(contexts) for line, contexts in by_line.items()}
    return result
