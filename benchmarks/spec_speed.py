"""How fast the spec suite judges a unit: simulated hours against wall seconds, per model.

Runs `pytest rig/spec --hazardous` on the emulated PlugStream 7 and PlugStream 22 socket
variant, one after the other, each in its own subprocess with its own reports directory, and
reads back what each run recorded in run.json (`sim_seconds`, `wall_seconds`). Issue 4's
target on the project's 2-core machine: at least 24 h of simulated charger time per model and at
most 120 s of wall time for both models together. Prints the figures; the exit status says
whether the target was met (a benchmark, not a test: the machine's load decides the wall time).

    python benchmarks/spec_speed.py [--models PS7 PS22-S] [--seed N] [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
MODELS = ("PS7", "PS22-S")
MIN_SIM_HOURS_PER_MODEL = 24.0
MAX_WALL_S_TOTAL = 120.0


def run_model(model: str, seed: int, extra: list[str], reports: Path) -> dict:
    """One spec-suite run on `model`; its run.json plus the wall time of the whole subprocess."""
    cmd = [sys.executable, "-m", "pytest", "rig/spec", "--hazardous", "-q", "-p", "no:cacheprovider",
           "--sim-model", model, "--sim-seed", str(seed), "--rig-reports", str(reports), *extra]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True)
    process_s = time.monotonic() - started
    run_file = reports / "run.json"
    if not run_file.exists():
        raise SystemExit(f"{model}: no run.json (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    run = json.loads(run_file.read_text())
    run["process_seconds"] = process_s
    run["returncode"] = proc.returncode
    run["summary"] = next((line for line in reversed(proc.stdout.splitlines()) if " in " in line), "")
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="spec-speed-") as tmp:
        for model in args.models:
            run = run_model(model, args.seed, args.extra, Path(tmp) / model)
            rows.append((model, run))
    print(f"{'model':8} {'simulated h':>12} {'wall s':>8} {'process s':>10} {'sim/wall':>9}  result")
    sim_total = wall_total = 0.0
    for model, run in rows:
        sim_h, wall = run["sim_seconds"] / 3600.0, run["wall_seconds"]
        sim_total += sim_h
        wall_total += wall
        print(f"{model:8} {sim_h:12.1f} {wall:8.1f} {run['process_seconds']:10.1f} {run['sim_seconds'] / wall:9.0f}x"
              f"  {run['summary']}")
    print(f"{'total':8} {sim_total:12.1f} {wall_total:8.1f} {'':10} {sim_total * 3600 / wall_total:9.0f}x")
    enough_sim = all(run["sim_seconds"] / 3600.0 >= MIN_SIM_HOURS_PER_MODEL for _, run in rows)
    fast = wall_total <= MAX_WALL_S_TOTAL
    passed = all(run["returncode"] == 0 for _, run in rows)
    print(f"target: >= {MIN_SIM_HOURS_PER_MODEL:g} h simulated per model: {'met' if enough_sim else 'NOT met'}; "
          f"<= {MAX_WALL_S_TOTAL:g} s wall for all models: {'met' if fast else 'NOT met'}; "
          f"suite {'passed' if passed else 'did NOT pass'}")
    return 0 if enough_sim and fast and passed else 1


if __name__ == "__main__":
    sys.exit(main())
