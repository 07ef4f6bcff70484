"""`rig records report --html DIR`: the quality figures (rig/results/quality.py) as one
self-contained page (index.html, pictures inline), which a quality engineer opens in any browser
without installing anything. No scripts, every text escaped.
"""

from __future__ import annotations

import base64
import io
import statistics
from html import escape
from pathlib import Path

from rig.results import quality
from rig.results.recorder import printable_url
from rig.results.store import ResultsStore

CHARTS = 8  # control charts for the measurements with the lowest Cpk

STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 1.5em; color: #111; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #999; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #aaa; padding: 2px 7px; text-align: right; }
th { background: #eee; } td.t { text-align: left; }
.bad { color: #b00000; font-weight: bold; } .note { color: #555; font-size: .9em; }
img { max-width: 100%; }
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="chart" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _table(header: list[str], rows: list[list], text_cols: int = 1) -> str:
    out = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="t"' if i < text_cols else ""
            cells.append(f"<td{cls}>{cell}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


def _yield_section(rows: list[dict]) -> str:
    import matplotlib.pyplot as plt

    table = _table(["day", "station", "model", "units", "first-pass yield", "final yield", "retest yield"],
                   [[escape(r["day"]), escape(str(r["station"])), escape(str(r["variant"])), r["units"],
                     _pct(r["first_pass_yield"]), _pct(r["final_yield"]), _pct(r["retest_yield"])] for r in rows], 3)
    days = sorted({r["day"] for r in rows})
    fig, ax = plt.subplots(figsize=(9, 3))
    for station in sorted({str(r["station"]) for r in rows}):
        by_day = {d: [r for r in rows if r["day"] == d and str(r["station"]) == station] for d in days}
        ys = [sum(r["first_pass"] for r in rs) / sum(r["units"] for r in rs) * 100 if rs else None
              for rs in by_day.values()]
        ax.plot(days, ys, marker="o", label=station)
    ax.set_ylabel("first-pass yield %")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncol=4)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    return "<h2>Yield per station, model and day</h2>" + _png(fig) + table


def _pareto_section(rows: list[dict]) -> str:
    import matplotlib.pyplot as plt

    if not rows:
        return "<h2>Failing requirements (Pareto)</h2><p>No failed tests in the period.</p>"
    fig, ax = plt.subplots(figsize=(9, 3))
    names = [r["requirement"] for r in rows]
    ax.bar(names, [r["failed_tests"] for r in rows], color="#b00000")
    ax.set_ylabel("failed tests")
    ax2 = ax.twinx()
    ax2.plot(names, [100 * r["cumulative_share"] for r in rows], color="#333", marker="o")
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("cumulative %")
    table = _table(["requirement", "failed tests", "runs", "cumulative"],
                   [[escape(r["requirement"]), r["failed_tests"], r["runs"], _pct(r["cumulative_share"])] for r in rows])
    return "<h2>Failing requirements (Pareto)</h2>" + _png(fig) + table


def _capability_section(store: ResultsStore, period: quality.Period, rows: list[dict]) -> str:
    ranked = sorted(rows, key=lambda r: (r["cpk"] is None, r["cpk"] if r["cpk"] is not None else 0))
    table = _table(["measurement", "unit", "n", "mean", "sigma", "low", "high", "Cpk"],
                   [[escape(r["name"]), escape(r["unit"] or ""), r["n"], f"{r['mean']:.4g}", f"{r['sigma']:.3g}",
                     "-" if r["low"] is None else f"{r['low']:g}", "-" if r["high"] is None else f"{r['high']:g}",
                     "-" if r["cpk"] is None else (f'<span class="bad">{r["cpk"]:.2f}</span>' if r["cpk"] < 1.33
                                                   else f"{r['cpk']:.2f}")] for r in ranked], 2)
    charts = "".join(_control_chart(store, period, r) for r in ranked[:CHARTS])
    return ("<h2>Measurements: capability (Cpk) and control charts</h2>"
            '<p class="note">Cpk below 1.33 in red. Charts for the lowest Cpk: each value in the order taken, '
            "its mean, mean ± 3 sigma (control limits) and the specification limits.</p>" + table + charts)


def _control_chart(store: ResultsStore, period: quality.Period, row: dict) -> str:
    import matplotlib.pyplot as plt

    points = quality.series(store, period, row["name"])
    if len(points) < 2:
        return ""
    values = [v for _, v in points]
    mean, sigma = statistics.fmean(values), statistics.stdev(values)
    fig, ax = plt.subplots(figsize=(9, 2.4))
    ax.plot(range(len(values)), values, marker=".", linewidth=.6, color="#1f4e9a")
    ax.axhline(mean, color="#333", linewidth=1)
    for y in (mean - 3 * sigma, mean + 3 * sigma):
        ax.axhline(y, color="#b36b00", linestyle="--", linewidth=1)
    for y in (row["low"], row["high"]):
        if y is not None:
            ax.axhline(y, color="#b00000", linewidth=1.5)
    ax.set_title(f"{row['name']} [{row['unit'] or ''}]", fontsize=9)
    ax.set_xlabel("measurement number", fontsize=8)
    return _png(fig)


def _rig_fault_section(rows: list[dict]) -> str:
    if not rows:
        return "<h2>Rig faults per station and instrument</h2><p>No rig faults in the period.</p>"
    table = _table(["instrument", "station", "rig-fault tests", "runs", "per run", "other stations", ""],
                   [[escape(r["instrument"]), escape(str(r["station"])), r["faults"], r["runs"], f"{r['rate']:.3f}",
                     "-" if r["others_rate"] is None else f"{r['others_rate']:.3f}",
                     '<span class="bad">stands out</span>' if r["stands_out"] else ""] for r in rows], 2)
    return ("<h2>Rig faults per station and instrument</h2>"
            f'<p class="note">Marked: at least {quality.STANDS_OUT:g} times the other stations\' rate for that '
            "instrument (and at least 2 faults). A rig fault is never a unit failure: look at the instrument.</p>"
            + table)


def write_report(store: ResultsStore, directory: Path, period: quality.Period, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    directory.mkdir(parents=True, exist_ok=True)
    when = " to ".join(str(x) for x in (period.since, period.until) if x) or "all records"
    body = [f"<h1>{escape(title)}</h1>", f'<p class="note">{escape(when)}; store {escape(printable_url(store.url))}</p>',
            _yield_section(quality.yields(store, period)), _pareto_section(quality.pareto(store, period)),
            _capability_section(store, period, quality.capability(store, period)),
            _rig_fault_section(quality.rig_fault_rates(store, period))]
    page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>" + "\n".join(body) + "</body></html>")
    path = directory / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
