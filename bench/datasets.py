"""Catalog files built from the shared data sets, written OUTSIDE the repository (default /tmp/skutag-data).

    python -m bench.datasets grocery [--out DIR]     # train.jsonl / val.jsonl (+ vision_only/no_title variants)
    python -m bench.datasets cn_titles [--out DIR]   # train.jsonl / test.jsonl, 80/20 by a hash of the title

GroceryStore: category = ``top_level > coarse > fine`` (always 3 levels); title = ``title_sv``; brand from the manifest; no price (the data set has none).
cn_titles: evaluation only (no license): never copy these files into the repository.
"""

from __future__ import annotations

import argparse
import csv
import json
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_OUT = Path("/tmp/skutag-data")


def grocery_path(row: dict) -> str:
    return " > ".join([row["top_level"], row["coarse"], row["fine"]])


def build_grocery(out: Path, shared: Path = SHARED) -> dict[str, Path]:
    base = shared / "grocery"
    rows = list(csv.DictReader((base / "manifest.csv").open(encoding="utf-8")))
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in ("train", "val"):
        for variant in ("", "_no_title"):
            path = out / f"grocery_{split}{variant}.jsonl"
            with path.open("w", encoding="utf-8") as handle:
                for row in rows:
                    if row["split"] != split:
                        continue
                    record = {
                        "id": f"{split}-{Path(row['image']).stem}",
                        "image": str((base / row["image"]).resolve()),
                        "title": None if variant else row["title_sv"],
                        "category": grocery_path(row),
                        "brand": row["brand"] or None,
                    }
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            written[f"{split}{variant}"] = path
    return written


def build_cn_titles(out: Path, shared: Path = SHARED) -> dict[str, Path]:
    src = shared / "cn_titles" / "titles.tsv"
    out.mkdir(parents=True, exist_ok=True)
    train, test = out / "cn_titles_train.jsonl", out / "cn_titles_test.jsonl"
    with src.open(encoding="utf-8") as handle, train.open("w", encoding="utf-8") as tr, \
            test.open("w", encoding="utf-8") as te:
        for i, row in enumerate(csv.DictReader(handle, delimiter="\t")):
            record = {"id": f"t{i}", "title": row["title"],
                      "category": " > ".join([row["level1"], row["level2"], row["level3"]]),
                      "brand": row.get("brand") or None}
            target = te if zlib.crc32(row["title"].encode("utf-8")) % 5 == 0 else tr
            target.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {"train": train, "test": test}


BUILDERS = {"grocery": build_grocery, "cn_titles": build_cn_titles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(BUILDERS))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for name, path in BUILDERS[args.dataset](args.out).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
