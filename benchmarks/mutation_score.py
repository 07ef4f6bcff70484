"""The spec suite measured by mutation: how many small firmware bugs in the emulated charger it kills.

Each mutant changes one token of the emulated charger's decision code (a comparison, an
arithmetic sign, a boolean operator or constant, a number) and the spec tests of the requirements
that file serves run against it: those of them that execute the mutated line (a coverage pass per
model finds them, mutation_coverage.py), and all of them when the line also runs at start-up. A
mutant is killed when a run does not pass (a unit failure, or an error the emulation raised). Survivors are printed with their diff: each is either a gap to
close with a designed test or an equivalent mutant to write down with its reason (docs/mutation.md).

Why a small operator set of its own: mutmut and cosmic-ray mutate a package in place and run one
test command for all of it; here each file must be judged by the tests of its own requirements
(a run of the whole suite per mutant would take hours), and the spec suite runs in a subprocess
with its own rig. Mutating tokens (not an AST re-print) keeps every diff one readable line.

    python benchmarks/mutation_score.py [--sample N] [--seed S] [--jobs J] [--files charger_safety.py ...]
                                        [--only FILE:LINE[:TOKEN] ...] [--select coverage|groups] [--resume]

Mutants that cannot change what a good unit does are not run and not scored, and the count of
each kind is printed: code only a known-bad unit executes (found by rule, mutation_scope.py) and
mutants a measurement classified as equivalent, each with its reason, in equivalent_mutants.toml.
The mutants run on private copies of the package (one per job), never on the checkout. The last
line reads `mutation score: K/N killed (P %)`, N being the mutants run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import token
import tokenize
import tomllib
from dataclasses import dataclass
from pathlib import Path

import mutation_coverage
import mutation_scope

PROJECT = Path(__file__).resolve().parent.parent
GROUPS = {
    "led": "Status indicator", "cp": "Control pilot and proximity", "mtr": "Energy and measurement",
    "rcd": "Residual DC protection", "pen": "PEN fault", "mode": "Charging modes",
    "ops": "Locking, connectivity, start-up, firmware",
}
#: the emulated charger's decision code -> the requirement groups whose tests judge it
TARGETS = {
    "charger_safety.py": ("rcd", "pen"),
    # the pilot state machine, the offer, status reports (shown on the LED), and the plant's events the
    # safety functions and modes hang on (injection, supply, site limit): every group (measurement 5)
    "charger.py": ("cp", "led", "mtr", "ops", "rcd", "pen", "mode"),
    "charger_led.py": ("led",),  # LED choice
    "charger_smart.py": ("ops",),  # charging profiles: OCPP-14..17
    "charger_modes.py": ("mode", "cp"),  # and which values the current-limit keys take (CP-06)
    "charging_modes.py": ("mode", "cp"),  # the modes' rules, and the current limits' parsing (CP-06)
    "charger_ocpp.py": ("ops", "led", "pen"),  # boot and power-up: the rainbow (LED-01), PE closed again (PEN-05)
    "charger_operations.py": ("ops", "mode"),  # what the central system asks; ChangeConfiguration of mode keys
    "charger_config.py": ("ops", "mode"),  # factory configuration: OCPP keys, the random delay default maximum
    "charger_firmware.py": ("ops",),
    # every timing constant of the firmware: pilot detection and the diode threshold (cp), contactor,
    # self-test and network-up times, RCD and PEN timings (measurement 6: the diode threshold's
    # mutant survived when this file was judged by ops, pen and rcd only)
    "firmware_timing.py": ("cp", "led", "mtr", "ops", "rcd", "pen", "mode"),
    "charger_network.py": ("ops",),  # resolver order, time source, certificate checks, what it connects to
    "charger_network_firmware.py": ("ops",),  # firmware over HTTPS, the signature check (FW-02)
    "charger_metering.py": ("mtr", "ops"),  # MeterValues at their interval: OCPP-10
}
#: files whose code depends on the model: each mutant runs on the rig file's model (None) and these,
#: and is killed if any run fails. Which models open protective earth on a PEN fault is decided in
#: charger_safety.py, and the rig file's PS22-S is not the export variant that keeps it (PEN-07).
#: The Sense planner's slot energies on a single-phase unit are a third of the three-phase ones
#: (measurement 8: `slot_kwh <= 1` survived on PS22-S, where no offer gives a slot under 2 kWh).
#: charger_modes.py sizes the Sense plan's power by the model's phases too (measurement 12: the slot-energy
#: guard of sense-whole-kwh-slots survived on PS22-S, where a slot never holds under 2 kWh), and
#: charger_operations.py answers UnlockConnector by connector kind (measurement 12: the tethered
#: unit's NotSupported survived on the socket PS22-S, where OCPP-13's tethered case is skipped).
MODELS: dict[str, tuple[str | None, ...]] = {"charger_safety.py": (None, "PS22-E"), "charging_modes.py": (None, "PS7"),
                                             "charger_modes.py": (None, "PS7"), "charger_operations.py": (None, "PS22")}
SWAP_OPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==", "+": "-", "-": "+"}
SWAP_NAMES = {"and": "or", "or": "and", "True": "False", "False": "True"}
MIN_TIMEOUT_S = 60.0  # a mutant's run may take this long, or four times the unmutated run, before it
TIMEOUT_FACTOR = 4.0  # counts as hung (killed: the unit would never finish the test)
FAST_FIRST_SHARE = 0.5  # see plan()


@dataclass(frozen=True)
class Mutant:
    file: str
    line: int
    col: int
    old: str
    new: str

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        text = lines[self.line - 1]
        assert text[self.col:self.col + len(self.old)] == self.old, (self, text)
        lines[self.line - 1] = text[:self.col] + self.new + text[self.col + len(self.old):]
        return "".join(lines)

    def diff(self, source: str) -> str:
        before = source.splitlines()[self.line - 1]
        after = self.apply(source).splitlines()[self.line - 1]
        return f"{self.file}:{self.line}\n  - {before.strip()}\n  + {after.strip()}"


def _number_mutant(text: str) -> str | None:
    try:
        value = int(text, 0)
        return str(value + 1)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return repr(value * 2 if value else 1.0)


def mutants_of(path: Path) -> list[Mutant]:
    """Every one-token mutation of the file's code (docstrings, comments and imports untouched)."""
    source = path.read_text()
    found: list[Mutant] = []
    in_import = False
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == token.NEWLINE:
            in_import = False
            continue
        if tok.type == token.NAME and tok.string in ("import", "from"):
            in_import = True
        if in_import:
            continue
        new = None
        if tok.type == token.OP and tok.string in SWAP_OPS:
            new = SWAP_OPS[tok.string]
        elif tok.type == token.NAME and tok.string in SWAP_NAMES:
            new = SWAP_NAMES[tok.string]
        elif tok.type == token.NUMBER:
            new = _number_mutant(tok.string)
        if new is not None:
            found.append(Mutant(path.name, tok.start[0], tok.start[1], tok.string, new))
    return found


EQUIVALENTS = Path(__file__).resolve().parent / "equivalent_mutants.toml"
RESULTS = Path(__file__).resolve().parent / ".mutation-results.jsonl"


def nth_on_line(m: Mutant) -> int:
    """1 for the first token `m.old` on its line, 2 for the second ... (the registry's `nth`)."""
    return sum(1 for o in _mutants_cached(m.file) if (o.line, o.old) == (m.line, m.old) and o.col < m.col) + 1


_ALL: dict[str, list[Mutant]] = {}


def _mutants_cached(file: str) -> list[Mutant]:
    if file not in _ALL:
        _ALL[file] = mutants_of(PROJECT / "rig" / "sim" / file)
    return _ALL[file]


def load_equivalents(path: Path = EQUIVALENTS) -> list[dict]:
    return tomllib.loads(path.read_text())["equivalent"]


def equivalent_entry(m: Mutant, source: str, entries: list[dict]) -> dict | None:
    """The registry's entry for `m`: same file, stripped line, token and replacement, `nth` token on
    the line, and, when the entry gives `occurrence`, the same occurrence of that line in the file
    (for a line written twice that is equivalent in one place only)."""
    lines = [text.strip() for text in source.splitlines()]
    code = lines[m.line - 1]
    for e in entries:
        if (e["file"], e["code"], e["old"], e["new"]) == (m.file, code, m.old, m.new) \
                and e.get("nth", 1) == nth_on_line(m) \
                and e.get("occurrence", lines[:m.line].count(code)) == lines[:m.line].count(code):
            return e
    return None


def classify(mutants: list[Mutant], sources: dict[str, str], entries: list[dict]) -> dict[Mutant, str]:
    """"run", "defect-only" or "equivalent" for every mutant."""
    names = mutation_scope.known_defects(PROJECT)
    spans = mutation_scope.defect_only_by_file(sources, PROJECT / "rig", names)
    kinds = {}
    for m in mutants:
        if mutation_scope.inside(spans[m.file], m.line, m.col):
            kinds[m] = "defect-only"
        elif equivalent_entry(m, sources[m.file], entries) is not None:
            kinds[m] = "equivalent"
        else:
            kinds[m] = "run"
    return kinds


def stale_entries(mutants: list[Mutant], sources: dict[str, str], entries: list[dict]) -> list[dict]:
    """Registry entries of the files measured that match no mutant: the code changed under them."""
    used = {id(equivalent_entry(m, sources[m.file], entries)) for m in mutants}
    return [e for e in entries if e["file"] in sources and id(e) not in used]


@functools.cache
def requirement_ids(groups: tuple[str, ...]) -> str:
    data = tomllib.loads((PROJECT / "rig" / "data" / "requirements.toml").read_text())
    wanted = {GROUPS[g] for g in groups}
    return ",".join(k for k, v in data.items() if isinstance(v, dict) and v.get("group") in wanted)


def run_spec(copy: Path, reqs: str, reports: Path, timeout_s: float, model: str | None = None,
             tests: tuple[str, ...] | None = None) -> tuple[int, float]:
    """The spec tests of `reqs` (only `tests` of them, if given) on `model` (None: the rig file's)."""
    env = mutation_coverage.spec_env()
    started = time.monotonic()
    cmd = [sys.executable, "-m", "pytest", *(tests or ["rig/spec"]), "--hazardous", "--req", reqs, "-x", "-q",
           "-p", "no:randomly", "-p", "no:cacheprovider", "--rig-reports", str(reports)]
    if model is not None:
        cmd += ["--sim-model", model]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return -1, time.monotonic() - started  # a mutant that hangs the unit: killed by the watchdog
    return proc.returncode, time.monotonic() - started


def private_copy() -> Path:
    """The package and the ini file in a temp dir: the run's cwd comes first on sys.path, so the
    spec suite and the plugin import the mutated copy, never the checkout."""
    root = Path(tempfile.mkdtemp(prefix="mutants-"))
    shutil.copytree(PROJECT / "rig", root / "rig", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "pyproject.toml", root / "pyproject.toml")
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=0, help="draw N mutants at random (0: every mutant)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1,
                        help="mutants run at once, each on its own copy (default 1; the real-time tests "
                             "of the spec suite are few, but more jobs than cores slows every run)")
    parser.add_argument("--files", nargs="*", default=list(TARGETS), help="target files (default: all)")
    parser.add_argument("--rerun", nargs="*", default=None, metavar="FILE",
                        help="of the mutants drawn (same --sample and --seed, all files), run only these files': "
                             "re-measures part of an earlier sample after a change")
    parser.add_argument("--only", nargs="*", default=None, metavar="FILE:LINE[:TOKEN]",
                        help="run just the mutants on these lines (of TOKEN only, if given), e.g. the survivors "
                             "of an earlier measurement after a test was added: charger.py:310:and")
    parser.add_argument("--select", choices=("coverage", "groups"), default="coverage",
                        help="coverage (default): a mutant runs the tests that execute its line, and its whole "
                             "requirement groups only when the line also runs at start-up; groups: every mutant "
                             "runs its whole groups (slower; the measurement before coverage selection)")
    parser.add_argument("--results", default=str(RESULTS),
                        help="every verdict is appended here as it is found (default: %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the verdicts in --results of the same package and selection: an interrupted "
                             "run goes on where it stopped")
    args = parser.parse_args()
    unknown = [f for f in args.files if f not in TARGETS]
    if unknown:
        parser.error(f"not a target: {unknown}; targets: {', '.join(TARGETS)}")

    sources = {f: (PROJECT / "rig" / "sim" / f).read_text() for f in args.files}
    everything = [m for f in args.files for m in _mutants_cached(f)]
    entries = load_equivalents()
    kinds = classify(everything, sources, entries)
    chosen = sorted(random.Random(args.seed).sample(everything, min(args.sample, len(everything)))
                    if args.sample else everything, key=lambda m: (m.file, m.line, m.col))
    if args.rerun is not None:
        chosen = [m for m in chosen if m.file in args.rerun]
    if args.only is not None:
        wanted = [tuple(w.split(":")) for w in args.only]
        chosen = [m for m in everything if any(w[:2] == (m.file, str(m.line)) and w[2:] in ((), (m.old,)) for w in wanted)]
    to_run = [m for m in chosen if kinds[m] == "run"]
    not_run = {k: sum(1 for m in chosen if kinds[m] == k) for k in ("defect-only", "equivalent")}
    print(f"{len(everything)} mutants in {len(args.files)} files "
          f"({sum(1 for k in kinds.values() if k == 'defect-only')} in code only known-bad units run, "
          f"{sum(1 for k in kinds.values() if k == 'equivalent')} recorded equivalent); drew {len(chosen)}, "
          f"running {len(to_run)} with {args.jobs} job(s)", flush=True)
    results = Results(Path(args.results), args.select, args.resume)
    if results.earlier:
        print(f"resuming: {sum(1 for m in to_run if results.get(m) is not None)} verdicts from {args.results}", flush=True)
    killed, survived, baseline = run_all(to_run, args.jobs, args.select, sources, results)
    report(killed, survived, baseline, sources, not_run, stale_entries(everything, sources, entries))
    return 0


def models_of(file: str) -> tuple[str | None, ...]:
    return MODELS.get(file, (None,))


def coverage_passes(mutants: list[Mutant], copies: list[Path]) -> dict[str | None, mutation_coverage.LineTests]:
    """One coverage pass per model the drawn files run on, over their requirement groups: which
    tests run each line, what each test takes, and that the good unit passes them (the baseline)."""
    groups: dict[str | None, set[str]] = {}
    for f in {m.file for m in mutants}:
        for model in models_of(f):
            groups.setdefault(model, set()).update(TARGETS[f])
    free = list(copies)

    def one(model: str | None):
        copy = free.pop()  # list.pop is atomic: each job takes a copy of its own
        try:
            reqs = requirement_ids(tuple(sorted(groups[model])))
            return model, mutation_coverage.coverage_pass(copy, reqs, model, copy / "reports")
        finally:
            free.append(copy)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(copies)) as pool:
        passes = dict(pool.map(one, sorted(groups, key=str)))
    for model, p in passes.items():
        print(f"  coverage pass on {model or 'the rig file model'} ({', '.join(sorted(groups[model]))}): "
              f"{'passed' if p.ok else 'FAILED'} in {p.seconds:.0f} s", flush=True)
    return passes


def plan(m: Mutant, source: str, passes, select: str) -> list[tuple[str | None, tuple[str, ...] | None]]:
    """The runs that judge a mutant, fastest first: (model, the tests to run; None: its whole groups).
    Empty when no test runs its line (select "coverage"): it cannot change what the suite sees."""
    if select == "groups":
        return [(model, None) for model in models_of(m.file)]
    fast, whole = [], []
    for model in models_of(m.file):
        kind, tests = passes[model].tests_for(m.file, source, m.line, set(requirement_ids(TARGETS[m.file]).split(",")))
        # a global line runs its whole groups anyway if the selected tests pass; when they are most of
        # the groups' time, running them first would nearly double a survivor's run for little gain
        if tests and not (kind == "global" and passes[model].budget_s(tests) > FAST_FIRST_SHARE * passes[model].seconds):
            fast.append((model, tests))
        if kind == "global":
            whole.append((model, None))
    return fast + whole


def run_all(mutants: list[Mutant], jobs: int, select: str, sources: dict[str, str], results: "Results"):
    copies = [private_copy() for _ in range(max(1, jobs))]
    free = list(copies)
    killed: dict[str, list[Mutant]] = {}
    survived: dict[str, list[Mutant]] = {}
    done = 0
    try:
        passes = coverage_passes(mutants, copies)
        baseline = {f: 0 if all(passes[model].ok for model in models_of(f)) else 1 for f in {m.file for m in mutants}}
        measurable = [m for m in mutants if baseline[m.file] == 0]  # else the good unit fails its own tests

        def one(m: Mutant) -> tuple[Mutant, int, float, str]:
            if (earlier := results.get(m)) is not None:
                return m, earlier[0], earlier[1], "earlier run"
            runs = plan(m, sources[m.file], passes, select)
            if not runs:
                return m, 0, 0.0, "no test runs its line"
            copy = free.pop()  # list.pop is atomic: each job takes a copy of its own
            rc, took, ran = 0, 0.0, 0
            try:
                target = copy / "rig" / "sim" / m.file
                original = target.read_text()
                target.write_text(m.apply(original))
                try:
                    for model, tests in runs:
                        limit = max(MIN_TIMEOUT_S, TIMEOUT_FACTOR * passes[model].budget_s(tests))
                        rc, t = run_spec(copy, requirement_ids(TARGETS[m.file]), copy / "reports", limit, model, tests)
                        took, ran = took + t, ran + 1
                        if rc != 0:
                            break
                finally:
                    target.write_text(original)
            finally:
                free.append(copy)
            results.add(m, rc, took)
            return m, rc, took, f"{ran} run(s)"

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(copies)) as pool:
            for m, rc, took, how in pool.map(one, measurable):
                done += 1
                (killed if rc != 0 else survived).setdefault(m.file, []).append(m)
                verdict = "killed (hung: timed out)" if rc == -1 else "killed" if rc != 0 else "SURVIVED"
                print(f"  [{done}/{len(measurable)}] {m.file}:{m.line} {m.old!r}->{m.new!r}: {verdict} "
                      f"({how}, {took:.0f} s)", flush=True)
    finally:
        for copy in copies:
            shutil.rmtree(copy, ignore_errors=True)
    return killed, survived, baseline


class Results:
    """Every verdict as it is found, one JSON line each, so an interrupted run resumes (--resume)
    where it stopped. A verdict is reused only for the same package (a hash of rig/: the emulation
    and the tests) and the same selection."""

    def __init__(self, path: Path, select: str, resume: bool):
        digest = hashlib.sha256()
        for f in sorted((PROJECT / "rig").rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                digest.update(str(f.relative_to(PROJECT)).encode() + b"\0" + f.read_bytes())
        self.path, self.key = path, f"{digest.hexdigest()[:16]}/{select}"
        self.earlier: dict[tuple, tuple[int, float]] = {}
        if resume and path.exists():
            for line in path.read_text().splitlines():
                r = json.loads(line)
                if r["package"] == self.key:
                    self.earlier[tuple(r["mutant"])] = (r["rc"], r["seconds"])
        self.lock = threading.Lock()

    def get(self, m: Mutant) -> tuple[int, float] | None:
        return self.earlier.get((m.file, m.line, m.col, m.old, m.new))

    def add(self, m: Mutant, rc: int, took: float) -> None:
        record = {"package": self.key, "mutant": [m.file, m.line, m.col, m.old, m.new], "rc": rc,
                  "seconds": round(took, 1)}
        with self.lock, self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def report(killed, survived, baseline, sources, not_run: dict[str, int], stale: list[dict]) -> None:
    print("\nper file: killed / run")
    for f in sorted(set(killed) | set(survived)):
        k, s = len(killed.get(f, [])), len(survived.get(f, []))
        print(f"  {f:<24} {k}/{k + s}")
    if survived:
        print("\nsurvivors:")
        for f, ms in sorted(survived.items()):
            for m in ms:
                print(m.diff(sources[f]))
    for e in stale:
        print(f"stale entry in {EQUIVALENTS.name}: {e['file']}: {e['code']!r} ({e['old']} -> {e['new']}) "
              "matches no mutant any more: classify it again")
    skipped = [f for f, rc in baseline.items() if rc != 0]
    if skipped:
        print(f"\nnot measured (the good unit fails its own tests there): {', '.join(skipped)}")
    total_k = sum(len(v) for v in killed.values())
    total = total_k + sum(len(v) for v in survived.values())
    print(f"\nnot run, cannot change a good unit: {not_run['defect-only']} in code only known-bad units run "
          f"(judged by the known-bad proof), {not_run['equivalent']} recorded equivalent ({EQUIVALENTS.name})")
    if total + sum(not_run.values()):
        everything_k = f"{total_k}/{total + sum(not_run.values())}"
        print(f"counting those as survivors: {everything_k} "
              f"({100.0 * total_k / (total + sum(not_run.values())):.1f} %)")
    print(f"mutation score: {total_k}/{total} killed ({100.0 * total_k / total if total else 0:.1f} %)")


if __name__ == "__main__":
    sys.exit(main())
