"""The product database's operations: everything the service, the CLI and the dashboard do with it.

``Store`` wraps an engine; each public method is one short transaction, so callers never hold
a session across a model call. Rows come back as plain frozen dataclasses (``skutag.store.views``)
so nothing outside the store touches a live ORM object. Tokens, operators and settings are in
``skutag.store.access``, resources and model versions in ``skutag.store.versions``.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer

from skutag.fusion.result import Decision, TagResult
from skutag.store.access import AccessMixin
from skutag.store.db import open_engine, session_factory, upgrade
from skutag.store.dedup import ImageFingerprint
from skutag.store.review import ReviewMixin, record_verdict
from skutag.store.models import CorrectionRow, ImageRow, ModelVersionRow, PredictionRow, ProductRow, utcnow
from skutag.store.versions import VersionsMixin
from skutag.store.views import (
    HUMAN_STATUSES,
    QUEUE_STATUSES,
    CorrectionView,
    NotFound,
    PredictionView,
    ProductView,
    Stats,
    TrainingExample,
    correction_view,
    jsonable,
    prediction_view,
    product_view,
)


class Store(AccessMixin, VersionsMixin, ReviewMixin):
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
                if prediction is not None and (fits is None or fits(product_view(human, prediction))):
                    return prediction_view(prediction), product_view(human, prediction)
            rows = session.scalars(
                select(PredictionRow).where(
                    PredictionRow.image_id == image_id, PredictionRow.model_version == model_version,
                    PredictionRow.error.is_(None), PredictionRow.path.is_not(None),
                ).order_by(PredictionRow.cache_hit.is_not(None), PredictionRow.id.desc()).limit(candidates)
            ).all()
            for row in rows:
                product = product_view(session.get(ProductRow, row.product_id), row)
                if fits is None or fits(product):
                    return prediction_view(row), product
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
            return product_view(product, prediction)

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
            return product_view(product, _latest_prediction(session, product_id))

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
            return [product_view(row, _latest_prediction(session, row.id)) for row in rows]

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
        with self.session() as session:
            return correction_view(record_verdict(session, product_id, new_path, who, kind))

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
            return [correction_view(row) for row in rows]

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


# ------------------------------------------------------------------ helpers
def _pairs(rows) -> dict:
    return {row[0]: row[1] for row in rows}


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
        outputs=jsonable({**result.to_json(), "modalities": modalities or {}}), error=result.error,
        cache_hit=cache_hit, duplicate_of=duplicate_of, latency_ms=latency_ms,
    )

