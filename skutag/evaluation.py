"""Scoring a trained pipeline on a labelled catalog (``skutag eval``): tag every row, compare with its category."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from skutag.catalog_io import read_catalog
from skutag.fusion.metrics import expected_calibration_error, tagging_metrics
from skutag.fusion.result import TagResult
from skutag.pipeline import Pipeline
from skutag.training import require_rows

Progress = Callable[[int], None]


def evaluate_catalog(pipeline: Pipeline, catalog_path: str | Path, *, ocr_gate: str | None = None,
                     batch_size: int = 64, progress: Progress | None = None, rules: Any = None) -> dict[str, Any]:
    """Tag a labelled catalog (audit sample off) and score the answers; ``details`` holds per-row results.
    ``rules``: scored as answered under them (e.g. a product database's ``Rules``: renames, label-map
    overrides, review whitelist)."""
    catalog = require_rows(read_catalog(catalog_path, require_category=True), "labelled row to evaluate")
    products = catalog.products
    started = time.perf_counter()
    results: list[TagResult] = []
    before = (pipeline.gate_stats.candidates, pipeline.gate_stats.ran)
    for start in range(0, len(products), batch_size):
        chunk = products[start:start + batch_size]
        evidence = pipeline.gather(chunk, ocr_gate=ocr_gate)
        answers = pipeline.tag_evidence(evidence, audit=False)
        results.extend(rules.apply(r) for r in answers) if rules is not None else results.extend(answers)
        if progress is not None:
            progress(len(chunk))
    seconds = time.perf_counter() - started
    truth = [p.category for p in products]
    target = pipeline.config.decision.target_precision
    report = tagging_metrics(truth, results, target)
    branded = [i for i, p in enumerate(products) if p.brand]
    unbranded = [i for i, p in enumerate(products) if not p.brand]
    report["slices"] = {
        "branded": tagging_metrics([truth[i] for i in branded], [results[i] for i in branded], target),
        "unbranded": tagging_metrics([truth[i] for i in unbranded], [results[i] for i in unbranded], target),
    }
    correct = [r.path == t for r, t in zip(results, truth)]
    report["ece"] = expected_calibration_error([r.confidence for r in results], correct)
    report["ocr_gate"] = {"mode": ocr_gate or pipeline.config.fusion.ocr_gate,
                          "candidates": pipeline.gate_stats.candidates - before[0],
                          "ran": pipeline.gate_stats.ran - before[1]}
    report["seconds"] = round(seconds, 2)
    report["target_precision"] = target
    report["model"] = pipeline.model_version
    report["skipped_rows"] = len(catalog.errors)
    report["details"] = {"truth": truth, "results": results, "brands": [p.brand for p in products],
                         "catalog": catalog}
    return report
