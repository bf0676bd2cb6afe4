"""The pure core every batch path calls: ``tag_batch(products, tagger) -> results``.

The local pool, the Celery task and ``skutag batch`` all go through :func:`tag_batch`, so a
product is tagged the same way whichever path carries it. It adds to ``Tagger.tag_batch``:

- one result per product, in input order, each with the tagger's ``model_version``;
- a product that breaks the whole batch is isolated (the batch is re-run product by product)
  and comes back as a failed result with its error; the rest of the batch completes;
- transient errors (:data:`TRANSIENT_ERRORS`) are *raised*, so the caller retries with backoff.

It also owns the identity of a product's input (``image_hash``) used for idempotency and
de-duplication, and the JSON row written for a result.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from skutag.fusion.result import TagResult
from skutag.catalog import Product

if TYPE_CHECKING:  # the pipeline module imports every stage; workers load it through the factory
    from skutag.tagger import Tagger

log = logging.getLogger(__name__)


class TransientError(RuntimeError):
    """An error worth retrying (a store or file share that is briefly away). Raise it from a tagger."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


def tag_batch(products: Sequence[Product], tagger: Tagger) -> list[TagResult]:
    """Tag ``products`` with ``tagger``: one result per product, in order; bad products fail alone."""
    products = list(products)
    if not products:
        return []
    try:
        results = list(tagger.tag_batch(products))
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # one bad product must not cost the others their results
        if len(products) == 1:
            log.warning("product %s failed: %s", products[0].id, exc)
            return [_failed(products[0].id, exc, tagger)]
        return [result for product in products for result in tag_batch([product], tagger)]
    if len(results) != len(products) or any(r.id != p.id for r, p in zip(results, products)):
        results = _match_by_id(products, results, tagger)
    return [_stamped(result, tagger) for result in results]


def _match_by_id(products: Sequence[Product], results: Sequence[TagResult], tagger: Tagger) -> list[TagResult]:
    by_id = {result.id: result for result in results}
    return [
        by_id.get(p.id) or TagResult.failed(p.id, f"tagger {type(tagger).__name__} returned no result")
        for p in products
    ]


def _failed(product_id: str, exc: BaseException, tagger: Tagger) -> TagResult:
    return _stamped(TagResult.failed(product_id, f"{type(exc).__name__}: {exc}"), tagger)


def _stamped(result: TagResult, tagger: Tagger) -> TagResult:
    version = getattr(tagger, "model_version", None)
    if result.model_version is None and version is not None:
        return dataclasses.replace(result, model_version=str(version))
    return result


# --- input identity -------------------------------------------------------------------

def image_hash(image: str | Path | bytes | None) -> str | None:
    """SHA-256 of the photo's bytes (``None`` without a photo or when it cannot be read)."""
    if image is None:
        return None
    if isinstance(image, (bytes, bytearray, memoryview)):
        return hashlib.sha256(image).hexdigest()
    try:
        with open(image, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None  # the tagger reports the unreadable file on the product's row


def product_key(product_id: str, digest: str | None) -> str:
    """The idempotency key: product id + image hash."""
    return f"{product_id}\x00{digest or '-'}"


def result_row(result: TagResult, digest: str | None) -> dict[str, Any]:
    """The JSONL row for a result: ``TagResult.to_json()`` plus the input's ``image_hash``."""
    row = result.to_json()
    row["image_hash"] = digest
    return row


def result_from_row(row: Mapping[str, Any]) -> TagResult:
    """Rebuild a :class:`TagResult` from a row written by :func:`result_row`."""
    from skutag.fusion.result import Alternative, Decision

    fields = {f.name for f in dataclasses.fields(TagResult)}
    data = {key: value for key, value in row.items() if key in fields}
    data["decision"] = Decision(data.get("decision", Decision.MANUAL.value))
    data["alternatives"] = tuple(Alternative(**alt) for alt in data.get("alternatives") or ())
    data["reasons"] = tuple(data.get("reasons") or ())
    data["contributions"] = dict(data.get("contributions") or {})
    return TagResult(**data)


# --- products in messages -------------------------------------------------------------

def product_to_message(product: Product, embed_image: bool = False, max_image_bytes: int | None = None) -> dict:
    """A JSON-safe dict for a broker message; the photo as a path or (``embed_image``) its bytes."""
    data = dataclasses.asdict(product)
    image = product.image
    if isinstance(image, (bytes, bytearray)) or (embed_image and image is not None and Path(image).is_file()):
        raw = bytes(image) if isinstance(image, (bytes, bytearray)) else Path(image).read_bytes()
        if max_image_bytes is not None and len(raw) > max_image_bytes:
            raise ValueError(f"product {product.id}: photo is {len(raw)} bytes, over the {max_image_bytes} limit")
        data["image"] = {"b64": base64.b64encode(raw).decode("ascii")}
    elif image is not None:
        data["image"] = str(image)
    return data


def product_from_message(data: Mapping[str, Any]) -> Product:
    image = data.get("image")
    if isinstance(image, Mapping):
        image = base64.b64decode(image["b64"])
    fields = {f.name for f in dataclasses.fields(Product)}
    values = {key: value for key, value in data.items() if key in fields}
    values["image"] = image
    return Product(**values)


# --- retries --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Retries for transient errors: exponential backoff with full jitter, capped."""

    max_retries: int = 5
    backoff: float = 1.0
    backoff_max: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        import random

        return random.uniform(0, min(self.backoff_max, self.backoff * (2**attempt)))


def tag_chunk(products: Sequence[Product], tagger: Tagger, policy: RetryPolicy = RetryPolicy(),
              sleep=None) -> list[tuple[TagResult, str | None]]:
    """:func:`tag_batch` with retries on transient errors; each result with its input's image hash.

    When the retries run out, the products are tried once more one by one, so only those that
    still fail come back failed (with the last error), never lost.
    """
    import time

    sleep = sleep or time.sleep
    digests = [image_hash(product.image) for product in products]
    for attempt in range(policy.max_retries + 1):
        try:
            results = tag_batch(products, tagger)
            break
        except TRANSIENT_ERRORS as exc:
            if attempt == policy.max_retries:
                results = _one_by_one(products, tagger, policy, exc)
                break
            log.info("transient error (%s), retry %d/%d", exc, attempt + 1, policy.max_retries)
            sleep(policy.delay(attempt))
    return list(zip(results, digests))


def _one_by_one(products: Sequence[Product], tagger: Tagger, policy: RetryPolicy,
                exc: BaseException) -> list[TagResult]:
    if len(products) == 1:
        return [_gave_up(products[0], tagger, policy, exc)]
    results = []
    for product in products:
        try:
            results.extend(tag_batch([product], tagger))
        except TRANSIENT_ERRORS as last:
            results.append(_gave_up(product, tagger, policy, last))
    return results


def _gave_up(product: Product, tagger: Tagger, policy: RetryPolicy, exc: BaseException) -> TagResult:
    message = f"transient error persisted after {policy.max_retries} retries: {type(exc).__name__}: {exc}"
    return _stamped(TagResult.failed(product.id, message), tagger)
