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
    from skutag.fusion.result import Decision, TagResult
    from skutag.queue.store_sink import StoreSink

    config = tmp_path / "site.toml"
    config.write_text('[decision]\nalways_review = ["Drinks > Juice"]\n', encoding="utf-8")
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
    from skutag.queue.store_sink import StoreSink

    from queue_support import TitleTagger, load_title_tagger

    class Recording(TitleTagger):
        """Reads brands: records each lexicon it is handed."""

        def use_lexicon(self, lexicon):
            self.installed.append(sorted(b.name for b in lexicon))
            return True

    inner = load_title_tagger(str(cached_title_model(shared_path("grocery", "manifest.csv"))))
    tagger = Recording(inner.model, inner.model_version)
    tagger.installed = []
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
    import json

    from skutag.cli import main
    from skutag.store import Store
    from skutag.taxonomy import CategoryTree

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


def _stored_product(db: Path, product_id: str, title: str, photo: str | None):
    """A product saved and accepted by an operator, as the HTTP API does it; its view."""
    from skutag.fusion.result import Decision, TagResult
    from skutag.store import Store, fingerprint

    store = Store.open(str(db))
    try:
        image_id = None
        if photo:
            data = Path(photo).read_bytes()
            image_id, _ = store.add_image(fingerprint(data), data)
        result = TagResult(id=product_id, label="Milk", path="Dairy > Milk > Arla", confidence=0.55,
                           decision=Decision.REVIEW, model_version="api-model")
        store.save_tagging(product_id, title=title, price=12.5, brand="Arla", image_id=image_id, result=result,
                           model_version="api-model")
        store.add_correction(product_id, None, who="operator", kind="accept")
        return store.get_product(product_id)
    finally:
        store.close()


def test_a_malformed_row_never_overwrites_a_stored_product_or_its_verdict(tmp_path, model_dir):
    from skutag.store import NotFound, Store

    photo = grocery_rows(shared_path("grocery", "manifest.csv"), "val", limit=1)[0]["image"]
    db = tmp_path / "shop.db"
    before = _stored_product(db, "keep1", "Arla mjölk", photo)
    assert before.status == "accepted"
    catalog = write_catalog([
        {"id": "keep1", "image": photo, "title": "Arla mjölk", "price": "abc"},  # malformed, id already stored
        {"id": "new-bad", "title": "Oatly", "category": "a >  > c"},  # malformed, new id
        {"title": "Valio", "price": "abc"},  # malformed, no id: reported by its line only
        {"id": "refused", "title": "Oatly", "price": "abc"},  # a field the API refuses (422): nothing stored
    ], tmp_path / "catalog.jsonl")
    config = QueueConfig(tagger_factory=TAGGER, model_dir=str(model_dir), workers=1)
    summary = run_batch(BatchRequest(catalog, tmp_path / "out.jsonl", config, progress=False, store_url=str(db)))

    out = {row["id"]: row for row in read_rows(tmp_path / "out.jsonl")}
    assert summary.malformed == 4 and set(out) == {"keep1", "new-bad", "line:3", "refused"}
    assert "price: not a number" in out["keep1"]["error"]  # the failure is reported in the output
    store = Store.open(str(db))
    try:
        after = store.get_product("keep1")
        assert after == before  # fields, photo, status, category, latest prediction: all as they were
        assert store.get_product("new-bad").status == "error"  # a new id is recorded as an error product
        with pytest.raises(NotFound):
            store.get_product("line:3")
        with pytest.raises(NotFound):
            store.get_product("refused")
    finally:
        store.close()


def test_rows_the_database_cannot_hold_fail_alone_and_are_not_saved(tmp_path, model_dir):
    from skutag.store import NotFound, Store

    rows = grocery_rows(shared_path("grocery", "manifest.csv"), "val", limit=3, step=40)
    bad = [
        {"id": "long-brand", "title": "Arla mjölk", "brand": "B" * 250},
        {"id": "x" * 140, "title": "Oatly havredryck"},
        {"id": "商品 1/a", "title": "Valio yoghurt"},
        {"id": "nul-title", "title": "Arla\u0000mjölk"},
    ]
    catalog = write_catalog(rows[:1] + bad + rows[1:], tmp_path / "catalog.jsonl")
    db = tmp_path / "shop.db"
    config = QueueConfig(tagger_factory=TAGGER, model_dir=str(model_dir), workers=1, chunk_size=2)
    summary = run_batch(BatchRequest(catalog, tmp_path / "out.jsonl", config, progress=False, store_url=str(db)))

    out = {row["id"]: row for row in read_rows(tmp_path / "out.jsonl")}
    assert summary.tagged == 7 and summary.failed == 4
    assert "brand: longer than 200 characters" in out["long-brand"]["error"]
    assert "id: must be 1-128 characters" in out["x" * 140]["error"]
    assert "letters, digits and . _ : -" in out["商品 1/a"]["error"]
    assert "title: contains a NUL character" in out["nul-title"]["error"]
    store = Store.open(str(db))
    try:
        for row in rows:
            assert store.get_product(row["id"]).path == out[row["id"]]["path"]
        for row in bad:
            with pytest.raises(NotFound):
                store.get_product(row["id"])
    finally:
        store.close()


@pytest.fixture
def pg_database_url():
    from service_fixtures import create_pg_schema, drop_pg_schema, require_postgres

    require_postgres()
    schema, url = create_pg_schema()
    yield url
    drop_pg_schema(schema)


def test_a_value_postgresql_refuses_fails_its_row_and_the_batch_goes_on(tmp_path, model_dir, pg_database_url,
                                                                        monkeypatch):
    """Without the checks made before saving, PostgreSQL itself refuses a 250-character brand: that product
    becomes a failed row with the database's reason, the others are saved, and a rerun does not count it done."""
    from skutag.policy import fields
    from skutag.queue import store_sink
    from skutag.store import NotFound, Store

    monkeypatch.setattr(store_sink, "storable_product_problem", lambda product: None)
    monkeypatch.setattr(fields, "BRAND_MAX_CHARS", 10_000)  # the catalog reader lets it through too
    rows = grocery_rows(shared_path("grocery", "manifest.csv"), "val", limit=3, step=40)
    rows[1]["brand"] = "B" * 250
    catalog = write_catalog(rows, tmp_path / "catalog.jsonl")
    out = tmp_path / "out.jsonl"
    config = QueueConfig(tagger_factory=TAGGER, model_dir=str(model_dir), workers=1, chunk_size=3)
    summary = run_batch(BatchRequest(catalog, out, config, progress=False, store_url=pg_database_url))

    written = {row["id"]: row for row in read_rows(out)}
    assert summary.tagged == 3 and summary.failed == 1
    assert "value too long for type character varying(200)" in written[rows[1]["id"]]["error"]
    store = Store.open(pg_database_url)
    try:
        assert store.get_product(rows[0]["id"]).path and store.get_product(rows[2]["id"]).path
        with pytest.raises(NotFound):
            store.get_product(rows[1]["id"])
    finally:
        store.close()
    rerun = run_batch(BatchRequest(catalog, out, config, progress=False, store_url=pg_database_url,
                                   retry_failed=True))
    assert rerun.tagged == 1 and rerun.failed == 1  # tagged again, refused again: never silently "done"


def test_a_database_that_goes_away_stops_the_batch_and_the_rerun_saves_the_product(tmp_path, model_dir,
                                                                                   monkeypatch):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from skutag.queue.store_sink import StoreUnavailableError
    from skutag.store import Store

    rows = grocery_rows(shared_path("grocery", "manifest.csv"), "val", limit=5, step=40)
    catalog = write_catalog(rows, tmp_path / "catalog.jsonl")
    db, out = tmp_path / "shop.db", tmp_path / "out.jsonl"
    save_tagging = Store.save_tagging

    def locked_at_the_third(self, product_id, **kwargs):
        if product_id == rows[2]["id"]:
            raise OperationalError("INSERT INTO products", {}, sqlite3.OperationalError("database is locked"))
        return save_tagging(self, product_id, **kwargs)

    monkeypatch.setattr(Store, "save_tagging", locked_at_the_third)
    config = QueueConfig(tagger_factory=TAGGER, model_dir=str(model_dir), workers=1, chunk_size=2)
    request = BatchRequest(catalog, out, config, progress=False, store_url=str(db))
    with pytest.raises(StoreUnavailableError, match="database is locked.*rerun the same command"):
        run_batch(request)
    assert [row["id"] for row in read_rows(out)] == [rows[0]["id"], rows[1]["id"]]  # not marked done

    monkeypatch.setattr(Store, "save_tagging", save_tagging)
    rerun = run_batch(request)
    assert rerun.skipped == 2 and rerun.tagged == 3 and rerun.failed == 0
    store = Store.open(str(db))
    try:
        assert all(store.get_product(row["id"]).title == row["title"] for row in rows)
    finally:
        store.close()


def test_rows_without_an_id_from_two_catalogs_are_two_products(tmp_path, model_dir):
    from skutag.store import Store

    first = write_catalog([{"title": "Arla mjölk"}], tmp_path / "A.jsonl")
    second = write_catalog([{"title": "Oatly havredryck"}], tmp_path / "B.jsonl")
    db = tmp_path / "shop.db"
    config = QueueConfig(tagger_factory=TAGGER, model_dir=str(model_dir), workers=1)
    for catalog in (first, second):
        run_batch(BatchRequest(catalog, catalog.with_suffix(".out.jsonl"), config, progress=False,
                               store_url=str(db)))
    assert [row["id"] for row in read_rows(tmp_path / "A.out.jsonl")] == ["A:line-1"]
    assert [row["id"] for row in read_rows(tmp_path / "B.out.jsonl")] == ["B:line-1"]
    store = Store.open(str(db))
    try:
        assert store.get_product("A:line-1").title == "Arla mjölk"
        assert store.get_product("B:line-1").title == "Oatly havredryck"
    finally:
        store.close()
    run_batch(BatchRequest(first, tmp_path / "plain.jsonl", config, progress=False))  # no database: as before
    assert [row["id"] for row in read_rows(tmp_path / "plain.jsonl")] == ["line-1"]


def test_a_batch_into_the_database_samples_audits_as_the_service_does(tmp_path):
    """No audit draw inside the decision (the service answers `auto`); the database's audit page gets its
    share of auto-tags (`decision.audit_rate`, drawn by the save path) instead."""
    from skutag.fusion.result import Decision, TagResult
    from skutag.catalog import Product
    from skutag.queue.store_sink import StoreSink
    from skutag.queue.tagger_factory import TaggerSpec

    db = str(tmp_path / "audit.db")
    assert TaggerSpec("skutag.pipeline:load_pipeline", store_url=db).load().config.decision.audit_rate == 0.0
    assert TaggerSpec("skutag.pipeline:load_pipeline").load().config.decision.audit_rate > 0.0
    config = tmp_path / "site.toml"
    config.write_text("[decision]\naudit_rate = 1.0\n", encoding="utf-8")
    sink = StoreSink(db, config_file=str(config))
    try:
        for decision in (Decision.AUTO, Decision.REVIEW):
            sink.save(Product(id=f"p-{decision.value}", title="Arla milk"),
                      TagResult(id=f"p-{decision.value}", label="Milk", path="Drinks > Milk > Milk", confidence=0.99,
                                decision=decision, model_version="m1"))
        assert [p.id for p in sink.store.audit_queue()] == ["p-auto"]
    finally:
        sink.close()
