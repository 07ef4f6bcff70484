"""The emulated unit's own measuring (regs 9, MTR-05) and OCPP MeterValues during a transaction.

The unit measures its output power on a cycle of its own (`POWER_MEASURE_S`: at least once a
second, as the regulations ask) and, while a transaction runs, reports every
MeterValueSampleInterval seconds the measurands listed in MeterValuesSampledData (OCPP 1.6
section 9.1 configuration keys; Sample.Periodic context). What it reports is its latest
measurement, not the plant's instantaneous truth: a unit that measured every 10 s would report a
power up to 10 s old even when it reports every second (the known-bad `power-measured-every-10s`).
"""

from __future__ import annotations

from rig.sim.charger_ocpp import iso

POWER_MEASURE_S = 1.0  # the unit's measuring cycle (SI 2021/1467 reg 9: at least once a second)
SLOW_MEASURE_S = 10.0  # the known-bad unit's
METER_VALUES = "meter-values"
MEASURING = "power-measuring"
POWER_MEASURANDS = {"Power.Active.Import", "Current.Import"}  # read from the measuring cycle
#: measurand -> (unit, how the unit reads it); what this firmware can sample
MEASURANDS = {
    "Energy.Active.Import.Register": "Wh",
    "Power.Active.Import": "W",
    "Current.Import": "A",
}
DEFAULT_SAMPLED = "Energy.Active.Import.Register"


def valid_sampled_data(value: str) -> bool:
    """MeterValuesSampledData: a comma-separated list of measurands this unit can sample."""
    items = [v.strip() for v in value.split(",")]
    return bool(value.strip()) and all(item in MEASURANDS for item in items)


class ChargerMetering:
    """Mixed into EmulatedCharger: needs clock, plant, config, session, _later/_cancel, _send."""

    _power_sample: tuple[float, float] | None = None  # (clock s, W) of the latest measurement

    def measured_power_w(self) -> float:
        """The unit's latest power measurement (its measuring cycle runs while power is sampled)."""
        if self._power_sample is None:
            self._measure()
        return self._power_sample[1]

    def _measure(self) -> None:
        self._power_sample = (self.clock.now(), self.output_power_w())

    def _measuring_start(self) -> None:
        """The measuring cycle: a measurement on the cycle's own grid, whenever reports ask. Run as
        timers (not on demand) so a report carries the power of the last tick, however stale: a
        unit measuring every 10 s reporting every second repeats a measurement. Only while a
        transaction samples power, or every long session in virtual time would tick every second."""
        if MEASURING in self._timers:
            return
        period = SLOW_MEASURE_S if self.defect == "power-measured-every-10s" else POWER_MEASURE_S
        self._measure()

        def tick() -> None:
            self._measure()
            self._later(MEASURING, period, tick)

        self._later(MEASURING, period - self.clock.now() % period, tick)

    def _meter_values_start(self) -> None:
        interval = self.config.number("MeterValueSampleInterval", 0)
        if interval == 0 and self.defect == "metervalues-zero-means-60s":
            interval = 60  # the bug: 0 taken for "the default", not for "no sampled data" (OCPP 1.6 9.1)
        if interval > 0 and self.session is not None and self.session.transaction_id is not None:
            self._later(METER_VALUES, interval, self._meter_values_tick)
            if POWER_MEASURANDS & set(self._sampled_measurands()):
                self._measuring_start()

    def _meter_values_stop(self) -> None:
        self._cancel(METER_VALUES)
        self._cancel(MEASURING)
        self._power_sample = None

    def _sampled_measurands(self) -> list[str]:
        wanted = self.config.values.get("MeterValuesSampledData", DEFAULT_SAMPLED)
        if self.defect == "sampled-data-ignored":
            wanted = DEFAULT_SAMPLED  # the bug: accepts the key, always samples the energy register only
        return [m.strip() for m in wanted.split(",")]

    def _meter_values_tick(self) -> None:
        s = self.session
        stopped = s is not None and s.stopped and self.defect != "ended-transaction-sampled"  # (the bug)
        if s is None or stopped or s.transaction_id is None:
            return
        self._send("MeterValues", {"connectorId": 1, "transactionId": s.transaction_id,
                                   "meterValue": [self._meter_value()]})
        self._meter_values_start()

    def _meter_value(self) -> dict:
        sampled = []
        for measurand in self._sampled_measurands():
            if measurand == "Energy.Active.Import.Register":
                value = f"{self.meter_wh()}"
            elif measurand == "Power.Active.Import":
                value = f"{self.measured_power_w():.1f}"
            elif measurand == "Current.Import":
                value = f"{self.measured_power_w() / max(1.0, self.plant.phase_voltage(0)) / self.plant.phases:.2f}"
            else:
                continue
            sampled.append({"value": value, "context": "Sample.Periodic", "measurand": measurand,
                            "unit": MEASURANDS[measurand]})
        return {"timestamp": iso(self.rtc_now()), "sampledValue": sampled}
