"""`skutag batch --db`: results also land in the product database, photos stored once by hash."""

from __future__ import annotations

import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest

from conftest import shared_path
from queue_support import (
    cached_title_model,
    delete_queue,
    grocery_rows,
    read_rows,
    require_broker,
    start_worker,
    stop_process_group,
    wait_until_ready,
    write_catalog,
)
from skutag.queue.config import QueueConfig
from skutag.queue.runner import BatchRequest, run_batch

TAGGER = "queue_support:load_title_tagger"


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return cached_title_model(shared_path("grocery", "manifest.csv"))


def test_batch_saves_products_and_predictions_in_the_store(tmp_path, model_dir):
    pytest.importorskip("sqlalchemy")
    from skutag.store import NotFound, Store

    rows = grocery_rows(shared_path("grocery", "manifest.csv"), "val", limit=6, step=40)
    rows.append(dict(rows[0], id="same-photo-again"))  # the photo is stored once
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a photo")
    rows.append({"id": "broken-photo", "image": str(tmp_path / "broken.jpg"), "title": "Valio laktosfri mjölk"})
    catalog = write_catalog(rows, tmp_path / "catalog.jsonl")
    db = tmp_path / "skutag.db"
    out = tmp_path / "out.jsonl"
    config = QueueConfig(tagger_factory=TAGGER, model_dir=str(model_dir), workers=1, chunk_size=3)
    summary = run_batch(BatchRequest(catalog, out, config, progress=False, store_url=str(db)))
    assert summary.tagged == len(rows) and summary.failed == 1

    store = Store.open(str(db))
    try:
        for row in read_rows(out):
            product = store.get_product(row["id"])
            assert product.path == row["path"]
            assert product.prediction.model_version == row["model_version"]
            if row["error"]:
                assert product.status == "error" and product.image_id is None
            else:
                assert product.status == row["decision"] and product.image_sha256 == row["image_hash"]
                assert product.title == next(r["title"] for r in rows if r["id"] == row["id"])
        assert store.get_product("same-photo-again").image_id == store.get_product(rows[0]["id"]).image_id
        with pytest.raises(NotFound):
            store.get_product("not-in-the-catalog")
    finally:
        store.close()


def test_batch_into_the_database_answers_under_its_service_rules(tmp_path, model_dir):
    """A category renamed through the API, a label-map override and the review whitelist stored in the
    database reach batch results saved there (and the JSONL output), as the HTTP service would answer."""
    pytest.importorskip("sqlalchemy")
    from skutag.store import Store

    rows = grocery_rows(shared_path("grocery", "manifest.csv"), "val", limit=9, step=30)
    catalog = write_catalog(rows, tmp_path / "catalog.jsonl")
    config = QueueConfig(tagger_factory=TAGGER, model_dir=str(model_dir), workers=1, chunk_size=4)
    run_batch(BatchRequest(catalog, tmp_path / "plain.jsonl", config, progress=False))
    plain = {row["id"]: row for row in read_rows(tmp_path / "plain.jsonl")}
    first, second = rows[0]["id"], rows[4]["id"]
    renamed_from, relabelled = plain[first]["path"], plain[second]["label"]
    assert renamed_from and relabelled and plain[second]["path"] != renamed_from
    auto = [row for row in plain.values() if row["decision"] == "auto" and row["path"] != renamed_from
            and row["label"] != relabelled]
    assert auto, "the title model auto-tags some grocery titles"
    whitelisted = auto[0]["path"].split(" > ")[0]

    db = tmp_path / "rules.db"
    store = Store.open(str(db))
    store.save_resource("path_aliases", {renamed_from: "Renamed > Shelf > Product"}, who="test")
    store.save_resource("label_map", {relabelled: "Mapped > By > Operator"}, who="test")
    store.save_resource("whitelist", {"paths": [whitelisted]}, who="test")
    store.close()
    run_batch(BatchRequest(catalog, tmp_path / "out.jsonl", config, progress=False, store_url=str(db)))

    out = {row["id"]: row for row in read_rows(tmp_path / "out.jsonl")}
    store = Store.open(str(db))
    try:
        for product_id, row in out.items():
            before = plain[product_id]
            if before["path"] == renamed_from:
                assert row["path"] == "Renamed > Shelf > Product"
                assert any("taxonomy:" in reason for reason in row["reasons"])
            elif before["label"] == relabelled:
                assert row["path"] == "Mapped > By > Operator"
                assert any(f"label map: {relabelled}" in reason for reason in row["reasons"])
            else:
                assert row["path"] == before["path"]
            if row["path"].split(" > ")[0] == whitelisted and before["decision"] == "auto":
                assert row["decision"] == "review"
            else:
                assert row["decision"] == before["decision"]
            stored = store.get_product(product_id)
            assert (stored.path, stored.status) == (row["path"], row["decision"])
        assert out[first]["path"] == "Renamed > Shelf > Product" and out[second]["path"] == "Mapped > By > Operator"
        assert out[auto[0]["id"]]["decision"] == "review"
    finally:
        store.close()


def test_a_store_sink_follows_rule_edits_and_the_configured_whitelist(tmp_path):
    pytest.importorskip("sqlalchemy")
    from fusion.result import Decision, TagResult
    from skutag.queue.store_sink import StoreSink

    config = tmp_path / "site.toml"
    config.write_text('[service]\nreview_whitelist = ["Drinks > Juice"]\n', encoding="utf-8")
    sink = StoreSink(str(tmp_path / "rules.db"), rules_ttl=0.0, config_file=str(config))
    juice = TagResult(id="a", label="Apple", path="Drinks > Juice > Apple", confidence=0.99, decision=Decision.AUTO)
    milk = TagResult(id="b", label="Oat", path="Drinks > Milk > Oat", confidence=0.99, decision=Decision.AUTO)
    try:
        assert sink.apply_rules(juice).decision is Decision.REVIEW  # from the config file, as `serve --config`
        assert sink.apply_rules(milk) == milk
        sink.store.save_resource("path_aliases", {"Drinks > Milk > Oat": "Drinks > Plant milk > Oat"}, who="test")
        assert sink.apply_rules(milk).path == "Drinks > Plant milk > Oat"  # read again: a worker follows edits
        failed = TagResult.failed("c", "image: not a photo")
        assert sink.apply_rules(failed) == failed
    finally:
        sink.close()


def test_a_workers_store_hands_each_new_stored_lexicon_to_its_tagger_once(tmp_path):
    pytest.importorskip("sqlalchemy")
    from skutag.queue.store_sink import StoreSink

    class Tagger:
        def __init__(self):
            self.installed = []

        def use_lexicon(self, lexicon):
            self.installed.append(sorted(b.name for b in lexicon))

    tagger = Tagger()
    sink = StoreSink(str(tmp_path / "lexicon.db"), rules_ttl=0.0)
    try:
        assert sink.follow_lexicon(tagger) is None and tagger.installed == []  # nothing edited: the model's own
        sink.store.save_resource("lexicon", {"Alpha": {"aliases": [], "categories": []}}, who="test")
        assert sink.follow_lexicon(tagger) == 1 and sink.follow_lexicon(tagger) == 1
        sink.store.save_resource("lexicon", {"Alpha": {}, "Beta": {"aliases": ["b"]}}, who="test")
        assert sink.follow_lexicon(tagger) == 2
        assert tagger.installed == [["Alpha"], ["Alpha", "Beta"]]
    finally:
        sink.close()


def test_batch_and_cli_tag_read_brands_with_the_databases_edited_lexicon(tmp_path, capsys):
    """A brand added through the service (the stored lexicon) reaches the cold-start tagger of a local batch pool
    and of `skutag tag --db`, as it reaches `skutag serve` on that database."""
    pytest.importorskip("sqlalchemy")
    import json

    from skutag.cli import main
    from skutag.store import Store
    from taxonomy import CategoryTree

    tree = CategoryTree.default()
    target = " > ".join(tree.path_of(tree.leaves()[100].id))
    title = "斯库塔格 特惠装 2件"
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps({"id": "b1", "title": title}, ensure_ascii=False) + "\n", encoding="utf-8")
    config = QueueConfig(workers=1, chunk_size=4)
    run_batch(BatchRequest(catalog, tmp_path / "plain.jsonl", config, progress=False))
    assert read_rows(tmp_path / "plain.jsonl")[0]["path"] != target

    db = tmp_path / "brands.db"
    store = Store.open(str(db))
    store.save_resource("lexicon", {"Skutagtestbrand": {"aliases": ["斯库塔格"], "categories": [target]}}, who="test")
    store.save_resource("path_aliases", {target: "Renamed > Shelf > Brand goods"}, who="test")
    store.close()
    run_batch(BatchRequest(catalog, tmp_path / "out.jsonl", config, progress=False, store_url=str(db)))
    row = read_rows(tmp_path / "out.jsonl")[0]
    assert row["path"] == "Renamed > Shelf > Brand goods" and row["contributions"]["brand"] > 0.5

    assert main(["tag", "--title", title, "--json", "--db", str(db)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["path"] == "Renamed > Shelf > Brand goods"
    assert main(["tag", "--title", title, "--json"]) == 0  # the files' lexicon: the brand is unknown
    assert json.loads(capsys.readouterr().out)["path"] != answer["path"]


def test_workers_with_a_database_store_results_of_a_no_wait_batch(tmp_path, model_dir):
    pytest.importorskip("sqlalchemy")
    from skutag.store import NotFound, Store

    broker, backend = require_broker("redis")
    rows = grocery_rows(shared_path("grocery", "manifest.csv"), "val", limit=8, step=30)
    catalog = write_catalog(rows, tmp_path / "catalog.jsonl")
    db = tmp_path / "workers.db"
    Store.open(str(db)).close()  # migrated once, before two worker processes open it
    queue = f"skutag-store-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "worker.log"
    proc = start_worker(broker, queue, model_dir, "db", log, backend=backend, concurrency=2,
                        extra_args=["--db", str(db)])
    own_model = tmp_path / "model"  # fresh task ids
    shutil.copytree(model_dir, own_model)
    config = QueueConfig(broker_url=broker, result_backend=backend, queue_name=queue, tagger_factory=TAGGER,
                         model_dir=str(own_model))
    try:
        wait_until_ready(log, proc)
        sent = run_batch(BatchRequest(catalog, tmp_path / "out.jsonl", config, wait=False, progress=False))
        assert sent.enqueued == 8 and sent.tagged == 0
        store = Store.open(str(db), migrate=False)
        try:
            deadline = time.monotonic() + 90
            saved = {}
            while len(saved) < 8 and time.monotonic() < deadline:
                for row in rows:
                    try:
                        saved[row["id"]] = store.get_product(row["id"])
                    except NotFound:
                        pass
                time.sleep(0.3)
        finally:
            store.close()
    finally:
        stop_process_group(proc, signal.SIGTERM)
        proc.wait(timeout=30)
        delete_queue(broker, queue)
    assert len(saved) == 8
    right = sum(saved[r["id"]].path == r["category"] for r in rows)
    assert right >= 6 and all(p.image_sha256 and p.title for p in saved.values())
    # a later collecting run writes the same answers to the JSONL output
    collected = run_batch(BatchRequest(catalog, tmp_path / "out.jsonl", config, progress=False))
    assert collected.already_done_in_backend == 8 and collected.enqueued == 0
    assert {r["id"]: r["path"] for r in read_rows(tmp_path / "out.jsonl")} == {k: v.path for k, v in saved.items()}
