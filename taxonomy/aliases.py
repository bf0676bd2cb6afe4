"""Path aliases: old category path -> the path the taxonomy gives that category now.

A model keeps answering with the class names it was trained on, and stored rows keep the paths they
were filed under; after a rename or a move (``CategoryTree.update``) both are read through one map.
Chains of edits are kept composed (A -> B then B -> C keeps A -> C and B -> C) and a rename back drops
the entry, so one lookup is always enough. The service keeps the map as its ``path_aliases`` resource;
``skutag taxonomy update`` keeps it in a JSON file beside the managed tree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

ALIASES_FILE_NAME = "path_aliases.json"


def follow(path: str | None, renames: Mapping[str, str]) -> str | None:
    """``path`` as the taxonomy names it now."""
    return renames.get(path, path) if path else path


def compose(existing: Mapping[str, str], renamed: Mapping[str, str]) -> dict[str, str]:
    """The alias map after one more edit: earlier targets move on with ``renamed``; identities drop."""
    merged = {old: renamed.get(target, target) for old, target in existing.items()}
    merged.update(renamed)
    return {old: new for old, new in sorted(merged.items()) if old != new}


def renamed_between(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str]:
    """Old path -> new path of every node whose path changed (``before``/``after``: node id -> path)."""
    return {before[node]: after[node] for node in before if node in after and before[node] != after[node]}


def paths_by_id(tree) -> dict[str, str]:
    """Node id -> path string of every category of a ``CategoryTree``."""
    return {node.id: tree.path_string(node) for node in tree.nodes()}


def load_aliases(path: str | Path) -> dict[str, str]:
    """A saved alias map; an absent file is an empty map. A malformed one raises ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("renamed"), dict):  # an edit's JSON answer, as it came
        data = data["renamed"]
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path}: expected a JSON object of old category path -> new path")
    return dict(data)


def save_aliases(path: str | Path, aliases: Mapping[str, str]) -> None:
    """Write the map atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(sorted(aliases.items())), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
