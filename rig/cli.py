"""The `rig` command: look at what the harness knows before running it.

    rig check RIGFILE     validate a rig file (and, on a real bench, reach every instrument)
    rig schema            every rig-file key with its type, default and meaning
    rig requirements      the requirement catalogue: ID, M1 flag, text
    rig limits            every limit: key = value unit [confidence] source
    rig defects           the known-bad units the emulated charger can play

Exit status: 0 fine, 2 a problem was found (each printed as one line naming the key).
"""

from __future__ import annotations

import argparse
import os
import sys

from rig.errors import RigFileError

EXIT_OK = 0
EXIT_PROBLEMS = 2


def _check(args: argparse.Namespace) -> int:
    from rig.rigfile import check_reachable, validate_rigfile

    rig, errors = validate_rigfile(args.rigfile)
    for error in errors:
        print(error)
    if rig is None:
        return EXIT_PROBLEMS
    what = f"{rig.bench.kind} bench {rig.bench.name!r}, {rig.product.model} {rig.product.serial}"
    if rig.bench.kind == "real" and not args.offline:
        problems = check_reachable(rig, timeout_s=args.timeout)
        for line in problems:
            print(line)
        if problems:
            return EXIT_PROBLEMS
        what += ", every instrument reachable"
    print(f"ok: {args.rigfile} ({what})")
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from rig.rigfile import describe_schema

    print(describe_schema())
    return EXIT_OK


def _requirements(args: argparse.Namespace) -> int:
    from rig.requirements import load_requirements

    for req in load_requirements().values():
        if args.m1 and not req.m1:
            continue
        print(f"{req.id:<8} {'M1' if req.m1 else '--'}  {req.text}")
    return EXIT_OK


def _limits(args: argparse.Namespace) -> int:
    from rig.requirements import load_limits

    for item in load_limits(args.limits_file, args.override or ()).values():
        print(item)
    return EXIT_OK


def _defects(args: argparse.Namespace) -> int:
    from rig.sim.defects import CATALOGUE

    width = max(map(len, CATALOGUE))
    for defect in CATALOGUE.values():
        print(f"{defect.name:<{width}}  {defect.description}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rig", description="PlugStream rig: inspect rig files, requirements and limits.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
                        help="limits file (default: the project's fixtures/limits/plugstream.toml)")
    limits.add_argument("--limits", dest="override", action="append", metavar="PATH",
                        help="override file merged over it (repeatable), as pytest --limits does")
    limits.set_defaults(run=_limits)

    commands.add_parser("defects", help="list the known-bad units of the emulated charger").set_defaults(run=_defects)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except RigFileError as exc:  # a data file is wrong: one line, no traceback
        print(exc, file=sys.stderr)
        return EXIT_PROBLEMS
    except BrokenPipeError:  # `rig requirements | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
