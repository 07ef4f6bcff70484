"""The requirements catalogue and the limits the spec suite asserts against, as data.

Requirements (rig/data/requirements.toml) ship with the package: they are what the suite
claims to check. Limits (rig/data/limits/<product>.toml) are numbers with their source
and confidence, kept out of test code so a certification engineer can audit them and
override any of them with a file of their own (`--limits PATH`) without touching tests.

Limit file format, one table per limit:

    [cp.contactor_close_max_s]
    value = 3.0
    unit = "s"
    source = "IEC 61851-1:2017 Table A.6 (B2->C2)"
    confidence = "S"        # N normative, S secondary source, V widely quoted, unconfirmed
    note = "optional"

An override file has the same format with only the keys it changes, and only the fields
it changes: a new value without a new source is recorded as the override's.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from rig.core.errors import RigFileError

from rig.data import DEFAULT_LIMITS, REQUIREMENTS_FILE

ID_PATTERN = re.compile(r"^[A-Z]+-\d{2}$")
SOURCE_TAGS = ("MAN", "NET", "STD", "WEB")
CONFIDENCE = {"N": "normative or legal text", "S": "secondary source", "V": "widely quoted, unconfirmed"}


class LimitsFileError(RigFileError):
    """A limits (or requirements) data file is wrong; one line naming the file and the key."""


@dataclass(frozen=True)
class Requirement:
    id: str
    group: str
    text: str
    source: str  # "; "-separated parts, each tagged MAN/NET/STD/WEB
    m1: bool
    limits: tuple[str, ...] = ()
    note: str = ""

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.source.split(";"))


@dataclass(frozen=True)
class Limit:
    key: str
    value: float | int
    unit: str
    source: str
    confidence: str  # "N" | "S" | "V"
    note: str = ""

    def __str__(self) -> str:
        """key = value unit [confidence] source, as `rig limits` prints it."""
        amount = " ".join(filter(None, (f"{self.value:g}", self.unit)))
        return f"{self.key} = {amount} [{self.confidence}] {self.source}"


# --- requirements -----------------------------------------------------------------------------

_REQUIREMENT_FIELDS = {"group": str, "text": str, "source": str, "m1": bool, "limits": list, "note": str}
_REQUIRED_REQUIREMENT_FIELDS = ("group", "text", "source", "m1")


def _requirement(rid: str, table: Any, where: str) -> Requirement:
    if not ID_PATTERN.match(rid):
        raise LimitsFileError(where, rid, "requirement IDs look like ABC-01")
    if not isinstance(table, dict):
        raise LimitsFileError(where, rid, "expected a table")
    for name, value in table.items():
        expected = _REQUIREMENT_FIELDS.get(name)
        if expected is None:
            raise LimitsFileError(where, f"{rid}.{name}", f"unknown field; {_hint(name, list(_REQUIREMENT_FIELDS))}")
        if not isinstance(value, expected) or (expected is list and not all(isinstance(v, str) for v in value)):
            raise LimitsFileError(where, f"{rid}.{name}", f"expected {expected.__name__}, got {value!r}")
    for name in _REQUIRED_REQUIREMENT_FIELDS:
        if name not in table:
            raise LimitsFileError(where, f"{rid}.{name}", "missing")
    for part in (p.strip() for p in table["source"].split(";")):
        if not part.startswith(tuple(f"{tag}:" for tag in SOURCE_TAGS)):
            raise LimitsFileError(where, f"{rid}.source", f"{part!r} does not start with one of {', '.join(SOURCE_TAGS)} and ':'")
    return Requirement(id=rid, limits=tuple(table.get("limits", ())), **{
        k: v for k, v in table.items() if k != "limits"})


def load_requirements() -> dict[str, Requirement]:
    """Every requirement the project knows, by ID, in catalogue order."""
    resource = REQUIREMENTS_FILE
    where = str(resource)
    try:
        data = tomllib.loads(resource.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise LimitsFileError(where, "(file)", f"TOML syntax error: {exc}") from exc
    return {rid: _requirement(rid, table, where) for rid, table in data.items()}


# --- limits -----------------------------------------------------------------------------------

_LIMIT_FIELDS = ("value", "unit", "source", "confidence", "note")


class Limits(dict):
    """Limits by key; a missing key raises a KeyError naming the files it was looked up in."""

    def __init__(self, items: dict[str, Limit], files: Iterable[Path]):
        super().__init__(items)
        self.files = tuple(files)

    def __missing__(self, key: str) -> Limit:
        where = " + ".join(str(f) for f in self.files)
        raise KeyError(f"no limit {key!r} in {where}; {_hint(key, sorted(self))}")


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "known: " + ", ".join(choices) if len(choices) <= 8 else f"{len(choices)} known"


def _limit_tables(table: dict, where: str, prefix: str = "") -> dict[str, dict]:
    """Flatten [a.b.c] tables: a table holding "value" is a limit, any other is a group."""
    found: dict[str, dict] = {}
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        if not isinstance(value, dict):
            raise LimitsFileError(where, key, f"expected a table [{key}] with {', '.join(_LIMIT_FIELDS[:4])}")
        if "value" in value or not any(isinstance(v, dict) for v in value.values()):
            found[key] = value
        else:
            found.update(_limit_tables(value, where, key))
    return found


def _check_fields(key: str, fields: dict, where: str, partial: bool) -> None:
    for name, value in fields.items():
        if name not in _LIMIT_FIELDS:
            raise LimitsFileError(where, f"{key}.{name}", f"unknown field; {_hint(name, list(_LIMIT_FIELDS))}")
        if name == "value" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise LimitsFileError(where, f"{key}.value", f"expected a number, got {value!r}")
        if name != "value" and not isinstance(value, str):
            raise LimitsFileError(where, f"{key}.{name}", f"expected a string, got {value!r}")
        if name == "confidence" and value not in CONFIDENCE:
            raise LimitsFileError(where, f"{key}.confidence", f"{value!r} is not one of N, S, V")
    missing = [] if partial else [n for n in _LIMIT_FIELDS[:4] if n not in fields]
    if missing:
        raise LimitsFileError(where, f"{key}.{missing[0]}", "missing")


def _read_limit_file(path: Path) -> dict[str, dict]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LimitsFileError(str(path), "(file)", "no such limits file") from None
    except tomllib.TOMLDecodeError as exc:
        raise LimitsFileError(str(path), "(file)", f"TOML syntax error: {exc}") from exc
    return _limit_tables(data, str(path))


def _apply_override(base: Limit, fields: dict, path: Path) -> Limit:
    changed = replace(base, **fields)
    if "value" in fields and "source" not in fields:
        changed = replace(changed, source=f"override {path.name} (was {base.value:g}: {base.source})")
    return changed


def load_limits(path: str | os.PathLike | None = None,
                overrides: Iterable[str | os.PathLike] = ()) -> Limits:
    """The limits file (default: the project's rig/data/limits/plugstream.toml), with
    each override file merged over it field by field. An override may only change a
    limit the base file has: a misspelt key must not silently leave the limit as it was."""
    base_path = Path(path) if path is not None else DEFAULT_LIMITS
    limits: dict[str, Limit] = {}
    for key, fields in _read_limit_file(base_path).items():
        _check_fields(key, fields, str(base_path), partial=False)
        limits[key] = Limit(key=key, **fields)
    files = [base_path]
    for override in map(Path, overrides):
        for key, fields in _read_limit_file(override).items():
            if key not in limits:
                raise LimitsFileError(str(override), key, f"not a limit of {base_path.name}; {_hint(key, sorted(limits))}")
            _check_fields(key, fields, str(override), partial=True)
            limits[key] = _apply_override(limits[key], fields, override)
        files.append(override)
    return Limits(limits, files)


@lru_cache(maxsize=1)
def _default_limits() -> Limits:
    return load_limits()


def limit(key: str) -> Limit:
    """One limit from the project's default limits file (the plugin applies --limits itself)."""
    return _default_limits()[key]
