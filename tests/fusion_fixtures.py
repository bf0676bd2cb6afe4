"""Small real catalogs for the fusion / pipeline / CLI tests, built from ../shared/data in a temp dir."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

from tests.conftest import shared_path

# two branded milks that differ only in the print on the carton, and two fruits
GROCERY_CLASSES = ("Arla-Standard-Milk", "Arla-Medium-Fat-Milk", "Banana", "Granny-Smith")


def grocery_rows(split: str, classes: Sequence[str] = GROCERY_CLASSES, per_class: int = 8) -> list[dict]:
    base = shared_path("grocery")
    taken: dict[str, int] = {}
    rows = []
    with (base / "manifest.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["split"] != split or row["fine"] not in classes or taken.get(row["fine"], 0) >= per_class:
                continue
            taken[row["fine"]] = taken.get(row["fine"], 0) + 1
            rows.append({
                "id": f"{split}-{Path(row['image']).stem}",
                "image": str((base / row["image"]).resolve()),
                "title": row["title_sv"],
                "category": " > ".join([row["top_level"], row["coarse"], row["fine"]]),
                "brand": row["brand"] or None,
            })
    return rows


def write_catalog(path: Path, rows: Sequence[dict], drop: Sequence[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({k: v for k, v in row.items() if k not in drop}, ensure_ascii=False) + "\n")
    return path


def cn_titles_by_leaf() -> dict[str, list[str]]:
    """Titles of ../shared/data/cn_titles by their leaf path (``level1 > level2 > level3``), in file order."""
    import csv
    from collections import defaultdict

    by_leaf: dict[str, list[str]] = defaultdict(list)
    with shared_path("cn_titles", "titles.tsv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            by_leaf[" > ".join((row["level1"], row["level2"], row["level3"]))].append(row["title"])
    return by_leaf
