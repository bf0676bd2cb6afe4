"""The pipeline end to end on real photos: cold start, a trained bundle, gating, retraining, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skutag.fusion import bundle as bundles
from skutag.fusion.result import Decision
from skutag.catalog import Product
from skutag.catalog_io import read_catalog
from skutag.config import SkutagConfig
from skutag.pipeline import IncompatibleModelError, load_pipeline
from skutag.training import retrain_from_corrections
from skutag.evaluation import evaluate_catalog
from skutag.training import train_catalog
from conftest import shared_path
from fusion_fixtures import grocery_rows, write_catalog

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "products.jsonl"


def config(**overrides):
    return SkutagConfig.load(environ={}, overrides=overrides)


def test_cold_start_tags_the_example_products_on_the_default_taxonomy():
    catalog = read_catalog(EXAMPLES)
    pipeline = load_pipeline(config())
    results = pipeline.tag_batch(catalog.products, audit=False)
    assert [r.id for r in results] == [p.id for p in catalog.products]
    right = sum(r.path == p.category for r, p in zip(results, catalog.products))
    assert right >= 8, [(r.id, r.path) for r in results]
    assert pipeline.model_version.startswith("cold-start@")
    for r, p in zip(results, catalog.products):
        assert r.error is None and r.contributions and r.alternatives
        assert r.decision is not Decision.AUTO or len([v for v in r.contributions.values() if v >= 0.2]) >= 2
    assert pipeline.gate_stats.candidates == sum(p.image is not None for p in catalog.products)


def test_cold_start_reads_brands_on_cn_bottles_photos():
    photos = sorted(shared_path("cn_bottles", "images").glob("*.jpg"))
    pipeline = load_pipeline(config(**{"fusion.ocr_gate": "always"}))
    results = pipeline.tag_batch([Product(id=p.stem, image=str(p)) for p in photos], audit=False)
    drinks = [r for r in results if r.path and r.path.startswith("食品饮料、保健食品 > 饮料冲调")]
    assert len(drinks) >= 8, [(r.id, r.path) for r in results]
    assert any("brand" in r.contributions for r in results)


def test_bad_products_fail_alone_and_a_broken_photo_falls_back_to_the_title(tmp_path):
    pipeline = load_pipeline(config())
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((EXAMPLES.parent / "photos" / "banana.jpg").read_bytes()[:3000])
    products = [Product(id="empty"), Product(id="junk", image=b"not an image", title="农夫山泉 饮用天然水 550ml"),
                Product(id="gone", image="/nonexistent/photo.jpg", title="伊利 纯牛奶 250ml*24盒"),
                Product(id="device", image="/dev/zero", title="伊利 纯牛奶 250ml*24盒"),
                Product(id="cut", image=str(truncated), title="伊利 纯牛奶 250ml*24盒")]
    empty, junk, gone, device, cut = pipeline.tag_batch(products)
    assert empty.path is None and empty.decision is Decision.MANUAL and "neither" in empty.error
    assert junk.path and "饮用水" in junk.path and junk.error.startswith("image:")
    assert gone.path and "cannot read" in gone.error and set(gone.contributions) <= {"title", "brand"}
    assert device.path and device.error == "image: cannot read /dev/zero: not a regular file (a device or a pipe?)"
    assert cut.path and cut.error.count("image:") == 1 and str(truncated) in cut.error, cut.error


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("grocery")
    train = write_catalog(root / "train.jsonl", grocery_rows("train", per_class=8))
    val = write_catalog(root / "val.jsonl", grocery_rows("val", per_class=4))
    store = root / "model"
    version, summary, _ = train_catalog(train, store, config(**{"fusion.cv": 3}))
    return root, store, version, summary, val


def test_trained_bundle_records_what_it_was_made_with_and_tags_better_than_chance(trained):
    root, store, version, summary, val = trained
    manifest = version.manifest()
    assert manifest["modalities"] == ["vision", "ocr", "title"]
    assert manifest["stages"]["vision"]["backbone"] == "efficientnet-lite0"
    assert set(manifest["versions"]) == {"taxonomy", "label_map", "lexicon"}
    assert len(manifest["training_data"]["sha256"]) == 64 and manifest["training_data"]["rows"] == 32
    assert 0 <= manifest["metrics"]["oof_accuracy"] <= 1
    pipeline = load_pipeline(config(), store)
    report = evaluate_catalog(pipeline, val)
    assert report["n"] == 16 and report["accuracy"] >= 0.85
    assert report["level_accuracy"][0] == 1.0 and len(report["level_accuracy"]) == 3
    assert report["slices"]["branded"]["n"] == 8 and report["slices"]["unbranded"]["n"] == 8
    assert report["ocr_gate"]["ran"] <= report["ocr_gate"]["candidates"] == 16
    assert pipeline.model_version == f"{store.name}/{version.name}"


def test_a_product_with_nothing_the_model_reads_goes_to_a_human_with_the_reason(trained):
    """No answer from the stacker's bias alone: a price and nothing else, a title whose words the model never
    saw."""
    root, store, *_ = trained
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    known = next(row["title"] for row in rows if row.get("title"))
    pipeline = load_pipeline(config(), store)
    price_only, unknown_words, titled = pipeline.tag_batch(
        [Product(id="price-only", price=3.5), Product(id="unknown-words", title="Ωψξ ϡϣ"),
         Product(id="titled", title=known)], audit=False)
    for result in (price_only, unknown_words):
        assert result.path is None and result.decision is Decision.MANUAL and not result.alternatives
    assert price_only.error == "product has neither an image nor a title"
    assert unknown_words.error.startswith("no evidence this model can use: it reads vision, ocr, title; "
                                          "the product gives title")
    assert titled.path and titled.error is None and set(titled.contributions) == {"title"}


def test_a_bundle_trained_on_another_taxonomy_version_is_flagged_and_refused_when_strict(trained, tmp_path, caplog):
    import logging
    import shutil

    _, store, version, *_ = trained
    copy = tmp_path / "model"
    shutil.copytree(store, copy)
    manifest_file = copy / version.name / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    manifest["versions"]["taxonomy"] = "tree-before-edits"
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="skutag.pipeline"):
        load_pipeline(config(), store)
        assert not caplog.records  # the bundle as trained: nothing to say
        load_pipeline(config(), copy)
    assert "taxonomy tree-before-edits ->" in caplog.text and "categories added since are unknown" in caplog.text
    with pytest.raises(bundles.BundleError, match="taxonomy tree-before-edits .*strict_versions"):
        load_pipeline(config(**{"fusion.strict_versions": True}), copy)


def test_bundle_for_another_backbone_is_refused_clearly(trained):
    _, store, *_ = trained
    with pytest.raises(IncompatibleModelError, match="efficientnet-lite0.*efficientnet-lite2"):
        load_pipeline(config(**{"vision.backbone": "efficientnet-lite2"}), store)


def test_retrain_from_corrections_adds_a_version_that_can_be_rolled_back(trained):
    root, store, version, _, val = trained
    corrections = [Product(id=r["id"], image=r["image"], title=r["title"], category=r["category"], brand=r["brand"])
                   for r in grocery_rows("val", per_class=2)]
    outcome = retrain_from_corrections(store, corrections, root / "model-2", config=config(**{"fusion.cv": 3}))
    manifest = bundles.resolve(outcome.model_dir).manifest()
    assert manifest["training_data"]["rows"] == 40 and manifest["training_data"]["corrections"]["added"] == 8
    assert manifest["training_data"]["parent"]["version"] == version.name
    same_store = retrain_from_corrections(store, corrections[:1], store, config=config(**{"fusion.cv": 3}))
    assert same_store.version == "v0002" and bundles.rollback(store).name == "v0001"
    assert json.loads((store / "v0002" / "manifest.json").read_text())["training_data"]["corrections"]["added"] == 1


def test_retrain_with_renamed_categories_answers_only_the_new_names(trained):
    root, store, version, _, val = trained
    parent = bundles.load_training(version)
    old_leaf = sorted(set(parent.paths))[0]
    old_parent = old_leaf.rsplit(" > ", 1)[0]
    new_parent = old_parent + " (renamed)"
    new_leaf = old_leaf.replace(old_parent, new_parent, 1)
    renamed = {old_parent: new_parent, old_leaf: new_leaf}
    corrections = [Product(id=f"fresh-{r['id']}", image=r["image"], title=r["title"], brand=r["brand"],
                           category=renamed.get(r["category"], r["category"]))
                   for r in grocery_rows("val", per_class=1)]
    outcome = retrain_from_corrections(store, corrections, root / "model-renamed", config=config(**{"fusion.cv": 3}),
                                       renamed=renamed)
    child = bundles.resolve(outcome.model_dir)
    assert child.manifest()["training_data"]["renamed"] == renamed
    assert old_leaf not in set(bundles.load_training(child).paths) and new_leaf in set(bundles.load_training(child).paths)
    pipeline = load_pipeline(config(), outcome.model_dir)
    assert old_leaf not in set(pipeline.model.classes_) and new_leaf in set(pipeline.model.classes_)
    photos = [r for r in grocery_rows("val", per_class=4) if r["category"] == old_leaf]
    answers = pipeline.tag_batch([Product(id=r["id"], image=r["image"]) for r in photos], audit=False)
    assert sum(a.path == new_leaf for a in answers) >= len(photos) // 2, [a.path for a in answers]
