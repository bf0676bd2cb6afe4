"""`skutag batch --db`: results also land in the product database, photos stored once by hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import shared_path
from queue_support import cached_title_model, grocery_rows, read_rows, write_catalog
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
