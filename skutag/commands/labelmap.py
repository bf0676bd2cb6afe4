"""``skutag labelmap ...``: manage the vision label -> category map (标签层级映射).

A managed file (``skutag.commands.managed``): the working copy lives under ``SKUTAG_HOME/taxonomy/labelmap.tsv``
and starts as the bundled ImageNet map until the first edit or import; ``--file`` works on another file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from skutag.cli import UserFacingError
from skutag.commands.managed import LABEL_MAP, TREE, guard as _guard, print_json as _print_json


def managed_labelmap_path() -> Path:
    """The managed label map tagging reads (``LabelMap.active()``)."""
    return LABEL_MAP.managed_path()


def load_managed_labelmap(path: str | Path | None = None):
    """The current label map: ``path``, else the managed copy, else the bundled default."""
    return LABEL_MAP.load(path)


def load_managed_tree(path: str | Path | None = None):
    return TREE.load(path)


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_labelmap(subparsers)


def _register_labelmap(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "labelmap",
        help="manage the vision label -> category map (list/add/update/delete/import/export/check/version)",
        description="The vision label -> category path map (标签层级映射).",
    )
    parser.add_argument("--file", help="work on this label map file instead of the managed copy")
    parser.add_argument("--tree", help="category tree file to check paths against (default: the managed tree)")
    sub = parser.add_subparsers(dest="labelmap_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    p = sub.add_parser("list", help="list entries")
    p.add_argument("--under", help="only entries at or below this category path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(_labelmap_list))

    p = sub.add_parser("add", help="map a label to a category path")
    p.add_argument("label")
    p.add_argument("path", help="'A > B > C' (must exist in the tree unless --force)")
    p.add_argument("--index", type=int, help="the backbone's class index for this label")
    p.add_argument("--note", default="", help="free text (e.g. the English label)")
    p.add_argument("--force", action="store_true", help="allow a path the tree does not have")
    p.set_defaults(func=_guard(_labelmap_add))

    p = sub.add_parser("update", help="change an entry (by label text or class index)")
    p.add_argument("ref", help="label text, or a class index")
    p.add_argument("--path")
    p.add_argument("--label", help="new label text")
    index = p.add_mutually_exclusive_group()
    index.add_argument("--index", type=int)
    index.add_argument("--no-index", action="store_true", help="clear the class index")
    p.add_argument("--note")
    p.add_argument("--force", action="store_true", help="allow a path the tree does not have")
    p.set_defaults(func=_guard(_labelmap_update))

    p = sub.add_parser("delete", help="remove an entry (by label text or class index)")
    p.add_argument("ref")
    p.set_defaults(func=_guard(_labelmap_delete))

    p = sub.add_parser("import", help="validate a label map file (.tsv/.csv/.json/.yaml) and make it the managed map")
    p.add_argument("source", type=Path)
    p.add_argument("--force", action="store_true", help="accept paths the tree does not have")
    p.set_defaults(func=_guard(_labelmap_import))

    p = sub.add_parser("check", help="check every path against the tree")
    p.set_defaults(func=_guard(_labelmap_check))

    LABEL_MAP.add_common_verbs(sub, _guard, reset=_save_labelmap)


def _ref(value: str) -> str | int:
    return int(value) if value.strip().isdigit() else value


def _labelmap_target(args: argparse.Namespace) -> Path:
    return LABEL_MAP.target(args)


def _check_paths(mapping, args: argparse.Namespace, force: bool) -> None:
    problems = mapping.problems(load_managed_tree(args.tree))
    if problems and not force:
        shown = "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        raise UserFacingError(f"label map does not fit the category tree: {shown} (use --force to accept)")


def _save_labelmap(mapping, args: argparse.Namespace) -> None:
    target = _labelmap_target(args)
    mapping.save(target)
    print(f"saved {target} (version {mapping.version}, {len(mapping)} entries)")


def _labelmap_list(args: argparse.Namespace) -> int:
    mapping = load_managed_labelmap(args.file)
    entries = mapping.labels_under(args.under) if args.under else mapping.entries()
    if args.json:
        _print_json([e.to_json() for e in entries])
        return 0
    for entry in entries:
        index = "" if entry.index is None else entry.index
        print(f"{index}\t{entry.label}\t{entry.path_string}")
    return 0


def _labelmap_add(args: argparse.Namespace) -> int:
    mapping = load_managed_labelmap(args.file)
    entry = mapping.add(args.label, args.path, index=args.index, note=args.note)
    _check_paths(mapping, args, args.force)
    print(f"added {entry.label} -> {entry.path_string}")
    _save_labelmap(mapping, args)
    return 0


def _labelmap_update(args: argparse.Namespace) -> int:
    mapping = load_managed_labelmap(args.file)
    index: Any = ...
    if args.no_index:
        index = None
    elif args.index is not None:
        index = args.index
    entry = mapping.update(_ref(args.ref), path=args.path, label=args.label, index=index, note=args.note)
    _check_paths(mapping, args, args.force)
    print(f"updated {entry.label} -> {entry.path_string}")
    _save_labelmap(mapping, args)
    return 0


def _labelmap_delete(args: argparse.Namespace) -> int:
    mapping = load_managed_labelmap(args.file)
    entry = mapping.delete(_ref(args.ref))
    print(f"deleted {entry.label} -> {entry.path_string}")
    _save_labelmap(mapping, args)
    return 0


def _labelmap_import(args: argparse.Namespace) -> int:
    from skutag.taxonomy import LabelMap

    mapping = LabelMap.load(args.source)
    _check_paths(mapping, args, args.force)
    _save_labelmap(mapping, args)
    return 0


def _labelmap_check(args: argparse.Namespace) -> int:
    mapping = load_managed_labelmap(args.file)
    problems = mapping.problems(load_managed_tree(args.tree))
    for problem in problems:
        print(problem)
    if problems:
        raise UserFacingError(f"{len(problems)} label map entries do not fit the category tree")
    print(f"ok: {len(mapping)} entries fit the tree (label map version {mapping.version})")
    return 0
