"""Edits of the service's stored taxonomy through ``taxonomy.CategoryTree``.

The stored resource is ``{"paths": [leaf paths], "tags": {path: {"keywords": [...], "synonyms": [...]}}}``
(``tags`` only when some category has keywords or synonyms). A rename, move or re-tag builds the tree from
it, applies ``CategoryTree.update`` (the same edit as ``skutag taxonomy update``) and writes it back, with
``renamed`` telling which category paths changed (so the label map and whitelist can follow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from skutag.catalog import PATH_SEPARATOR
from skutag.policy.fields import InvalidInput, normalise_path
from skutag.store.views import Conflict, NotFound
from skutag.taxonomy import CategoryTree, TaxonomyError
from skutag.taxonomy.tree import LIST_SEPARATOR
from skutag.taxonomy.aliases import paths_by_id, renamed_between

MAX_LEVELS = 8
MAX_NAME_CHARS = 100


@dataclass(frozen=True)
class CategoryChange:
    """What to change; None (and ``root=False``) leaves that part as it is."""

    name: str | None = None
    parent: str | None = None  # move under this category path
    root: bool = False  # move to the top level
    keywords: tuple[str, ...] | None = None
    synonyms: tuple[str, ...] | None = None

    def is_empty(self) -> bool:
        return (self.name is None and self.parent is None and not self.root and self.keywords is None
                and self.synonyms is None)


@dataclass(frozen=True)
class CategoryUpdate:
    content: dict[str, Any]  # the new stored taxonomy
    old_path: str
    path: str  # the category's path after the edit
    keywords: tuple[str, ...]
    synonyms: tuple[str, ...]
    renamed: dict[str, str]  # old path -> new path of every category whose path changed

    def follow(self, path: str) -> str:
        """``path`` after the edit (unchanged when the edit did not touch it)."""
        return self.renamed.get(path, path)

    def to_json(self) -> dict[str, Any]:
        return {"old_path": self.old_path, "path": self.path, "keywords": list(self.keywords),
                "synonyms": list(self.synonyms), "renamed": dict(self.renamed)}


def tree_from_content(content: dict[str, Any] | None, seed: Sequence[str] = ()) -> CategoryTree:
    """The stored taxonomy (or, before one is stored, the ``seed`` paths) as a tree with its tags."""
    content = content or {}
    tree = CategoryTree.from_paths(content.get("paths") or list(seed))
    for path, tags in (content.get("tags") or {}).items():
        node = tree.find_path(path)
        if node is not None:
            tree.update(node.id, keywords=tags.get("keywords") or (), synonyms=tags.get("synonyms") or ())
    return tree


def content_from_tree(tree: CategoryTree) -> dict[str, Any]:
    content: dict[str, Any] = {"paths": sorted(tree.path_string(n) for n in tree.leaves())}
    tags = {tree.path_string(n): {"keywords": list(n.keywords), "synonyms": list(n.synonyms)}
            for n in tree.nodes() if n.keywords or n.synonyms}
    if tags:
        content["tags"] = dict(sorted(tags.items()))
    return content


def keep_tags(content: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """``{"paths": paths}`` with the tags of the categories still in it (a leaf set implies its parents)."""
    paths = sorted(set(paths))
    present = {PATH_SEPARATOR.join(p.split(PATH_SEPARATOR)[:i]) for p in paths
               for i in range(1, p.count(PATH_SEPARATOR) + 2)}
    tags = {p: t for p, t in (content.get("tags") or {}).items() if p in present}
    return {"paths": paths, **({"tags": tags} if tags else {})}


def update_category(content: dict[str, Any] | None, seed: Sequence[str], path: str,
                    change: CategoryChange) -> CategoryUpdate:
    """Rename, move or re-tag the category at ``path`` (any level; everything below it follows).

    InvalidInput (422) for a bad request, NotFound (404) for an unknown category, Conflict (409) for an
    edit that would make a cycle or a path that already exists."""
    path = normalise_path(path)
    name = _check_name(change.name)
    _check_tags(change)
    if change.is_empty():
        raise InvalidInput("request", "nothing to change: give name, parent, root, keywords or synonyms")
    if change.root and change.parent is not None:
        raise InvalidInput("parent", "give a parent or root=true, not both")
    tree = tree_from_content(content, seed)
    node = tree.find_path(path)
    if node is None:
        raise NotFound(f"category {path!r} is not in the taxonomy")
    parent: Any = ...
    if change.root:
        parent = None
    elif change.parent is not None:
        parent_node = tree.find_path(normalise_path(change.parent))
        if parent_node is None:
            raise InvalidInput("parent", f"{normalise_path(change.parent)!r} is not in the taxonomy")
        if parent_node.id == node.id or parent_node.id in {d.id for d in tree.descendants(node.id)}:
            raise Conflict(f"cannot move {path!r} under {tree.path_string(parent_node)!r}: that is inside it "
                           f"(a category cannot be its own ancestor)")
        parent = parent_node.id
    _check_free(tree, node, name, parent)
    before = paths_by_id(tree)
    try:
        updated = tree.update(node.id, name=name, parent=parent, keywords=change.keywords, synonyms=change.synonyms)
    except TaxonomyError as exc:  # any rule the checks above did not foresee
        raise Conflict(f"cannot update {path!r}: {exc}") from None
    after = paths_by_id(tree)
    if any(p.count(PATH_SEPARATOR) >= MAX_LEVELS for p in after.values()):
        raise InvalidInput("parent", f"the move would make paths deeper than {MAX_LEVELS} levels")
    return CategoryUpdate(
        content=content_from_tree(tree), old_path=path, path=after[node.id], keywords=updated.keywords,
        synonyms=updated.synonyms, renamed=renamed_between(before, after),
    )


def _check_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = name.strip()
    if not name or ">" in name or len(name) > MAX_NAME_CHARS:
        raise InvalidInput("name", f"a category name needs 1-{MAX_NAME_CHARS} characters and no '>'")
    return name


def _check_tags(change: CategoryChange) -> None:
    """Keywords and synonyms without '|': tree files (CSV/TSV) list them joined by it."""
    for field in ("keywords", "synonyms"):
        if any(LIST_SEPARATOR in word for word in getattr(change, field) or ()):
            raise InvalidInput(field, f"a word may not hold {LIST_SEPARATOR!r} (tree files list words joined by it); "
                                      "give each as its own item")


def _check_free(tree: CategoryTree, node, name: str | None, parent: Any) -> None:
    """Conflict when the category's new path is already another category's."""
    parent_id = node.parent if parent is ... else parent
    prefix = tree.path_of(parent_id) if parent_id is not None else ()
    target = prefix + ((name if name is not None else node.name),)
    existing = tree.find_path(target)
    if existing is not None and existing.id != node.id:
        raise Conflict(f"category {PATH_SEPARATOR.join(target)!r} already exists; sibling names must be unique")
