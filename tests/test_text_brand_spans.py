"""Learned brand spans: brands no lexicon lists, found in real titles (cn_title_brands, cn_titles JD rows)."""

from __future__ import annotations

import csv
import hashlib
import json
import pickle

import pytest

from conftest import shared_path
from skutag.text import extract_title_brands
from skutag.text.brand_spans import BrandSpanModel, _key, brands_written_in, span_scores


def _jsonl(path):
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _held(title: str, share: int = 5) -> bool:
    return int(hashlib.md5(title.encode()).hexdigest(), 16) % share == 0


@pytest.fixture(scope="module")
def ner_data():
    folder = shared_path("cn_title_brands")
    return _jsonl(folder / "train.jsonl")[:1000], _jsonl(folder / "dev.jsonl")


@pytest.fixture(scope="module")
def fitted(ner_data):
    train, _ = ner_data
    return BrandSpanModel().fit([r["title"] for r in train], [r["brands"] for r in train])


def test_learned_spans_find_far_more_brands_than_patterns_without_a_lexicon(fitted, ner_data):
    _, dev = ner_data
    titles, gold = [r["title"] for r in dev], [r["brands"] for r in dev]
    learned = span_scores(fitted, titles, gold)
    tp = fn = 0
    for title, names in zip(titles, gold):  # what extraction finds with no lexicon: patterns + jieba discovery
        want = {_key(n) for n in names}
        got = {_key(b.text) for b in extract_title_brands(title, [], patterns=True, discover=True)}
        tp, fn = tp + len(want & got), fn + len(want - got)
    print(f"learned {learned}, patterns+discovery recall {tp / (tp + fn):.3f}")
    assert learned["f1"] >= 0.45 and learned["precision"] >= 0.5, learned
    assert learned["recall"] >= 1.5 * tp / (tp + fn)
    found = extract_title_brands("宏情 中老年晨练太极服 秋冬加厚金丝绒武术表演服", [], learned=fitted)
    assert [(b.text, b.source) for b in found] == [("宏情", "learned")]


def test_the_model_pickles_and_rejects_unusable_training_data(fitted):
    again = pickle.loads(pickle.dumps(fitted))
    title = "史黛丝蛇纹连身吊带网衣+丝袜透视内衣情趣内衣套装"
    assert [b.text for b in again.find(title)] == [b.text for b in fitted.find(title)]
    assert again.find("") == [] and again.find(None) == []
    with pytest.raises(ValueError, match="brand is written"):
        BrandSpanModel().fit(["纯棉短袖T恤"], [[]])


def test_catalog_brand_values_become_the_forms_written_in_the_title():
    assert brands_written_in("ERKE/鸿星尔克 跑步鞋 女式运动鞋", "鸿星尔克（ERKE）") == ["鸿星尔克", "ERKE"]
    assert brands_written_in("ＡＨＣ 黄金水", "AHC") == ["AHC"]
    assert brands_written_in("跑步鞋 女式运动鞋", "鸿星尔克（ERKE）") == []
    assert brands_written_in(None, "AHC") == [] and brands_written_in("AHC 黄金水", None) == []


@pytest.fixture(scope="module")
def jd_catalog(tmp_path_factory):
    """~720 JD titles with their brand (cn_titles), 1 in 40 by a hash of the title; the catalog written
    holds the ~80% outside the check split."""
    rows = []
    with shared_path("cn_titles", "titles.tsv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if row["brand"] and int(hashlib.sha1(row["title"].encode()).hexdigest(), 16) % 40 == 0:
                rows.append({"id": f"jd{len(rows)}", "title": row["title"], "brand": row["brand"]})
    path = tmp_path_factory.mktemp("brands") / "catalog.jsonl"  # the held-out titles stay out of it
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if not _held(r["title"])),
                    encoding="utf-8")
    return path, rows


def test_brands_learn_then_title_brands_find_brands_never_seen(jd_catalog, tmp_path, capsys):
    from skutag.cli import main
    from skutag.config import SkutagConfig
    from skutag.evidence import EvidenceCollector

    path, rows = jd_catalog
    out = tmp_path / "spans.joblib"
    assert main(["brands", "learn", str(path), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] >= 350 and summary["held_out"]["f1"] >= 0.6, summary

    # titles the model never saw, of brands no title it saw names: only what it learned can find them
    fit_brands = {_key(b) for r in rows if not _held(r["title"]) for b in brands_written_in(r["title"], r["brand"])}
    unseen = [(r["title"], brands_written_in(r["title"], r["brand"])) for r in rows if _held(r["title"])]
    unseen = [(t, b) for t, b in unseen if b and not any(_key(x) in fit_brands for x in b)]
    assert len(unseen) >= 20

    def hits(setting: str) -> int:
        collector = EvidenceCollector(SkutagConfig.load(environ={}, overrides={"text.brand_model": setting}))
        return sum(any(_key(f) in {_key(x) for x in b} for f in collector.title_brands(t)) for t, b in unseen)

    with_model, without = hits(str(out)), hits("off")
    print(f"{len(unseen)} held-out titles of unseen brands: found {with_model} with the model, {without} without")
    assert with_model >= 0.4 * len(unseen) and with_model >= without + 0.2 * len(unseen)
    with pytest.raises(FileNotFoundError, match="missing.joblib"):
        EvidenceCollector(SkutagConfig.load(environ={}, overrides={"text.brand_model": str(tmp_path / "missing.joblib")})
                          ).title_brands("ERKE/鸿星尔克 跑步鞋")


def test_brands_learn_refuses_a_catalog_without_usable_rows(tmp_path, capsys):
    from skutag.cli import main

    path = tmp_path / "few.jsonl"
    path.write_text(json.dumps({"id": "1", "title": "跑步鞋", "brand": "鸿星尔克"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    assert main(["brands", "learn", str(path)]) != 0
    assert "at least 20" in capsys.readouterr().err
