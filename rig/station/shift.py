"""The shift's units: every finished unit is one line in <reports>/station/units.jsonl (appended
and flushed as it ends, so a station restarted mid-shift keeps its counts). The shift is the
station's local calendar day.

Counts, as the panel shows them:
* tested: runs that ended; passed, failed: runs that ended PASS or FAIL;
* retests: runs of a serial already tested this shift (after a FAIL, a RIG FAULT or an abort);
* rig faults: runs that ended without judging the unit (RIG FAULT, WRONG UNIT, interrupted);
* first-pass yield: of the serials judged this shift, the share whose first judged run passed.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from pathlib import Path

from rig.results.store import FAIL, PASS

log = logging.getLogger(__name__)
RECENT = 20


class ShiftLog:
    def __init__(self, path: Path):
        self.path = path
        self.units: list[dict] = []
        self.day = _day(time.time())
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut short by a power cut: the rest of the shift still counts
                log.warning("%s:%d: not a unit record, skipped", self.path, number)
                continue
            if _day(entry.get("t", 0)) == self.day:
                self.units.append(entry)

    def add(self, entry: dict) -> None:
        if _day(entry["t"]) != self.day:  # a new shift (day) began while the station ran
            self.day, self.units = _day(entry["t"]), []
        self.units.append(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def counts(self) -> dict:
        seen: set[str] = set()
        first_judged: dict[str, str] = {}
        retests = 0
        for u in self.units:
            if u["serial"] in seen:
                retests += 1
            seen.add(u["serial"])
            if u["verdict"] in (PASS, FAIL):
                first_judged.setdefault(u["serial"], u["verdict"])
        passed = sum(u["verdict"] == PASS for u in self.units)
        failed = sum(u["verdict"] == FAIL for u in self.units)
        judged = len(first_judged)
        fpy = sum(v == PASS for v in first_judged.values()) / judged if judged else None
        return {"day": self.day, "tested": len(self.units), "passed": passed, "failed": failed, "retests": retests,
                "rig_faults": len(self.units) - passed - failed,
                "first_pass_yield": None if fpy is None else round(100.0 * fpy, 1)}

    def recent(self) -> list[dict]:
        return list(reversed(self.units[-RECENT:]))


def _day(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d")
