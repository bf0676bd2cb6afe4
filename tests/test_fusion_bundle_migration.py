"""Bundles written by an earlier skutag (format 1: stage packages at the top level, settings not yet
recorded; format 2: no training-confidence histogram in the manifest; format 3: joblib's pickles) load, tag and
retrain with today's code through the one migration (skutag.fusion.migrate).

The fixture ``tests/data/bundle_format1`` was written by skutag 0.1 (the commit before the namespace
change) with ``skutag train tests/data/bundle_format1_catalog.jsonl --modalities title,price --cv 3``
on four GroceryStore (MIT) product titles."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skutag.catalog import Product
from skutag.config import SkutagConfig
from skutag.fusion import bundle as bundles
from skutag.fusion.drift import ConfidenceHistogram
from skutag.fusion.migrate import BUNDLE_FORMAT, LEGACY_PACKAGES, upgrade_loaded_manifest, upgrade_manifest

PICKLED_FILES = (bundles.MODEL_FILE, bundles.TRAINING_FILE, bundles.CALIBRATION_FILE, bundles.TAIL_FILE)
from skutag.pipeline import load_pipeline
from skutag.training import retrain_from_corrections, train_catalog

DATA = Path(__file__).parent / "data"
OLD = DATA / "bundle_format1"


def test_the_fixture_is_a_format_1_bundle_pickled_under_the_old_top_level_names(tmp_path):
    manifest = json.loads((OLD / "v0001" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == 1 and BUNDLE_FORMAT == 5
    # without the migration (and outside the repository, where the folders are not importable by name)
    plain = subprocess.run([sys.executable, "-c", f"import joblib; joblib.load({str(OLD / 'v0001' / 'model.joblib')!r})"],
                           cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert plain.returncode != 0 and "No module named 'fusion'" in plain.stderr


def test_a_manifest_that_predates_a_setting_gets_what_the_bundle_was_trained_with():
    old = {"format": 1, "config": {"fusion": {"modalities": ["vision", "ocr"]}}}
    upgraded = upgrade_manifest(old)
    assert upgraded["config"]["fusion"] == {"modalities": ["vision", "ocr"], "ocr_text_weighting": "flat"}
    assert upgraded["format"] == BUNDLE_FORMAT and old["format"] == 1  # the original is left alone
    assert upgrade_manifest({"format": 99}) == {"format": 99}  # unknown formats are refused, not guessed


def test_a_format_1_bundle_loads_tags_and_leaves_no_old_module_names(tmp_path):
    store = tmp_path / "old"
    shutil.copytree(OLD, store)
    pipeline = load_pipeline(model_dir=store)
    assert pipeline.manifest["format"] == BUNDLE_FORMAT and pipeline.manifest["migrated_from_format"] == 1
    results = pipeline.tag_batch([Product(id="a", title="Blueberry Yofu Soyghurt", price=12.0),
                                  Product(id="b", title="Fresh Soy Milk Alpro", price=12.0)], audit=False)
    assert [r.path for r in results] == ["Packages > Soyghurt > Alpro-Blueberry-Soyghurt",
                                         "Packages > Soy-Milk > Alpro-Fresh-Soy-Milk"]
    assert all(r.error is None for r in results)
    assert not [name for name in sys.modules if name.partition(".")[0] in LEGACY_PACKAGES]


def test_a_format_1_bundle_retrains_into_a_current_format_version(tmp_path):
    store = tmp_path / "old"
    shutil.copytree(OLD, store)
    corrections = [Product(id=f"c{i}", title="Vanilla Yofu Soyghurt Alpro", price=11.0,
                           category="Packages > Soyghurt > Alpro-Vanilla-Soyghurt") for i in range(3)]
    outcome = retrain_from_corrections(store, corrections, store)
    version = bundles.resolve(store)
    assert outcome.version == version.name == "v0002"
    written = json.loads((version.path / "manifest.json").read_text(encoding="utf-8"))
    assert written["format"] == BUNDLE_FORMAT and written["training_confidences"]["n"] == 48 + 3
    result = load_pipeline(model_dir=store).tag_batch([Product(id="x", title="Blueberry Yofu Soyghurt")],
                                                       audit=False)[0]
    assert result.path == "Packages > Soyghurt > Alpro-Blueberry-Soyghurt"


def test_the_training_confidence_histogram_is_filled_once_at_load_from_the_models_out_of_fold_answers(tmp_path):
    """Format 3 added ``training_confidences`` to the manifest: a format-1 bundle gets it at load from its
    model's out-of-fold confidences; the manifest alone (no model at hand) says None; a model without them
    gives None; the file on disk is never rewritten."""
    store = tmp_path / "old"
    shutil.copytree(OLD, store)
    version = bundles.resolve(store)
    assert version.manifest()["training_confidences"] is None  # the manifest alone cannot tell
    model, manifest, _ = bundles.load(store)
    oof = model.tagger_.oof_confidences_
    assert manifest["training_confidences"] == ConfidenceHistogram.of(oof).to_json()
    assert manifest["training_confidences"]["n"] == len(oof) == 48 and manifest["migrated_from_format"] == 1
    assert load_pipeline(model_dir=store).training_confidences == ConfidenceHistogram.of(oof)
    assert "training_confidences" not in json.loads((version.path / "manifest.json").read_text(encoding="utf-8"))
    assert upgrade_loaded_manifest({"format": 3}, object(), 1) == {"format": 3, "training_confidences": None}


def test_a_format_2_bundle_gets_the_histogram_of_its_model_at_load(tmp_path):
    """A format-2 bundle (pickles as today's; a manifest without the histogram) is read as format 3 with the
    histogram of the model's own out-of-fold confidences, the same one training records now."""
    config = SkutagConfig.load(environ={}, overrides={"fusion.modalities": ("title", "price"), "fusion.cv": 3})
    version, _, _ = train_catalog(DATA / "bundle_format1_catalog.jsonl", tmp_path / "m", config)
    file = version.path / "manifest.json"
    written = json.loads(file.read_text(encoding="utf-8"))
    recorded = written.pop("training_confidences")
    file.write_text(json.dumps({**written, "format": 2}), encoding="utf-8")  # as format 2 wrote it
    _rewrite_with_joblib(version.path)

    model, manifest, _ = bundles.load(version.path)
    assert manifest["format"] == BUNDLE_FORMAT and manifest["migrated_from_format"] == 2
    assert manifest["training_confidences"] == recorded == ConfidenceHistogram.of(model.oof_[1]).to_json()
    assert recorded["n"] == 48 and np.isclose(sum(recorded["fractions"]), 1.0)


def _rewrite_with_joblib(folder: Path) -> None:
    """The version's pickled files as formats 1-3 wrote them (joblib, compress=3)."""
    import joblib

    for name in PICKLED_FILES:
        if (folder / name).is_file():
            with gzip.open(folder / name, "rb") as handle:
                obj = pickle.load(handle)
            joblib.dump(obj, folder / name, compress=3)


def test_a_format_3_bundle_of_joblib_pickles_loads_tags_as_written_and_retrains_into_plain_pickles(tmp_path):
    config = SkutagConfig.load(environ={}, overrides={"fusion.modalities": ("title", "price"), "fusion.cv": 3})
    version, _, _ = train_catalog(DATA / "bundle_format1_catalog.jsonl", tmp_path / "m", config)
    products = [Product(id="a", title="Blueberry Yofu Soyghurt", price=12.0),
                Product(id="b", title="Fresh Soy Milk Alpro", price=12.0)]
    today = [(r.path, r.confidence) for r in load_pipeline(model_dir=version.path).tag_batch(products, audit=False)]
    file = version.path / "manifest.json"
    written = json.loads(file.read_text(encoding="utf-8"))
    file.write_text(json.dumps({**written, "format": 3}), encoding="utf-8")
    _rewrite_with_joblib(version.path)
    with pytest.raises(gzip.BadGzipFile):  # joblib compresses with zlib: the old reader is needed
        with gzip.open(version.path / bundles.MODEL_FILE, "rb") as handle:
            pickle.load(handle)

    pipeline = load_pipeline(model_dir=tmp_path / "m")
    assert pipeline.manifest["format"] == BUNDLE_FORMAT and pipeline.manifest["migrated_from_format"] == 3
    assert pipeline.manifest["training_confidences"] == written["training_confidences"]  # kept, not recomputed
    assert [(r.path, r.confidence) for r in pipeline.tag_batch(products, audit=False)] == today

    corrections = [Product(id="c", title="Vanilla Yofu Soyghurt Alpro", price=11.0,
                           category="Packages > Soyghurt > Alpro-Vanilla-Soyghurt")]
    retrain_from_corrections(tmp_path / "m", corrections, tmp_path / "m")
    new = bundles.resolve(tmp_path / "m")
    assert new.name == "v0002" and new.manifest()["format"] == BUNDLE_FORMAT
    for name in (bundles.MODEL_FILE, bundles.TRAINING_FILE):
        with gzip.open(new.path / name, "rb") as handle:
            assert pickle.load(handle) is not None
