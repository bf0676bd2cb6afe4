"""``skutag brands``: list, edit, import/export (files or a product database), match and learn the brand lexicon."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from skutag.cli import UserFacingError
from skutag.commands.ocr import load_lexicon


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_brands(subparsers)


def _register_brands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "brands",
        help="list and edit the brand lexicon",
        description="List and edit the brand lexicon (brand, aliases in Chinese/Latin/pinyin, categories). "
        "Edits go to your lexicon file ($SKUTAG_HOME/taxonomy/brands.csv, created from the bundled one "
        "on the first edit) or to --file. Every edit changes the lexicon version.",
    )
    parser.add_argument("--file", type=Path, help="lexicon CSV to read and edit instead of yours")
    actions = parser.add_subparsers(dest="brands_action", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    listing = actions.add_parser("list", help="show brands (or one brand) and the lexicon version")
    listing.add_argument("name", nargs="?", help="one brand (name or alias)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_brands_list)

    for action, helptext in (("add", "add a brand"), ("update", "change a brand")):
        sub = actions.add_parser(action, help=helptext)
        sub.add_argument("name")
        sub.add_argument("--alias", action="append", help="alias (repeat); for update: replaces all aliases")
        sub.add_argument("--category", action="append", help="category path 'a > b > c' (repeat)")
        if action == "update":
            sub.add_argument("--add-alias", action="append", default=[], help="alias to add (repeat)")
            sub.add_argument("--remove-alias", action="append", default=[], help="alias to remove (repeat)")
            sub.add_argument("--rename", help="new canonical name")
        sub.set_defaults(func=_brands_add if action == "add" else _brands_update)

    delete = actions.add_parser("delete", help="remove a brand")
    delete.add_argument("name")
    delete.set_defaults(func=_brands_delete)

    importing = actions.add_parser("import", help="merge brands from a CSV (or replace the lexicon with it)")
    importing.add_argument("source", type=Path)
    importing.add_argument("--replace", action="store_true", help="replace the whole lexicon")
    importing.add_argument("--db", metavar="URL", help="into the service database's lexicon instead (a new version "
                           "every tagger on that database follows)")
    importing.set_defaults(func=_brands_import_any)

    exporting = actions.add_parser("export", help="write the lexicon as CSV ('-' = standard output)")
    exporting.add_argument("target", type=str)
    exporting.add_argument("--db", metavar="URL", help="write the service database's lexicon (API/dashboard edits)")
    exporting.set_defaults(func=_brands_export)

    match = actions.add_parser("match", help="brands named verbatim in a text (e.g. a product title)")
    match.add_argument("text")
    match.set_defaults(func=_brands_match)

    learn = actions.add_parser(
        "learn", help="learn what brands look like in your titles (finds brands the lexicon lacks)",
        description="Fit a brand-span model on a catalog's titles whose `brand` value is written in the title. "
        "It is checked on 20% of those titles held out (by a hash of the title), then fitted on all and saved; "
        "title brand extraction (tagging, training) uses it from then on (text.brand_model).")
    learn.add_argument("catalog", type=Path, metavar="CATALOG", help="JSONL/CSV with title and brand columns")
    learn.add_argument("--out", type=Path, help="model file (default: $SKUTAG_HOME/taxonomy/brand_spans.joblib)")
    learn.add_argument("--json", action="store_true")
    learn.set_defaults(func=_brands_learn)


def _editable(args: argparse.Namespace):
    """(lexicon, path it is saved to)."""
    from skutag.taxonomy.brands import user_lexicon_path

    path = args.file or user_lexicon_path()
    lexicon = load_lexicon(path if path.is_file() else None) if not args.file else load_lexicon(path)
    return lexicon, path


def _save(lexicon, path: Path, message: str) -> int:
    lexicon.save(path)
    print(f"{message}; lexicon version {lexicon.version} saved to {path}")
    return 0


def _edit(fn):
    def run(args: argparse.Namespace) -> int:
        from skutag.taxonomy.brands import LexiconError

        lexicon, path = _editable(args)
        try:
            message = fn(args, lexicon)
        except LexiconError as exc:
            raise UserFacingError(str(exc)) from None
        return _save(lexicon, path, message)

    return run


def _brands_list(args: argparse.Namespace) -> int:
    from skutag.taxonomy.brands import LexiconError

    lexicon, path = _editable(args)
    try:
        entries = [lexicon.get(args.name)] if args.name else lexicon.entries
    except LexiconError as exc:
        raise UserFacingError(str(exc)) from None
    if args.json:
        print(json.dumps({"version": lexicon.version, "brands": [b.to_json() for b in entries]}, ensure_ascii=False))
        return 0
    for brand in entries:
        aliases = ", ".join(brand.aliases) or "-"
        categories = "; ".join(brand.categories) or "-"
        print(f"{brand.name}\t{aliases}\t{categories}")
    source = path if path.is_file() else "bundled lexicon"
    print(f"# {len(entries)} of {len(lexicon)} brands, version {lexicon.version} ({source})", file=sys.stderr)
    return 0


@_edit
def _brands_add(args, lexicon) -> str:
    brand = lexicon.add(args.name, args.alias or (), args.category or ())
    if not args.file:  # the lexicon tagging reads
        _warn_unknown_categories(args.category or ())
    return f"added {brand.name}"


def _warn_unknown_categories(paths) -> None:
    """A brand's category the managed tree lacks gives tagging no vote: say so (the edit is kept)."""
    from skutag.taxonomy import CategoryTree

    tree = CategoryTree.active()
    missing = [p for p in paths if tree.find_path(p) is None]
    if missing:
        print(f"warning: {', '.join(repr(p) for p in missing)} is not in the category tree (`skutag taxonomy "
              "list`): the brand gives tagging no vote there until the category exists", file=sys.stderr)


@_edit
def _brands_update(args, lexicon) -> str:
    brand = lexicon.update(
        args.name, aliases=args.alias, categories=args.category,
        add_aliases=args.add_alias, remove_aliases=args.remove_alias, rename=args.rename,
    )
    if not args.file:
        _warn_unknown_categories(args.category or ())
    return f"updated {brand.name}"


@_edit
def _brands_delete(args, lexicon) -> str:
    return f"deleted {lexicon.delete(args.name).name}"


def _load_incoming(source: Path):
    """The brands of the CSV ``source``; unreadable or empty files are clear errors."""
    from skutag.taxonomy.brands import BrandLexicon, LexiconError

    try:
        incoming = BrandLexicon.load(source)
    except LexiconError as exc:
        raise UserFacingError(str(exc)) from None
    except OSError as exc:
        raise UserFacingError(f"cannot read {source}: {exc.strerror or exc}") from None
    if not len(incoming):
        raise UserFacingError(f"{source} holds no brands")
    return incoming


def _merge_brands(lexicon, incoming, source: Path, replace: bool) -> str:
    """Brands of ``incoming`` merged into ``lexicon`` (or replacing it); what was done."""
    removed = 0
    if replace:
        for name in list(lexicon.brands):
            lexicon.delete(name)
            removed += 1
    added = updated = 0
    for brand in incoming:
        existing = lexicon.resolve(brand.name)
        if existing is None:
            lexicon.add(brand.name, brand.aliases, brand.categories)
            added += 1
        else:
            old = lexicon.get(existing)
            lexicon.update(existing, add_aliases=[a for a in brand.names if a != existing],
                           categories=list(dict.fromkeys(old.categories + brand.categories)))
            updated += 1
    replaced = f"{removed} brands replaced by " if replace else ""
    return f"imported {source}: {replaced}{added} added, {updated} merged"


@_edit
def _brands_import(args, lexicon) -> str:
    return _merge_brands(lexicon, _load_incoming(args.source), args.source, args.replace)


def _brands_import_any(args: argparse.Namespace) -> int:
    return _brands_import_into_database(args) if args.db is not None else _brands_import(args)


def _entries(lexicon) -> dict[str, dict[str, list[str]]]:
    return {b.name: {"aliases": list(b.aliases), "categories": list(b.categories)} for b in lexicon}


def _brands_import_into_database(args: argparse.Namespace) -> int:
    """Merge (or replace) into the database's lexicon. Before its first edit a service reads brands with its
    model's lexicon, which on this machine is ``BrandLexicon.active()`` (``skutag brands list``): the merge
    starts from that one."""
    from sqlalchemy.exc import DBAPIError

    from skutag.commands.database import open_existing_store
    from skutag.policy.rules import lexicon_from_entries
    from skutag.taxonomy.brands import BrandLexicon, LexiconError

    incoming = _load_incoming(args.source)
    store = open_existing_store(args.db)
    try:
        _check_service_rules(incoming, args.source, store)
        stored = store.resource("lexicon")
        if stored is not None:
            lexicon, base = lexicon_from_entries(stored.content), f"the database's lexicon version {stored.version}"
            before = _entries(lexicon)  # as the service reads it (aliases that read the same kept once)
        else:
            lexicon = BrandLexicon.active()
            base, before = f"this machine's lexicon ({len(lexicon)} brands; the database had no edited one)", None
        try:
            message = _merge_brands(lexicon, incoming, args.source, args.replace)
            content = _entries(lexicon)
            lexicon_from_entries(content)  # what the service will load must load
        except LexiconError as exc:
            raise UserFacingError(str(exc)) from None
        if content == before:
            print(f"{message}; unchanged: the database's lexicon version {stored.version} already holds it")
            return 0
        try:
            saved = store.save_resource("lexicon", content, who="cli", note=f"import {args.source.name}")
        except DBAPIError as exc:
            raise UserFacingError(f"the database refused the lexicon: {' '.join(str(exc.orig).split())}") from None
    finally:
        store.close()
    print(f"{message} into {base}; saved as the database's lexicon version {saved.version} ({len(content)} brands)")
    return 0


def _check_service_rules(incoming, source: Path, store) -> None:
    """The service's rules for a brand (``PUT /v1/brands``): a name of 1-200 characters without '/' (the API
    addresses brands by name in the URL), aliases of 2-200 characters (one character would match almost any
    text), categories that are paths of the database's taxonomy (once it has one)."""
    from skutag.policy.brands import check_brand_entry
    from skutag.policy.fields import InvalidInput, normalise_path

    stored = store.resource("taxonomy")
    known = set(stored.content.get("paths", [])) if stored else set()

    def in_taxonomy(path: str) -> str:
        path = normalise_path(path)
        if known and path not in known:
            raise InvalidInput("category", f"{path!r} is not in the database's taxonomy (add it first: skutag "
                                           "taxonomy import --db, or the API)")
        return path

    for brand in incoming:
        try:
            check_brand_entry(brand.name, brand.aliases, brand.categories, in_taxonomy)
        except InvalidInput as exc:
            raise UserFacingError(f"{source}: brand {brand.name[:60]!r}: {exc}") from None


def _database_lexicon(url: str):
    from skutag.commands.database import read_resource
    from skutag.policy.rules import lexicon_from_entries

    stored = read_resource(url, "lexicon")
    if stored is None:
        raise UserFacingError("the database holds no edited lexicon yet: a service reads brands with its model's "
                              "own, on this machine the one `skutag brands export` (without --db) writes")
    return lexicon_from_entries(stored.content), stored.version


def _write_lexicon(lexicon, target: str) -> str:
    """``lexicon`` as CSV to ``target`` ('-': standard output; a device such as /dev/null is written in place,
    a file through a temporary name); where it went."""
    if target == "-":
        sys.stdout.write(lexicon.to_csv())
        return "standard output"
    path = Path(target)
    if path.is_dir():
        raise UserFacingError(f"{target} is a folder: give a file name, e.g. {path / 'brands.csv'}")
    try:
        if path.exists() and not path.is_file():
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(lexicon.to_csv())
            return str(path)
        return str(lexicon.save(path))
    except OSError as exc:
        raise UserFacingError(f"cannot write {target}: {exc.strerror or exc}") from None


def _brands_export(args: argparse.Namespace) -> int:
    if args.db is not None:
        lexicon, version = _database_lexicon(args.db)
        where = _write_lexicon(lexicon, args.target)
        if args.target != "-":
            print(f"exported {len(lexicon)} brands (the database's lexicon version {version}) to {where}")
        return 0
    lexicon, _ = _editable(args)
    where = _write_lexicon(lexicon, args.target)
    if args.target != "-":
        print(f"exported {len(lexicon)} brands (version {lexicon.version}) to {where}")
    return 0


def _brands_match(args: argparse.Namespace) -> int:
    lexicon, _ = _editable(args)
    for match in lexicon.match_text(args.text):
        print(f"{match.brand}\t{match.alias}\t{match.start}:{match.end}")
    return 0


def _brands_learn(args: argparse.Namespace) -> int:
    from skutag.brand_training import learn_brand_model
    from skutag.catalog_io import CatalogError

    try:
        summary = learn_brand_model(args.catalog, args.out)
    except (CatalogError, OSError, ValueError) as exc:
        raise UserFacingError(str(exc)) from None
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(f"learned brand spans from {summary['rows']} titles (of {summary['rows_with_brand']} with a brand); "
              f"saved to {summary['model']}")
        scores = summary["held_out"]
        if "f1" in scores:
            print(f"held-out check on {scores['rows']} titles: precision {scores['precision']:.3f}, "
                  f"recall {scores['recall']:.3f}, F1 {scores['f1']:.3f}")
    return 0
