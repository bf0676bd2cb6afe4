"""Retraining on corrections, incrementally: a title model takes 30 corrected cn_titles rows by refitting the tree
nodes on their categories' paths (``skutag.updating``), answers like a full refit does, learns the corrections, and
falls back to a full refit when one is due (new category, too many rows corrected since the last full fit, --full)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fusion_fixtures import cn_titles_by_leaf
from skutag.fusion import bundle as bundles

from skutag.catalog import Product
from skutag.config import SkutagConfig
from skutag.pipeline import load_pipeline
from skutag.training import retrain_bundle, train_catalog


def _write(path, rows) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for pid, title, category in rows:
            handle.write(json.dumps({"id": pid, "title": title, "category": category}, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory):
    by_leaf = cn_titles_by_leaf()
    leaves = sorted(leaf for leaf, rows in by_leaf.items() if len(rows) >= 90)[::4][:40]
    folder = tmp_path_factory.mktemp("incremental")
    train = [(f"t{leaf_i}-{i}", by_leaf[leaf][i], leaf) for leaf_i, leaf in enumerate(leaves) for i in range(60)]
    corrections = [(f"c{leaf_i}-{i}", by_leaf[leaf][i], leaf) for leaf_i, leaf in enumerate(leaves[:10])
                   for i in (60, 61, 62)]
    # a row the model was trained with comes back under another category: both categories' paths are refitted
    moved = train[0]
    corrections[0] = (moved[0], moved[1], leaves[1])
    test = [(f"x{leaf_i}-{i}", by_leaf[leaf][i], leaf) for leaf_i, leaf in enumerate(leaves) for i in range(63, 90)]
    for name, rows in (("train", train), ("corrections", corrections), ("test", test)):
        _write(folder / f"{name}.jsonl", rows)
    config = SkutagConfig.load(environ={}, overrides={"fusion.modalities": ("title",)})
    train_catalog(folder / "train.jsonl", folder / "model", config)
    return folder, config, leaves, test, corrections


def _accuracy(model_dir, config, rows) -> float:
    pipeline = load_pipeline(config, model_dir)
    results = pipeline.tag([Product(id=pid, title=title) for pid, title, _ in rows]).results
    return float(np.mean([r.path == truth for r, (_, _, truth) in zip(results, rows)]))


def test_corrections_update_the_title_model_in_place_of_a_full_refit(catalogs, tmp_path):
    folder, config, _, test, corrections = catalogs
    version, summary, _ = retrain_bundle(folder / "model", folder / "corrections.jsonl", tmp_path / "updated", config)
    retraining = summary["retraining"]
    assert retraining["kind"] == "incremental", retraining
    assert retraining["nodes_refitted"] >= 3  # root, the level-2 and leaf-parent nodes on the paths
    manifest = version.manifest()
    assert manifest["updates"]["corrected_rows"] == len(corrections)
    assert manifest["training_data"]["rows"] == 2400 + len(corrections) - 1  # one correction replaced a row
    full, full_summary, _ = retrain_bundle(folder / "model", folder / "corrections.jsonl", tmp_path / "full", config,
                                           full_refit=True)
    assert full_summary["retraining"] == {"kind": "full", "why": "asked for (--full)"}
    assert "updates" not in full.manifest()
    updated_acc, full_acc = _accuracy(version.path, config, test), _accuracy(full.path, config, test)
    assert updated_acc > 0.75
    assert abs(updated_acc - full_acc) <= 0.02, (updated_acc, full_acc)
    # the moved row is answered with its corrected category
    pid, title, category = corrections[0]
    assert load_pipeline(config, version.path).tag([Product(id=pid, title=title)]).results[0].path == category
    # the update keeps every node the corrections do not touch
    parent, _, _ = bundles.load(folder / "model")
    child, _, _ = bundles.load(version.path)
    before, after = parent.tagger_.base_estimators_[0].nodes_, child.tagger_.base_estimators_[0].nodes_
    untouched = [node for node in before if node in after and np.array_equal(before[node][1], after[node][1])]
    assert 0 < len(untouched) < len(before)


def test_a_full_refit_is_due_for_a_new_category_or_too_many_corrections(catalogs, tmp_path):
    folder, config, _, _, corrections = catalogs
    new_category = [("n1", "全新品类的商品标题 测试", "新品类 > 新品类 > 新品类"), *corrections[:5]]
    _write(tmp_path / "new.jsonl", new_category)
    _, summary, _ = retrain_bundle(folder / "model", tmp_path / "new.jsonl", tmp_path / "a", config)
    assert summary["retraining"] == {"kind": "full", "why": "1 new categories"}
    small = config.with_overrides({"fusion.full_refit_share": 0.01})  # 24 of 2,429 rows
    _, summary, _ = retrain_bundle(folder / "model", folder / "corrections.jsonl", tmp_path / "b", small)
    assert summary["retraining"]["kind"] == "full"
    assert "30 rows corrected since the last full fit" in summary["retraining"]["why"]
    # the count runs on over updates: 30 + 30 rows since the last full fit pass 0.02 of the rows
    first, summary, _ = retrain_bundle(folder / "model", folder / "corrections.jsonl", tmp_path / "c",
                                       config.with_overrides({"fusion.full_refit_share": 0.02}))
    assert summary["retraining"]["kind"] == "incremental"
    _, summary, _ = retrain_bundle(first.path, folder / "corrections.jsonl", tmp_path / "d",
                                   config.with_overrides({"fusion.full_refit_share": 0.02}))
    assert summary["retraining"]["kind"] == "full"
    assert "60 rows corrected since the last full fit" in summary["retraining"]["why"]


def test_the_update_featurizes_only_the_corrections_and_keeps_the_rows_features_in_order(catalogs, tmp_path):
    folder, config, _, _, corrections = catalogs
    version, summary, _ = retrain_bundle(folder / "model", folder / "corrections.jsonl", tmp_path / "updated", config)
    assert summary["retraining"]["features_kept"] is True
    model, _, _ = bundles.load(version.path)
    training = bundles.load_training(version)
    kept = bundles.load_training_features(version, len(training), model.featurizer_.n_features_out_)
    assert kept is not None and kept.shape[0] == 2400 + len(corrections) - 1
    # row i of the kept matrix is row i of the training rows, the replaced row and the added ones included
    fresh = model.featurizer_.transform(training.evidence)
    assert abs(kept - fresh).max() < 1e-6
    assert training.ids[0] == corrections[0][0] and training.paths[0] == corrections[0][2]
    # without kept features the update featurizes every row again and answers the same
    lean = config.with_overrides({"fusion.keep_training_features": False})
    plain, summary, _ = retrain_bundle(version.path, folder / "corrections.jsonl", tmp_path / "lean", lean)
    assert summary["retraining"]["kind"] == "incremental" and summary["retraining"]["features_kept"] is True
    assert not (plain.path / bundles.FEATURES_FILE).exists()
    again, summary, _ = retrain_bundle(plain.path, folder / "corrections.jsonl", tmp_path / "again", config)
    assert summary["retraining"]["features_kept"] is False
