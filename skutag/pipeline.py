"""The pipeline: composes the stages into ``tag_batch(products) -> results``.

Every path (CLI ``tag``/``batch``, the HTTP service, local pool workers, Celery workers) calls
``Tagger.tag_batch``; nothing else decides how a product is tagged.

The implementation lands with the fusion issue; this module fixes the interface the
service and queue packages build against.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from fusion.result import TagResult
from skutag.catalog import Product


class Tagger(Protocol):
    """What the application needs from the tagging engine."""

    model_version: str

    def tag_batch(self, products: Sequence[Product]) -> list[TagResult]:
        """One result per product, in order; a bad product gives a result with ``error`` set."""
