"""The ``text`` config section drives the fusion model's title features (train, manifest, retrain), on real
cn_titles rows through the catalog commands."""

from __future__ import annotations

import hashlib

import pytest

from fusion_fixtures import cn_titles_by_leaf, write_catalog


@pytest.fixture(scope="module")
def title_catalogs(tmp_path_factory):
    """8 leaves under 家用电器 x 30 titles (title only), 80/20 by a hash of the title."""
    by_leaf = cn_titles_by_leaf()
    leaves = sorted(leaf for leaf, titles in by_leaf.items() if len(titles) >= 30 and leaf.startswith("家用电器"))[:8]
    assert len(leaves) == 8
    rows = [{"id": f"t{k}-{i}", "title": title, "category": leaf}
            for k, leaf in enumerate(leaves) for i, title in enumerate(by_leaf[leaf][:30])]
    held = [int(hashlib.md5(r["title"].encode()).hexdigest(), 16) % 5 == 0 for r in rows]
    root = tmp_path_factory.mktemp("titles")
    return (write_catalog(root / "train.jsonl", [r for r, h in zip(rows, held) if not h]),
            write_catalog(root / "test.jsonl", [r for r, h in zip(rows, held) if h]), root)


def _config(**overrides):
    from skutag.config import SkutagConfig

    return SkutagConfig.load(environ={}, overrides={"fusion.cv": 3, **overrides})


def _title_featurizer(store):
    from skutag.fusion import bundle as bundles

    model, _, _ = bundles.load(store)
    return model.featurizer_.parts_["title"].featurizer


def test_training_uses_the_text_section_and_records_it(title_catalogs):
    from skutag.pipeline import load_pipeline
    from skutag.evaluation import evaluate_catalog
    from skutag.training import train_catalog

    train, test, root = title_catalogs
    version, _, _ = train_catalog(train, root / "default", _config())
    featurizer = _title_featurizer(root / "default")
    assert featurizer.char_blocks == ((1, 1, None), (2, 5, 300000)) and featurizer.min_df == 1  # < 200 titles
    assert version.manifest()["config"]["text"]["char_blocks"] == "1-1,2-5:300000"
    assert version.manifest()["config"]["fusion"]["title_estimator"] == "hierarchical_svc"
    report = evaluate_catalog(load_pipeline(_config(), root / "default"), test)
    assert report["accuracy"] >= 0.7, report["accuracy"]

    train_catalog(train, root / "words", _config(**{"text.char_ngram_max": 0, "text.word_ngram_max": 1}))
    words = _title_featurizer(root / "words")
    assert words.char_blocks is None and words.char_ngram_range is None and words.word_ngram_range == (1, 1)


def test_retrain_keeps_the_parents_title_settings(title_catalogs):
    from skutag.training import retrain_bundle, train_catalog

    train, test, root = title_catalogs
    store = root / "custom"
    train_catalog(train, store, _config(**{"text.char_blocks": "1-2:5000", "fusion.title_estimator": "logreg"}))
    retrained, _, _ = retrain_bundle(store, test, store, _config())
    assert retrained.name == "v0002"
    assert _title_featurizer(store).char_blocks == ((1, 2, 5000),)
    assert retrained.manifest()["config"]["fusion"]["title_estimator"] == "logreg"
