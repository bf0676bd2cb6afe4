"""Batch results into the product database (``skutag.store``), next to the JSONL output.

Each product is saved with its photo (stored once per SHA-256, with its perceptual hash, so the
service's duplicate cache and review dashboard see batch-tagged products like uploaded ones) and
the prediction that decided its status. Failed rows are saved with status ``error``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fusion.result import TagResult
from skutag.catalog import Product

log = logging.getLogger(__name__)


class StoreSink:
    """Saves ``(product, result)`` pairs through ``skutag.store.Store``."""

    def __init__(self, url: str | None):
        from skutag.store import Store

        self.store = Store.open(url)
        self.saved = 0

    def save(self, product: Product | None, result: TagResult) -> None:
        image_id = self._image_id(product.image) if product is not None else None
        self.store.save_tagging(
            result.id,
            title=product.title if product else None,
            price=product.price if product else None,
            brand=product.brand if product else None,
            image_id=image_id,
            result=result,
            model_version=result.model_version or "unknown",
        )
        self.saved += 1

    def _image_id(self, image: str | Path | bytes | None) -> int | None:
        from skutag.store import fingerprint
        from vision.image import ImageError

        if image is None:
            return None
        try:
            data = image if isinstance(image, bytes) else Path(image).read_bytes()
            image_id, _ = self.store.add_image(fingerprint(data), data)
        except (OSError, ImageError) as exc:  # the row's error already says why; keep the product
            log.info("photo not stored: %s", exc)
            return None
        return image_id

    def close(self) -> None:
        self.store.close()
