"""Human verdicts in the product database: one product's (``record_verdict``, what ``Store.add_correction`` does),
a whole near-duplicate group's at once (``ReviewMixin.apply_group``: one correction row per product, so each counts
as one correction for retraining) and its undo, and the pending products the review queue orders.

A group action is kept as a ``review_action`` resource version (its number is the action id): the cluster, the
verdict, and per product the correction it added and the state it had before, which the undo restores.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from skutag.store.models import CorrectionRow, ImageRow, PredictionRow, ProductRow, ResourceVersionRow, utcnow
from skutag.store.views import (
    CORRECTION_KINDS,
    HUMAN_STATUSES,
    QUEUE_STATUSES,
    Conflict,
    CorrectionView,
    NotFound,
    correction_view,
    jsonable,
    resource_view,
)

ACTION_KIND = "review_action"


def record_verdict(session: Session, product_id: str, new_path: str | None, who: str,
                   kind: str = "correct") -> CorrectionRow:
    """Record a human verdict and apply it to the product (inside the caller's transaction).

    ``accept``/``audit_ok`` confirm the suggested path (``new_path`` may be None); ``correct``/``audit_fix`` set
    ``new_path``."""
    if kind not in CORRECTION_KINDS:
        raise ValueError(f"correction kind must be one of {', '.join(CORRECTION_KINDS)}, got {kind!r}")
    product = session.get(ProductRow, product_id)
    if product is None:
        raise NotFound(f"no product {product_id!r}")
    prediction = latest_prediction(session, product_id)
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
    return row


def latest_prediction(session: Session, product_id: str) -> PredictionRow | None:
    return session.scalar(select(PredictionRow).where(PredictionRow.product_id == product_id)
                          .order_by(PredictionRow.id.desc()).limit(1))


@dataclass(frozen=True)
class PendingProduct:
    """A product waiting for review, with what the queue's order reads."""

    id: str
    title: str | None
    updated_at: str
    phash: int | None
    confidence: float | None
    path: str | None
    alternatives: tuple[float, ...]
    look: dict | None = None  # the photo's stored look (``skutag.looks``), as the prediction keeps it




def _stored_look(outputs: dict | None) -> dict | None:
    vision = ((outputs or {}).get("modalities") or {}).get("vision")
    look = vision.get("look") if isinstance(vision, dict) else None
    return look if isinstance(look, dict) else None


@dataclass(frozen=True)
class GroupAction:
    id: int
    content: dict[str, Any]
    who: str
    created_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {"action_id": self.id, **self.content, "who": self.who, "created_at": self.created_at}


class ReviewMixin:
    """``Store``'s review-queue and group-verdict methods."""

    if TYPE_CHECKING:
        def session(self) -> AbstractContextManager[Session]: ...

    def pending_review(self) -> list[PendingProduct]:
        """Every product in the review queue with its photo hash and latest prediction (three queries)."""
        with self.session() as session:
            rows = session.execute(select(ProductRow.id, ProductRow.title, ProductRow.updated_at, ImageRow.phash,
                                          ProductRow.path)
                                   .outerjoin(ImageRow, ImageRow.id == ProductRow.image_id)
                                   .where(ProductRow.status.in_(QUEUE_STATUSES))).all()
            ids = [r[0] for r in rows]
            latest = (select(func.max(PredictionRow.id)).where(PredictionRow.product_id.in_(ids))
                      .group_by(PredictionRow.product_id)).scalar_subquery()
            predictions = {p.product_id: p for p in session.scalars(
                select(PredictionRow).where(PredictionRow.id.in_(latest)))} if ids else {}
        out = []
        for pid, title, updated_at, phash, path in rows:
            p = predictions.get(pid)
            alternatives = tuple(float(a.get("confidence") or 0.0) for a in (p.outputs or {}).get("alternatives", [])
                                 if isinstance(a, dict) and a.get("path") != (p.path if p else None)) if p else ()
            confidence = float(p.confidence) if p is not None and p.path is not None and not p.error else None
            out.append(PendingProduct(pid, title, updated_at.isoformat(), int(phash) if phash is not None else None,
                                      confidence, path, alternatives, _stored_look(p.outputs) if p else None))
        return out

    def reviewed_looks(self, limit: int = 2000) -> list[dict]:
        """The stored looks of the ``limit`` most recently verified products (accepted or corrected): the ground
        the review queue counts as covered."""
        recent = (select(ProductRow.id).where(ProductRow.status.in_(HUMAN_STATUSES))
                  .order_by(ProductRow.updated_at.desc(), ProductRow.id).limit(limit)).subquery()
        latest = (select(func.max(PredictionRow.id)).where(PredictionRow.product_id.in_(select(recent.c.id)))
                  .group_by(PredictionRow.product_id)).scalar_subquery()
        with self.session() as session:  # one statement: no id list sent back as bound parameters
            outputs = session.scalars(select(PredictionRow.outputs).where(PredictionRow.id.in_(latest))).all()
        return [look for look in map(_stored_look, outputs) if look is not None]

    def apply_group(self, product_ids: Sequence[str], new_path: str | None, who: str, *, kind: str,
                    cluster_id: str) -> GroupAction:
        """One verdict for every product of a group, in one transaction; ``kind`` ``accept`` keeps each product's
        own suggestion, ``correct`` sets ``new_path``. Products no longer waiting for review are refused (409)."""
        for _ in range(5):
            try:
                with self.session() as session:
                    entries = []
                    for pid in product_ids:
                        product = session.get(ProductRow, pid)
                        if product is None:
                            raise NotFound(f"no product {pid!r}")
                        if product.status not in QUEUE_STATUSES:
                            raise Conflict(f"product {pid!r} was already reviewed ({product.status})")
                        before = {"status": product.status, "path": product.path,
                                  "audit_verdict": product.audit_verdict,
                                  "updated_at": product.updated_at.isoformat() if product.updated_at else None}
                        row = record_verdict(session, pid, new_path, who, kind)
                        entries.append({"product_id": pid, "correction_id": row.id, "before": before,
                                        "new_path": row.new_path})
                    content = {"action": "apply", "cluster_id": cluster_id, "kind": kind, "category": new_path,
                               "products": entries, "undone": False}
                    return _save_action(session, content, who)
            except IntegrityError:
                continue
        raise Conflict("could not record the group verdict: too many concurrent edits")

    def group_action(self, action_id: int) -> GroupAction:
        with self.session() as session:
            row = _action_row(session, action_id)
            undone = session.scalar(select(func.count()).select_from(ResourceVersionRow).where(
                ResourceVersionRow.kind == ACTION_KIND, ResourceVersionRow.note == f"undo {action_id}"))
            view = resource_view(row)
            return GroupAction(view.version, {**view.content, "undone": bool(undone)}, view.created_by,
                               view.created_at.isoformat() if view.created_at else None)

    def undo_group(self, action_id: int, who: str) -> GroupAction:
        """Revert a group verdict: its corrections are deleted and each product gets back the state it had, as
        long as none of them was judged again since and no model was trained with them (409 otherwise)."""
        if self.group_action(action_id).content.get("undone"):
            raise Conflict(f"review action {action_id} was already undone")
        for _ in range(5):
            try:
                with self.session() as session:
                    content = resource_view(_action_row(session, action_id)).content
                    entries = content.get("products", [])
                    for entry in entries:
                        newest = session.scalar(select(func.max(CorrectionRow.id))
                                                .where(CorrectionRow.product_id == entry["product_id"]))
                        if newest != entry["correction_id"]:
                            raise Conflict(f"product {entry['product_id']!r} was judged again after this group "
                                           f"verdict; undo that first")
                        trained = session.scalar(select(CorrectionRow.trained_in)
                                                 .where(CorrectionRow.id == entry["correction_id"]))
                        if trained:
                            raise Conflict(f"model {trained} was trained with this verdict; correct the products "
                                           f"one by one instead")
                    for entry in entries:
                        product = session.get(ProductRow, entry["product_id"])
                        before = entry["before"]
                        product.status, product.path = before["status"], before["path"]
                        product.audit_verdict = before["audit_verdict"]
                        product.updated_at = _parse_time(before.get("updated_at")) or utcnow()
                        session.execute(delete(CorrectionRow).where(CorrectionRow.id == entry["correction_id"]))
                    return _save_action(session, {"action": "undo", "undo_of": action_id,
                                                  "cluster_id": content.get("cluster_id"),
                                                  "products": [e["product_id"] for e in entries]}, who)
            except IntegrityError:
                continue
        raise Conflict("could not undo the group verdict: too many concurrent edits")

    def verdicts_since(self, since) -> int:
        """Corrections (verdicts) recorded after ``since`` (all of them for None)."""
        with self.session() as session:
            query = select(func.count()).select_from(CorrectionRow)
            if since is not None:
                query = query.where(CorrectionRow.created_at > since)
            return int(session.scalar(query) or 0)

    def quality_rows(self, since) -> dict[str, list[tuple]]:
        """What the quality monitor draws, since ``since``: ``answers`` (time, decision, confidence, model version)
        of every prediction a model made (not cache copies), ``audits`` (time, suggested path, verdict path) of the
        first verdict on each audited product, ``corrections`` (time) of every verdict."""
        with self.session() as session:
            answers = session.execute(select(PredictionRow.created_at, PredictionRow.decision, PredictionRow.confidence,
                                             PredictionRow.model_version).where(
                PredictionRow.created_at >= since, PredictionRow.cache_hit.is_(None),
                PredictionRow.error.is_(None))).all()
            first = (select(func.min(CorrectionRow.id)).join(ProductRow, ProductRow.id == CorrectionRow.product_id)
                     .where(ProductRow.audit.is_(True)).group_by(CorrectionRow.product_id)).scalar_subquery()
            audits = session.execute(select(CorrectionRow.created_at, CorrectionRow.old_path, CorrectionRow.new_path)
                                     .where(CorrectionRow.id.in_(first), CorrectionRow.created_at >= since)).all()
            corrections = session.execute(select(CorrectionRow.created_at).where(CorrectionRow.created_at >= since)).all()
        return {"answers": [tuple(r) for r in answers], "audits": [tuple(r) for r in audits],
                "corrections": [tuple(r) for r in corrections]}

    def corrections_by_ids(self, ids: Sequence[int]) -> list[CorrectionView]:
        with self.session() as session:
            return [correction_view(r) for r in session.scalars(select(CorrectionRow).where(CorrectionRow.id.in_(
                list(ids))).order_by(CorrectionRow.id))]


def _action_row(session: Session, action_id: int) -> ResourceVersionRow:
    row = session.scalar(select(ResourceVersionRow).where(ResourceVersionRow.kind == ACTION_KIND,
                                                          ResourceVersionRow.version == action_id))
    if row is None or (row.content or {}).get("action") != "apply":
        raise NotFound(f"no group review action {action_id}")
    return row


def _save_action(session: Session, content: dict[str, Any], who: str) -> GroupAction:
    current = session.scalar(select(func.max(ResourceVersionRow.version))
                             .where(ResourceVersionRow.kind == ACTION_KIND)) or 0
    row = ResourceVersionRow(kind=ACTION_KIND, version=current + 1, content=jsonable(content), created_by=who,
                             note=f"undo {content['undo_of']}" if content["action"] == "undo"
                             else f"apply {content.get('cluster_id')}")
    session.add(row)
    session.flush()
    view = resource_view(row)
    return GroupAction(view.version, view.content, view.created_by,
                       view.created_at.isoformat() if view.created_at else None)


def _parse_time(value: Any):
    import datetime as dt

    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None
