"""Calibration on a separate labelled catalog: temperature and per-class auto thresholds fitted on rows the
model never trained on, recorded in a new bundle version (real GroceryStore photos, vision only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skutag.fusion import bundle as bundles
from skutag.fusion.thresholds import fit_bound_thresholds, fit_class_thresholds
from skutag.catalog_io import read_catalog
from skutag.cli import main
from skutag.config import SkutagConfig
from skutag.pipeline import load_pipeline
from skutag.evaluation import evaluate_catalog
from skutag.training import calibrate_bundle, retrain_bundle, train_catalog
from fusion_fixtures import grocery_rows, write_catalog

SETTINGS = {"fusion.modalities": ("vision",), "fusion.cv": 3, "decision.min_class_support": 3}


def config():
    return SkutagConfig.load(environ={}, overrides=SETTINGS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibration")
    train = write_catalog(root / "train.jsonl", grocery_rows("train", per_class=8))
    cal_rows = grocery_rows("val", per_class=6)
    cal_rows.append({**cal_rows[0], "id": "unknown-class", "category": "Fruit > Kiwi > Kiwi"})
    cal = write_catalog(root / "cal.jsonl", cal_rows)
    store = root / "model"
    train_catalog(train, store, config())
    return root, train, cal, store


def test_calibrate_writes_a_new_version_whose_thresholds_come_from_the_calibration_rows(trained):
    root, _, cal, store = trained
    before = load_pipeline(config(), store)
    version, summary, _ = calibrate_bundle(store, cal, store, config())
    assert version.name == "v0002" and bundles.current(store) == version
    record = version.manifest()["calibration"]
    assert record["sha256"] == read_catalog(cal).content_hash()
    rows = len(read_catalog(cal).products)
    assert record["rows"] == rows > 16 and record["rows_of_unknown_classes"] == 1
    assert record["parent"]["version"] == "v0001" and record["temperature_before"] > 0
    assert version.manifest()["metrics"]["temperature"] == record["temperature"] > 0
    assert bundles.load_training(version) is not None  # retrain still works from the calibrated version

    after = load_pipeline(config(), store)
    predicted, confidence, truth = after.model.threshold_rows_
    assert len(truth) == rows and "Fruit > Kiwi > Kiwi" in set(truth)
    chosen = fit_bound_thresholds(predicted, confidence, truth, after.model.classes_, after.config.decision)
    assert set(after.decider.class_thresholds) == {str(c) for c in after.model.classes_}
    assert after.decider.class_thresholds == chosen.thresholds  # chosen on the calibration rows
    empirical = fit_class_thresholds(predicted, confidence, truth, 0.95, 3)
    assert empirical and any(after.decider.class_thresholds[p] >= t for p, t in empirical.items())
    assert after.decider.class_thresholds != before.decider.class_thresholds
    # the calibration rows' confidences are what the calibrated model says on them
    report = evaluate_catalog(after, cal)
    got = {r.id: r.confidence for r in report["details"]["results"]}
    ids = [p.id for p in read_catalog(cal).products]
    assert np.allclose([got[i] for i in ids], confidence, atol=1e-3)
    # rollback restores the uncalibrated thresholds
    bundles.rollback(store)
    assert load_pipeline(config(), store).decider.class_thresholds == before.decider.class_thresholds
    bundles.rollback(store, to="v0002")


def test_train_with_calibration_and_the_cli(trained, capsys):
    root, train, cal, _ = trained
    out = root / "with-cal"
    version, summary, _ = train_catalog(train, out, config(), calibration_path=cal)
    record = version.manifest()["calibration"]
    assert record["sha256"] == read_catalog(cal).content_hash() and record["catalog"] == str(cal.resolve())
    assert summary["calibration"]["rows"] == len(read_catalog(cal).products)

    assert main(["calibrate", str(cal), "--model", str(out), "--out", str(root / "cli"), "--json"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["version"] == "v0001" and printed["calibration"]["parent"]["version"] == "v0001"
    assert "1 calibration rows are of categories the model does not know" in captured.err
    assert main(["calibrate", str(root / "missing.jsonl"), "--model", str(out)]) != 0
    assert "missing.jsonl" in capsys.readouterr().err
    few = write_catalog(root / "few.jsonl", [json.loads(line) for line in cal.read_text(encoding="utf-8").splitlines()[:9]])
    assert main(["calibrate", str(few), "--model", str(out), "--out", str(root / "few-cal")]) == 2
    assert "has 9 rows of categories the model knows" in capsys.readouterr().err and not (root / "few-cal").exists()


def test_retrain_calibrates_the_new_version_on_the_parents_calibration_rows(trained):
    root, train, cal, _ = trained
    store = root / "carry"
    train_catalog(train, store, config(), calibration_path=cal)
    cal_rows = [json.loads(line) for line in cal.read_text(encoding="utf-8").splitlines()]
    moved = cal_rows[0]  # an operator corrects a product that was in the calibration set
    fresh = grocery_rows("train", per_class=10)[-12:]  # rows the first model never saw
    corrections = write_catalog(root / "fixes.jsonl", [*fresh, moved])

    version, summary, _ = retrain_bundle(store, corrections, store, config())
    record = version.manifest()["calibration"]
    assert version.name == "v0002" and summary["calibration"] == record
    assert record["carried_from"] == "v0001" and record["dropped_corrected_rows"] == 1
    assert record["rows"] == len(cal_rows) - 1
    kept = bundles.load_calibration(version)
    assert moved["id"] not in kept.ids and len(kept) == len(cal_rows) - 1
    assert moved["id"] in bundles.load_training(version).ids

    pipeline = load_pipeline(config(), store)
    assert pipeline.model.calibrated_
    predicted, confidence, truth = pipeline.model.threshold_rows_
    assert len(truth) == len(cal_rows) - 1
    assert version.manifest()["metrics"]["temperature"] == record["temperature"] != 1.0


def test_retrain_of_an_uncalibrated_bundle_stays_uncalibrated(trained):
    root, train, _, _ = trained
    store = root / "plain"
    train_catalog(train, store, config())
    fixes = write_catalog(root / "plain-fixes.jsonl", grocery_rows("train", per_class=10)[-6:])
    version, summary, _ = retrain_bundle(store, fixes, store, config())
    assert "calibration" not in version.manifest() and "calibration" not in summary
    assert bundles.load_calibration(version) is None
    assert not load_pipeline(config(), store).model.calibrated_
