"""Batch results into the product database (``skutag.store``), next to the JSONL output.

Each product is saved with its photo (stored once per SHA-256, with its perceptual hash, so the
service's duplicate cache and review dashboard see batch-tagged products like uploaded ones) and
the prediction that decided its status. Failed rows are saved with status ``error``.

Results are read under the database's service rules first (``skutag.service.rules``: categories renamed
through the API, label-map overrides, the review whitelist), as the HTTP service answers: the JSONL output
and the stored product agree with what ``POST /v1/products`` would have said. The brand lexicon edited through
the service reaches the taggers too (``TaggerSpec.store_url`` for a local pool, ``follow_lexicon`` for workers).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from fusion.result import TagResult
from skutag.catalog import Product

log = logging.getLogger(__name__)


class StoreSink:
    """Saves ``(product, result)`` pairs through ``skutag.store.Store``.

    ``whitelist``: review prefixes configured beside the stored ones (default: ``service.review_whitelist``
    of ``config_file``, as ``skutag serve --config`` reads it);
    ``rules_ttl``: seconds a snapshot of the stored rules is used before it is read again (long-running
    workers follow the dashboard's edits)."""

    def __init__(self, url: str | None, whitelist: tuple[str, ...] | None = None, rules_ttl: float = 30.0,
                 config_file: str | None = None):
        from skutag.store import Store

        self.store = Store.open(url)
        self.saved = 0
        self.whitelist = _configured_whitelist(config_file) if whitelist is None else tuple(whitelist)
        self.rules_ttl = float(rules_ttl)
        self._rules: tuple[float, Any] | None = None
        self._lexicon_version: int | None = None  # the stored lexicon last handed to a tagger

    def rules(self):
        """The database's service rules, read at most every ``rules_ttl`` seconds."""
        from skutag.service.rules import ServiceRules

        now = time.monotonic()
        if self._rules is None or now - self._rules[0] > self.rules_ttl:
            self._rules = (now, ServiceRules.read(self.store, self.whitelist))
        return self._rules[1]

    def apply_rules(self, result: TagResult) -> TagResult:
        """``result`` as the service would answer it (renames, label map, whitelist)."""
        return self.rules().apply(result)

    def follow_lexicon(self, tagger: Any) -> int | None:
        """Give ``tagger`` the brand lexicon edited through the service whenever its stored version changes
        (checked with the rules, every ``rules_ttl`` seconds); the version it reads with, None for its own."""
        from skutag.service.rules import install_stored_lexicon

        version = self.rules().lexicon_version
        if version is not None and version != self._lexicon_version:
            self._lexicon_version = install_stored_lexicon(self.store, tagger)
        return self._lexicon_version

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


def _configured_whitelist(config_file: str | None) -> tuple[str, ...]:
    from skutag.config import SkutagConfig

    return tuple(SkutagConfig.load(config_file).service.review_whitelist)
