"""The tagging contract: what the service, batch jobs, workers and the CLI need from a tagging engine.

``skutag.pipeline.Pipeline`` is the engine; tests and users may bring their own (a ``Tagger`` subclass loaded
through a factory spec, ``skutag.queue.tagger_factory``). Callers use these methods and nothing else: no
probing for optional ones.

    batch = tagger.tag(products, audit=False)   # TaggedBatch: one result (and its evidence) per product
    tagger.categories()                         # the category paths it can answer
    tagger.use_lexicon(lexicon)                 # read brands with this lexicon from the next batch on
    tagger.training_confidences                 # its confidences on its training rows (None: not kept)
    tagger.photo_needs                          # the sizes it reads photos at (None: it takes bytes or paths)
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from skutag.catalog import Product
from skutag.fusion.drift import ConfidenceHistogram
from skutag.fusion.result import TagResult
from skutag.looks import look_of
from skutag.vision.photo import PhotoNeeds

if TYPE_CHECKING:
    from skutag.fusion.evidence import Evidence
    from skutag.taxonomy.brands import BrandLexicon


@dataclass(frozen=True)
class TaggedBatch:
    """Results in the order of the products, and the evidence each was decided on (None where the engine
    keeps none, e.g. a product that had nothing to read)."""

    results: list[TagResult]
    evidence: list[Evidence | None]

    def __post_init__(self) -> None:
        if len(self.results) != len(self.evidence):
            raise ValueError(f"{len(self.results)} results but {len(self.evidence)} evidence rows")

    def outputs(self) -> list[dict[str, Any]]:
        """What each modality saw, as JSON (kept with a stored product)."""
        return [modality_outputs(ev) for ev in self.evidence]


class Tagger(abc.ABC):
    """A tagging engine. ``model_version`` (an attribute or a property) names the model that answers; it is
    stored with every answer."""

    model_version: str

    @abc.abstractmethod
    def tag(self, products: Sequence[Product], *, audit: bool = True) -> TaggedBatch:
        """One result per product, in order; a bad product gives a result with ``error`` set. ``audit``: the
        decision layer's random audit sample moves some auto-tags to review (off where a product database keeps
        its own audit sample, ``skutag.policy``)."""

    @abc.abstractmethod
    def categories(self) -> list[str]:
        """The category paths the model can answer, sorted."""

    @property
    @abc.abstractmethod
    def lexicon(self) -> BrandLexicon | None:
        """The brand lexicon it reads brands with; None when it reads none."""

    @abc.abstractmethod
    def use_lexicon(self, lexicon: BrandLexicon) -> bool:
        """Read brands with ``lexicon`` from the next batch on; False when this tagger reads no brands."""

    @property
    def training_confidences(self) -> ConfidenceHistogram | None:
        """The histogram of the confidences it gave its own training rows, held out (the reference of the
        service's drift chart); None for a tagger that kept none (the cold start, a tagger that does not say)."""
        return None

    @property
    def photo_needs(self) -> PhotoNeeds | None:
        """The sizes it reads a product photo at, for a tagger that takes ``skutag.vision.photo.Photo`` images:
        the service then decodes each upload once, for its duplicate check and for the tagger. None (the
        default): it reads photos given as bytes or paths."""
        return None

    def prepare(self) -> None:
        """Build now what the first products would otherwise wait for (model sessions, OCR's INT8 copies in a
        fresh ``SKUTAG_HOME``); the service calls it before it serves a model. Default: nothing."""

    def tag_batch(self, products: Sequence[Product], *, audit: bool = True) -> list[TagResult]:
        """``tag(products).results``."""
        return self.tag(products, audit=audit).results


class BrandlessTagger(Tagger):
    """A tagger that reads no brands and keeps no evidence (a plain classifier behind the contract): subclasses
    give ``categories`` and ``tag_results``."""

    @property
    def lexicon(self) -> None:
        return None

    def use_lexicon(self, lexicon: BrandLexicon) -> bool:
        return False

    def tag(self, products: Sequence[Product], *, audit: bool = True) -> TaggedBatch:
        results = self.tag_results(products)
        return TaggedBatch(results, [None] * len(results))

    @abc.abstractmethod
    def tag_results(self, products: Sequence[Product]) -> list[TagResult]:
        """One result per product, in order."""


def modality_outputs(evidence: Evidence | None) -> dict[str, Any]:
    """The per-modality part of the evidence, as JSON (no embeddings: the photo's compact look, ``skutag.looks``,
    for the review queue); {} for none."""
    if evidence is None:
        return {}
    out: dict[str, Any] = {"present": list(evidence.modalities)}
    if evidence.vision is not None:
        out["vision"] = {"labels": [[str(label), round(float(prob), 4)] for label, _, prob in evidence.vision.labels[:5]],
                         "model_id": evidence.vision.model_id}
        look = look_of(evidence.vision.embedding, evidence.vision.model_id)
        if look is not None:
            out["vision"]["look"] = look.to_json()
    if evidence.ocr is not None:
        out["ocr"] = {"lines": [[str(text), round(float(score), 3)] for text, score in evidence.ocr.lines[:30]],
                      "brands": [[str(brand), round(float(score), 3)] for brand, score in evidence.ocr.brands]}
    if evidence.title_brands:
        out["title_brands"] = list(evidence.title_brands)
    if evidence.errors:
        out["errors"] = list(evidence.errors)
    return out
