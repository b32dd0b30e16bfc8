"""The ``flarelens`` command: one subcommand per pipeline step.

Each subcommand lives in its own module here, exposing ``register(subparsers)`` which adds
its parser and sets ``func(args) -> int``. The modules only parse arguments and call the
library; a :class:`~flarelens.errors.FlareLensError` becomes one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from flarelens import __version__
from flarelens.errors import FlareLensError

#: Subcommands in pipeline order (module flarelens.cli.<name>, with "-" as "_").
COMMANDS = [
    "label", "simulate", "download", "convert", "train", "predict", "evaluate", "locations",
    "explain", "report", "demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flarelens",
        description="Build, evaluate and explain full-disk solar flare prediction models.",
    )
    parser.add_argument("--version", action="version", version=f"flarelens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"flarelens.cli.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            # A subcommand still being written must not take the others down with it.
            if exc.name != f"flarelens.cli.{name.replace('-', '_')}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FlareLensError as exc:
        print(f"flarelens {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"flarelens {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
