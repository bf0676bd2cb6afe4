"""Small real catalogs for the fusion / pipeline / CLI tests, built from ../shared/data in a temp dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from conftest import shared_path
from grocery import grocery_manifest

# two branded milks that differ only in the print on the carton, and two fruits
GROCERY_CLASSES = ("Arla-Standard-Milk", "Arla-Medium-Fat-Milk", "Banana", "Granny-Smith")


def grocery_rows(split: str, classes: Sequence[str] = GROCERY_CLASSES, per_class: int = 8) -> list[dict]:
    """Catalog rows of the first ``per_class`` photos of each of ``classes`` (fine names) in ``split``."""
    taken: dict[str, int] = {}
    rows = []
    for row in grocery_manifest(split):
        if row.fine not in classes or taken.get(row.fine, 0) >= per_class:
            continue
        taken[row.fine] = taken.get(row.fine, 0) + 1
        rows.append(row.catalog_row(f"{split}-{row.image.stem}"))
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


# a small, quick tail: 24 training photos, 3 epochs, 2 folds (the fitted tails and cut activations are cached
# under SKUTAG_HOME, so training the same tail bundle again mostly fits the fusion layer)
TAIL_SETTINGS = {"fusion.modalities": ("vision",), "fusion.cv": 3, "vision.tail": True, "vision.tail_epochs": 3,
                 "vision.tail_aug_views": 1, "vision.tail_folds": 2, "vision.threads": 2}


def tail_config(**extra):
    """The configuration the tail bundle is trained with (``TAIL_SETTINGS``), ``extra`` settings on top."""
    from skutag.config import SkutagConfig

    return SkutagConfig.load(environ={}, overrides={**TAIL_SETTINGS, **extra})


def tail_catalogs(folder: Path) -> dict:
    """The tail bundle's training catalog (6 photos of each of 4 classes) and a validation one (3 each)."""
    train = grocery_rows("train", per_class=6)
    val = grocery_rows("val", per_class=3)
    return {"train": write_catalog(folder / "train.jsonl", train), "val": write_catalog(folder / "val.jsonl", val),
            "val_rows": val, "train_rows": train}


def train_tail_bundle(catalog: Path, out: Path, **extra):
    """(version, summary) of a vision-only bundle with a fine-tuned tail trained on ``catalog`` in ``out``."""
    from skutag.training import train_catalog

    version, summary, _ = train_catalog(catalog, out, tail_config(**extra))
    return version, summary
