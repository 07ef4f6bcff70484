"""A timeline as a picture: stacked panels sharing the time axis (CP state and duty, contacts,
per-phase voltage and current, injected faults, LED, OCPP messages), drawn with matplotlib, and
the background process that draws them so a test never waits for its picture."""

from __future__ import annotations

import io
import math
import re
import threading
from pathlib import Path

from rig.bench.journal import describe
from rig.reports.timeline import Row, Timeline, TimelineRecorder, write_files


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


# ---------------------------------------------------------------------- the end of a test
def close(recorder: TimelineRecorder, reports_dir: Path | None, attach=None, reserve=None,
          renderer: PngRenderer | None = None, draw: bool = True) -> Timeline:
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
