"""The ``skutag`` command line: a registry of sub-commands, one module each.

Each module in ``skutag.commands`` exposes ``register(subparsers)`` which adds its
sub-command(s) and sets ``func`` on the parser it adds. ``main`` imports the modules
listed in ``COMMAND_MODULES`` lazily so that ``skutag --help`` stays fast and a
broken optional backend does not break unrelated commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from skutag import __version__
from skutag.extras import missing_extra_message

# Order here is the order shown in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "skutag.commands.vision",
    "skutag.commands.ocr",
    "skutag.commands.brands",
    "skutag.commands.taxonomy",
    "skutag.commands.labelmap",
    "skutag.commands.models",
    "skutag.commands.tagging",
    "skutag.commands.retraining",
    "skutag.commands.bundle",
    "skutag.commands.service",
    "skutag.commands.batch",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skutag", description="Tag e-commerce products from photo, title and price: label, category path, decision."
    )
    parser.add_argument("--version", action="version", version=f"skutag {__version__}")
    parser.add_argument("--config", help="TOML/YAML config file (defaults < file < SKUTAG_* env < flags)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # command not written (yet) in this build
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UserFacingError as exc:
        print(f"skutag: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        message = missing_extra_message(exc)
        if message is None:
            raise
        print(f"skutag: error: {message}", file=sys.stderr)
        return 2


class UserFacingError(Exception):
    """An error whose message is meant for the user as it is (bad input, missing model file...)."""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
