"""The `rig` command: look at what the harness knows before running it.

    rig spec [PYTEST OPTIONS]  run the shipped spec suite (pytest --pyargs rig.spec), on the emulated
                          bench unless --rig names another; e.g. `rig spec --hazardous` is the main job
    rig check RIGFILE     validate a rig file (and, on a real bench, reach every instrument)
    rig schema            every rig-file key with its type, default and meaning
    rig requirements      the requirement catalogue: ID, M1 flag, text
    rig limits            every limit: key = value unit [confidence] source
    rig defects           the known-bad units the emulated charger can play
    rig device serve --central HOST:PORT [--defect NAME] [--rig-file F] [--journal F] ...
                          the emulated unit and its instruments as a real-time device of their own,
                          for the harness to test as a real bench (docs/device.md)
    rig station [STATIONFILE | --emulated N] [--host H] [--port P]
                          the end-of-line station's operator panel (docs/factory.md)
    rig records list | show SERIAL|RUN_ID | yield --since DATE | export SERIAL | import FILE | sync | status |
                          upgrade
                          unit records in the results store (--db URL, else $RIG_RESULTS_DB,
                          else reports/results.sqlite)

Exit status: 0 fine; 1 a problem was found (each printed to stderr as one line naming the file
and the key or the problem: a rig file's mistake, an unreachable instrument, an unreadable import
file, a results store that cannot be opened); 2 the command itself is wrong (usage).
"""

from __future__ import annotations

import argparse
import os
import sys

from rig.core.errors import RigFileError, UserMistake
from rig.results.cli_records import store_problem, add_records

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2  # argparse's own


def _check(args: argparse.Namespace) -> int:
    from rig.core.rigfile import check_reachable, validate_rigfile

    rig, errors = validate_rigfile(args.rigfile)
    for error in errors:
        print(error, file=sys.stderr)
    if rig is None:
        return EXIT_PROBLEMS
    what = f"{rig.bench.kind} bench {rig.bench.name!r}, {rig.product.model} {rig.product.serial}"
    if rig.bench.kind == "real" and not args.offline:
        problems = check_reachable(rig, timeout_s=args.timeout)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            return EXIT_PROBLEMS
        what += ", every instrument reachable"
    print(f"ok: {args.rigfile} ({what})")
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from rig.core.rigfile import describe_schema

    print(describe_schema())
    return EXIT_OK


def _requirements(args: argparse.Namespace) -> int:
    from rig.product.requirements import load_requirements

    for req in load_requirements().values():
        if args.m1 and not req.m1:
            continue
        print(f"{req.id:<8} {'M1' if req.m1 else '--'}  {req.text}")
    return EXIT_OK


def _limits(args: argparse.Namespace) -> int:
    from rig.product.requirements import load_limits

    for item in load_limits(args.limits_file, args.override or ()).values():
        print(item)
    return EXIT_OK


def _defects(args: argparse.Namespace) -> int:
    from rig.sim.defects import CATALOGUE

    width = max(map(len, CATALOGUE))
    for defect in CATALOGUE.values():
        print(f"{defect.name:<{width}}  {defect.description}")
    return EXIT_OK


def _device_serve(args: argparse.Namespace) -> int:
    from rig.sim.device import DeviceError, load_options, serve

    ports: dict[str, int] = {}
    for item in args.port or ():
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise UserMistake(f"--port {item!r}: expected NAME=PORT, e.g. --port load=5025")
        ports[name] = int(value)
    overrides = {k: getattr(args, k) for k in ("central", "model", "serial", "defect", "seed", "speed", "host",
                                                "meter_transport", "journal", "rig_file", "network", "rig_ca")}
    overrides["ports"] = ports or None
    try:
        options = load_options(args.device_file, overrides)
        if args.device_file and ports:
            options.ports = {**options.ports, **ports}
        return serve(options, sys.stdout)
    except DeviceError as exc:
        raise UserMistake(str(exc)) from None


def _device_keys(args: argparse.Namespace) -> int:
    from rig.sim.device import describe_keys

    print(describe_keys())
    return EXIT_OK


def _add_device(commands) -> None:
    device = commands.add_parser("device", help="the emulated charge point as a device of its own (real time)")
    sub = device.add_subparsers(dest="device_command", required=True, metavar="SUBCOMMAND")
    p = sub.add_parser("serve", help="serve the emulated unit and its instruments in real time; print a real-bench "
                       "rig file; run until Ctrl-C / SIGTERM")
    p.add_argument("--device-file", metavar="TOML", help="a [device] table with the keys below (`rig device keys`)")
    p.add_argument("--central", metavar="HOST:PORT", help="where the rig's central system listens (required)")
    p.add_argument("--model", help="the unit's model (default PS22-S)")
    p.add_argument("--serial", help="the unit's serial (default SIM-0001)")
    p.add_argument("--defect", help="play a known-bad unit (rig defects)")
    p.add_argument("--seed", type=int)
    p.add_argument("--speed", type=float, help="wall-clock pace (default 1.0: real time)")
    p.add_argument("--host", help="address the TCP instruments listen on (default 127.0.0.1)")
    p.add_argument("--meter-transport", choices=("rtu", "tcp"))
    p.add_argument("--journal", metavar="FILE", help="ground-truth journal, JSON lines")
    p.add_argument("--rig-file", metavar="FILE", help="write the real-bench rig file here")
    p.add_argument("--network", metavar="A.B.C", help="put the unit on the rig's network, a /24 such as 127.77.0 "
                   "(DHCP, DNS, NTP, TLS at the standard ports; needs root or CAP_NET_BIND_SERVICE for the harness)")
    p.add_argument("--rig-ca", metavar="DIR", help="with --network: the rig's CA folder (the rig file's network.ca_dir)")
    p.add_argument("--port", action="append", metavar="NAME=PORT",
                   help="fixed TCP port of pigpio, meter (tcp), load, source or injector (repeatable)")
    p.set_defaults(run=_device_serve)
    sub.add_parser("keys", help="describe the device file's keys").set_defaults(run=_device_keys)


def _station(args: argparse.Namespace) -> int:
    from rig.station.serve import StationError, serve

    try:
        return serve(args.station_file, args.emulated, args.host, args.port, args.reports)
    except StationError as exc:
        raise UserMistake(str(exc)) from None


def _add_station(commands) -> None:
    p = commands.add_parser("station", help="serve the end-of-line station's operator panel (a web page) and "
                            "test units through it, one pytest run per unit and socket (docs/factory.md)")
    p.add_argument("station_file", nargs="?", metavar="STATIONFILE", help="the station: its sockets and rig files")
    p.add_argument("--emulated", type=int, metavar="N", help="no station file: N sockets on the emulated bench")
    p.add_argument("--host", default="127.0.0.1",
                   help="address the panel listens on (default 127.0.0.1; the station's LAN address to "
                        "reach it from another screen)")
    p.add_argument("--port", type=int, default=8470, help="the panel's port (default 8470; 0: any free port)")
    p.add_argument("--reports", metavar="DIR", help="with --emulated: where runs go (default ./reports)")
    p.set_defaults(run=_station)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rig", description="PlugStream rig: inspect rig files, requirements, limits and unit records.",
        epilog="Exit status: 0 fine; 1 a problem was found (one line each on stderr); 2 usage error. "
               "End-of-line pytest runs (--eol) exit 0 PASS, 1 FAIL, 2 interrupted, 3 RIG FAULT - RETEST "
               "(also wrong unit, no result), 4 usage error (e.g. a bad rig file): see docs/factory.md.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("spec", help="run the shipped spec suite; every further option goes to pytest "
                        "(e.g. rig spec --hazardous, rig spec --eol --serial SN --rig bench3.toml)")

    check = commands.add_parser("check", help="validate a rig file; on a real bench also reach every instrument")
    check.add_argument("rigfile", metavar="RIGFILE")
    check.add_argument("--timeout", type=float, default=1.0, metavar="S",
                       help="seconds to wait for each TCP instrument (default 1)")
    check.add_argument("--offline", action="store_true",
                       help="real bench: check the file only, do not try to reach the instruments")
    check.set_defaults(run=_check)

    commands.add_parser("schema", help="describe every rig-file key").set_defaults(run=_schema)

    reqs = commands.add_parser("requirements", help="list the requirement catalogue")
    reqs.add_argument("--m1", action="store_true", help="only what the first milestone covers")
    reqs.set_defaults(run=_requirements)

    limits = commands.add_parser("limits", help="list every limit with its source")
    limits.add_argument("--file", dest="limits_file", metavar="PATH",
                        help="limits file (default: the project's rig/data/limits/plugstream.toml)")
    limits.add_argument("--limits", dest="override", action="append", metavar="PATH",
                        help="override file merged over it (repeatable), as pytest --limits does")
    limits.set_defaults(run=_limits)

    commands.add_parser("defects", help="list the known-bad units of the emulated charger").set_defaults(run=_defects)
    add_records(commands)
    _add_device(commands)
    _add_station(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("plugstream-rig")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def run_spec(pytest_args: list[str]) -> int:
    """The spec suite as the wheel ships it, with pytest's own options passed through. Reports go
    under the current directory's reports/ (pytest's rootdir), never into the installed package."""
    import pytest

    args = list(pytest_args)
    if not any(a == "--rig" or a.startswith("--rig=") for a in args):
        args = ["--rig", "emulated", *args]
    return int(pytest.main(["--pyargs", "rig.spec", *args]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["spec"]:  # everything after it belongs to pytest, so argparse never sees it
        return run_spec(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (RigFileError, UserMistake) as exc:  # a data file is wrong: one line, no traceback
        print(f"rig: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    except BrokenPipeError:  # `rig requirements | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        line = store_problem(exc, args)
        if line is None:
            raise
        print(f"rig: {line}", file=sys.stderr)
        return EXIT_PROBLEMS


if __name__ == "__main__":
    sys.exit(main())
