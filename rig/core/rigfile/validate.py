"""Checking a rig file: parse, unknown keys, types and ranges, cross-key rules (pins, ADC span,
meter transport, bench kind), the product profile; `validate_rigfile` collects every problem,
`load_rigfile` raises the first."""

from __future__ import annotations

import copy
import difflib
import os
import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from rig.core.errors import RigFileError

from rig.data import EMULATED, EMULATED_RIG, PROFILES_DIR
from rig.core.rigfile.schema import (OPTIONAL_EVERYWHERE, OPTIONAL_ON_REAL, ADC_BITS, ADC_CHANNELS, ADC_SPAN_V, AUTO, CP_SWING_V, EMULATED_REPLACES, KEYS, Key, NUMBER, SCHEMA, SECTIONS, STRING, _children, _is_int, show)
from rig.core.rigfile.typed import (RigFile, SECTION_CLASSES)

# --- validation -------------------------------------------------------------------------------

class _Problems:
    """Collects one-line problems; remembers which keys are bad so later checks skip them."""

    def __init__(self, path: Path):
        self.path = path
        self.errors: list[RigFileError] = []
        self.bad: set[str] = set()
        # keys an "unknown key; did you mean ..." already points at: their absence is the
        # same mistake, so it is not reported a second time
        self.explained: set[str] = set()

    def add(self, key: str, problem: str) -> None:
        self.errors.append(RigFileError(str(self.path), key, _one_line(problem)))
        self.bad.add(key)

    def ok(self, *keys: str) -> bool:
        return not any(k in self.bad for k in keys)

    def missing(self, key: str, problem: str) -> None:
        if key in self.explained:
            self.bad.add(key)
        else:
            self.add(key, problem)


def _closest(word: str, choices: list[str]) -> str | None:
    """The known name `word` was probably meant to be (case slips first, then difflib)."""
    same_case = [c for c in choices if c.casefold() == word.casefold()]
    close = same_case or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _suggest(word: str, choices: list[str]) -> str:
    best = _closest(word, choices)
    return f'did you mean "{best}"?' if best else "known: " + ", ".join(choices)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _parse(path: Path, problems: _Problems) -> dict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add("(file)", "no such file")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.add("(file)", f"cannot read: {exc}")
        return None
    if text.startswith("\ufeff"):
        problems.add("(file)", "starts with a byte-order mark (U+FEFF), which TOML does not allow: "
                               "save it as UTF-8 without BOM")
        return None
    if "\x00" in text:
        problems.add("(file)", "contains NUL bytes: not a text file (is it the right file?)")
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        reason = re.sub(r"\s*\(at line .*\)$", "", message) or "invalid TOML"
        key = f"line {where.group(1)}" if where else "(file)"
        column = f" (column {where.group(2)})" if where else ""
        problems.add(key, f"TOML syntax error: {reason}{column}")
        return None


def _check_unknown(table: dict, name: str, problems: _Problems) -> None:
    """Flag every key the schema does not know, suggesting the closest known one."""
    allowed = _children(name)
    for key, value in table.items():
        dotted = f"{name}.{key}" if name else key
        if key not in allowed:
            what = "unknown key" if name else "unknown section"
            problems.add(dotted, f"{what}; {_suggest(key, allowed)}")
            best = _closest(key, allowed)
            if best is not None:
                problems.explained.add(f"{name}.{best}" if name else best)
        elif dotted in SECTIONS and isinstance(value, dict):
            _check_unknown(value, dotted, problems)


def _fill_sections(data: dict, problems: _Problems) -> dict:
    """Check presence and types of every key; return the tables with defaults filled in."""
    filled: dict = {}
    for section in SECTIONS:
        parent_name, _, leaf = section.rpartition(".")
        if parent_name and not problems.ok(parent_name):
            problems.bad.add(section)
            continue
        parent = _walk(data, parent_name)
        source = parent.get(leaf) if parent is not None else None
        if source is None and section in OPTIONAL_EVERYWHERE:
            source = {}  # every key has its default
        if source is None:
            if not (section in OPTIONAL_ON_REAL and (data.get("bench") or {}).get("kind") == "real"):
                problems.missing(section, f"missing section [{section}]")
            continue
        if not isinstance(source, dict):
            problems.add(section, f"expected a table [{section}], got {show(source)}")
            continue
        target = _walk(filled, parent_name).setdefault(leaf, {})
        for key in (k for k in SCHEMA if k.section == section):
            value = _check_key(key, source, problems)
            if value is not None:
                target[key.short] = value
    return filled


def _walk(table: dict, dotted: str) -> dict | None:
    for part in filter(None, dotted.split(".")):
        table = table.get(part) if isinstance(table, dict) else None
    return table if isinstance(table, dict) else None


def _check_key(key: Key, table: dict, problems: _Problems) -> Any:
    """The key's value (default if absent), or None after recording a problem."""
    if key.short not in table:
        if key.required:
            problems.missing(key.name, f"missing required key ({key.doc})")
            return None
        return key.default
    value = table[key.short]
    if value == AUTO and isinstance(value, str):
        if key.auto:
            return value
        if key.kind is STRING:
            problems.add(key.name, '"auto" is not accepted here; give a value')
            return None
    if not key.kind.accepts(value):
        problems.add(key.name, f"expected {key.kind.label}, got {show(value)}")
        return None
    if key.allowed and value not in key.allowed:
        choices = [str(a) for a in key.allowed]
        best = _closest(value, choices) if isinstance(value, str) else None
        hint = f'; did you mean "{best}"?' if best else ""
        problems.add(key.name, f"{show(value)} is not one of {', '.join(choices)}{hint}")
        return None
    problem = key.check(value) if key.check else None
    if problem:
        problems.add(key.name, problem)
        return None
    return float(value) if key.kind is NUMBER else value


def _check_bench_kind(filled: dict, problems: _Problems) -> None:
    """ "auto" and mock pins belong to the emulated bench; a real bench names real things."""
    kind = (filled.get("bench") or {}).get("kind")
    if kind is None or not problems.ok("bench.kind"):
        return
    real = kind == "real"
    for key in SCHEMA:
        section = _walk(filled, key.section)
        if real and key.auto == "emulated" and section and section.get(key.short) == AUTO:
            problems.add(key.name, '"auto" is only for the emulated bench; give the real address')
    for name in EMULATED_REPLACES if not real else ():
        section = _walk(filled, KEYS[name].section)
        value = section.get(KEYS[name].short) if section else None
        if value not in (None, AUTO) and problems.ok(name):
            problems.add(name, f'the emulated bench serves this instrument at an address of its own; write "auto" '
                               f"(a fixed {show(value)} would be silently replaced)")
    meter = filled.get("meter", {})
    if not real and meter.get("transport") == "rtu" and isinstance(meter.get("port"), str) and meter["port"] != AUTO:
        problems.add("meter.port", 'the emulated bench serves the RTU meter on a pty of its own; write "auto" '
                                   f"(a fixed {show(meter['port'])} would be silently replaced)")
    pilot = filled.get("pilot", {})
    if problems.ok("pilot", "pilot.pin_factory") and "pin_factory" in pilot:
        factory = pilot["pin_factory"]
        if real and factory == "mock":
            problems.add("pilot.pin_factory",
                         '"mock" is only for the emulated bench; use pigpio, lgpio or rpigpio')
        elif not real and factory != "mock":
            problems.add("pilot.pin_factory",
                         f'the emulated bench drives gpiozero mock pins; use "mock", not {show(factory)}')


def _check_pins(filled: dict, problems: _Problems) -> None:
    pins = _walk(filled, "pilot.pins") or {}
    used: dict[int, str] = {}
    for name, pin in pins.items():
        key = f"pilot.pins.{name}"
        if pin in used:
            problems.add(key, f"BCM {pin} is already used by {used[pin]}")
        else:
            used[pin] = key


def _check_adc(filled: dict, problems: _Problems) -> None:
    adc = _walk(filled, "pilot.adc") or {}
    if "chip" not in adc:
        return
    channels = ADC_CHANNELS[adc["chip"]]
    for name in ("cp_high_channel", "cp_low_channel"):
        if name in adc and adc[name] >= channels:
            problems.add(f"pilot.adc.{name}",
                         f"{adc[name]} is out of range for {adc['chip']} (channels 0-{channels - 1})")
    if adc.get("cp_high_channel") is not None and adc.get("cp_high_channel") == adc.get("cp_low_channel"):
        problems.add("pilot.adc.cp_low_channel",
                     f"channel {adc['cp_low_channel']} is already pilot.adc.cp_high_channel")
    _check_adc_span(adc, problems)


def _check_adc_span(adc: dict, problems: _Problems) -> None:
    """The ADC's volts-per-count and offset must place the CP's +-12 V inside the ADC's range,
    with a span a real level shifter gives (a scale ten times off is caught here)."""
    if not all(k in adc for k in ("chip", "volts_per_count", "offset_volts")):
        return
    bits = ADC_BITS[adc["chip"][:5]]
    span = adc["volts_per_count"] * 2**bits
    lo, hi = ADC_SPAN_V
    if not lo <= span <= hi:
        problems.add("pilot.adc.volts_per_count",
                     f"{show(adc['volts_per_count'])} V/count gives a {span:.4g} V span over {bits} bits; "
                     f"the CP's +-{CP_SWING_V:g} V needs {lo:g}-{hi:g} V")
        return
    bottom, top = adc["offset_volts"], adc["offset_volts"] + span
    if bottom > -CP_SWING_V or top < CP_SWING_V:
        problems.add("pilot.adc.offset_volts",
                     f"{show(adc['offset_volts'])} V puts the ADC's range at {bottom:.4g}..{top:.4g} V, "
                     f"which does not cover the CP's -{CP_SWING_V:g}..+{CP_SWING_V:g} V")


def _check_meter(filled: dict, problems: _Problems) -> None:
    meter = filled.get("meter", {})
    if "transport" not in meter or "port" not in meter or meter["port"] == AUTO:
        return
    port = meter["port"]
    if meter["transport"] == "rtu" and not isinstance(port, str):
        problems.add("meter.port", f'transport "rtu" needs a serial device path, got {show(port)}')
    elif meter["transport"] == "rtu" and not port.strip():
        problems.add("meter.port", "must not be empty")
    elif meter["transport"] == "tcp" and not _is_int(port):
        problems.add("meter.port", f'transport "tcp" needs a TCP port number, got {show(port)}')
    elif meter["transport"] == "tcp" and not 1 <= port <= 65535:
        problems.add("meter.port", f"{port} is out of range 1-65535 (TCP ports)")
    if meter["transport"] == "tcp" and not meter.get("host", "x").strip():
        problems.add("meter.host", 'transport "tcp" needs the gateway\'s host')


# --- the product profile ----------------------------------------------------------------------

def _profile_candidates(profile: str, rig_dir: Path | None) -> list[Path]:
    """Where a profile may live: beside the rig file's ../profiles/, then the project's."""
    if profile.endswith(".toml") or "/" in profile:
        base = rig_dir or Path.cwd()
        return [base / profile]
    name = f"{profile}.toml"
    places = [rig_dir.parent / "profiles" / name] if rig_dir else []
    places.append(PROFILES_DIR / name)
    return list(dict.fromkeys(p.resolve() for p in places))


def _known_profiles(candidates: list[Path]) -> list[str]:
    return sorted({p.stem for c in candidates if c.parent.is_dir() for p in c.parent.glob("*.toml")})


def _read_profile(path: Path) -> dict:
    with path.open("rb") as f:
        profile = tomllib.load(f)
    if not isinstance(profile.get("models"), dict) or not profile["models"]:
        raise ValueError("has no [models.<model>] tables")
    return profile


def _check_profile(filled: dict, rig_dir: Path, problems: _Problems) -> Path | None:
    """Resolve product.profile and check product.model against it; the profile's path or None."""
    product = filled.get("product", {})
    if "profile" not in product:
        return None
    candidates = _profile_candidates(product["profile"], rig_dir)
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        known = _known_profiles(candidates)
        hint = _suggest(product["profile"], known) if known else "no profiles found"
        looked = ", ".join(str(c) for c in candidates)
        problems.add("product.profile", f"no profile {show(product['profile'])} (looked in {looked}); {hint}")
        return None
    try:
        models = _read_profile(path)["models"]
    except (tomllib.TOMLDecodeError, ValueError, OSError) as exc:
        problems.add("product.profile", f"profile {path} is unusable: {exc}")
        return None
    if "model" in product and product["model"] not in models:
        problems.add("product.model", _unknown_model(product["model"], product["profile"], models))
    return path


def _unknown_model(model: str, profile: str, models: dict) -> str:
    return (f"{show(model)} is not a model of profile {show(profile)}; "
            f"{_suggest(model, sorted(models))}")


# --- public API -------------------------------------------------------------------------------

def validate_rigfile(path: str | os.PathLike) -> tuple[RigFile | None, list[RigFileError]]:
    """Check a rig file; every problem found, and the RigFile when there are none."""
    path = Path(path)
    problems = _Problems(path)
    data = _parse(path, problems)
    if data is None:
        return None, problems.errors
    if not data:
        problems.add("(file)", "is empty: a rig file names the bench and every instrument "
                               "(`rig schema`; rig/data/rigs/emulated.toml is an example)")
        return None, problems.errors
    _check_unknown(data, "", problems)
    filled = _fill_sections(data, problems)
    _check_bench_kind(filled, problems)
    _check_pins(filled, problems)
    _check_adc(filled, problems)
    _check_meter(filled, problems)
    profile_path = _check_profile(filled, path.resolve().parent, problems)
    if problems.errors:
        return None, problems.errors
    return _build(path, filled, profile_path), []


def resolve_rig_path(option: str | os.PathLike | None) -> Path:
    """The rig file an option names: none or "emulated" is the shipped emulated bench; anything
    else is a path (relative to the current directory, as pytest reads paths)."""
    if option is None or str(option) in ("", EMULATED):
        return EMULATED_RIG
    return Path(option)


def load_rigfile(path: str | os.PathLike) -> RigFile:
    """The validated rig file; the first problem is raised as a one-line RigFileError."""
    rig, errors = validate_rigfile(path)
    if errors:
        raise errors[0]
    return rig


def _build_section(section: str, table: dict) -> Any:
    kwargs = {}
    for name, value in table.items():
        child = f"{section}.{name}"
        if child in SECTION_CLASSES:
            kwargs[name] = _build_section(child, value)
        else:
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    return SECTION_CLASSES[section](**kwargs)


def _build(path: Path, filled: dict, profile_path: Path) -> RigFile:
    top = {name: _build_section(name, filled[name]) if name in filled else None
           for name in SECTIONS if "." not in name}
    return RigFile(path=path, profile_path=profile_path, data=filled, **top)


def load_profile(rig_or_name: RigFile | str, model: str | None = None) -> dict:
    """The product profile for one model: every table of the profile file, with [product]
    merged with the selected [models.<model>] table.

    The merged product is both `profile["product"]` and spread at the top level, so tests
    read `profile["phases"]` and `profile["ocpp"]["path_prefix"]` alike. Given a RigFile,
    the model is the rig file's product.model (or `model`), and the merged product also
    carries "model" and the unit's "serial". Given a profile name (or a path ending in
    .toml) without a model, the profile file is returned as it is.
    """
    if isinstance(rig_or_name, RigFile):
        path, serial = rig_or_name.profile_path, rig_or_name.product.serial
        name, model = rig_or_name.product.profile, model or rig_or_name.product.model
    else:
        name, serial = rig_or_name, None
        candidates = _profile_candidates(name, None)
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"no product profile {name!r} (looked in {candidates[0]})")
    profile = _read_profile(path)
    if model is None:
        return profile
    models = profile["models"]
    if model not in models:
        raise KeyError(_unknown_model(model, name, models))
    product = {**profile.get("product", {}), **models[model], "model": model}
    if serial is not None:
        product["serial"] = serial
    clash = sorted(set(product) & set(profile) - {"product"})
    if clash:
        raise ValueError(f"profile {path}: [models.{model}] key {clash[0]!r} is also a table name")
    # a [models.X] key that is also a [safety] key sets it for that model (the -E variant keeps PE)
    safety = {**profile.get("safety", {}), **{k: v for k, v in product.items() if k in profile.get("safety", {})}}
    return {**profile, **product, "product": product, "safety": safety}


def with_serial(rig: RigFile, serial: str) -> RigFile:
    """A copy of `rig` whose emulated unit reports `serial` (the --sim-serial option)."""
    data = copy.deepcopy(rig.data)
    data["product"]["serial"] = serial
    return replace(rig, product=replace(rig.product, serial=serial), data=data)


def with_model(rig: RigFile, model: str) -> RigFile:
    """A copy of `rig` testing another model of the same profile (the --sim-model option)."""
    models = _read_profile(rig.profile_path)["models"]
    if model not in models:
        raise RigFileError(str(rig.path), "product.model", _unknown_model(model, rig.product.profile, models))
    data = copy.deepcopy(rig.data)
    data["product"]["model"] = model
    return replace(rig, product=replace(rig.product, model=model), data=data)
