"""One timeline per test: what the bench and the unit did, on the rig's clock.

Channels: the vehicle state the pilot box set and the CP state and PWM duty it measured, the
contactor as the pilot box's contact sense saw it (L1-L3, N, PE), per-phase voltage and current
from the reference meter, the LED as the test observed it, injected faults (injector current,
supply excursions, CP short, diode removed), and every OCPP message.

Where the data comes from, the same on a real bench as on the emulated one:

* events that exist anyway: contact-sense edges (the pilot box timestamps them), the central
  system's message history, and every call the test makes on the rig (the `Journal` of
  rig/bench/journal.py): actions (pilot.set_state, injector.set_current, source.excursion ...)
  and the test's own observations (led.observe, meter.snapshot, pilot.measure_cp);
* samples the recorder takes through the drivers, from the test thread: the clock hands the
  recorder every sleep (`Clock.sampler`), and the recorder cuts it where a sample is due, so
  sampling never adds time to a test. A sample reads the meter, the CP (a 3.5 ms edge capture
  taken out of the sleep) and the injector.

Sampling adapts (`schedules()`): CP and injector 0.25 s after a contactor edge or an action on
the pilot, vehicle, injector or supply, the meter 1 s after a contactor edge or an action on the
load, the supply or the vehicle (never twice within 5 s: a burst of events is one reading); then
at growing intervals while nothing happens (CP 30, 60, 120, 300 s; meter 60, 120, 300 s),
and past `MAX_SAMPLES` per test the intervals double. A 12-hour soak costs a few hundred meter
reads, not 43,200; a meter sample is one Modbus request (9 ms on the emulated RTU line, ~200 ms
at 9600 baud on a real SDM630), a CP sample a 3.5 ms edge capture.

Output: a CSV (long format: one row per value or event) and a PNG of stacked panels sharing the
time axis, written to <reports>/timelines/ and attached to the Allure result.
"""

from __future__ import annotations

import csv
import io
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rig.bench.journal import call_title, raw

MAX_SAMPLES = 150  # per schedule and test; past it the intervals double
CP_WINDOW_S = 0.0035  # three and a half PWM periods at 1 kHz: enough for a duty reading

CSV_FIELDS = ("t_s", "channel", "value", "text")
PHASE_PINS = ("l1", "l2", "l3", "n", "pe")

#: method names that only look (everything else a test calls on the rig is an action)
_OBSERVING = re.compile(
    r"^(is_|measure|sense|snapshot|currents|voltages|energy|level|setpoint|observe|sample|history|mark"
    r"|connected|wait|info|url_for|events|subprotocol|connection_ids|transient_running|assert_valid|query)")


@dataclass
class Schedule:
    """When one group of channels is next read: soon after an event, then ever more rarely."""

    after_event_s: float
    quiet_s: tuple[float, ...]
    min_gap_s: float = 0.0  # never two readings closer than this (a burst of events is one reading)
    due: float = 0.0
    index: int = 0
    taken: int = 0
    last: float = -math.inf

    def soon(self, t: float) -> None:
        self.index = 0
        self.due = min(self.due, max(t + self.after_event_s, self.last + self.min_gap_s))

    def took(self, t: float) -> None:
        self.taken += 1
        self.last = t
        interval = self.quiet_s[min(self.index, len(self.quiet_s) - 1)] * 2 ** (self.taken // MAX_SAMPLES)
        self.index += 1
        self.due = t + interval


def schedules() -> dict[str, Schedule]:
    return {
        # the meter (one Modbus request, ~9 ms here, ~200 ms on a 9600 baud line) changes only when
        # the contactor, the load or the supply does: read 1 s after those (an SDM630 updates about
        # once a second) but not twice within 5 s, otherwise every 60 s growing to 5 min
        "meter": Schedule(1.0, (60.0, 120.0, 300.0), min_gap_s=5.0),
        # CP duty (a 3.5 ms edge capture) and the injector: 0.25 s after the vehicle or the
        # contactor changed, otherwise every 30 s growing to 5 min; the test's own CP readings add
        "cp": Schedule(0.25, (30.0, 60.0, 120.0, 300.0), min_gap_s=1.0),
    }


METER_MOVERS = ("load", "source", "ev")  # actions on these change what the meter reads
CP_MOVERS = ("pilot", "ev", "injector", "source")  # ... and these what the CP shows (or the injector)


@dataclass
class Row:
    t: float
    channel: str
    value: float | str | None = None
    text: str = ""


@dataclass
class Timeline:
    test: str
    start: float
    end: float
    rows: list[Row] = field(default_factory=list)

    def csv_text(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CSV_FIELDS)
        for r in sorted(self.rows, key=lambda r: r.t):
            value = f"{r.value:.6g}" if isinstance(r.value, float) else ("" if r.value is None else r.value)
            w.writerow((f"{r.t:.6f}", r.channel, value, r.text))
        return out.getvalue()

    def channel(self, name: str) -> list[Row]:
        return sorted((r for r in self.rows if r.channel == name), key=lambda r: r.t)

    def channels_like(self, prefix: str) -> list[str]:
        return sorted({r.channel for r in self.rows if r.channel.startswith(prefix)})


class TimelineRecorder:
    """Records one test. `start()` attaches it to the rig; `finish()` detaches and returns the data."""

    def __init__(self, rig, test: str):
        self.rig = rig
        self.clock = rig.clock
        self.journal = rig.journal
        self.test = test
        self.rows: list[Row] = []
        self.samples = 0
        self._lock = threading.Lock()
        self._thread = threading.get_ident()
        self._sampling = False
        self.schedules = schedules()
        self._broken: dict[str, str] = {}  # instrument -> why sampling it stopped
        self._unwatch = None
        self._start = 0.0

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> "TimelineRecorder":
        self._start = self.clock.now()
        for schedule in self.schedules.values():
            schedule.due = self._start
        pilot = raw(self.rig.pilot)
        sense = pilot.sense()
        for pin in PHASE_PINS:
            value = getattr(sense, pin)
            if value is not None:
                self._add(self._start, f"contact.{pin.upper()}", float(value))
        self._add(self._start, "vehicle.state", pilot.state)
        self._unwatch = pilot.watch_sense(self._on_edge)
        self.journal.listeners.append(self._on_call)
        self.clock.sampler = self
        return self

    def finish(self) -> Timeline:
        self.clock.sampler = None
        if self._on_call in self.journal.listeners:
            self.journal.listeners.remove(self._on_call)
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        end = self.clock.now()
        self._add_ocpp(self._start, end)
        for instrument, why in self._broken.items():
            self._add(end, "rig.note", None, f"{instrument}: sampling stopped: {why}")
        return Timeline(self.test, self._start, end, list(self.rows))

    def _add(self, t: float, channel: str, value=None, text: str = "") -> None:
        with self._lock:
            self.rows.append(Row(t, channel, value, text))

    # -- events -----------------------------------------------------------------------------
    def _on_edge(self, t: float, pin: str, value: bool) -> None:
        self._add(t, f"contact.{pin.removeprefix('sense_').upper()}", float(bool(value)))
        for schedule in self.schedules.values():
            schedule.soon(t)

    def _on_call(self, t, name, method, args, kwargs, result) -> None:
        now = self.clock.now()
        if not _OBSERVING.match(method):
            self._add(t, "action", None, call_title(name, method, args, kwargs))
            self._action_channels(t, now, name, method, _Args(args, kwargs))
            if name in CP_MOVERS:
                self.schedules["cp"].soon(now)
            if name in METER_MOVERS:
                self.schedules["meter"].soon(now)
        self._observation(now, name, method, args, result)

    def _action_channels(self, t: float, now: float, name: str, method: str, args: "_Args") -> None:
        """Actions that set a channel of the picture: vehicle state, injected faults."""
        if name == "pilot" and method == "set_state":
            self._add(now, "vehicle.state", str(args.get(0, "letter")).upper())
        elif name == "pilot" and method == "safe":
            self._add(now, "vehicle.state", "A")
            self._add(now, "fault.diode_removed", 0.0)
        elif name == "pilot" and method == "set_diode":
            self._add(now, "fault.diode_removed", 0.0 if args.get(0, "present") else 1.0)
        elif name == "ev" and method in ("plug_in", "stop_requesting"):
            self._add(now, "vehicle.state", "B")
        elif name == "ev" and method == "request_power":
            self._add(now, "vehicle.state", "C")
        elif name == "ev" and method == "unplug":
            self._add(now, "vehicle.state", "A")
        elif name == "injector" and method == "set_current":
            self._add(now, "fault.injector_mA", float(args.get(0, "amps")) * 1000)
        elif name == "injector" and method == "off":
            self._add(now, "fault.injector_mA", 0.0)
        elif name == "injector" and method == "ramp":
            rate, stop = float(args.get(0, "rate_a_per_s")), float(args.get(1, "stop_a"))
            self._add(t, "fault.injector_ramp", None, f"ramp {rate:g} A/s to {stop * 1000:g} mA")
        elif name == "source" and method in ("excursion", "set_voltage"):
            volts = float(args.get(0, "volts"))
            seconds = float(args.get(1, "seconds")) if method == "excursion" else None
            self._add(t, "fault.supply_V", volts, f"{seconds:g} s" if seconds else "")
            if seconds:
                self._add(t + seconds, "fault.supply_V", None, "back to nominal")
        elif name == "source" and method in ("nominal", "power_on"):
            self._add(now, "fault.supply_V", None, "nominal")
        elif name == "source" and method == "power_off":
            self._add(now, "fault.supply_V", 0.0, "power off")

    def _observation(self, t: float, name: str, method: str, args: tuple, result) -> None:
        """What the test itself saw goes into the picture too (and costs nothing more)."""
        kind = type(result).__name__
        if kind == "MeterReading":  # the test's own reading counts as a sample
            self._meter_rows(result.timestamp_s, result)
            self.schedules["meter"].took(t)
        elif kind == "CpMeasurement":
            self._cp_rows(t, result)
            self.schedules["cp"].took(t)
        elif kind == "LedObservation":
            self._add(t - result.duration_s, "led", result.state, f"{result.colour} {result.pattern}")
            self._add(t, "led.end", result.state)

    # -- sampling ---------------------------------------------------------------------------
    def sleep(self, clock, seconds: float, reason, plain_sleep) -> None:
        """The clock's sleep, cut where samples are due (the total is exactly `seconds`)."""
        if self._sampling or threading.get_ident() != self._thread or seconds <= 0:
            plain_sleep(seconds, reason)
            return
        exact = getattr(clock, "now_us", None)
        scale = 1_000_000 if exact else 1
        now = exact if exact else clock.now
        end = now() + (round(seconds * scale) if exact else seconds)
        while True:
            next_due = min(s.due for s in self.schedules.values())
            due = round(next_due * scale) if exact else next_due
            if due >= end:
                break
            if due > now():
                plain_sleep((due - now()) / scale, reason)
            if not self._sample((end - now()) / scale):
                break  # nothing was due after all (rounding): never spin, sleep the rest
        left = end - now()
        if left > 0:
            plain_sleep(left / scale, reason)

    def _sample(self, budget_s: float) -> bool:
        """Read what is due; False if nothing was. A CP capture needs `CP_WINDOW_S` of the
        sleep; without it, CP waits for the next sleep."""
        t = self.clock.now()
        reached = t + self.clock.resolution_s  # a due time within one clock tick of now is now
        meter, cp = self.schedules["meter"], self.schedules["cp"]
        if meter.due > reached and cp.due > reached:
            return False
        self._sampling = True
        try:
            with self.journal.quietly():
                if meter.due <= reached:
                    self._read("meter", lambda m: self._meter_rows(t, m.snapshot()))
                    meter.took(t)
                if cp.due <= reached:
                    self._read("injector", lambda i: self._add(t, "injector.level_mA", i.level() * 1000))
                    if budget_s >= CP_WINDOW_S:
                        self._read("pilot", lambda p: self._duty_row(t, p))
                        cp.took(t)
                    else:
                        cp.due = t + max(budget_s, self.clock.resolution_s)  # next sleep long enough
        finally:
            self._sampling = False
        self.samples += 1
        return True

    def _read(self, instrument: str, fn) -> None:
        """One instrument's sample; a broken instrument is left alone (the test will meet it)."""
        if instrument in self._broken or self.journal.is_busy(instrument):
            return
        try:
            fn(raw(getattr(self.rig, instrument)))
        except Exception as exc:  # the timeline must never decide a verdict
            self._broken[instrument] = str(exc)

    def _meter_rows(self, t: float, reading) -> None:
        for i, v in enumerate(reading.voltage_v):
            self._add(t, f"meter.V{i + 1}", float(v))
        for i, a in enumerate(reading.current_a):
            self._add(t, f"meter.I{i + 1}", float(a))

    def _duty_row(self, t: float, pilot) -> None:
        """The PWM duty from CP edges alone. `measure_cp` also reads both CP peak levels from the
        ADC, which on the emulated bench is bit-banged SPI (~10 ms a level); the timeline needs
        only the duty (the vehicle state it knows from the relays). Uses the driver's edge
        capture; a driver without one is asked for a whole `measure_cp`."""
        capture, decode = getattr(pilot, "_capture_edges", None), getattr(pilot, "_pwm_from_edges", None)
        if capture is None or decode is None:
            self._cp_rows(t, pilot.measure_cp(CP_WINDOW_S))
            return
        _, duty = decode(capture(CP_WINDOW_S))
        self._add(t, "cp.duty_pct", None if duty is None else duty * 100)

    def _cp_rows(self, t: float, m) -> None:
        self._add(t, "cp.state", m.level_state or "?")
        self._add(t, "cp.duty_pct", None if m.duty is None else m.duty * 100)

    # -- OCPP -------------------------------------------------------------------------------
    def _add_ocpp(self, start: float, end: float) -> None:
        central = raw(self.rig.central)
        for m in central.history():
            if start <= m.time <= end:
                arrow = "unit→CS" if m.direction == "in" else "CS→unit"
                self._add(m.time, "ocpp", m.action or "?", f"{arrow} {m.message_type} {_payload_gist(m)}")


class _Args:
    """A call's arguments by position or by name, whichever the test used."""

    def __init__(self, args: tuple, kwargs: dict):
        self.args, self.kwargs = args, kwargs

    def get(self, index: int, name: str):
        return self.args[index] if len(self.args) > index else self.kwargs[name]


def _payload_gist(m) -> str:
    p = m.payload if isinstance(m.payload, dict) else {}
    keys = ("status", "errorCode", "connectorId", "transactionId", "idTag", "currentTime", "firmwareVersion")
    gist = " ".join(f"{k}={p[k]}" for k in keys if k in p)
    if m.message_type == "CallError":
        gist = f"{m.error_code} {m.error_description or ''}".strip()
    return gist if len(gist) < 120 else gist[:119] + "…"


# ---------------------------------------------------------------------- files
def safe_name(nodeid: str) -> str:
    """A file name for a test: rig/spec/test_x.py::test_y[6mA] -> test_x__test_y-6mA."""
    path, _, rest = nodeid.partition("::")
    stem = Path(path).stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{stem}__{rest.replace('::', '__')}").strip("-")
    return name[:150]


def write_files(timeline: Timeline, directory: Path, png: bytes | None) -> tuple[Path, Path | None]:
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / safe_name(timeline.test)
    csv_path = base.with_suffix(".csv")
    csv_path.write_text(timeline.csv_text(), encoding="utf-8")
    png_path = None
    if png is not None:
        png_path = base.with_suffix(".png")
        png_path.write_bytes(png)
    return csv_path, png_path
