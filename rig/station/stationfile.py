"""The station file: what `rig station` serves. One end-of-line station, N test sockets, one rig
file per socket (each socket is a bench of its own: its pilot box, meter, load, unit).

    [station]
    name = "EOL-3"
    serial_pattern = "^PS(7|22)-[0-9]{6}$"   # a scan that does not match is refused at the scan field
    hazardous = true                         # run the hazardous end-of-line tests too (RCD, PEN)
    prompts = "panel"                        # panel (the operator answers) | emulated (the rig does)
    prompt_timeout_s = 300                   # an unanswered prompt ends the run as RIG FAULT - RETEST
    reports = "reports"                      # under it: station/<socket>/<run>/ per unit
    results_db = ""                          # SQLAlchemy URL; default: reports/station/results.sqlite
    operator = ""                            # recorded with every run; default: the login name

    [[socket]]
    name = "A"
    rig = "bench-a.toml"                     # or "emulated"; relative to this file
    args = []                                # more pytest options for this socket's runs

A mistake is one line naming the file and the key (StationFileError).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rig.core.errors import RigFileError

PROMPTS = ("panel", "emulated")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$")  # a socket's name is a folder and a URL part
STATION_KEYS = {"name", "serial_pattern", "hazardous", "prompts", "prompt_timeout_s", "reports", "results_db",
                "operator"}
SOCKET_KEYS = {"name", "rig", "args"}


class StationFileError(RigFileError):
    """A station file's mistake: the file, the key, what is wrong."""

    def __init__(self, path: str, key: str, problem: str):
        super().__init__(path, key, problem)
        self.args = (f"{path}: {key}: {problem}" if key else f"{path}: {problem}",)


@dataclass(frozen=True)
class Socket:
    name: str
    rig: str  # "emulated" or an absolute path
    emulated: bool
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class StationFile:
    path: Path
    name: str
    serial_pattern: re.Pattern
    sockets: tuple[Socket, ...]
    hazardous: bool = False
    prompts: str = "panel"
    prompt_timeout_s: int = 300
    reports: Path = Path("reports")
    results_db: str = ""
    operator: str = ""
    extra: dict = field(default_factory=dict)

    def socket(self, name: str) -> Socket | None:
        return next((s for s in self.sockets if s.name == name), None)


def emulated_station(sockets: int = 1, reports: Path | None = None, **station) -> StationFile:
    """A station of N emulated sockets (no file): `rig station --emulated N`, the browser tests."""
    from rig.station.eol import SERIAL_PATTERN

    return StationFile(path=Path("(emulated station)"), name=station.pop("name", "emulated station"),
                       serial_pattern=station.pop("serial_pattern", SERIAL_PATTERN),
                       sockets=tuple(Socket(chr(ord("A") + i), "emulated", True) for i in range(sockets)),
                       reports=reports or Path("reports").resolve(), **station)


def load_station_file(path: str | Path) -> StationFile:
    path = Path(path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StationFileError(where, "", "no such station file") from None
    except OSError as exc:
        raise StationFileError(where, "", f"cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StationFileError(where, "", f"not TOML: {exc}") from None
    unknown = set(data) - {"station", "socket"}
    if unknown:
        raise StationFileError(where, sorted(unknown)[0], "unknown section (expected [station] and [[socket]])")
    st = _table(data.get("station", {}), where, "station")
    _no_unknown(st, STATION_KEYS, where, "station")
    base = path.resolve().parent
    sockets = _sockets(data.get("socket"), where, base)
    prompts = _string(st, "prompts", "panel", where)
    if prompts not in PROMPTS:
        raise StationFileError(where, "station.prompts", f"{prompts!r}: expected one of {', '.join(PROMPTS)}")
    timeout = st.get("prompt_timeout_s", 300)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
        raise StationFileError(where, "station.prompt_timeout_s", f"{timeout!r}: expected a whole number of seconds > 0")
    hazardous = st.get("hazardous", False)
    if not isinstance(hazardous, bool):
        raise StationFileError(where, "station.hazardous", f"{hazardous!r}: expected true or false")
    return StationFile(path=path.resolve(), name=_string(st, "name", path.stem, where),
                       serial_pattern=_pattern(st, where), sockets=sockets, hazardous=hazardous, prompts=prompts,
                       prompt_timeout_s=timeout, reports=base / _string(st, "reports", "reports", where),
                       results_db=_string(st, "results_db", "", where), operator=_string(st, "operator", "", where))


def _sockets(raw, where: str, base: Path) -> tuple[Socket, ...]:
    from rig.core.rigfile import load_rigfile, resolve_rig_path

    if not isinstance(raw, list) or not raw:
        raise StationFileError(where, "socket", "no [[socket]]: a station tests at least one unit")
    out: list[Socket] = []
    for i, entry in enumerate(raw):
        key = f"socket[{i}]"
        entry = _table(entry, where, key)
        _no_unknown(entry, SOCKET_KEYS, where, key)
        name = _string(entry, "name", chr(ord("A") + i), where, key)
        if not NAME.match(name):
            raise StationFileError(where, f"{key}.name", f"{name!r}: letters, digits, '_' or '-', at most 16")
        if any(s.name == name for s in out):
            raise StationFileError(where, f"{key}.name", f"{name!r}: two sockets have this name")
        rig = _string(entry, "rig", "", where, key)
        if not rig:
            raise StationFileError(where, f"{key}.rig", "missing: the socket's rig file (or \"emulated\")")
        rig_path = rig if rig == "emulated" else str((base / rig).resolve())
        try:
            emulated = load_rigfile(resolve_rig_path(rig_path)).bench.emulated
        except RigFileError as exc:
            raise StationFileError(where, f"{key}.rig", f"{rig}: {' '.join(str(exc).split())}") from None
        args = entry.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise StationFileError(where, f"{key}.args", "expected a list of strings (pytest options)")
        out.append(Socket(name, rig_path, emulated, tuple(args)))
    return tuple(out)


def _pattern(st: dict, where: str) -> re.Pattern:
    from rig.station.eol import SERIAL_PATTERN

    text = _string(st, "serial_pattern", "", where)
    if not text:
        return SERIAL_PATTERN
    try:
        return re.compile(text)
    except re.error as exc:
        raise StationFileError(where, "station.serial_pattern", f"{text!r} is not a regular expression: {exc}") from None


def _table(value, where: str, key: str) -> dict:
    if not isinstance(value, dict):
        raise StationFileError(where, key, "expected a table")
    return value


def _no_unknown(table: dict, known: set[str], where: str, section: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise StationFileError(where, f"{section}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(known))})")


def _string(table: dict, key: str, default: str, where: str, section: str = "station") -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise StationFileError(where, f"{section}.{key}", f"{value!r}: expected a string")
    return value
