"""The house rules of the package, checked so they stay true: rooms import only the rooms below
them (no circles), the package root holds only entry points, and no file outgrows one reading."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

RIG = Path(__file__).resolve().parents[2] / "rig"

#: bottom to top: a room may import only rooms before it
LAYERS = (
    "data",         # what ships besides code: catalogue, limits, profiles, rig files
    "core",         # clock, errors and blame, retries, measurements, the rig file, loop thread
    "product",      # the product's rules: control-pilot maths, LED classifier, requirements and limits
    "network",      # the rig as the unit's network: DHCP, DNS, NTP, TLS CA, firmware server, pcap
    "instruments",  # drivers, each beside its protocol (OCPP-J beside the central system)
    "sim",          # the emulated bench: the charger and every emulated instrument
    "bench",        # the assembled rig: open_rig, the vehicle, the call journal
    "results",      # the results store
    "reports",      # run record, Allure, timelines
    "station",      # end of line, certificates
    "spec",         # the spec suite (tests, shipped in the package)
    "plugin",       # the pytest plugin
    "cli",          # the `rig` command
)
ROOT_FILES = {"__init__.py", "cli.py", "py.typed"}
MAX_LINES = 600  # "about 500": past this a file is split along a real seam


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports() -> dict[str, set[str]]:
    deps: dict[str, set[str]] = defaultdict(set)
    for path in RIG.rglob("*.py"):
        rel = path.relative_to(RIG.parent).with_suffix("")
        room = _room(".".join(rel.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rig":
                targets = [f"rig.{a.name}" for a in node.names] if node.module == "rig" else [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "rig"]
            else:
                continue
            deps[room] |= {_room(t) for t in targets} - {room, ""}
    return deps


def test_every_room_is_in_the_layer_order():
    rooms = {p.name for p in RIG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms | {"cli"} == set(LAYERS), "a new folder needs its place in LAYERS"


def test_rooms_import_only_the_rooms_below_them():
    wrong = [f"{room} imports {dep}" for room, deps in _imports().items() for dep in deps
             if LAYERS.index(dep) >= LAYERS.index(room)]
    assert not wrong, wrong


def test_the_package_root_holds_only_entry_points():
    files = {p.name for p in RIG.iterdir() if p.is_file()}
    assert files <= ROOT_FILES, files - ROOT_FILES


def test_no_file_outgrows_one_reading():
    long = {str(p.relative_to(RIG.parent)): n for p in RIG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
