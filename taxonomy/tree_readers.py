"""Reading a category tree's files into node rows: the node and path table layouts and JSON/YAML documents.

Each reader returns :class:`NodeRow` s (a node and the row it came from); :class:`tree.CategoryTree` checks
the rules over all of them at once, so an error names the row that breaks one.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Mapping, Sequence

from .files import document_records
from .nodes import CategoryNode, NodeRow, TaxonomyError, clean_id, derived_id, join_path, split_list, split_path


def rows_from_table(text: str, delimiter: str, source: str) -> list[NodeRow]:
    """A node table (``id, name, parent``, ...) or a path table (``level1, level2, ...`` or ``path``)."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = [column.strip().lower() for column in next(reader)]
    except StopIteration:
        raise TaxonomyError(f"{source}: empty file (expected a header row)") from None
    records = []
    for number, values in enumerate(reader, start=2):
        if not any(value.strip() for value in values):
            continue
        if len(values) > len(header):
            raise TaxonomyError(f"{source} row {number}: {len(values)} columns, header has {len(header)}")
        records.append((number, dict(zip(header, values))))
    levels = sorted((c for c in header if c.startswith("level") and c[5:].isdigit()), key=lambda c: int(c[5:]))
    if "name" in header and "id" in header:
        return [
            NodeRow(node_from_mapping(record, f"{source} row {number}"), f"{source} row {number}")
            for number, record in records
        ]
    if levels or "path" in header:
        return rows_from_path_records(records, levels, source)
    raise TaxonomyError(
        f"{source}: header must have 'id,name,parent' (node table) or 'level1,level2,...'/'path' "
        f"(path table); got {header}"
    )


def rows_from_document(data: Any, source: str) -> list[NodeRow]:
    """Parsed JSON/YAML: ``{"nodes": [{id, name, parent, keywords, synonyms}]}`` or ``{"paths": ["A > B", ...]}``
    or a bare list of either."""
    if isinstance(data, Mapping):
        if "nodes" in data:
            items = data["nodes"]
        elif "paths" in data:
            return rows_from_path_list(data["paths"], None, f"{source} path")
        else:
            raise TaxonomyError(f"{source}: expected a 'nodes' or 'paths' key")
    elif isinstance(data, list):
        items = data
        if items and all(isinstance(item, str) for item in items):
            return rows_from_path_list(items, None, f"{source} path")
    else:
        raise TaxonomyError(f"{source}: expected a mapping or a list, got {type(data).__name__}")
    records = document_records(items, source, "nodes", "node", "id/name/parent", TaxonomyError)
    return [NodeRow(node_from_mapping(item, where), where) for where, item in records]


def rows_from_path_list(paths: Any, ids: Sequence[str | None] | None, source: str) -> list[NodeRow]:
    """Category paths (``"A > B > C"``), inner nodes created as needed; ``ids`` optionally names each path's end."""
    path_list = list(paths)
    if ids is not None and len(ids) != len(path_list):
        raise TaxonomyError(f"{len(ids)} ids for {len(path_list)} paths")
    return rows_from_paths(path_list, ids, source)


def node_from_mapping(record: Mapping[str, Any], where: str) -> CategoryNode:
    node_id = clean_id(record.get("id"))
    if node_id is None:
        raise TaxonomyError(f"{where}: missing id")
    name = record.get("name")
    if name is None or not str(name).strip():
        raise TaxonomyError(f"{where}: missing name for id {node_id!r}")
    return CategoryNode(
        id=node_id,
        name=str(name).strip(),
        parent=clean_id(record.get("parent")),
        keywords=split_list(record.get("keywords")),
        synonyms=split_list(record.get("synonyms")),
    )


def rows_from_path_records(records: list[tuple[int, dict[str, str]]], levels: list[str], source: str) -> list[NodeRow]:
    paths, ids, wheres, extras = [], [], [], []
    for number, record in records:
        where = f"{source} row {number}"
        if levels:
            names = [record.get(level, "").strip() for level in levels]
            while names and not names[-1]:
                names.pop()
            if not names or any(not n for n in names):
                raise TaxonomyError(f"{where}: empty level in path {names!r}")
        else:
            names = list(split_path(record.get("path", ""))) if record.get("path", "").strip() else []
            if not names:
                raise TaxonomyError(f"{where}: empty path")
        paths.append(names)
        ids.append(clean_id(record.get("id") or record.get("cat_id")))
        wheres.append(where)
        extras.append((split_list(record.get("keywords")), split_list(record.get("synonyms"))))
    return rows_from_paths(paths, ids, source, wheres, extras)


def rows_from_paths(
    paths: Sequence[str | Sequence[str]],
    ids: Sequence[str | None] | None,
    source: str,
    wheres: Sequence[str] | None = None,
    extras: Sequence[tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
) -> list[NodeRow]:
    explicit: dict[tuple[str, ...], tuple[str, str]] = {}
    ordered: dict[tuple[str, ...], str] = {}
    tags: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for index, raw in enumerate(paths):
        where = wheres[index] if wheres else f"{source} {index + 1}"
        try:
            names = split_path(raw)
        except TaxonomyError as exc:
            raise TaxonomyError(f"{where}: {exc}") from None
        for name in names:
            if ">" in name:
                raise TaxonomyError(f"{where}: name {name!r} contains '>' (the path separator)")
        for depth in range(1, len(names) + 1):
            ordered.setdefault(names[:depth], where)
        node_id = ids[index] if ids else None
        if node_id is not None:
            previous = explicit.get(names)
            if previous is not None and previous[0] != node_id:
                raise TaxonomyError(
                    f"{where}: path {join_path(names)!r} has id {node_id!r} but {previous[1]} gave it {previous[0]!r}"
                )
            explicit[names] = (node_id, where)
        if extras and any(extras[index]):
            tags[names] = extras[index]
    id_of = {path: explicit[path][0] if path in explicit else derived_id(path) for path in ordered}
    rows = []
    for path, where in ordered.items():
        keywords, synonyms = tags.get(path, ((), ()))
        node = CategoryNode(
            id=id_of[path],
            name=path[-1],
            parent=id_of[path[:-1]] if len(path) > 1 else None,
            keywords=keywords,
            synonyms=synonyms,
        )
        rows.append(NodeRow(node, explicit[path][1] if path in explicit else where))
    return rows
