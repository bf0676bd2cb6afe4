"""Model bundles: manifest, versions kept, rollback, and clear errors for incompatible bundles."""

from __future__ import annotations

import json

import pytest

from fusion import bundle as bundles


def _save(store, value, **manifest):
    return bundles.save(store, {"model": value}, {"kind": "test", **manifest}, training=[value])


def test_versions_are_kept_and_rollback_moves_current(tmp_path):
    store = tmp_path / "models"
    first = _save(store, 1)
    second = _save(store, 2, metrics={"oof_accuracy": 0.9})
    assert [v.name for v in bundles.versions(store)] == ["v0001", "v0002"]
    model, manifest, version = bundles.load(store)
    assert model == {"model": 2} and version == second and manifest["metrics"]["oof_accuracy"] == 0.9
    assert manifest["format"] == bundles.BUNDLE_FORMAT and "scikit-learn" in manifest["libraries"]
    assert bundles.load_training(version) == [2]
    assert bundles.rollback(store) == first
    assert bundles.load(store)[0] == {"model": 1}
    with pytest.raises(bundles.BundleError, match="oldest"):
        bundles.rollback(store)
    assert bundles.rollback(store, to="v0002") == second
    with pytest.raises(bundles.BundleError, match="no version 'v0009'.*v0001, v0002"):
        bundles.rollback(store, to="v0009")
    # one version folder can be loaded directly
    assert bundles.load(first.path)[0] == {"model": 1}


def test_incompatible_bundles_fail_before_unpickling_with_what_to_do(tmp_path):
    store = tmp_path / "m"
    version = _save(store, 1)
    manifest_file = version.path / bundles.MANIFEST
    manifest = json.loads(manifest_file.read_text())
    manifest["libraries"]["scikit-learn"] = "0.24.2"
    manifest_file.write_text(json.dumps(manifest))
    (version.path / bundles.MODEL_FILE).write_bytes(b"not a pickle")  # never read
    with pytest.raises(bundles.BundleError, match=r"scikit-learn 0\.24\.2.*install scikit-learn==0\.24\.\*"):
        bundles.load(store)
    manifest["format"] = 99
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(bundles.BundleError, match="format 99"):
        bundles.load(store)


def test_not_a_bundle_and_broken_stores_are_named(tmp_path):
    with pytest.raises(bundles.BundleError, match="not found"):
        bundles.load(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(bundles.BundleError, match="not a model directory"):
        bundles.load(tmp_path / "plain")
    (tmp_path / "plain" / "notes.txt").write_text("x")
    with pytest.raises(bundles.BundleError, match="not a model directory; choose an empty"):
        _save(tmp_path / "plain", 1)
    store = tmp_path / "s"
    _save(store, 1)
    (store / bundles.CURRENT).write_text("v0042\n")
    with pytest.raises(bundles.BundleError, match="v0042.*missing"):
        bundles.load(store)
    version = bundles.resolve(store / "v0001")
    (version.path / bundles.TRAINING_FILE).unlink()
    with pytest.raises(bundles.BundleError, match="no training data"):
        bundles.load_training(version)
