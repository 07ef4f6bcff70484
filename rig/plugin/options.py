"""The plugin's options: each a command-line flag and an ini key, the command line winning.

Options whose value is not given on the command line take the ini key's (`[tool.pytest.ini_options]`
or `pytest.ini`), then the built-in default. They are resolved once, in `pytest_configure`, into
`config.option`, so every part of the harness reads `config.getoption("--sim-seed")` and gets the
same answer whichever way it was set.

The plugin is active only in a session that asks for a rig: `--rig PATH` (or `--rig emulated`) on
the command line, or the ini key `rig`. Any other pytest session in the same environment is left
alone: no files written, no report options changed, no signal handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

GROUP = "plugstream rig"


@dataclass(frozen=True)
class Option:
    flag: str
    ini: str
    default: Any
    help: str
    kind: str = "string"  # string | int | bool | choice
    choices: tuple = ()
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("--rig", "rig", None, "rig file describing the bench, or 'emulated' for the shipped emulated bench "
           "(rig/data/rigs/emulated.toml). Giving it (or the ini key) activates the plugin", metavar="PATH"),
    Option("--sim-model", "sim_model", None, "emulated bench: model of the emulated unit (PS7, PS7-S, PS22, PS22-S, PS22-E); "
           "default: the rig file's", metavar="MODEL"),
    Option("--sim-serial", "sim_serial", None, "emulated bench: the serial number the emulated unit reports "
           "(default: the rig file's product.serial; `rig station` sets the scanned one)", metavar="SN"),
    Option("--sim-seed", "sim_seed", 1, "emulated bench: seed of the virtual clock and every random choice (default 1)",
           kind="int", metavar="N"),
    Option("--sim-defect", "sim_defect", None, "emulated bench: start the unit with this firmware defect "
           "(see `rig defects`)", metavar="NAME"),
    Option("--hazardous", "hazardous", False, "also run tests marked hazardous (fault injection, supply excursions)",
           kind="bool"),
    Option("--certification", "certification", False, "certification pre-check: run the tests of every "
           "standards-derived requirement (hazardous ones included) and write reports/certification/dossier.html "
           "and dossier.pdf (docs/certification.md)", kind="bool"),
    Option("--req", "req", None, "run only tests that check one of these requirement IDs (comma-separated, "
           "e.g. MODE-01,LOCK-01)", metavar="IDS"),
    Option("--limits", "limits", None, "TOML file whose limits override the shipped rig/data/limits/plugstream.toml",
           metavar="PATH"),
    Option("--rig-timeline-png", "rig_timeline_png", "failed", "which tests get their timeline drawn as a PNG "
           "(every test gets the CSV); default: failed (and errored) tests; 'all' draws every test in a "
           "background process", kind="choice", choices=("failed", "all", "none")),
    Option("--rig-reports", "rig_reports", "reports", "where run.json, traceability.json, junit.xml and "
           "allure-results go (default: reports, under the rootdir)", metavar="DIR"),
    Option("--results-db", "results_db", None, "SQLAlchemy URL of the results store (default: $RIG_RESULTS_DB, "
           "else sqlite file results.sqlite in the reports directory)", metavar="URL"),
    Option("--results-journal", "results_journal", None, "the station's local journal (SQLite file) when "
           "--results-db is a shared server: every test is committed here first, complete runs are forwarded "
           "(default: results.sqlite in the reports directory)", metavar="PATH"),
    Option("--operator", "operator", None, "who runs the station; recorded with every run (default: the login "
           "name)", metavar="NAME"),
    Option("--prompts", "prompts", "auto", "who answers operator prompts: auto (the emulated rig on the emulated "
           "bench, the terminal on a real bench), emulated, terminal, panel (the `rig station` panel)", kind="choice",
           choices=("auto", "emulated", "terminal", "panel")),
    Option("--prompt-timeout", "prompt_timeout", 300, "seconds an operator prompt waits for an answer before the "
           "test ends as a rig fault (default 300)", kind="int", metavar="S"),
)


def add_options(parser: pytest.Parser) -> pytest.OptionGroup:
    group = parser.getgroup(GROUP, "PlugStream rig (bench, emulated bench, reports)")
    for opt in OPTIONS:
        kwargs: dict[str, Any] = {"default": None, "dest": opt.dest, "help": opt.help}
        if opt.kind == "bool":
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = opt.metavar
        if opt.kind == "int":
            kwargs["type"] = int
        if opt.kind == "choice":
            kwargs["choices"] = opt.choices
            kwargs.pop("metavar")
        group.addoption(opt.flag, **kwargs)
        parser.addini(opt.ini, f"{opt.help} (the command line's {opt.flag} wins)",
                      type="bool" if opt.kind == "bool" else "string", default=None)
    return group


def resolve(config: pytest.Config) -> None:
    """Fill every option not given on the command line from its ini key, else its default."""
    for opt in OPTIONS:
        if getattr(config.option, opt.dest, None) is not None:
            continue
        value = config.getini(opt.ini)
        if value in (None, "", []):
            value = opt.default
        else:
            value = _convert(opt, value)
        setattr(config.option, opt.dest, value)


def _convert(opt: Option, value: Any) -> Any:
    converters: dict[str, Callable[[Any], Any]] = {"int": int, "bool": bool, "string": str, "choice": str}
    try:
        converted = converters[opt.kind](value)
    except ValueError:
        raise pytest.UsageError(f"ini {opt.ini} = {value!r}: expected an integer") from None
    if opt.choices and converted not in opt.choices:
        raise pytest.UsageError(f"ini {opt.ini} = {value!r}: expected one of {', '.join(opt.choices)}")
    return converted


def active(config: pytest.Config) -> bool:
    """Whether this session uses the rig (resolve() has run)."""
    return config.getoption("--rig") is not None


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def wants_reports(config: pytest.Config) -> bool:
    """Reports are written for runs that test; `--collect-only` and `--help` runs are left alone."""
    return not (config.option.help or config.option.collectonly)


def reports_dir(config: pytest.Config) -> Path:
    p = Path(config.getoption("--rig-reports"))
    return p if p.is_absolute() else Path(config.rootpath) / p


def rig_summary(config: pytest.Config) -> dict:
    from rig.core.rigfile import load_rigfile, resolve_rig_path

    path = resolve_rig_path(config.getoption("--rig"))
    return {
        "rig_file": str(path),
        "bench": load_rigfile(path).bench.kind,  # emulated (virtual time) | real (wall time)
        "model": config.getoption("--sim-model"),
        "seed": config.getoption("--sim-seed"),
        "defect": config.getoption("--sim-defect"),
    }
