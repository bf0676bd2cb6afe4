"""The pure core every batch path calls: isolation of bad products, retries, rows, planning."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import shared_path
from skutag.fusion.result import TagResult
from queue_support import TitleTagger, cached_title_model, grocery_rows, load_title_tagger
from skutag.catalog import Product
from skutag.queue.core import (
    RetryPolicy,
    TransientError,
    image_hash,
    product_from_message,
    product_to_message,
    result_from_row,
    result_row,
    tag_batch,
    tag_chunk,
)
from skutag.queue.tagger_factory import TaggerLoadError, TaggerSpec, load_tagger, plan_processes


@pytest.fixture(scope="module")
def grocery_val() -> list[dict]:
    return grocery_rows(shared_path("grocery", "manifest.csv"), "val", limit=12, step=20)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return cached_title_model(shared_path("grocery", "manifest.csv"))


def _products(rows) -> list[Product]:
    return [Product(id=r["id"], image=r["image"], title=r["title"]) for r in rows]


def test_a_broken_photo_fails_alone_and_the_batch_completes(grocery_val, model_dir):
    tagger = load_title_tagger(str(model_dir))
    products = _products(grocery_val)
    products[3] = Product(id=products[3].id, image=b"not a jpeg at all", title=products[3].title)
    results = tag_batch(products, tagger)
    assert [r.id for r in results] == [p.id for p in products]
    assert results[3].error and "ImageDecodeError" in results[3].error
    good = [r for i, r in enumerate(results) if i != 3]
    assert all(r.error is None and r.path for r in good)
    right = sum(r.path == row["category"] for r, row in zip(results, grocery_val) if r.error is None)
    assert right >= 9  # titles name the product: a real model gets nearly all of them
    assert all(r.model_version == tagger.model_version for r in results)


class _Flaky(TitleTagger):
    """Raises a transient error a given number of times, then tags as the title tagger does."""

    def __init__(self, inner, failures: int, error: type[Exception] = ConnectionError):
        super().__init__(inner.model, inner.model_version)
        self.failures, self.error, self.calls = failures, error, 0

    def tag(self, products, *, audit=True):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error("store briefly away")
        return super().tag(products, audit=audit)


def test_transient_errors_are_retried_with_backoff(grocery_val, model_dir):
    flaky = _Flaky(load_title_tagger(str(model_dir)), failures=2, error=TransientError)
    waits: list[float] = []
    pairs = tag_chunk(_products(grocery_val[:4]), flaky, RetryPolicy(max_retries=3, backoff=0.5), sleep=waits.append)
    assert flaky.calls == 3 and len(waits) == 2
    assert all(0 <= w <= 0.5 * 2**i for i, w in enumerate(waits))
    assert all(result.error is None for result, _ in pairs)
    assert [digest for _, digest in pairs] == [image_hash(r["image"]) for r in grocery_val[:4]]


def test_retries_that_run_out_give_failed_rows_not_lost_products(grocery_val, model_dir):
    flaky = _Flaky(load_title_tagger(str(model_dir)), failures=99)
    pairs = tag_chunk(_products(grocery_val[:3]), flaky, RetryPolicy(max_retries=2, backoff=0.0), sleep=lambda s: None)
    assert flaky.calls == 3 + 3  # three tries of the chunk, then one last try per product
    assert [r.id for r, _ in pairs] == [r["id"] for r in grocery_val[:3]]
    assert all("persisted after 2 retries" in r.error for r, _ in pairs)


def test_result_rows_and_messages_round_trip(grocery_val, model_dir):
    tagger = load_title_tagger(str(model_dir))
    product = _products(grocery_val[:1])[0]
    result = tag_batch([product], tagger)[0]
    row = result_row(result, image_hash(product.image))
    assert row["image_hash"] == image_hash(Path(product.image).read_bytes())
    assert result_from_row(row) == result
    embedded = product_to_message(product, embed_image=True)
    assert product_from_message(embedded).image == Path(product.image).read_bytes()
    assert product_from_message(product_to_message(product)).image == product.image
    with pytest.raises(ValueError, match="over the 10 limit"):
        product_to_message(product, embed_image=True, max_image_bytes=10)
    failed = TagResult.failed("x", "boom")
    assert result_from_row(result_row(failed, None)) == failed


def test_tagger_factory_specs_fail_clearly(model_dir):
    with pytest.raises(TaggerLoadError, match="module:function"):
        load_tagger("no_colon_here")
    with pytest.raises(TaggerLoadError, match="cannot import"):
        load_tagger("skutag_no_such_module:load")
    with pytest.raises(TaggerLoadError, match="has no 'nope'"):
        load_tagger("queue_support:nope")
    tagger = TaggerSpec("queue_support:load_title_tagger", str(model_dir), threads=1).load()
    assert tagger.model_version.startswith("title-tfidf-")


@pytest.mark.parametrize(
    ("workers", "threads", "cores", "expected"),
    [(0, 0, 8, (8, 1)), (2, 0, 8, (2, 4)), (2, 8, 8, (2, 4)), (16, 0, 4, (4, 1)), (1, 0, 2, (1, 2)), (3, 2, 2, (2, 1))],
)
def test_processes_times_threads_never_exceed_cores(workers, threads, cores, expected):
    processes, per_process = plan_processes(workers, threads, cores)
    assert (processes, per_process) == expected
    assert processes * per_process <= cores


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_stage_with_a_threads_setting_is_capped_per_process(threads):
    import dataclasses

    from skutag.queue.tagger_factory import _config_with_threads

    config = _config_with_threads(None, threads)
    capped = [name for name in config.section_names()
              if any(f.name == "threads" for f in dataclasses.fields(getattr(config, name)))]
    assert "vision" in capped
    for name in capped:
        assert 0 < getattr(config, name).threads <= threads, name
    assert 0 < config.ocr.workers <= threads  # photos read side by side count as threads too
