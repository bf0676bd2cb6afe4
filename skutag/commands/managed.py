"""What every managed table's commands share (``skutag taxonomy``, ``skutag labelmap``): where the working copy
lives, loading it (the file given, else the managed copy, else the bundled default), saving it with its new
version, and the verbs that are the same for each (``version``, ``export``, ``reset``, ``validate``), written once."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from skutag.cli import UserFacingError


@dataclass(frozen=True)
class ManagedTable:
    """One managed table: ``what`` it is called in messages, its class (``load``/``default``/``save``/
    ``version``), where the managed copy lives."""

    what: str
    table_class: Callable[[], Any]
    managed_path: Callable[[], Path]

    def load(self, path: str | Path | None = None) -> Any:
        """``path``, else the managed copy, else the bundled default."""
        target = Path(path) if path else self.managed_path()
        if target.is_file():
            return self.table_class().load(target)
        if path:
            raise FileNotFoundError(f"{self.what} file not found: {target}")
        return self.table_class().default()

    def target(self, args: argparse.Namespace) -> Path:
        """Where edits go: ``--file``, else the managed copy."""
        return Path(args.file) if args.file else self.managed_path()

    def add_common_verbs(self, sub: argparse._SubParsersAction, guard: Callable, reset: Callable,
                         export: bool = True) -> None:
        """``export`` (unless the table has its own), ``version`` and ``reset`` (``reset(table, args)`` saves
        the bundled default the way the table's other edits are saved)."""
        if export:
            p = sub.add_parser("export", help=f"write the {self.what} (format from the suffix: .tsv/.csv/.json/.yaml)")
            p.add_argument("target", type=Path)
            p.set_defaults(func=guard(self.run_export))
        p = sub.add_parser("version", help=f"print the {self.what} version")
        p.set_defaults(func=guard(self.run_version))
        p = sub.add_parser("reset", help=f"go back to the bundled default {self.what}")
        p.set_defaults(func=guard(lambda args: reset(self.table_class().default(), args) or 0))

    def run_version(self, args: argparse.Namespace) -> int:
        print(self.load(args.file).version)
        return 0

    def run_export(self, args: argparse.Namespace) -> int:
        table = self.load(args.file)
        table.save(args.target)
        print(f"wrote {args.target} (version {table.version})")
        return 0


def _tree_class():
    from skutag.taxonomy import CategoryTree

    return CategoryTree


def _labelmap_class():
    from skutag.taxonomy import LabelMap

    return LabelMap


def _tree_path() -> Path:
    from skutag.taxonomy.home import user_tree_path

    return user_tree_path()


def _labelmap_path() -> Path:
    from skutag.taxonomy.home import user_labelmap_path

    return user_labelmap_path()


TREE = ManagedTable("category tree", _tree_class, _tree_path)
LABEL_MAP = ManagedTable("label map", _labelmap_class, _labelmap_path)


def guard(func):
    """Turn the stage's validation errors into user-facing errors (exit status 2, clear message)."""

    def run(args: argparse.Namespace) -> int:
        from skutag.taxonomy import TaxonomyError

        try:
            return func(args)
        except (TaxonomyError, KeyError, FileNotFoundError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise UserFacingError(message) from None

    return run


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
