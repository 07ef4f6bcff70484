"""The Allure side of a run: what a person reads to see what the rig did and what it measured.

* Every rig action and observation is a step. Rather than teaching every driver about Allure,
  the rig hands tests its instruments and the vehicle wrapped in `Instrumented`: each public
  method call becomes a step titled with the call and its result ("pilot.set_state('C')",
  "meter.currents() -> (16.0, 16.0, 16.0)"). Calls made inside other calls nest.
* A polling wait (`clock.wait_until`) is ONE step, "wait until ...", with its outcome; the
  polls inside it (hundreds of `pilot.sense()` calls) are not reported.
* Every measurement is a step whose parameters are its value, unit, limits, the limits'
  sources and resolution (see `measurement_step`, called from `MeasurementLog.check`).
* Requirement IDs of the `req` marker become `requirement` labels, links to the requirement
  catalogue and the Behaviors tree (feature = catalogue group, story = requirement); tests of
  safety requirements get severity blocker or critical (`severity_of`).
* environment.properties names the rig, the unit (model, serial, firmware), seed, defect and
  every instrument's identity.

All of it costs little when Allure is not installed or not active: the wrappers then only
count calls for the timeline (rig/reports/timeline.py), which listens to the same `Journal`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import linecache
import threading
import uuid
from typing import Any, Callable

REQUIREMENT_LINK_TYPE = "requirement"
#: where a requirement link points unless --allure-link-pattern requirement:URL/{} says otherwise:
#: the catalogue page the plugin writes next to the reports (reports/requirements.html)
DEFAULT_REQUIREMENT_URL = "../requirements.html#{}"
RESULT_CHARS = 160  # a step title shows this much of a call's result
#: calls that read the rig's own records (no instrument I/O, nothing the unit did just now):
#: timeline events, but not steps, or a test page drowns in bookkeeping
BOOKKEEPING = frozenset({"history", "mark", "sense_events", "clear_sense_events", "assert_valid", "connected",
                         "url_for", "events", "connection_ids", "subprotocol", "clear_scripts"})




def _allure():
    try:
        import allure  # noqa: F401
        import allure_commons

        return allure_commons
    except ImportError:
        return None


def allure_active() -> bool:
    """True when allure-pytest records this run (it is installed and has a results dir)."""
    commons = _allure()
    return commons is not None and _reporter(commons) is not None


def _reporter(commons):
    """allure-pytest's reporter object, to rename a step once its result is known."""
    for plugin in commons.plugin_manager.get_plugins():
        logger = getattr(plugin, "allure_logger", None)
        if logger is not None and hasattr(logger, "get_item"):
            return logger
    return None


# ---------------------------------------------------------------------- describing values
def describe(value: Any, limit: int = RESULT_CHARS) -> str:
    """A short, readable rendering of an argument or a result for a step title."""
    text = _describe(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(value: Any) -> str:
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if callable(value) and hasattr(value, "__code__"):
        return f"<{predicate_text(value)}>"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (tuple, list)):
        if len(value) > 6:
            return f"[{len(value)} items: {', '.join(_describe(v) for v in value[:3])}, …]"
        inner = ", ".join(_describe(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    special = _SPECIAL.get(type(value).__name__)
    if special is not None:
        return special(value)
    if dataclasses.is_dataclass(value):
        fields = [f for f in dataclasses.fields(value) if f.repr][:8]
        return f"{type(value).__name__}(" + ", ".join(
            f"{f.name}={_describe(getattr(value, f.name))}" for f in fields) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in list(value.items())[:6]) + "}"
    return repr(value)


def _sense(s) -> str:
    parts = [f"{name.upper()}={'live' if v else 'open'}" for name, v in vars(s).items() if v is not None]
    return " ".join(parts)


def _cp(m) -> str:
    if m.pwm and m.duty is not None:
        offered = f", offers {m.offered_current_a:.1f} A" if m.offered_current_a else ""
        return f"state {m.level_state}, PWM {m.frequency_hz:.0f} Hz duty {m.duty * 100:.1f} %{offered}, {m.high_v:+.1f}/{m.low_v:+.1f} V"
    return f"state {m.level_state}, no PWM, {m.high_v:+.1f} V"


def _reading(r) -> str:
    volts = "/".join(f"{v:.1f}" for v in r.voltage_v)
    amps = "/".join(f"{a:.2f}" for a in r.current_a)
    return f"{volts} V, {amps} A, {r.total_power_w:.0f} W, {r.import_kwh:.3f} kWh"


def _led(o) -> str:
    return f"{o.state} ({o.colour} {o.pattern}, confidence {o.confidence:.2f})"


def _message(m) -> str:
    return str(m)


_SPECIAL: dict[str, Callable[[Any], str]] = {
    "ContactSense": _sense,
    "CpMeasurement": _cp,
    "MeterReading": _reading,
    "LedObservation": _led,
    "Message": _message,
}


def call_title(name: str, method: str, args: tuple, kwargs: dict) -> str:
    shown = [describe(a, 60) for a in args] + [f"{k}={describe(v, 60)}" for k, v in kwargs.items()]
    return f"{name}.{method}({', '.join(shown)})"


def predicate_text(predicate: Callable) -> str:
    """What a polled predicate tests, from its source line ("rig.pilot.sense().l1 == live")."""
    code = getattr(predicate, "__code__", None)
    if code is None:
        return getattr(predicate, "__name__", "a condition")
    return _predicate_line(code.co_filename, code.co_firstlineno, code.co_name)


_PREDICATE_CACHE: dict[tuple, str] = {}


def _predicate_line(filename: str, lineno: int, name: str) -> str:
    key = (filename, lineno, name)
    if key not in _PREDICATE_CACHE:
        line = linecache.getline(filename, lineno).strip()
        if name == "<lambda>" and "lambda" in line:
            body = line.split("lambda", 1)[1].split(":", 1)[-1].strip()
            body = _balanced(body)
        else:
            body = f"{name}()"
        _PREDICATE_CACHE[key] = body or "a condition"
    return _PREDICATE_CACHE[key]


def _balanced(text: str) -> str:
    """Cut a lambda body at the first comma or bracket that closes outside it."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                return text[:i].strip()
            depth -= 1
        elif ch == "," and depth == 0:
            return text[:i].strip()
    return text.strip()


def progress_line(reason: str, elapsed: float, total: float, done: bool = False) -> str:
    """One terminal line about a long real-bench wait: what it waits for and what is left."""
    if done:
        return f"  [rig] {reason}: done after {elapsed:.0f} s"
    left = max(0.0, total - elapsed)
    return f"  [rig] {reason}: {elapsed:.0f} s of {total:.0f} s, {left:.0f} s left"


# ---------------------------------------------------------------------- the journal of rig calls
Listener = Callable[[float, str, str, tuple, dict, Any], None]  # (t, name, method, args, kwargs, result)


class Journal:
    """Every call a test makes on the rig, reported as Allure steps and told to listeners.

    One per rig. `steps` is switched on per run when Allure records; the timeline subscribes
    with `listeners`. Calls from other threads (an instrument's reader thread) pass silently.
    """

    def __init__(self, clock):
        self.clock = clock
        self.listeners: list[Listener] = []
        self.busy: dict[str, int] = {}  # instruments in the middle of a call (the timeline leaves them alone)
        self._quiet = 0  # inside a polling wait or the timeline's own sampling: no steps
        self._depth = 0
        self._thread = threading.get_ident()
        self._logger = None
        self._commons = None

    # -- switching Allure on -------------------------------------------------------------------
    def use_allure(self, on: bool) -> None:
        commons = _allure() if on else None
        self._commons = commons
        self._logger = _reporter(commons) if commons is not None else None

    @property
    def steps(self) -> bool:
        return self._logger is not None

    @contextlib.contextmanager
    def quietly(self):
        """Calls made inside are neither steps nor events (polls, the timeline's own readings)."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    # -- one call ------------------------------------------------------------------------------
    def call(self, name: str, method: str, fn: Callable, args: tuple, kwargs: dict):
        if self._quiet or threading.get_ident() != self._thread:
            return self._run_busy(name, fn, args, kwargs)
        if method in BOOKKEEPING:
            return self._run_busy(name, fn, args, kwargs)
        t = self.clock.now()
        step = self._start(call_title(name, method, args, kwargs), {"t": f"{t:.3f} s"})
        self._depth += 1
        try:
            result = self._run_busy(name, fn, args, kwargs)
        except BaseException as exc:
            self._depth -= 1
            self._stop(step, exc)
            raise
        self._depth -= 1
        if result is not None:
            self._retitle(step, f"{call_title(name, method, args, kwargs)} → {describe(result)}")
        self._stop(step, None)
        for listener in self.listeners:
            try:
                listener(t, name, method, args, kwargs, result)
            except Exception:  # a report must never change what the test sees
                pass
        return result

    def _run_busy(self, name: str, fn: Callable, args: tuple, kwargs: dict):
        self.busy[name] = self.busy.get(name, 0) + 1
        try:
            return fn(*args, **kwargs)
        finally:
            self.busy[name] -= 1

    def is_busy(self, name: str) -> bool:
        return self.busy.get(name, 0) > 0

    def step(self, title: str, fn: Callable, *args, **kwargs):
        """`fn(*args, **kwargs)` as one step titled `title` (the rig's own composite actions)."""
        if self._quiet or threading.get_ident() != self._thread:
            return fn(*args, **kwargs)
        step = self._start(title, {"t": f"{self.clock.now():.3f} s"})
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._stop(step, exc)
            raise
        self._stop(step, None)
        return result

    # -- one wait ------------------------------------------------------------------------------
    def wait(self, poll_until: Callable, predicate: Callable, timeout: float, poll: float, reason: str | None):
        """The clock's `wait_observer`: the whole poll loop as one step, its polls unreported."""
        if self._quiet or self._depth or threading.get_ident() != self._thread:
            with self.quietly():
                return poll_until(predicate, timeout, poll, reason)
        what = reason if reason and reason.startswith("wait") else f"wait until {reason or predicate_text(predicate)}"
        start = self.clock.now()
        title = f"{what} (at most {timeout:g} s, polling every {poll * 1000:g} ms)"
        step = self._start(title, {"t": f"{start:.3f} s"})
        try:
            with self.quietly():
                found = poll_until(predicate, timeout, poll, reason)
        except BaseException as exc:
            self._stop(step, exc)
            raise
        if found is None:
            outcome = f"not within {timeout:g} s"
        else:
            outcome = f"after {found - start:.3f} s (at {found:.3f} s)"
        self._retitle(step, f"{what} → {outcome}")
        self._stop(step, None)
        return found

    # -- Allure plumbing -------------------------------------------------------------------
    def _start(self, title: str, params: dict):
        if self._logger is None:
            return None
        step_id = uuid.uuid4().hex
        self._commons.plugin_manager.hook.start_step(uuid=step_id, title=title, params=params)
        return step_id

    def _retitle(self, step_id, title: str) -> None:
        if step_id is None:
            return
        item = self._logger.get_item(step_id)
        if item is not None:
            item.name = title

    def _stop(self, step_id, exc: BaseException | None) -> None:
        if step_id is None:
            return
        tb = exc.__traceback__ if exc is not None else None
        self._commons.plugin_manager.hook.stop_step(
            uuid=step_id, title="", exc_type=type(exc) if exc else None, exc_val=exc, exc_tb=tb)


class Instrumented:
    """A driver (or the vehicle) as tests see it: the same object, its calls journalled.

    Attributes and properties pass straight through (`rig.pilot.state`); public methods become
    steps. `raw(x)` gives the driver itself, for code that must not be reported.
    """

    __slots__ = ("_target", "_name", "_journal")

    def __init__(self, target, name: str, journal: Journal):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_journal", journal)

    def __getattr__(self, attr: str):
        value = getattr(self._target, attr)
        if attr.startswith("_") or not callable(value) or isinstance(value, type):
            return value
        journal, name = self._journal, self._name

        def call(*args, **kwargs):
            return journal.call(name, attr, value, args, kwargs)

        call.__name__ = attr
        call.__doc__ = getattr(value, "__doc__", None)
        return call

    def __setattr__(self, attr: str, value) -> None:
        setattr(self._target, attr, value)

    def __repr__(self) -> str:
        return f"Instrumented({self._target!r})"


def raw(obj):
    """The driver behind an `Instrumented` wrapper (or `obj` itself)."""
    return obj._target if isinstance(obj, Instrumented) else obj


# ---------------------------------------------------------------------- measurements
def measurement_step(m) -> None:
    """A measurement as a step: title with value and verdict, parameters with limits and sources."""
    commons = _allure()
    if commons is None:
        return
    rng = limit_text(m.low, m.high, m.unit)
    value = "nothing observed" if m.value is None else f"{m.value:.6g} {m.unit}"
    verdict = "pass" if m.passed else "FAIL"
    params = {
        "value": value,
        "low limit": _bound(m.low),
        "high limit": _bound(m.high),
        "unit": m.unit,
        "limit source": m.limit_source or "(none given)",
        "resolution": f"{m.resolution:g} {m.unit}" if m.resolution else "(not stated)",
        "verdict": verdict,
    }
    step_id = uuid.uuid4().hex
    hook = commons.plugin_manager.hook
    hook.start_step(uuid=step_id, title=f"measure {m.name} = {value}, limit {rng}: {verdict}", params=params)
    exc = None if m.passed else _OutOfLimits(m.describe())
    hook.stop_step(uuid=step_id, title="", exc_type=type(exc) if exc else None, exc_val=exc, exc_tb=None)


class _OutOfLimits(AssertionError):
    """Marks a measurement step failed (Allure colours AssertionError red: the charger's fault)."""


def limit_text(low, high, unit: str) -> str:
    """"0.5 .. 1 s", "≤ 0.3 s", "≥ 6 A" or "none"."""
    if low is not None and high is not None:
        return f"{low:g} .. {high:g} {unit}"
    if high is not None:
        return f"≤ {high:g} {unit}"
    if low is not None:
        return f"≥ {low:g} {unit}"
    return "none"


def _bound(x) -> str:
    return "none" if x is None else f"{x:g}"
