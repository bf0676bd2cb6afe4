"""Model bundles: manifest, versions kept, rollback, and clear errors for incompatible bundles."""

from __future__ import annotations

import json

import pytest

from skutag.fusion import bundle as bundles


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


def test_rollback_only_accepts_this_stores_own_versions(tmp_path):
    store, other = tmp_path / "m2", tmp_path / "m1"
    _save(other, "other")
    _save(store, 1)
    _save(store, 2)
    for outside in ("../m1/v0001", str(other / "v0001"), "v0001/", ".", ""):
        with pytest.raises(bundles.BundleError, match=r"no version .* in .*versions: v0001, v0002"):
            bundles.rollback(store, to=outside)
    assert (store / bundles.CURRENT).read_text().strip() == "v0002"
    assert bundles.load(store)[0] == {"model": 2}
    assert bundles.rollback(store).name == "v0001"


def test_a_current_pointer_outside_the_store_is_refused(tmp_path):
    store, other = tmp_path / "m2", tmp_path / "m1"
    _save(other, "other")
    _save(store, 1)
    (store / bundles.CURRENT).write_text("../m1/v0001\n")
    with pytest.raises(bundles.BundleError, match=r"'\.\./m1/v0001', which is missing or not one of its versions "
                                                  r"\(versions: v0001\).*rollback"):
        bundles.load(store)
    with pytest.raises(bundles.BundleError, match="not one of its versions"):
        bundles.rollback(store)
    assert bundles.rollback(store, to="v0001").name == "v0001"
    assert bundles.load(store)[0] == {"model": 1}


@pytest.mark.parametrize("file_name, loader", [
    (bundles.MODEL_FILE, lambda store, version: bundles.load(store)),
    (bundles.TRAINING_FILE, lambda store, version: bundles.load_training(version)),
    (bundles.TAIL_FILE, lambda store, version: bundles.load_tail(version)),
    (bundles.CALIBRATION_FILE, lambda store, version: bundles.load_calibration(version)),
])
def test_a_damaged_bundle_file_is_a_bundle_error_that_says_what_to_do(tmp_path, file_name, loader):
    store = tmp_path / "mk"
    bundles.save(store, {"model": 1}, {"kind": "test"}, training=[1], calibration=[1], vision_tail=[1])
    _save(store, 2)
    bundles.save(store, {"model": 3}, {"kind": "test"}, training=[3], calibration=[3], vision_tail=[3])
    version = bundles.current(store)
    (version.path / file_name).write_bytes(b"garbage\n")
    with pytest.raises(bundles.BundleError) as caught:
        loader(store, version)
    message = str(caught.value)
    assert f"model bundle {version.path}: {file_name} is unreadable or damaged (" in message
    assert f"roll back (`skutag bundle rollback {store}`) or retrain" in message
    assert bundles.rollback(store).name == "v0002" and bundles.load(store)[0] == {"model": 2}
