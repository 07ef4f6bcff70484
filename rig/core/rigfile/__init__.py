"""The rig file: where each instrument of a bench is, checked before anything is opened.

A rig file is TOML (see rig/data/rigs/). The same drivers read the emulated bench's file
and a real bench's; only the addresses differ. On the emulated bench an address may be
"auto" (the emulated instrument picks a free port or pty when it starts); on a real
bench every address must be given, because guessing one could drive the wrong device.

Every mistake is reported as one line naming the dotted key to fix
(`meter.baudrate: expected an integer, got "fast"`), so an operator at an end-of-line
station can fix the file without reading code. `validate_rigfile()` collects every problem
(for `rig check`); `load_rigfile()` raises the first one.

The schema is the `SCHEMA` table below; `describe_schema()` prints it for `rig schema`.
The typed dataclasses (`RigFile.meter.baudrate`) are for the harness; drivers take the
plain section dict (`rig.section("meter")`) with defaults filled in.
"""

from rig.core.rigfile.schema import (AUTO, INSTRUMENT_SECTIONS, KEYS, SCHEMA, SECTION_DOCS, SECTIONS, Key,
                                     describe_schema)
from rig.core.rigfile.typed import (SECTION_CLASSES, Adc, Bench, Central, Console, LedSensor, Meter, Network, Pilot,
                                    Pins, PpLadder, Product, RigFile, VisaInstrument)
from rig.core.rigfile.validate import (RigFileError, load_profile, load_rigfile, resolve_rig_path, validate_rigfile,
                                       with_model, with_serial)
from rig.core.rigfile.reachability import check_reachable

__all__ = ["AUTO", "INSTRUMENT_SECTIONS", "KEYS", "SCHEMA", "SECTION_DOCS", "SECTIONS", "Key", "describe_schema",
           "SECTION_CLASSES", "RigFile", "Adc", "Bench", "Central", "Console", "LedSensor", "Meter", "Network",
           "Pilot", "Pins", "PpLadder", "Product", "VisaInstrument", "RigFileError", "load_profile", "load_rigfile", "resolve_rig_path",
           "validate_rigfile", "with_model", "with_serial", "check_reachable"]
