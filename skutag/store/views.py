"""What the product database hands out: the status constants, the errors its operations raise, the frozen
view dataclasses (``ProductView`` ...) and the conversions from ORM rows to them, so nothing outside
``skutag.store`` touches a live ORM object."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from skutag.store.models import CorrectionRow, ModelVersionRow, PredictionRow, ProductRow, ResourceVersionRow

HUMAN_STATUSES = ("accepted", "corrected")
# a product id: what the HTTP API accepts and every writer (service, batch) stores, so each stored product can be
# read and corrected through the API (products.id is String(128))
QUEUE_STATUSES = ("review", "manual", "error")
RESOURCE_KINDS = ("taxonomy", "label_map", "lexicon", "whitelist", "path_aliases")
CORRECTION_KINDS = ("accept", "correct", "audit_ok", "audit_fix")


class NotFound(LookupError):
    """A product, model version or resource that is not in the database."""


class Conflict(ValueError):
    """A request that contradicts the stored state (e.g. promoting a rejected model)."""


@dataclass(frozen=True)
class PredictionView:
    id: int
    model_version: str
    label: str | None
    path: str | None
    confidence: float
    decision: str
    reasons: tuple[str, ...]
    contributions: dict[str, float]
    outputs: dict[str, Any]
    error: str | None
    cache_hit: str | None
    duplicate_of: int | None
    latency_ms: float | None
    created_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "model_version": self.model_version, "label": self.label, "path": self.path,
            "confidence": self.confidence, "decision": self.decision, "reasons": list(self.reasons),
            "contributions": self.contributions, "alternatives": self.outputs.get("alternatives", []),
            "modalities": self.outputs.get("modalities", {}),
            "error": self.error, "cache_hit": self.cache_hit, "duplicate_of": self.duplicate_of,
            "latency_ms": self.latency_ms, "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class ProductView:
    id: str
    title: str | None
    price: float | None
    brand: str | None
    status: str
    path: str | None
    audit: bool
    audit_verdict: str | None
    image_id: int | None
    image_sha256: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    prediction: PredictionView | None

    @property
    def label(self) -> str | None:
        return self.path.split(" > ")[-1] if self.path else None

    def to_json(self) -> dict[str, Any]:
        prediction = self.prediction
        return {
            "id": self.id, "title": self.title, "price": self.price, "brand": self.brand,
            "status": self.status, "label": self.label, "path": self.path,
            "confidence": prediction.confidence if prediction else None,
            "decision": prediction.decision if prediction else None,
            "audit": self.audit, "audit_verdict": self.audit_verdict,
            "image_sha256": self.image_sha256,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
            "prediction": prediction.to_json() if prediction else None,
        }


@dataclass(frozen=True)
class CorrectionView:
    id: int
    product_id: str
    kind: str
    old_path: str | None
    new_path: str
    who: str
    created_at: dt.datetime
    trained_in: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "product_id": self.product_id, "kind": self.kind, "old_path": self.old_path,
                "new_path": self.new_path, "who": self.who, "created_at": self.created_at.isoformat(),
                "trained_in": self.trained_in}


@dataclass(frozen=True)
class ModelVersionView:
    version: str
    model_dir: str | None
    status: str
    parent_version: str | None
    metrics: dict[str, Any]
    n_corrections: int
    created_at: dt.datetime
    promoted_at: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "model_dir": self.model_dir, "status": self.status,
                "parent_version": self.parent_version, "metrics": self.metrics,
                "n_corrections": self.n_corrections, "created_at": self.created_at.isoformat(),
                "promoted_at": self.promoted_at.isoformat() if self.promoted_at else None}


@dataclass(frozen=True)
class ResourceVersion:
    kind: str
    version: int
    content: Any
    created_by: str
    created_at: dt.datetime | None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "content": self.content, "created_by": self.created_by,
                "created_at": self.created_at.isoformat() if self.created_at else None, "note": self.note}


@dataclass(frozen=True)
class TrainingExample:
    """A human-verified product: what retraining learns from."""

    product_id: str
    title: str | None
    price: float | None
    brand: str | None
    path: str
    image: bytes | None
    correction_id: int


@dataclass(frozen=True)
class Stats:
    products: int
    auto: int
    review_pending: int
    human_verified: int
    auto_rate: float | None
    audited: int
    audited_correct: int
    audited_precision: float | None
    corrections_per_day: list[tuple[str, int]]
    active_model: str | None
    cache_hits: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"products": self.products, "auto": self.auto, "review_pending": self.review_pending,
                "human_verified": self.human_verified, "auto_rate": self.auto_rate, "audited": self.audited,
                "audited_correct": self.audited_correct, "audited_precision": self.audited_precision,
                "corrections_per_day": [{"day": d, "count": n} for d, n in self.corrections_per_day],
                "active_model": self.active_model, "cache_hits": self.cache_hits}


# ------------------------------------------------------------- row -> view
def aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def prediction_view(row: PredictionRow) -> PredictionView:
    return PredictionView(row.id, row.model_version, row.label, row.path, row.confidence, row.decision,
                          tuple(row.reasons or ()), dict(row.contributions or {}), dict(row.outputs or {}),
                          row.error, row.cache_hit, row.duplicate_of, row.latency_ms, aware(row.created_at))


def product_view(row: ProductRow, prediction: PredictionRow | None) -> ProductView:
    return ProductView(row.id, row.title, row.price, row.brand, row.status, row.path, bool(row.audit),
                       row.audit_verdict, row.image_id, row.image.sha256 if row.image is not None else None,
                       aware(row.created_at), aware(row.updated_at),
                       prediction_view(prediction) if prediction is not None else None)


def correction_view(row: CorrectionRow) -> CorrectionView:
    return CorrectionView(row.id, row.product_id, row.kind, row.old_path, row.new_path, row.who,
                          aware(row.created_at), row.trained_in)


def model_view(row: ModelVersionRow) -> ModelVersionView:
    return ModelVersionView(row.version, row.model_dir, row.status, row.parent_version, dict(row.metrics or {}),
                            row.n_corrections, aware(row.created_at),
                            aware(row.promoted_at) if row.promoted_at else None)


def resource_view(row: ResourceVersionRow) -> ResourceVersion:
    return ResourceVersion(row.kind, row.version, row.content, row.created_by, aware(row.created_at), row.note)


def jsonable(value: Any) -> Any:
    """Plain JSON types only (numpy scalars, tuples, enums -> JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):
        return value.value
    if isinstance(value, float) and value != value:
        return None
    return value
