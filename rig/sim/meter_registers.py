"""Every input register of the Eastron SDM630 and SDM120, as the emulated meter answers them.

The rig's driver reads only the snapshot block and total kWh (rig/instruments/meter.py), but a
third-party SDM reader (a site's energy logger, minimalmodbus by hand) reads the rest of the map,
and an emulation that answers 0.0 or an exception there is kinder or harsher than the meter.
Addresses are the ones Eastron's Modbus protocol documents for the SDM630 (V1.8) and SDM120
(input registers, function 04, float32 high word first); STANDARDS.md confirms the subset the rig
uses [S], the rest are as widely published [V]. Undocumented addresses inside the map read 0.0;
above it, exception 02.

Derived quantities follow from the measured ones the way the meter derives them: VA = V x I,
var = sqrt(VA^2 - W^2) signed by the load, phase angle = acos(PF), averages and sums over the
phases, line-to-line voltage from two phase voltages 120 degrees apart, the neutral current as
the vector sum of the phase currents, demand as the present value (the rig never runs long
enough for the meter's 60-minute sliding window to differ in a way it reads), THD 0 (a sine
supply and a resistive load).
"""

from __future__ import annotations

import math

# quantity -> addresses (per phase where there are phases)
SDM630_FULL: dict[str, tuple[int, ...]] = {
    "voltage": (0x0000, 0x0002, 0x0004), "current": (0x0006, 0x0008, 0x000A),
    "power": (0x000C, 0x000E, 0x0010), "va": (0x0012, 0x0014, 0x0016), "var": (0x0018, 0x001A, 0x001C),
    "power_factor": (0x001E, 0x0020, 0x0022), "phase_angle": (0x0024, 0x0026, 0x0028),
    "avg_voltage": (0x002A,), "avg_current": (0x002E,), "sum_current": (0x0030,), "total_power": (0x0034,),
    "total_va": (0x0038,), "total_var": (0x003C,), "total_pf": (0x003E,), "total_phase_angle": (0x0042,),
    "frequency": (0x0046,), "import_kwh": (0x0048,), "export_kwh": (0x004A,), "import_kvarh": (0x004C,),
    "export_kvarh": (0x004E,), "kvah": (0x0050,), "ah": (0x0052,), "power_demand": (0x0054,),
    "max_power_demand": (0x0056,), "va_demand": (0x0064,), "max_va_demand": (0x0066,),
    "neutral_demand": (0x0068,), "max_neutral_demand": (0x006A,),
    "line_voltage": (0x00C8, 0x00CA, 0x00CC), "avg_line_voltage": (0x00CE,), "neutral_current": (0x00E0,),
    "voltage_thd": (0x00EA, 0x00EC, 0x00EE), "current_thd": (0x00F0, 0x00F2, 0x00F4),
    "avg_voltage_thd": (0x00F8,), "avg_current_thd": (0x00FA,),
    "current_demand": (0x0102, 0x0104, 0x0106), "max_current_demand": (0x0108, 0x010A, 0x010C),
    "line_voltage_thd": (0x014E, 0x0150, 0x0152), "avg_line_voltage_thd": (0x0154,),
    "total_kwh": (0x0156,), "total_kvarh": (0x0158,),
    "phase_import_kwh": (0x015A, 0x015C, 0x015E), "phase_export_kwh": (0x0160, 0x0162, 0x0164),
    "phase_total_kwh": (0x0166, 0x0168, 0x016A), "phase_import_kvarh": (0x016C, 0x016E, 0x0170),
    "phase_export_kvarh": (0x0172, 0x0174, 0x0176), "phase_total_kvarh": (0x0178, 0x017A, 0x017C),
}
SDM120_FULL: dict[str, tuple[int, ...]] = {
    "voltage": (0x0000,), "current": (0x0006,), "power": (0x000C,), "va": (0x0012,), "var": (0x0018,),
    "power_factor": (0x001E,), "phase_angle": (0x0024,), "frequency": (0x0046,), "import_kwh": (0x0048,),
    "export_kwh": (0x004A,), "import_kvarh": (0x004C,), "export_kvarh": (0x004E,),
    "power_demand": (0x0054,), "max_power_demand": (0x0056,), "import_power_demand": (0x0058,),
    "max_import_power_demand": (0x005A,), "export_power_demand": (0x005C,), "max_export_power_demand": (0x005E,),
    "current_demand": (0x0102,), "max_current_demand": (0x0108,), "total_kwh": (0x0156,), "total_kvarh": (0x0158,),
}
FULL_MAPS = {"SDM630": SDM630_FULL, "SDM120": SDM120_FULL}


def address_blocks(model: str) -> list[tuple[int, int]]:
    """(first address, number of float32 slots): one block from 0x0000 to the last documented
    register. The registers Eastron leaves undocumented between them read 0.0 (a block read across
    them, as the rig's 76-register snapshot and many loggers do, is answered); above the map is
    illegal (exception 02)."""
    last = max(a for group in FULL_MAPS[model].values() for a in group)
    return [(0x0000, last // 2 + 1)]


def derived(shown: dict[str, list[float]], phases_kwh: list[float], peaks: dict[str, float]) -> dict[str, list[float]]:
    """Every quantity of the full map from what the meter measured (`shown`: voltage, current,
    power, power_factor, frequency, import_kwh per the driver's map) and the per-phase energy.
    `peaks` keeps the maximum demands between calls (the meter's own memory)."""
    v, i, w, pf = shown["voltage"], shown["current"], shown["power"], shown["power_factor"]
    va = [a * b for a, b in zip(v, i)]
    var = [math.sqrt(max(0.0, s * s - p * p)) for s, p in zip(va, w)]
    angle = [math.degrees(math.acos(max(-1.0, min(1.0, f)))) for f in pf]
    n = len(v)
    total_w, total_va = sum(w), sum(va)
    total_pf = total_w / total_va if total_va > 0 else 1.0
    line_v = [math.sqrt(v[k] ** 2 + v[(k + 1) % n] ** 2 + v[k] * v[(k + 1) % n]) for k in range(n)] if n == 3 else []
    neutral = abs(sum(a * complex(math.cos(math.radians(-120 * k)), math.sin(math.radians(-120 * k)))
                      for k, a in enumerate(i))) if n == 3 else i[0]
    kwh = phases_kwh + [0.0] * (n - len(phases_kwh))
    for key, value in (("power", total_w), ("va", total_va), ("neutral", neutral)):
        peaks[key] = max(peaks.get(key, 0.0), value)
    for k, a in enumerate(i):
        peaks[f"i{k}"] = max(peaks.get(f"i{k}", 0.0), a)
    out = {
        **shown, "va": va, "var": var, "phase_angle": angle,
        "avg_voltage": [sum(v) / n], "avg_current": [sum(i) / n], "sum_current": [sum(i)],
        "total_power": [total_w], "total_va": [total_va], "total_var": [sum(var)], "total_pf": [total_pf],
        "total_phase_angle": [math.degrees(math.acos(max(-1.0, min(1.0, total_pf))))],
        "export_kwh": [0.0], "import_kvarh": [0.0], "export_kvarh": [0.0],
        "kvah": [sum(kwh) / total_pf if total_pf > 0 else sum(kwh)],
        "ah": [sum(1000.0 * e / max(1.0, volts) for e, volts in zip(kwh, v))],
        "power_demand": [total_w], "max_power_demand": [peaks["power"]],
        "import_power_demand": [total_w], "max_import_power_demand": [peaks["power"]],
        "export_power_demand": [0.0], "max_export_power_demand": [0.0],
        "va_demand": [total_va], "max_va_demand": [peaks["va"]],
        "neutral_demand": [neutral], "max_neutral_demand": [peaks["neutral"]],
        "line_voltage": line_v, "avg_line_voltage": [sum(line_v) / 3 if line_v else 0.0],
        "neutral_current": [neutral],
        "voltage_thd": [0.0] * n, "current_thd": [0.0] * n, "avg_voltage_thd": [0.0], "avg_current_thd": [0.0],
        "line_voltage_thd": [0.0] * 3, "avg_line_voltage_thd": [0.0],
        "current_demand": list(i), "max_current_demand": [peaks[f"i{k}"] for k in range(n)],
        "total_kvarh": [0.0],
        "phase_import_kwh": kwh, "phase_export_kwh": [0.0] * n, "phase_total_kwh": kwh,
        "phase_import_kvarh": [0.0] * n, "phase_export_kvarh": [0.0] * n, "phase_total_kvarh": [0.0] * n,
    }
    return out
