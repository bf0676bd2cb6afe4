"""The product database's operations: everything the service, the CLI and the dashboard do with it.

``Store`` wraps an engine; each public method is one short transaction, so callers never hold
a session across a model call. Rows come back as plain frozen dataclasses (``ProductView`` ...)
so nothing outside this module touches a live ORM object.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer

from skutag.fusion.result import Decision, TagResult
from skutag.store.db import open_engine, session_factory, upgrade
from skutag.store.dedup import ImageFingerprint
from skutag.store.models import (
    ApiTokenRow,
    CorrectionRow,
    ImageRow,
    ModelVersionRow,
    OperatorRow,
    PredictionRow,
    ProductRow,
    ResourceVersionRow,
    SettingRow,
    utcnow,
)

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


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_hex, _ = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    return hmac.compare_digest(hash_password(password, bytes.fromhex(salt_hex)), stored)


class Store:
    """The product database. ``Store.open(url)`` migrates it to the latest schema first."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = session_factory(engine)

    @classmethod
    def open(cls, url: str | None = None, *, migrate: bool = True) -> "Store":
        engine = open_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine)

    @property
    def backend(self) -> str:
        return self.engine.url.get_backend_name()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # ---------------------------------------------------------------- images
    def add_image(self, fp: ImageFingerprint, data: bytes) -> tuple[int, bool]:
        """Store a photo once per SHA-256; returns ``(image_id, created)``."""
        existing = self.image_id_by_sha256(fp.sha256)
        if existing is not None:
            return existing, False
        try:
            with self.session() as session:
                row = ImageRow(sha256=fp.sha256, md5=fp.md5, phash=fp.phash, width=fp.width, height=fp.height,
                               size_bytes=fp.size_bytes, content_type=fp.content_type, data=data)
                session.add(row)
                session.flush()
                return row.id, True
        except IntegrityError:  # another request stored the same bytes meanwhile
            existing = self.image_id_by_sha256(fp.sha256)
            if existing is None:
                raise
            return existing, False

    def image_id_by_sha256(self, sha256: str) -> int | None:
        with self.session() as session:
            return session.scalar(select(ImageRow.id).where(ImageRow.sha256 == sha256))

    def image_bytes(self, image_id: int) -> tuple[bytes, str]:
        with self.session() as session:
            row = session.scalar(select(ImageRow).options(undefer(ImageRow.data)).where(ImageRow.id == image_id))
            if row is None:
                raise NotFound(f"no image {image_id}")
            return row.data, row.content_type

    def iter_phashes(self, after_id: int = 0) -> Iterator[tuple[int, int]]:
        """``(image_id, phash)`` of the stored photos with an id above ``after_id``, in id order."""
        with self.session() as session:
            rows = session.execute(select(ImageRow.id, ImageRow.phash).where(ImageRow.id > after_id)
                                   .order_by(ImageRow.id)).all()
        yield from ((int(r[0]), int(r[1])) for r in rows)

    def reusable_prediction(self, image_id: int, model_version: str,
                            fits: Callable[[ProductView], bool] | None = None,
                            candidates: int = 20) -> tuple[PredictionView, ProductView] | None:
        """The best earlier answer for this photo: a human-verified product's path first, else the latest
        answer the model ``model_version`` itself gave (not a cache copy), that is not an error. ``fits``:
        which earlier products may lend their answer (e.g. those with the same title); the newest
        ``candidates`` of each kind are considered."""
        with self.session() as session:
            humans = session.scalars(
                select(ProductRow).where(ProductRow.image_id == image_id, ProductRow.status.in_(HUMAN_STATUSES))
                .order_by(ProductRow.updated_at.desc()).limit(candidates)
            ).all()
            for human in humans:
                prediction = _latest_prediction(session, human.id)
                if prediction is not None and (fits is None or fits(_product_view(human, prediction))):
                    return _prediction_view(prediction), _product_view(human, prediction)
            rows = session.scalars(
                select(PredictionRow).where(
                    PredictionRow.image_id == image_id, PredictionRow.model_version == model_version,
                    PredictionRow.error.is_(None), PredictionRow.path.is_not(None),
                ).order_by(PredictionRow.cache_hit.is_not(None), PredictionRow.id.desc()).limit(candidates)
            ).all()
            for row in rows:
                product = _product_view(session.get(ProductRow, row.product_id), row)
                if fits is None or fits(product):
                    return _prediction_view(row), product
            return None

    # -------------------------------------------------------------- products
    def save_tagging(
        self,
        product_id: str,
        *,
        title: str | None,
        price: float | None,
        brand: str | None,
        image_id: int | None,
        result: TagResult,
        model_version: str,
        audit: bool = False,
        cache_hit: str | None = None,
        duplicate_of: int | None = None,
        latency_ms: float | None = None,
        modalities: dict[str, Any] | None = None,
    ) -> ProductView:
        """Insert or update the product and record the prediction that decided its status.
        ``modalities``: what each modality saw (kept in the prediction's ``outputs``)."""
        for attempt in range(3):
            try:
                return self._save_tagging(product_id, title, price, brand, image_id, result, model_version, audit,
                                          cache_hit, duplicate_of, latency_ms, modalities)
            except IntegrityError:  # the same new id sent twice at once: the second one becomes an update
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _save_tagging(self, product_id, title, price, brand, image_id, result, model_version, audit, cache_hit,
                      duplicate_of, latency_ms, modalities) -> ProductView:
        status = "error" if result.path is None else result.decision.value  # an answer with a note is an answer
        with self.session() as session:
            product = session.get(ProductRow, product_id)
            if product is None:
                product = ProductRow(id=product_id)
                session.add(product)
            # a human's verdict stands while the photo and title it was given for stay the same
            keep_verdict = (product.status in HUMAN_STATUSES and product.image_id == image_id
                            and product.title == title)
            product.title, product.price, product.brand, product.image_id = title, price, brand, image_id
            if not keep_verdict:
                product.status, product.path = status, result.path
                product.audit = bool(audit and result.decision is Decision.AUTO and not result.error)
                product.audit_verdict = None
            product.updated_at = utcnow()
            prediction = _new_prediction(product_id, image_id, result, model_version, cache_hit=cache_hit,
                                         duplicate_of=duplicate_of, latency_ms=latency_ms, modalities=modalities)
            session.add(prediction)
            session.flush()
            return _product_view(product, prediction)

    def save_failure_if_new(self, product_id: str, *, result: TagResult, model_version: str) -> bool:
        """Store a row that failed before it could be read (a malformed catalog row) as a new product with status
        ``error``; True when stored. A product already in the database keeps its fields, status, prediction and
        human verdict untouched (False): a row that could not be read says nothing about the product."""
        try:
            with self.session() as session:
                if session.get(ProductRow, product_id) is not None:
                    return False
                session.add(ProductRow(id=product_id, status="error"))
                session.flush()
                session.add(_new_prediction(product_id, None, result, model_version))
                return True
        except IntegrityError:  # the same id stored meanwhile by another writer: that product stands
            if self._product_exists(product_id):
                return False
            raise

    def _product_exists(self, product_id: str) -> bool:
        with self.session() as session:
            return session.get(ProductRow, product_id) is not None

    def get_product(self, product_id: str) -> ProductView:
        with self.session() as session:
            product = session.get(ProductRow, product_id)
            if product is None:
                raise NotFound(f"no product {product_id!r}")
            return _product_view(product, _latest_prediction(session, product_id))

    def product_image_id(self, product_id: str) -> int:
        with self.session() as session:
            image_id = session.scalar(select(ProductRow.image_id).where(ProductRow.id == product_id))
            if image_id is None:
                raise NotFound(f"product {product_id!r} has no photo")
            return image_id

    def list_products(self, statuses: Sequence[str] | None = None, *, audit_pending: bool = False,
                      limit: int = 50, offset: int = 0, order: str = "oldest") -> list[ProductView]:
        with self.session() as session:
            query = select(ProductRow)
            if statuses:
                query = query.where(ProductRow.status.in_(list(statuses)))
            if audit_pending:
                query = query.where(ProductRow.audit.is_(True), ProductRow.audit_verdict.is_(None),
                                    ProductRow.status == "auto")
            ordering = ProductRow.updated_at.desc() if order == "newest" else ProductRow.updated_at.asc()
            rows = session.scalars(query.order_by(ordering, ProductRow.id).limit(limit).offset(offset)).all()
            return [_product_view(row, _latest_prediction(session, row.id)) for row in rows]

    def count_products(self, statuses: Sequence[str] | None = None, *, audit_pending: bool = False) -> int:
        with self.session() as session:
            query = select(func.count()).select_from(ProductRow)
            if statuses:
                query = query.where(ProductRow.status.in_(list(statuses)))
            if audit_pending:
                query = query.where(ProductRow.audit.is_(True), ProductRow.audit_verdict.is_(None),
                                    ProductRow.status == "auto")
            return int(session.scalar(query) or 0)

    def review_queue(self, limit: int = 50, offset: int = 0) -> list[ProductView]:
        return self.list_products(QUEUE_STATUSES, limit=limit, offset=offset)

    def audit_queue(self, limit: int = 50, offset: int = 0) -> list[ProductView]:
        return self.list_products(audit_pending=True, limit=limit, offset=offset)

    # ----------------------------------------------------------- corrections
    def add_correction(self, product_id: str, new_path: str | None, who: str, kind: str = "correct") -> CorrectionView:
        """Record a human verdict and apply it to the product.

        ``accept``/``audit_ok`` confirm the suggested path (``new_path`` may be None);
        ``correct``/``audit_fix`` set ``new_path``.
        """
        if kind not in CORRECTION_KINDS:
            raise ValueError(f"correction kind must be one of {', '.join(CORRECTION_KINDS)}, got {kind!r}")
        with self.session() as session:
            product = session.get(ProductRow, product_id)
            if product is None:
                raise NotFound(f"no product {product_id!r}")
            prediction = _latest_prediction(session, product_id)
            old_path = product.path
            if kind in ("accept", "audit_ok"):
                new_path = new_path or old_path
                if not new_path:
                    raise Conflict(f"product {product_id!r} has no suggested category to accept; send a correction")
            elif not new_path:
                raise ValueError("a correction needs the new category path")
            status = "accepted" if new_path == old_path else "corrected"
            product.path, product.status, product.updated_at = new_path, status, utcnow()
            if kind.startswith("audit"):
                product.audit_verdict = "correct" if new_path == old_path else "wrong"
            elif product.audit and product.audit_verdict is None:
                product.audit_verdict = "correct" if new_path == old_path else "wrong"
            row = CorrectionRow(product_id=product_id, prediction_id=prediction.id if prediction else None,
                                kind=kind, old_path=old_path, new_path=new_path, who=who)
            session.add(row)
            session.flush()
            return _correction_view(row)

    def rename_paths(self, renamed: dict[str, str]) -> int:
        """Products filed under a renamed or moved category follow it (old path -> new path); the number of
        products changed. Their corrections keep the paths an operator chose at the time (history)."""
        changed = 0
        with self.session() as session:
            for old, new in renamed.items():
                result = session.execute(update(ProductRow).where(ProductRow.path == old)
                                         .values(path=new, updated_at=utcnow()))
                changed += int(result.rowcount or 0)
        return changed

    def product_path_counts(self) -> dict[str, int]:
        """Category path in force -> how many stored products are filed under it."""
        with self.session() as session:
            rows = session.execute(select(ProductRow.path, func.count()).where(ProductRow.path.is_not(None))
                                   .group_by(ProductRow.path))
            return {path: int(count) for path, count in rows}

    def corrections(self, product_id: str | None = None, limit: int = 1000) -> list[CorrectionView]:
        with self.session() as session:
            query = select(CorrectionRow)
            if product_id is not None:
                query = query.where(CorrectionRow.product_id == product_id)
            rows = session.scalars(query.order_by(CorrectionRow.id.desc()).limit(limit)).all()
            return [_correction_view(row) for row in rows]

    def training_examples(self) -> list[TrainingExample]:
        """Every human-verified product with its final path and photo (latest verdict per product)."""
        with self.session() as session:
            latest = (select(CorrectionRow.product_id, func.max(CorrectionRow.id).label("cid"))
                      .group_by(CorrectionRow.product_id).subquery())
            rows = session.execute(
                select(ProductRow, latest.c.cid).join(latest, latest.c.product_id == ProductRow.id)
                .where(ProductRow.status.in_(HUMAN_STATUSES)).order_by(latest.c.cid)
            ).all()
            examples = []
            for product, correction_id in rows:
                data = None
                if product.image_id is not None:
                    data = session.scalar(select(ImageRow.data).where(ImageRow.id == product.image_id))
                examples.append(TrainingExample(product.id, product.title, product.price, product.brand,
                                                product.path, data, int(correction_id)))
            return examples

    def mark_trained(self, correction_ids: Sequence[int], model_version: str) -> None:
        if not correction_ids:
            return
        with self.session() as session:
            session.execute(update(CorrectionRow).where(CorrectionRow.id.in_(list(correction_ids)),
                                                        CorrectionRow.trained_in.is_(None))
                            .values(trained_in=model_version))

    def untrained_correction_count(self) -> int:
        with self.session() as session:
            return int(session.scalar(select(func.count()).select_from(CorrectionRow)
                                      .where(CorrectionRow.trained_in.is_(None))) or 0)

    # ----------------------------------------------------------------- stats
    def stats(self, days: int = 14) -> Stats:
        with self.session() as session:
            counts = _pairs(session.execute(select(ProductRow.status, func.count()).group_by(ProductRow.status)).all())
            total = sum(counts.values())
            first_decisions = self._first_decisions(session)
            decided = sum(first_decisions.values())
            audited_rows = _pairs(session.execute(
                select(ProductRow.audit_verdict, func.count()).where(ProductRow.audit_verdict.is_not(None))
                .group_by(ProductRow.audit_verdict)).all())
            audited = sum(audited_rows.values())
            since = utcnow() - dt.timedelta(days=days)
            per_day: dict[str, int] = {}
            for created_at in session.scalars(select(CorrectionRow.created_at).where(CorrectionRow.created_at >= since)):
                key = created_at.date().isoformat()
                per_day[key] = per_day.get(key, 0) + 1
            hits = _pairs(session.execute(select(PredictionRow.cache_hit, func.count())
                                        .where(PredictionRow.cache_hit.is_not(None))
                                        .group_by(PredictionRow.cache_hit)).all())
            active = session.scalar(select(ModelVersionRow.version).where(ModelVersionRow.status == "active"))
            return Stats(
                products=total,
                auto=first_decisions.get("auto", 0),
                review_pending=sum(counts.get(s, 0) for s in QUEUE_STATUSES),
                human_verified=sum(counts.get(s, 0) for s in HUMAN_STATUSES),
                auto_rate=(first_decisions.get("auto", 0) / decided) if decided else None,
                audited=audited,
                audited_correct=audited_rows.get("correct", 0),
                audited_precision=(audited_rows.get("correct", 0) / audited) if audited else None,
                corrections_per_day=sorted(per_day.items()),
                active_model=active,
                cache_hits={str(k): int(v) for k, v in hits.items()},
            )

    @staticmethod
    def _first_decisions(session: Session) -> dict[str, int]:
        """Decision of each product's latest prediction (what the model decided before any human)."""
        latest = select(func.max(PredictionRow.id).label("pid")).group_by(PredictionRow.product_id).subquery()
        return _pairs(session.execute(select(PredictionRow.decision, func.count())
                                    .join(latest, latest.c.pid == PredictionRow.id)
                                    .group_by(PredictionRow.decision)).all())

    # ------------------------------------------------------------- resources
    def resource(self, kind: str) -> ResourceVersion | None:
        _check_kind(kind)
        with self.session() as session:
            row = session.scalar(select(ResourceVersionRow).where(ResourceVersionRow.kind == kind)
                                 .order_by(ResourceVersionRow.version.desc()).limit(1))
            return _resource_view(row) if row else None

    def resource_history(self, kind: str, limit: int = 50) -> list[ResourceVersion]:
        _check_kind(kind)
        with self.session() as session:
            rows = session.scalars(select(ResourceVersionRow).where(ResourceVersionRow.kind == kind)
                                   .order_by(ResourceVersionRow.version.desc()).limit(limit)).all()
            return [_resource_view(row) for row in rows]

    def save_resource(self, kind: str, content: Any, who: str, note: str | None = None) -> ResourceVersion:
        """Store a new full version of a resource (versions only grow; old ones stay for rollback)."""
        _check_kind(kind)
        for _ in range(5):
            try:
                with self.session() as session:
                    current = session.scalar(select(func.max(ResourceVersionRow.version))
                                             .where(ResourceVersionRow.kind == kind)) or 0
                    row = ResourceVersionRow(kind=kind, version=current + 1, content=_jsonable(content),
                                             created_by=who, note=note)
                    session.add(row)
                    session.flush()
                    return _resource_view(row)
            except IntegrityError:
                continue  # a concurrent writer took that number; read again
        raise Conflict(f"could not store a new {kind} version: too many concurrent edits")

    # -------------------------------------------------------- model versions
    def register_model(self, version: str, model_dir: str | None, *, status: str = "candidate",
                       parent_version: str | None = None, metrics: dict[str, Any] | None = None,
                       n_corrections: int = 0) -> ModelVersionView:
        with self.session() as session:
            row = session.scalar(select(ModelVersionRow).where(ModelVersionRow.version == version))
            if row is None:
                row = ModelVersionRow(version=version, model_dir=model_dir, status=status,
                                      parent_version=parent_version, metrics=_jsonable(metrics or {}),
                                      n_corrections=n_corrections)
                session.add(row)
            else:
                row.model_dir = model_dir if model_dir is not None else row.model_dir
                if metrics:
                    row.metrics = _jsonable({**(row.metrics or {}), **metrics})
            if status == "active":
                self._activate(session, row)
            session.flush()
            return _model_view(row)

    def set_model_status(self, version: str, status: str, metrics: dict[str, Any] | None = None) -> ModelVersionView:
        with self.session() as session:
            row = self._model_row(session, version)
            if status == "active":
                self._activate(session, row)
            else:
                row.status = status
            if metrics:
                row.metrics = _jsonable({**(row.metrics or {}), **metrics})
            return _model_view(row)

    def promote(self, version: str) -> ModelVersionView:
        with self.session() as session:
            row = self._model_row(session, version)
            self._activate(session, row)
            return _model_view(row)

    def rollback(self) -> ModelVersionView:
        """Make the version promoted before the current one active again."""
        with self.session() as session:
            current = session.scalar(select(ModelVersionRow).where(ModelVersionRow.status == "active"))
            query = select(ModelVersionRow).where(ModelVersionRow.promoted_at.is_not(None),
                                                  ModelVersionRow.status == "retired")
            if current is not None and current.promoted_at is not None:
                query = query.where(ModelVersionRow.promoted_at < current.promoted_at)
            previous = session.scalar(query.order_by(ModelVersionRow.promoted_at.desc()).limit(1))
            if previous is None:
                raise Conflict("no earlier promoted model version to roll back to")
            self._activate(session, previous, keep_promoted_at=True)
            if current is not None:
                current.status = "rolled_back"
            return _model_view(previous)

    def active_model(self) -> ModelVersionView | None:
        with self.session() as session:
            row = session.scalar(select(ModelVersionRow).where(ModelVersionRow.status == "active"))
            return _model_view(row) if row else None

    def model(self, version: str) -> ModelVersionView:
        with self.session() as session:
            return _model_view(self._model_row(session, version))

    def list_models(self) -> list[ModelVersionView]:
        with self.session() as session:
            rows = session.scalars(select(ModelVersionRow).order_by(ModelVersionRow.id.desc())).all()
            return [_model_view(row) for row in rows]

    @staticmethod
    def _model_row(session: Session, version: str) -> ModelVersionRow:
        row = session.scalar(select(ModelVersionRow).where(ModelVersionRow.version == version))
        if row is None:
            raise NotFound(f"no model version {version!r}")
        return row

    @staticmethod
    def _activate(session: Session, row: ModelVersionRow, keep_promoted_at: bool = False) -> None:
        session.execute(update(ModelVersionRow).where(ModelVersionRow.status == "active",
                                                      ModelVersionRow.id != (row.id or -1))
                        .values(status="retired"))
        row.status = "active"
        if not keep_promoted_at or row.promoted_at is None:
            row.promoted_at = utcnow()

    # ------------------------------------------------------- tokens & logins
    def create_token(self, name: str) -> str:
        """A new API token (printed once; only its hash is stored)."""
        if not name or len(name) > 128:
            raise ValueError("a token needs a name of 1-128 characters")
        token = "skt_" + secrets.token_urlsafe(32)
        with self.session() as session:
            session.add(ApiTokenRow(name=name, token_sha256=hash_token(token)))
        return token

    def check_token(self, token: str) -> str | None:
        """The token's name when it is valid and not revoked, else None."""
        if not token:
            return None
        with self.session() as session:
            row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_sha256 == hash_token(token)))
            if row is None or row.revoked:
                return None
            now = utcnow()
            last = row.last_used_at
            if last is None or (now - _aware(last)).total_seconds() > 60:
                row.last_used_at = now
            return row.name

    def revoke_tokens(self, name: str) -> int:
        with self.session() as session:
            result = session.execute(update(ApiTokenRow).where(ApiTokenRow.name == name, ApiTokenRow.revoked.is_(False))
                                     .values(revoked=True))
            return int(result.rowcount or 0)

    def set_operator(self, username: str, password: str) -> None:
        if not username or len(username) > 128:
            raise ValueError("a username needs 1-128 characters")
        if len(password) < 8:
            raise ValueError("an operator password needs at least 8 characters")
        with self.session() as session:
            row = session.scalar(select(OperatorRow).where(OperatorRow.username == username))
            if row is None:
                session.add(OperatorRow(username=username, password_hash=hash_password(password)))
            else:
                row.password_hash = hash_password(password)

    def check_operator(self, username: str, password: str) -> bool:
        with self.session() as session:
            stored = session.scalar(select(OperatorRow.password_hash).where(OperatorRow.username == username))
        if stored is None:
            hash_password(password)  # same work either way: no user-enumeration by timing
            return False
        return verify_password(password, stored)

    def operator_count(self) -> int:
        with self.session() as session:
            return int(session.scalar(select(func.count()).select_from(OperatorRow)) or 0)

    # -------------------------------------------------------------- settings
    def setting(self, key: str, default_factory=None) -> str | None:
        """A shared setting; with ``default_factory`` it is created once (race-safe) when missing."""
        with self.session() as session:
            value = session.scalar(select(SettingRow.value).where(SettingRow.key == key))
        if value is not None or default_factory is None:
            return value
        try:
            with self.session() as session:
                session.add(SettingRow(key=key, value=default_factory()))
        except IntegrityError:
            pass
        with self.session() as session:
            return session.scalar(select(SettingRow.value).where(SettingRow.key == key))


# ------------------------------------------------------------------ helpers
def _pairs(rows) -> dict:
    return {row[0]: row[1] for row in rows}


def _check_kind(kind: str) -> None:
    if kind not in RESOURCE_KINDS:
        raise ValueError(f"resource kind must be one of {', '.join(RESOURCE_KINDS)}, got {kind!r}")


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _latest_prediction(session: Session, product_id: str) -> PredictionRow | None:
    return session.scalar(select(PredictionRow).where(PredictionRow.product_id == product_id)
                          .order_by(PredictionRow.id.desc()).limit(1))


def _new_prediction(product_id: str, image_id: int | None, result: TagResult, model_version: str, *,
                    cache_hit: str | None = None, duplicate_of: int | None = None, latency_ms: float | None = None,
                    modalities: dict[str, Any] | None = None) -> PredictionRow:
    return PredictionRow(
        product_id=product_id, image_id=image_id, model_version=model_version, label=result.label,
        path=result.path, confidence=float(result.confidence), decision=result.decision.value,
        reasons=list(result.reasons), contributions={k: float(v) for k, v in result.contributions.items()},
        outputs=_jsonable({**result.to_json(), "modalities": modalities or {}}), error=result.error,
        cache_hit=cache_hit, duplicate_of=duplicate_of, latency_ms=latency_ms,
    )


def _prediction_view(row: PredictionRow) -> PredictionView:
    return PredictionView(row.id, row.model_version, row.label, row.path, row.confidence, row.decision,
                          tuple(row.reasons or ()), dict(row.contributions or {}), dict(row.outputs or {}),
                          row.error, row.cache_hit, row.duplicate_of, row.latency_ms, _aware(row.created_at))


def _product_view(row: ProductRow, prediction: PredictionRow | None) -> ProductView:
    return ProductView(row.id, row.title, row.price, row.brand, row.status, row.path, bool(row.audit),
                       row.audit_verdict, row.image_id, row.image.sha256 if row.image is not None else None,
                       _aware(row.created_at), _aware(row.updated_at),
                       _prediction_view(prediction) if prediction is not None else None)


def _correction_view(row: CorrectionRow) -> CorrectionView:
    return CorrectionView(row.id, row.product_id, row.kind, row.old_path, row.new_path, row.who,
                          _aware(row.created_at), row.trained_in)


def _model_view(row: ModelVersionRow) -> ModelVersionView:
    return ModelVersionView(row.version, row.model_dir, row.status, row.parent_version, dict(row.metrics or {}),
                            row.n_corrections, _aware(row.created_at),
                            _aware(row.promoted_at) if row.promoted_at else None)


def _resource_view(row: ResourceVersionRow) -> ResourceVersion:
    return ResourceVersion(row.kind, row.version, row.content, row.created_by, _aware(row.created_at), row.note)


def _jsonable(value: Any) -> Any:
    """Plain JSON types only (numpy scalars, tuples, enums -> JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):
        return value.value
    if isinstance(value, float) and value != value:
        return None
    return value
