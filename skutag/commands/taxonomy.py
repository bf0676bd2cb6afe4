"""``skutag taxonomy ...``: manage the category tree (``skutag labelmap`` is in commands/labelmap.py).

The tree is a managed file (``skutag.commands.managed``): the working copy lives under
``SKUTAG_HOME/taxonomy/tree.json`` and starts as the bundled JD tree until the first edit or import.
``--file`` works on any other file instead. Every edit is validated before it is saved, and prints the new
version; renames are followed by the label map, the brand lexicon and the recorded path aliases.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from skutag.cli import UserFacingError
from skutag.commands.database import open_existing_store, read_resource
from skutag.commands.managed import LABEL_MAP, TREE, guard as _guard, print_json as _print_json


def managed_tree_path() -> Path:
    """The managed tree tagging reads (``CategoryTree.active()``)."""
    return TREE.managed_path()


def load_managed_tree(path: str | Path | None = None):
    """The shop's current tree: ``path``, else the managed copy, else the bundled default."""
    return TREE.load(path)


def _split_bar(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split("|") if part.strip()]


# ---------------------------------------------------------------------------------------- taxonomy
def register(subparsers: argparse._SubParsersAction) -> None:
    _register_taxonomy(subparsers)


def _register_taxonomy(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "taxonomy",
        help="manage the category tree (list/show/add/update/delete/import/export/validate/version)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--file", help="work on this tree file instead of the managed copy")
    sub = parser.add_subparsers(dest="taxonomy_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    p = sub.add_parser("list", help="list categories (paths)")
    p.add_argument("--leaves", action="store_true", help="leaves only")
    p.add_argument("--under", help="only below this path or id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(_taxonomy_list))

    p = sub.add_parser("show", help="one category by id or path")
    p.add_argument("ref", help="id or path 'A > B > C'")
    p.set_defaults(func=_guard(_taxonomy_show))

    p = sub.add_parser("add", help="add a category path (missing levels are created)")
    p.add_argument("path", help="'A > B > C'")
    p.add_argument("--id", help="id of the new node (default: derived from its path)")
    p.add_argument("--keywords", help="keywords, joined by |")
    p.add_argument("--synonyms", help="synonyms, joined by |")
    p.set_defaults(func=_guard(_taxonomy_add))

    p = sub.add_parser("update", help="rename, move or re-tag a category")
    p.add_argument("ref", help="id or path")
    p.add_argument("--name", help="new name")
    move = p.add_mutually_exclusive_group()
    move.add_argument("--parent", help="new parent (id or path)")
    move.add_argument("--root", action="store_true", help="make it a root")
    p.add_argument("--keywords", help="keywords, joined by | ('' clears)")
    p.add_argument("--synonyms", help="synonyms, joined by | ('' clears)")
    p.set_defaults(func=_guard(_taxonomy_update))

    p = sub.add_parser("delete", help="delete a category")
    p.add_argument("ref", help="id or path")
    p.add_argument("--cascade", action="store_true", help="also delete everything below it")
    p.set_defaults(func=_guard(_taxonomy_delete))

    p = sub.add_parser("import", help="validate a tree file (.tsv/.csv/.json/.yaml) and make it the managed tree")
    p.add_argument("source", type=Path)
    p.add_argument("--db", metavar="URL", help="make it the service database's taxonomy instead (a new version; "
                   "refused while stored products are filed under categories the file lacks)")
    p.set_defaults(func=_guard(_taxonomy_import))

    p = sub.add_parser("export", help="write the tree (format from the suffix: .tsv/.csv/.json/.yaml)")
    p.add_argument("target", type=Path)
    p.add_argument("--db", metavar="URL", help="write the service database's taxonomy instead (what the dashboard "
                   "and the API edited), e.g. to import it as the command line's managed tree")
    p.set_defaults(func=_guard(_taxonomy_export))

    p = sub.add_parser("validate", help="check a tree file; errors name the bad row")
    p.add_argument("source", type=Path)
    p.set_defaults(func=_guard(_taxonomy_validate))

    TREE.add_common_verbs(sub, _guard, reset=_replace_tree, export=False)


def _tree_target(args: argparse.Namespace) -> Path:
    return TREE.target(args)


def _save_tree(tree, args: argparse.Namespace, check: bool = True) -> None:
    """Save the edited tree; ``check``: then drop renames that lead nowhere now and warn about label-map
    entries and brands left without their category (an update does both after its renames are followed)."""
    target = _tree_target(args)
    tree.save(target)
    print(f"saved {target} (version {tree.version}, {len(tree)} categories, {len(tree.leaves())} leaves)")
    if check:
        _check_after_save(tree, args)


def _is_managed(args: argparse.Namespace) -> bool:
    """Whether the command works on the managed tree (the one tagging reads), ``--file`` naming it included."""
    return not args.file or Path(args.file).resolve() == managed_tree_path().resolve()


def _aliases_belong_to(args: argparse.Namespace) -> bool:
    """Whether the path aliases beside ``--file`` are that file's own (not the managed tree's, for a draft
    kept in the managed folder)."""
    return _is_managed(args) or managed_aliases_path(args.file).resolve() != managed_aliases_path().resolve()


def _after_save(step, *arguments) -> None:
    """One follow-up of a saved tree; a damaged side file is reported, never left half done with a traceback."""
    from skutag.taxonomy import LabelMapError, TaxonomyError
    from skutag.taxonomy.brands import LexiconError

    try:
        step(*arguments)
    except (LabelMapError, LexiconError, TaxonomyError, ValueError, OSError) as exc:
        print(f"warning: the tree is saved, but {step.__name__.strip('_').replace('_', ' ')} failed: {exc}",
              file=sys.stderr)


def _check_after_save(tree, args: argparse.Namespace) -> None:
    if _aliases_belong_to(args):
        _after_save(_prune_aliases, tree, args)
    if _is_managed(args):
        _after_save(_warn_dangling, tree)


def _prune_aliases(tree, args: argparse.Namespace) -> None:
    """Recorded renames whose new path the saved tree no longer has (a reset, an import, a delete), or whose
    old path it has again, are dropped: old answers must not be read as categories that are gone."""
    from skutag.taxonomy.aliases import load_aliases, save_aliases

    path = managed_aliases_path(args.file)
    aliases = load_aliases(path) if path.is_file() else {}
    nodes = {tree.path_string(n) for n in tree.nodes()}
    # a rename leads nowhere when its new path is gone, and is void when its old path is a category again
    # (an answer of that path now means the live category)
    kept = {old: new for old, new in aliases.items() if new in nodes and old not in nodes}
    if len(kept) != len(aliases):
        save_aliases(path, kept)
        print(f"path aliases: {len(aliases) - len(kept)} renames dropped (their new paths are not in the tree, "
              "or their old paths are categories again)")


def _warn_dangling(tree) -> None:
    """Say when the managed label map or brands name categories the managed tree no longer has: tagging
    drops their votes until they are mapped again."""
    from skutag.taxonomy import PATH_SEPARATOR
    from skutag.taxonomy.brands import BrandLexicon

    nodes = {tree.path_string(n) for n in tree.nodes()}
    entries = [e for e in LABEL_MAP.load().entries() if PATH_SEPARATOR.join(e.path) not in nodes]
    brands = [b for b in BrandLexicon.active() if any(c not in nodes for c in b.categories)]
    if entries or brands:
        examples = [f"{e.label} -> {PATH_SEPARATOR.join(e.path)}" for e in entries[:2]]
        examples += [f"brand {b.name}" for b in brands[:2]]
        print(f"warning: {len(entries)} label-map entries and {len(brands)} brands name categories this tree lacks "
              f"(e.g. {'; '.join(examples)}); they give tagging no votes until mapped again "
              "(`skutag labelmap check`, `skutag brands update NAME --category PATH`)", file=sys.stderr)


def _taxonomy_list(args: argparse.Namespace) -> int:
    tree = load_managed_tree(args.file)
    nodes = tree.leaves() if args.leaves else tree.nodes()
    if args.under:
        top = tree.resolve(args.under)
        below = {n.id for n in tree.descendants(top.id)} | {top.id}
        nodes = [n for n in nodes if n.id in below]
    if args.json:
        _print_json([{**n.to_json(), "path": tree.path_string(n), "leaf": tree.is_leaf(n.id)} for n in nodes])
        return 0
    for node in nodes:
        extra = f"  [{'|'.join(node.keywords)}]" if node.keywords else ""
        print(f"{node.id}\t{tree.path_string(node)}{extra}")
    return 0


def _taxonomy_show(args: argparse.Namespace) -> int:
    tree = load_managed_tree(args.file)
    node = tree.resolve(args.ref)
    _print_json(
        {
            **node.to_json(),
            "path": tree.path_string(node),
            "leaf": tree.is_leaf(node.id),
            "children": [c.id for c in tree.children(node.id)],
        }
    )
    return 0


def _taxonomy_add(args: argparse.Namespace) -> int:
    from skutag.taxonomy import split_path

    tree = load_managed_tree(args.file)
    names = split_path(args.path)
    if tree.find_path(names) is not None:
        raise UserFacingError(f"category {args.path!r} already exists (use update)")
    node = tree.add_path(names, node_id=args.id)
    if args.keywords is not None or args.synonyms is not None:
        node = tree.update(node.id, keywords=_split_bar(args.keywords), synonyms=_split_bar(args.synonyms))
    print(f"added {node.id}\t{tree.path_string(node)}")
    _save_tree(tree, args)
    return 0


def managed_aliases_path(tree_file: str | Path | None = None) -> Path:
    """The path aliases kept beside a tree file (default: beside the managed tree)."""
    from skutag.pipeline import managed_aliases_file
    from skutag.taxonomy.aliases import ALIASES_FILE_NAME

    return Path(tree_file).with_name(ALIASES_FILE_NAME) if tree_file else managed_aliases_file()


def _taxonomy_update(args: argparse.Namespace) -> int:
    from skutag.taxonomy.aliases import paths_by_id, renamed_between

    tree = load_managed_tree(args.file)
    before = paths_by_id(tree)
    parent: Any = ...
    if args.root:
        parent = None
    elif args.parent is not None:
        parent = args.parent
    node = tree.update(
        args.ref,
        name=args.name,
        parent=parent,
        keywords=_split_bar(args.keywords),
        synonyms=_split_bar(args.synonyms),
    )
    print(f"updated {node.id}\t{tree.path_string(node)}")
    _save_tree(tree, args, check=False)  # the recorded renames compose with this one first (A->B, B->C)
    _follow_renames(renamed_between(before, paths_by_id(tree)), args)
    _check_after_save(tree, args)
    return 0


def _follow_renames(renamed: dict[str, str], args: argparse.Namespace) -> None:
    """Categories whose path changed (same node id): recorded as path aliases, and on the managed tree the
    managed label map and brands follow them."""
    for old, new in renamed.items():
        print(f"renamed {old} -> {new}")
    if renamed and _aliases_belong_to(args):
        _after_save(_record_renames, managed_aliases_path(None if _is_managed(args) else args.file), renamed)
        if _is_managed(args):
            _after_save(_labelmap_follows, renamed)
            _after_save(_lexicon_follows, renamed)


def _replace_tree(tree, args: argparse.Namespace) -> None:
    """``tree`` replaces the current one (import, reset); categories it keeps under the same node id but
    another path are followed as renames (e.g. a reset after a rename takes the label map back)."""
    from skutag.taxonomy import TaxonomyError
    from skutag.taxonomy.aliases import paths_by_id, renamed_between

    try:
        before = paths_by_id(load_managed_tree(args.file))
    except (TaxonomyError, FileNotFoundError):  # no readable tree before: nothing to follow
        before = {}
    _save_tree(tree, args, check=False)
    _follow_renames(renamed_between(before, paths_by_id(tree)), args)
    _check_after_save(tree, args)


def _record_renames(aliases: Path, renamed: dict[str, str]) -> None:
    from skutag.taxonomy.aliases import compose, load_aliases, save_aliases

    save_aliases(aliases, compose(load_aliases(aliases), renamed))
    print(f"saved {aliases} (bundles trained before answer with the new paths; `skutag retrain` relabels "
          f"their training rows)")


def _labelmap_follows(renamed: dict[str, str]) -> None:
    """Label-map entries on a renamed or moved category point at its new path (as the service's rename does);
    all at once, so labels that repeat move together."""
    from dataclasses import replace

    from skutag.taxonomy import PATH_SEPARATOR, LabelMap, split_path

    mapping = LABEL_MAP.load()
    entries = mapping.entries()
    moved = [replace(e, path=tuple(split_path(renamed[PATH_SEPARATOR.join(e.path)])))
             if PATH_SEPARATOR.join(e.path) in renamed else e for e in entries]
    count = sum(a is not b for a, b in zip(entries, moved))
    if count:
        followed = LabelMap(moved)
        followed.save(LABEL_MAP.managed_path())
        print(f"label map: {count} entries follow (version {followed.version})")


def _lexicon_follows(renamed: dict[str, str]) -> None:
    """Brands' categories on a renamed or moved category name its new path."""
    from skutag.taxonomy.brands import BrandLexicon, user_lexicon_path

    lexicon = BrandLexicon.active()
    moved = [b for b in lexicon if any(c in renamed for c in b.categories)]
    for brand in moved:
        lexicon.update(brand.name, categories=[renamed.get(c, c) for c in brand.categories])
    if moved:
        lexicon.save(user_lexicon_path())
        print(f"brands: {len(moved)} follow ({', '.join(b.name for b in moved[:5])}; lexicon version {lexicon.version})")


def _taxonomy_delete(args: argparse.Namespace) -> int:
    tree = load_managed_tree(args.file)
    paths = {n.id: tree.path_string(n) for n in tree.nodes()}
    removed = tree.delete(args.ref, cascade=args.cascade)
    for node in removed:
        print(f"deleted {node.id}\t{paths[node.id]}")
    _save_tree(tree, args)
    return 0


def _taxonomy_import(args: argparse.Namespace) -> int:
    from skutag.taxonomy import CategoryTree

    tree = CategoryTree.load(args.source)
    if args.db is not None:
        return _import_into_database(tree, args)
    _replace_tree(tree, args)
    return 0


def _taxonomy_export(args: argparse.Namespace) -> int:
    if args.db is not None:
        tree, version = _database_tree(args.db)
        tree.save(args.target)
        print(f"wrote {args.target} (the database's taxonomy version {version}, {len(tree.leaves())} leaves)")
        return 0
    return TREE.run_export(args)


# ---------------------------------------------------------------------------------------- service database
def _database_tree(url: str):
    """The taxonomy the service on ``url`` keeps (paths and their keywords/synonyms) and its version."""
    from skutag.service.categories import tree_from_content

    stored = read_resource(url, "taxonomy")
    if stored is None or not stored.content.get("paths"):
        raise UserFacingError("the database holds no edited taxonomy yet: the service answers with its model's "
                              "categories (edit one through the dashboard or PUT/POST /v1/taxonomy/categories)")
    return tree_from_content(stored.content), stored.version


def _service_content(tree, source: Path) -> dict[str, Any]:
    """``tree`` as the service stores it, within the service's limits on paths."""
    from skutag.service.categories import content_from_tree
    from skutag.policy.fields import InvalidInput, normalise_path

    content = content_from_tree(tree)
    if not content["paths"]:
        raise UserFacingError(f"{source} holds no categories: the service's taxonomy cannot be empty")
    for path in content["paths"]:
        try:
            normalise_path(path)
        except InvalidInput as exc:
            raise UserFacingError(f"{source}: {path[:200]!r}: {exc.message}") from None
    return content


def _references_lost(store, tree) -> list[str]:
    """What in the database still names a category ``tree`` lacks: stored products (by leaf), label-map
    targets (leaves), whitelisted prefixes and brands' categories (any level)."""
    from skutag.policy.rules import stored_mapping

    leaves = {tree.path_string(n) for n in tree.leaves()}
    nodes = {tree.path_string(n) for n in tree.nodes()}

    def missing(path: str, needed: set[str]) -> str:
        return "is not a leaf there" if path in nodes and needed is leaves else "is missing"

    lost = [f"{n} stored products are filed under {path!r}, which {missing(path, leaves)}"
            for path, n in sorted(store.product_path_counts().items()) if path not in leaves]
    lost += [f"the label map sends {label!r} to {path!r}, which {missing(path, leaves)}"
             for label, path in sorted(stored_mapping(store, "label_map").items()) if path not in leaves]
    whitelist = store.resource("whitelist")
    lost += [f"the review whitelist holds {path!r}, which is missing"
             for path in (whitelist.content.get("paths", []) if whitelist else []) if path not in nodes]
    lexicon = store.resource("lexicon")
    lost += [f"brand {name!r} names the category {path!r}, which is missing"
             for name, entry in sorted((lexicon.content if lexicon else {}).items())
             for path in entry.get("categories", ()) if path not in nodes]
    return lost


def _import_into_database(tree, args: argparse.Namespace) -> int:
    """``tree`` becomes a new version of the database's taxonomy, unless something stored there would be
    left naming a category it lacks (a rename moves all of it: ``PUT /v1/taxonomy/categories``)."""
    content = _service_content(tree, args.source)
    store = open_existing_store(args.db)
    try:
        lost = _references_lost(store, tree)
        if lost:
            shown = "; ".join(lost[:5]) + (f"; and {len(lost) - 5} more" if len(lost) > 5 else "")
            raise UserFacingError(
                f"{args.source} lacks categories the database uses: {shown}. Add them to the file, or rename "
                "them first (PUT /v1/taxonomy/categories moves products, label-map targets, the whitelist and "
                "brands along)")
        stored = store.resource("taxonomy")
        if stored is not None and stored.content == content:
            print(f"unchanged: the database's taxonomy version {stored.version} is already this tree")
            return 0
        saved = store.save_resource("taxonomy", content, who="cli", note=f"import {args.source.name}")
    finally:
        store.close()
    print(f"saved as the database's taxonomy version {saved.version} ({len(content['paths'])} leaves)")
    return 0


def _taxonomy_validate(args: argparse.Namespace) -> int:
    from skutag.taxonomy import CategoryTree

    tree = CategoryTree.load(args.source)
    print(f"ok: {len(tree)} categories, {len(tree.leaves())} leaves, depth {tree.depth()}, version {tree.version}")
    return 0
