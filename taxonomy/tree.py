"""A shop's category tree: nodes with ids, names, a parent, keywords and synonyms, any depth.

The tree is the shop's, not ours: it is loaded from a file (TSV/CSV node or path table, JSON, YAML),
validated with errors that name the bad row, edited through a small CRUD API, and saved back.
``version`` is a short hash of the canonical content, so it changes with every edit and a trained
model can record which tree it was trained with.

Two table layouts are read:

* node table: columns ``id, name, parent`` (+ optional ``keywords``, ``synonyms``; several values
  joined by ``|``); the parent column is empty for a root.
* path table: columns ``level1, level2, ...`` (or one ``path`` column with levels joined by `` > ``),
  plus an optional ``id``/``cat_id`` column naming the node at the end of the path. Missing inner nodes
  get stable ids derived from their path. The bundled JD tree is in this layout.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .files import Table, read_table_or_document
from .nodes import (
    LIST_SEPARATOR,
    PATH_SEPARATOR,
    CategoryNode,
    NodeRow,
    TaxonomyError,
    clean_id,
    derived_id,
    join_path,
    split_list,
    split_path,
)
from .tree_readers import node_from_mapping, rows_from_document, rows_from_path_list, rows_from_table

__all__ = [
    "LIST_SEPARATOR", "PATH_SEPARATOR", "CategoryNode", "CategoryTree", "TaxonomyError", "join_path", "split_path",
]
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_TREE_FILE = DATA_DIR / "taxonomy_jd" / "category_paths.tsv"
_FORMAT_TAG = "skutag-taxonomy"


class CategoryTree:
    """A validated category tree. Build with :meth:`load`, :meth:`default`, :meth:`from_paths` or
    :meth:`from_nodes`; edit with :meth:`add`, :meth:`update`, :meth:`delete`; write with :meth:`save`."""

    def __init__(self, nodes: Iterable[CategoryNode] = ()):
        self._nodes: dict[str, CategoryNode] = {}
        self._children: dict[str | None, list[str]] = {None: []}
        self._by_path: dict[tuple[str, ...], str] = {}
        self._paths: dict[str, tuple[str, ...]] = {}
        self._version: str | None = None
        self._build([NodeRow(node, f"node {node.id!r}") for node in nodes])

    # ------------------------------------------------------------------ construction
    def _build(self, rows: list[NodeRow]) -> None:
        nodes: dict[str, CategoryNode] = {}
        where: dict[str, str] = {}
        for row in rows:
            node = row.node
            if not node.id:
                raise TaxonomyError(f"{row.where}: empty id")
            if not node.name or not node.name.strip():
                raise TaxonomyError(f"{row.where}: empty name for id {node.id!r}")
            if ">" in node.name:
                raise TaxonomyError(f"{row.where}: name {node.name!r} contains '>' (the path separator)")
            if node.id in nodes:
                raise TaxonomyError(f"{row.where}: duplicate id {node.id!r} (first defined at {where[node.id]})")
            if node.parent == node.id:
                raise TaxonomyError(f"{row.where}: node {node.id!r} is its own parent")
            nodes[node.id] = node
            where[node.id] = row.where
        children: dict[str | None, list[str]] = {None: []}
        for node in nodes.values():
            if node.parent is not None and node.parent not in nodes:
                raise TaxonomyError(f"{where[node.id]}: parent {node.parent!r} of {node.id!r} does not exist")
            children.setdefault(node.parent, []).append(node.id)
        paths = self._resolve_paths(nodes, where)
        by_path: dict[tuple[str, ...], str] = {}
        for node_id, path in paths.items():
            if path in by_path:
                raise TaxonomyError(
                    f"{where[node_id]}: path {join_path(path)!r} of {node_id!r} is already used by "
                    f"{by_path[path]!r} ({where[by_path[path]]}); sibling names must be unique"
                )
            by_path[path] = node_id
        self._nodes, self._children, self._by_path, self._paths = nodes, children, by_path, paths
        self._version = None

    @staticmethod
    def _resolve_paths(nodes: Mapping[str, CategoryNode], where: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
        paths: dict[str, tuple[str, ...]] = {}
        for start in nodes:
            if start in paths:
                continue
            chain: list[str] = []
            on_chain: set[str] = set()
            current: str | None = start
            while current is not None and current not in paths:
                if current in on_chain:
                    cycle = chain[chain.index(current):] + [current]
                    raise TaxonomyError(
                        f"{where[current]}: cycle in parents: {' -> '.join(repr(c) for c in cycle)}"
                    )
                chain.append(current)
                on_chain.add(current)
                current = nodes[current].parent
            prefix = paths[current] if current is not None else ()
            for node_id in reversed(chain):
                prefix = prefix + (nodes[node_id].name.strip(),)
                paths[node_id] = prefix
        return paths

    @classmethod
    def from_nodes(cls, nodes: Iterable[CategoryNode | Mapping[str, Any]]) -> "CategoryTree":
        tree = cls.__new__(cls)
        cls.__init__(tree)
        rows = []
        for number, item in enumerate(nodes, start=1):
            node = item if isinstance(item, CategoryNode) else node_from_mapping(item, f"node {number}")
            rows.append(NodeRow(node, f"node {number} (id {node.id!r})"))
        tree._build(rows)
        return tree

    @classmethod
    def from_paths(
        cls,
        paths: Iterable[str | Sequence[str]],
        ids: Sequence[str | None] | None = None,
        source: str = "path",
    ) -> "CategoryTree":
        """A tree from category paths (``"A > B > C"``), e.g. the categories a catalog brings.

        Inner nodes are created as needed with stable ids derived from their path; ``ids`` optionally
        names the node at the end of each path. Repeated paths are allowed (catalog rows repeat them).
        """
        tree = cls.__new__(cls)
        cls.__init__(tree)
        tree._build(rows_from_path_list(paths, ids, source))
        return tree

    @classmethod
    def default(cls) -> "CategoryTree":
        """The bundled JD-style 3-level tree (1,259 leaves; Apache-2.0, see taxonomy/data/taxonomy_jd)."""
        return cls.load(DEFAULT_TREE_FILE)

    @classmethod
    def active(cls) -> "CategoryTree":
        """The user's managed tree (``$SKUTAG_HOME/taxonomy/tree.json``, written by ``skutag taxonomy``), else
        the bundled one: what tagging reads."""
        from .home import user_tree_path

        path = user_tree_path()
        return cls.load(path) if path.is_file() else cls.default()

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, path: str | Path) -> "CategoryTree":
        """A tree file (.tsv/.csv node table, .json, .yaml/.yml); anything wrong in it is a TaxonomyError
        naming the file."""
        path = Path(path)
        try:
            return cls._load(path)
        except (TypeError, AttributeError) as exc:  # a hand-edited value of the wrong kind (a number for a list ...)
            raise TaxonomyError(f"{path}: a value of the wrong kind ({exc}); fix the file, or go back to the "
                                "bundled tree with `skutag taxonomy reset`") from None
        except UnicodeDecodeError:
            raise TaxonomyError(f"{path}: not UTF-8 text") from None

    @classmethod
    def _load(cls, path: Path) -> "CategoryTree":
        found = read_table_or_document(path, TaxonomyError, "category tree")
        if isinstance(found, Table):
            return cls.loads_table(found.text, delimiter=found.delimiter, source=path.name)
        return cls.from_document(found, source=path.name)

    @classmethod
    def loads_table(cls, text: str, delimiter: str = "\t", source: str = "table") -> "CategoryTree":
        tree = cls.__new__(cls)
        cls.__init__(tree)
        tree._build(rows_from_table(text, delimiter, source))
        return tree

    @classmethod
    def from_document(cls, data: Any, source: str = "document") -> "CategoryTree":
        """From parsed JSON/YAML: ``{"nodes": [{id, name, parent, keywords, synonyms}]}`` or
        ``{"paths": ["A > B", ...]}`` or a bare list of either."""
        tree = cls.__new__(cls)
        cls.__init__(tree)
        tree._build(rows_from_document(data, source))
        return tree

    def to_document(self) -> dict[str, Any]:
        return {"format": _FORMAT_TAG, "version": self.version, "nodes": [n.to_json() for n in self.nodes()]}

    def save(self, path: str | Path) -> Path:
        """Write the tree; the format follows the suffix (.tsv/.csv node table, .json, .yaml/.yml)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in {".tsv", ".csv", ".txt"}:
            text = self.dumps_table(delimiter="," if suffix == ".csv" else "\t")
        elif suffix == ".json":
            text = json.dumps(self.to_document(), ensure_ascii=False, indent=1) + "\n"
        elif suffix in {".yaml", ".yml"}:
            import yaml

            text = yaml.safe_dump(self.to_document(), allow_unicode=True, sort_keys=False)
        else:
            raise TaxonomyError(f"{path}: category tree files must be .tsv, .csv, .json, .yaml or .yml")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path

    def dumps_table(self, delimiter: str = "\t") -> str:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
        writer.writerow(["id", "name", "parent", "keywords", "synonyms", "path"])
        for node in self.nodes():
            writer.writerow([
                node.id,
                node.name,
                node.parent or "",
                LIST_SEPARATOR.join(node.keywords),
                LIST_SEPARATOR.join(node.synonyms),
                join_path(self._paths[node.id]),
            ])
        return out.getvalue()

    # ------------------------------------------------------------------ queries
    @property
    def version(self) -> str:
        """First 12 hex digits of the sha256 of the canonical content; changes with every edit."""
        if self._version is None:
            canonical = sorted(
                (n.id, n.name, n.parent or "", list(n.keywords), list(n.synonyms)) for n in self._nodes.values()
            )
            blob = json.dumps(canonical, ensure_ascii=False, separators=(",", ":"))
            self._version = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]
        return self._version

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def __iter__(self) -> Iterator[CategoryNode]:
        return iter(self.nodes())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CategoryTree) and self.version == other.version

    def __repr__(self) -> str:
        return f"CategoryTree({len(self._nodes)} nodes, {len(self.leaves())} leaves, version {self.version})"

    def nodes(self) -> list[CategoryNode]:
        """All nodes, depth-first in path order (parents before children)."""
        ordered: list[CategoryNode] = []
        stack = list(reversed(self._children.get(None, [])))
        while stack:
            node_id = stack.pop()
            ordered.append(self._nodes[node_id])
            stack.extend(reversed(self._children.get(node_id, [])))
        return ordered

    def get(self, node_id: str) -> CategoryNode:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise KeyError(f"no category with id {node_id!r}") from None

    def roots(self) -> list[CategoryNode]:
        return [self._nodes[i] for i in self._children.get(None, [])]

    def children(self, node_id: str | None) -> list[CategoryNode]:
        if node_id is not None:
            self.get(node_id)
        return [self._nodes[i] for i in self._children.get(node_id, [])]

    def is_leaf(self, node_id: str) -> bool:
        self.get(node_id)
        return not self._children.get(node_id)

    def leaves(self) -> list[CategoryNode]:
        return [node for node in self.nodes() if not self._children.get(node.id)]

    def leaf_paths(self) -> list[tuple[str, ...]]:
        return [self._paths[node.id] for node in self.leaves()]

    def depth(self) -> int:
        return max((len(p) for p in self._paths.values()), default=0)

    def path_of(self, node_id: str) -> tuple[str, ...]:
        self.get(node_id)
        return self._paths[node_id]

    def find_path(self, path: str | Sequence[str]) -> CategoryNode | None:
        """The node at ``"A > B > C"`` (or a name sequence); None when the tree has no such path."""
        try:
            names = split_path(path)
        except TaxonomyError:
            return None
        node_id = self._by_path.get(names)
        return self._nodes[node_id] if node_id is not None else None

    def resolve(self, ref: str | Sequence[str]) -> CategoryNode:
        """A node by id or by path; KeyError naming the reference when neither matches."""
        if isinstance(ref, str) and ref in self._nodes:
            return self._nodes[ref]
        node = self.find_path(ref)
        if node is None:
            raise KeyError(f"no category with id or path {ref if isinstance(ref, str) else join_path(ref)!r}")
        return node

    def path_string(self, ref: str | Sequence[str] | CategoryNode) -> str:
        """``"A > B > C"`` for a node, node id, or name sequence."""
        if isinstance(ref, CategoryNode):
            return join_path(self._paths[ref.id])
        if isinstance(ref, str) and ref in self._nodes:
            return join_path(self._paths[ref])
        return join_path(split_path(ref))

    def ancestors(self, node_id: str) -> list[CategoryNode]:
        """From the root down to the parent of ``node_id``."""
        chain = []
        current = self.get(node_id).parent
        while current is not None:
            chain.append(self._nodes[current])
            current = self._nodes[current].parent
        return list(reversed(chain))

    def descendants(self, node_id: str) -> list[CategoryNode]:
        found: list[CategoryNode] = []
        stack = list(self._children.get(node_id, []))
        while stack:
            child = stack.pop()
            found.append(self._nodes[child])
            stack.extend(self._children.get(child, []))
        return found

    def words(self) -> list[str]:
        """Every category name, keyword and synonym (for tokenizer user dictionaries), de-duplicated."""
        seen: dict[str, None] = {}
        for node in self._nodes.values():
            for word in (node.name, *node.keywords, *node.synonyms):
                for part in _name_parts(word):
                    seen.setdefault(part, None)
        return list(seen)

    # ------------------------------------------------------------------ edits
    def add(
        self,
        name: str,
        parent: str | None = None,
        node_id: str | None = None,
        keywords: Iterable[str] = (),
        synonyms: Iterable[str] = (),
    ) -> CategoryNode:
        """Add a node under ``parent`` (id or path; None = new root). Returns the new node."""
        parent_id = self.resolve(parent).id if parent is not None else None
        name = (name or "").strip()
        path = (self._paths[parent_id] if parent_id else ()) + (name,)
        node = CategoryNode(
            id=clean_id(node_id) or derived_id(path),
            name=name,
            parent=parent_id,
            keywords=split_list(list(keywords)),
            synonyms=split_list(list(synonyms)),
        )
        self._apply([*self._nodes.values(), node], f"add {join_path(path)!r}")
        return node

    def add_path(self, path: str | Sequence[str], node_id: str | None = None) -> CategoryNode:
        """Add every missing level of ``path``; returns the node at its end."""
        names = split_path(path)
        parent: str | None = None
        for depth in range(1, len(names) + 1):
            existing = self._by_path.get(names[:depth])
            if existing is None:
                last = depth == len(names)
                existing = self.add(names[depth - 1], parent, node_id=node_id if last else None).id
            parent = existing
        return self._nodes[parent]  # type: ignore[index]

    def update(
        self,
        ref: str | Sequence[str],
        name: str | None = None,
        parent: str | None | type[Ellipsis] = ...,  # type: ignore[valid-type]
        keywords: Iterable[str] | None = None,
        synonyms: Iterable[str] | None = None,
    ) -> CategoryNode:
        """Rename, move (``parent=None`` makes it a root; ``...`` leaves it) or re-tag a node."""
        node = self.resolve(ref)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name.strip()
        if parent is not ...:
            changes["parent"] = self.resolve(parent).id if parent is not None else None  # type: ignore[arg-type]
        if keywords is not None:
            changes["keywords"] = split_list(list(keywords))
        if synonyms is not None:
            changes["synonyms"] = split_list(list(synonyms))
        updated = replace(node, **changes)
        self._apply([updated if n.id == node.id else n for n in self._nodes.values()], f"update {node.id!r}")
        return updated

    def delete(self, ref: str | Sequence[str], cascade: bool = False) -> list[CategoryNode]:
        """Delete a node (and, with ``cascade``, its subtree). Returns the removed nodes."""
        node = self.resolve(ref)
        below = self.descendants(node.id)
        if below and not cascade:
            raise TaxonomyError(
                f"category {self.path_string(node)!r} has {len(below)} descendants; delete them first or cascade"
            )
        removed = {node.id, *(n.id for n in below)}
        self._apply([n for n in self._nodes.values() if n.id not in removed], f"delete {node.id!r}")
        return [node, *below]

    def _apply(self, nodes: list[CategoryNode], what: str) -> None:
        """Rebuild from ``nodes``; on a rule violation the tree is left as it was."""
        saved = (self._nodes, self._children, self._by_path, self._paths, self._version)
        try:
            self._build([NodeRow(n, f"{what}: node {n.id!r}") for n in nodes])
        except TaxonomyError:
            self._nodes, self._children, self._by_path, self._paths, self._version = saved
            raise

    def copy(self) -> "CategoryTree":
        return CategoryTree.from_nodes(self._nodes.values())


def _name_parts(word: str) -> list[str]:
    """Category names like '茶具/咖啡具' or '食品饮料、保健食品' hold several words."""
    parts = [word.strip()]
    for sep in ("/", "、", "，", ","):
        parts = [piece.strip() for part in parts for piece in part.split(sep)]
    whole = word.strip()
    result = [p for p in parts if p]
    if whole and whole not in result:
        result.insert(0, whole)
    return result
