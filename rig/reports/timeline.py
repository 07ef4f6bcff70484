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

from rig.bench.journal import call_title, describe, raw

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


# ---------------------------------------------------------------------- the picture
VEHICLE_COLOURS = {"A": "#e6e6e6", "B": "#fff1b8", "C": "#c9f2c2", "D": "#c6dcff", "E": "#ffc9c9"}
LED_COLOURS = {
    "blue": "#2f6fdf", "green": "#2ca02c", "white": "#d9d9d9", "red": "#d62728", "orange": "#ff8c1a",
    "purple": "#8e44ad", "rainbow": "#ff66cc", "off": "#333333", "unknown": "#aaaaaa",
}
PHASE_COLOURS = ("#8c564b", "#222222", "#7f7f7f")  # L1 brown, L2 black, L3 grey (IEC 60446)

_figure_lock = threading.Lock()
_figure = None


def render_png(timeline: Timeline) -> bytes:
    """The timeline as stacked panels sharing the time axis (matplotlib, Agg, one reused figure)."""
    global _figure
    with _figure_lock:
        if _figure is None:
            _figure = _new_figure()
        fig, axes = _figure
        for ax in axes:
            _forget_artists(ax)
        _draw(timeline, fig, axes)
        out = io.BytesIO()
        fig.canvas.print_png(out, pil_kwargs={"compress_level": 1})  # zlib level 1: a third of the encode time
        return out.getvalue()


def _forget_artists(ax) -> None:
    """Empty a panel but keep its axes and ticks: `ax.clear()` rebuilds the ticks, which costs
    most of a render."""
    for artist in [*ax.lines, *ax.patches, *ax.texts, *ax.collections]:
        artist.remove()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    ax.relim()
    ax.set_autoscaley_on(True)


def _new_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 9.2), dpi=80)
    FigureCanvasAgg(fig)
    heights = (1.0, 1.0, 1.4, 1.4, 1.0, 0.45, 1.5)
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights, "hspace": 0.12})
    fig.subplots_adjust(left=0.085, right=0.86, top=0.955, bottom=0.055)
    return fig, list(axes)


def _draw(tl: Timeline, fig, axes) -> None:
    ax_cp, ax_contact, ax_i, ax_v, ax_fault, ax_led, ax_ocpp = axes
    span = max(tl.end - tl.start, 1e-3)
    fig.suptitle(tl.test, fontsize=10, x=0.085, ha="left")
    _draw_cp(tl, ax_cp)
    _draw_contacts(tl, ax_contact)
    _draw_phases(tl, ax_i, "meter.I", "current (A)", 2.0)
    _draw_phases(tl, ax_v, "meter.V", "voltage (V)", 20.0)
    _draw_faults(tl, ax_fault)
    _draw_led(tl, ax_led)
    _draw_ocpp(tl, ax_ocpp, span)
    for ax in axes:
        ax.set_xlim(tl.start, tl.end)
        ax.grid(True, axis="x", color="#dddddd", linewidth=0.6)
        ax.tick_params(labelsize=8)
    ax_ocpp.set_xlabel("rig clock (s)", fontsize=9)


def _steps(rows: list[Row], end: float):
    """(x, y) of a step line holding each value until the next."""
    xs, ys = [], []
    for r in rows:
        xs.append(r.t)
        ys.append(math.nan if r.value is None or r.value == "" else float(r.value))
    if xs:
        xs.append(end)
        ys.append(ys[-1])
    return xs, ys


def _spans(rows: list[Row], end: float):
    """(start, stop, value) of each stretch a categorical channel holds a value."""
    out = []
    for r, nxt in zip(rows, rows[1:] + [None]):
        out.append((r.t, nxt.t if nxt else end, r.value))
    return out


def _draw_cp(tl: Timeline, ax) -> None:
    span = tl.end - tl.start
    for a, b, state in _spans(tl.channel("vehicle.state"), tl.end):
        ax.axvspan(a, b, color=VEHICLE_COLOURS.get(state, "#ffffff"), linewidth=0)
        label = f"vehicle {state}" if b - a > span * 0.1 else (state if b - a > span * 0.015 else "")
        if label:
            ax.text((a + b) / 2, 95, label, ha="center", va="top", fontsize=8, color="#444444")
    duty = tl.channel("cp.duty_pct")
    xs = [r.t for r in duty]
    ys = [math.nan if r.value is None else r.value for r in duty]
    ax.plot(xs, [0 if math.isnan(y) else y for y in ys], drawstyle="steps-post", color="#1f4e9c", linewidth=1.2,
            marker=".", markersize=4)
    ax.set_ylim(-5, 100)
    ax.set_ylabel("CP duty (%)\nbands: vehicle state", fontsize=8)


def _draw_contacts(tl: Timeline, ax) -> None:
    pins = [p for p in ("L1", "L2", "L3", "N", "PE") if tl.channel(f"contact.{p}")]
    for i, pin in enumerate(pins):
        level = len(pins) - 1 - i
        xs, ys = _steps(tl.channel(f"contact.{pin}"), tl.end)
        ax.plot(xs, [level + 0.7 * y for y in ys], drawstyle="steps-post", linewidth=1.6,
                color="#c0392b" if pin.startswith("L") else ("#2471a3" if pin == "N" else "#27ae60"))
    ax.set_yticks([len(pins) - 1 - i + 0.35 for i in range(len(pins))], pins)
    ax.set_ylim(-0.3, len(pins) + 0.1)
    ax.set_ylabel("contactor\n(high = live)", fontsize=8)


def _draw_phases(tl: Timeline, ax, prefix: str, label: str, min_span: float) -> None:
    """Per-phase values as steps with a dot per reading. The y range is at least `min_span`, so
    meter noise (a few tenths of a volt) does not look like an excursion."""
    names = tl.channels_like(prefix)
    values = []
    for i, name in enumerate(names):
        rows = [r for r in tl.channel(name) if isinstance(r.value, float)]
        values += [r.value for r in rows]
        ax.plot([r.t for r in rows], [r.value for r in rows], drawstyle="steps-post", marker=".", markersize=4,
                linewidth=1.2, color=PHASE_COLOURS[i % 3], label=f"L{i + 1}")
    if values:
        lo, hi = min(values), max(values)
        mid = (lo + hi) / 2
        lo, hi = min(lo, mid - min_span / 2), max(hi, mid + min_span / 2)
        if prefix.endswith("I"):
            lo, hi = min(0.0, lo), max(hi, min_span)
        pad = (hi - lo) * 0.08
        ax.set_ylim(lo - pad, hi + pad)
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no meter reading", transform=ax.transAxes, ha="center", va="center", fontsize=8,
                color="#888888")
    ax.set_ylabel(f"meter\n{label}", fontsize=8)


def _draw_faults(tl: Timeline, ax) -> None:
    inj = tl.channel("fault.injector_mA") + tl.channel("injector.level_mA")
    inj.sort(key=lambda r: r.t)
    if inj:
        xs, ys = _steps(inj, tl.end)
        ax.plot(xs, ys, drawstyle="steps-post", color="#d35400", linewidth=1.4, label="injector (mA DC)")
    ax.set_ylabel("injected\nfaults", fontsize=8)
    top = max([r.value for r in inj if isinstance(r.value, float)] + [10.0])
    ax.set_ylim(-top * 0.08, top * 1.35)
    for r in tl.channel("fault.supply_V"):
        if r.value is not None:
            ax.axvline(r.t, color="#8e44ad", linewidth=1.0, linestyle="--")
            held = re.fullmatch(r"([0-9.]+) s", r.text)
            if held:  # an excursion the source times itself: shade how long it lasts
                ax.axvspan(r.t, r.t + float(held.group(1)), color="#d7bde2", alpha=0.5, linewidth=0)
            what = f"for {r.text}" if held else r.text
            ax.text(r.t, top * 1.3, f" supply {r.value:g} V {what}", fontsize=7, color="#6c3483", va="top")
    for a, b, removed in _spans(tl.channel("fault.diode_removed"), tl.end):
        if removed:
            ax.axvspan(a, b, color="#f5b7b1", alpha=0.6, linewidth=0)
            ax.text(a, top * 0.5, " diode removed", fontsize=7, color="#922b21")
    if tl.channel("vehicle.state") and any(r.value == "E" for r in tl.channel("vehicle.state")):
        for a, b, state in _spans(tl.channel("vehicle.state"), tl.end):
            if state == "E":
                ax.axvspan(a, b, color="#f5b7b1", alpha=0.6, linewidth=0)
                ax.text(a, top * 0.5, " CP shorted to PE", fontsize=7, color="#922b21")
    if inj:
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    if not inj or max(r.value or 0.0 for r in inj) == 0:
        if not tl.channel("fault.supply_V") and not any(r.value for r in tl.channel("fault.diode_removed")):
            ax.text(0.5, 0.5, "no fault injected", transform=ax.transAxes, ha="center", va="center",
                    fontsize=8, color="#888888")


def _draw_led(tl: Timeline, ax) -> None:
    ends = sorted(r.t for r in tl.channel("led.end"))
    span = tl.end - tl.start
    for r in tl.channel("led"):
        stop = next((t for t in ends if t >= r.t), r.t)
        colour = LED_COLOURS.get(r.text.split(" ")[0], "#aaaaaa")
        ax.axvspan(r.t, stop, color=colour, alpha=0.85, linewidth=0)
        if stop - r.t > span * 0.06:
            ax.text((r.t + stop) / 2, 0.5, str(r.value).replace("_", " "), ha="center", va="center", fontsize=7,
                    color="white" if colour not in ("#d9d9d9", "#aaaaaa") else "black", clip_on=True)
    if not tl.channel("led"):
        ax.text(0.5, 0.5, "not observed in this test", transform=ax.transAxes, ha="center", va="center",
                fontsize=8, color="#888888")
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    ax.set_ylabel("LED\n(observed)", fontsize=8)


def _draw_ocpp(tl: Timeline, ax, span: float) -> None:
    rows = tl.channel("ocpp")
    ax.set_ylim(0, 1)
    ax.set_yticks([0.25, 0.75], ["CS→unit", "unit→CS"])
    ax.set_ylabel("OCPP", fontsize=8)
    min_gap = span / 48  # labels closer than this would overlap: the tick stays, the label goes
    last_label = {True: -math.inf, False: -math.inf}
    ticks: dict[tuple, list] = {}  # (colour, width) -> [xs, bottoms, tops]: one vlines call each
    for r in rows:
        inbound = r.text.startswith("unit")
        is_call = " Call " in f" {r.text} " and "CallResult" not in r.text and "CallError" not in r.text
        y0, y1 = (0.5, 1.0) if inbound else (0.0, 0.5)
        colour = "#1a5276" if inbound else "#7d3c98"
        if "CallError" in r.text or "Faulted" in r.text:
            colour = "#c0392b"
        batch = ticks.setdefault((colour, 1.0 if is_call else 0.6), [[], [], []])
        batch[0].append(r.t)
        batch[1].append(y0)
        batch[2].append(y1 if is_call else (y0 + y1) / 2)
        if is_call and r.t - last_label[inbound] >= min_gap:
            status = re.search(r"status=(\w+)", r.text)
            label = f"{r.value} {status.group(1)}" if status else str(r.value)
            ax.text(r.t, y1 - 0.02, " " + label, rotation=90, fontsize=6.5, va="top", ha="left", color=colour,
                    clip_on=True)
            last_label[inbound] = r.t
    for (colour, width), (xs, bottoms, tops) in ticks.items():
        ax.vlines(xs, bottoms, tops, color=colour, linewidth=width)


def describe_timeline(tl: Timeline) -> str:
    """One line for logs: how much the timeline holds."""
    kinds = {}
    for r in tl.rows:
        key = r.channel.split(".")[0]
        kinds[key] = kinds.get(key, 0) + 1
    return f"{tl.test}: {tl.end - tl.start:.1f} s, " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + \
        f" ({describe(len(tl.rows))} rows)"


# ---------------------------------------------------------------------- the end of a test
def close(recorder: TimelineRecorder, reports_dir: Path | None, attach=None, reserve=None,
          renderer: "PngRenderer | None" = None, draw: bool = True) -> Timeline:
    """Stop recording; write <reports>/timelines/<test>.csv and .png and attach both to Allure.

    `attach(body, name, kind)` attaches the CSV now; `reserve(name, kind)` registers the PNG
    attachment and returns the path its file must be written to. The PNG is drawn by
    `renderer` in another process (the run does not wait for matplotlib), or here without one;
    `draw=False` keeps only the CSV (a picture costs ~0.1-0.3 s of CPU).
    """
    timeline = recorder.finish()
    targets: list[Path] = []
    if reports_dir is not None:
        csv_path, _ = write_files(timeline, Path(reports_dir) / "timelines", None)
        targets.append(csv_path.with_suffix(".png"))
    if attach is not None:
        attach(timeline.csv_text(), "timeline (CSV)", "csv")
    if reserve is not None:
        target = reserve("timeline (plot)", "png")
        if target is not None:
            targets.append(target)
    if not draw:
        targets = []
    if targets:
        if renderer is not None:
            renderer.submit(timeline, targets)
        else:
            render_to(timeline, targets)
    return timeline


def _lower_priority() -> None:
    """The picture worker yields the CPU to the test thread (timing on the bench comes first)."""
    import os

    try:
        os.nice(10)
    except OSError:
        pass


def render_to(timeline: Timeline, targets: list[Path]) -> None:
    """Draw the PNG once and write it to every target (temporary name, then rename)."""
    png = render_png(timeline)
    for target in targets:
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(png)
        tmp.replace(target)


class PngRenderer:
    """Draws timeline PNGs in one worker process while the tests go on.

    Rendering a 7-panel figure costs ~0.1-0.3 s of CPU, as much as a short test; in a worker
    it overlaps the bench's waits (Modbus, sockets) instead of adding to the run's wall time.
    `finish()` waits for the last pictures; a run killed before that keeps its CSVs.
    """

    def __init__(self):
        self._pool = None
        self._futures = []
        self.failures: list[str] = []

    def submit(self, timeline: Timeline, targets: list[Path]) -> None:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: the parent has socket and loop threads that a fork would copy mid-flight
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_lower_priority)
        self._futures.append(self._pool.submit(render_to, timeline, [str(t) for t in targets]))

    def finish(self) -> list[str]:
        """Wait for every picture; returns what could not be drawn (one line each)."""
        if self._pool is None:
            return self.failures
        for future in self._futures:
            try:
                future.result()
            except Exception as exc:  # a missing picture must not fail the run
                self.failures.append(repr(exc))
        self._futures.clear()
        self._pool.shutdown(wait=True)
        self._pool = None
        return self.failures
