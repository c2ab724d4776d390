"""The ``ihcseg`` command line.

Each sub-command lives in its own module ``napari_ihcseg.cli._<name>`` that
exposes ``register(subparsers)``; registering adds an ``argparse`` parser whose
``func`` default is the function that runs it and returns the exit code.

Exit codes: 0 success, 1 some inputs failed, 2 usage error or unreadable input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ._common import EXIT_INTERRUPTED, EXIT_USAGE, CLIError, print_error

#: Sub-commands in the order ``ihcseg --help`` lists them.
COMMANDS = ("segment", "score", "evaluate", "models", "train", "tune", "batch")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    from napari_ihcseg import __version__

    parser = argparse.ArgumentParser(
        prog="ihcseg",
        description="Segment and score cell nuclei in IHC images (ER, PR, Ki-67).",
    )
    parser.add_argument("--version", action="version", version=f"napari-ihcseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"napari_ihcseg.cli._{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``ihcseg`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
