"""Writing catalogs and tagging results (``skutag.catalog_io`` reads them): products as JSONL with image paths
relative to the file, results as the CLI's JSON rows or a flat CSV."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence, TextIO

from skutag.catalog import Product
from skutag.fusion.result import TagResult

TAG_JSON_KEYS = ("id", "label", "path", "confidence", "decision", "alternatives", "contributions", "error")


def product_to_row(product: Product, base_dir: Path | None = None) -> dict[str, Any]:
    image = product.image
    if isinstance(image, (str, Path)) and base_dir is not None:
        try:
            image = str(Path(image).resolve().relative_to(base_dir.resolve()))
        except ValueError:
            image = str(image)
    elif isinstance(image, (bytes, bytearray)):
        image = None
    row = {"id": product.id, "image": None if image is None else str(image), "title": product.title,
           "price": product.price, "category": product.category, "brand": product.brand}
    return row


def write_catalog(products: Iterable[Product], path: str | Path) -> Path:
    """Write products as JSONL (image paths relative to the file where possible)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for product in products:
            handle.write(json.dumps(product_to_row(product, path.parent), ensure_ascii=False) + "\n")
    return path


def result_row(result: TagResult) -> dict[str, Any]:
    """One result as the CLI's JSON row: exactly ``TAG_JSON_KEYS``."""
    data = result.to_json()
    return {key: data[key] for key in TAG_JSON_KEYS}


def write_results(results: Sequence[TagResult], destination: str | Path | TextIO | None = None,
                  *, full: bool = False) -> None:
    """Write results as JSONL (``.csv`` destination: a flat CSV). ``full`` keeps reasons and model version."""
    if destination is None:
        destination = sys.stdout
    if isinstance(destination, (str, Path)):
        path = Path(destination)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as handle:
            if path.suffix.lower() == ".csv":
                _write_results_csv(results, handle)
            else:
                _write_results_jsonl(results, handle, full)
        return
    _write_results_jsonl(results, destination, full)


def _write_results_jsonl(results: Sequence[TagResult], handle: TextIO, full: bool) -> None:
    for result in results:
        row = result.to_json() if full else result_row(result)
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_results_csv(results: Sequence[TagResult], handle: TextIO) -> None:
    writer = csv.writer(handle)
    writer.writerow(["id", "label", "path", "confidence", "decision", "alternatives", "contributions",
                     "reasons", "error"])
    for r in results:
        writer.writerow([
            r.id, r.label or "", r.path or "", f"{r.confidence:.4f}", r.decision.value,
            " | ".join(f"{a.path} ({a.confidence:.3f})" for a in r.alternatives),
            json.dumps(r.contributions, ensure_ascii=False), "; ".join(r.reasons), r.error or "",
        ])
