"""What the product database versions: the stored resources (taxonomy, label map, lexicon ...; every edit a
new full version) and the model versions (candidate, active, retired ...); the ``Store`` methods for them live in
``VersionsMixin``."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from skutag.store.models import ModelVersionRow, ResourceVersionRow, utcnow
from skutag.store.views import (
    RESOURCE_KINDS,
    Conflict,
    ModelVersionView,
    NotFound,
    ResourceVersion,
    jsonable,
    model_view,
    resource_view,
)


class VersionsMixin:
    """``Store``'s resource and model-version methods (each one short transaction through ``self.session()``)."""

    if TYPE_CHECKING:
        def session(self) -> AbstractContextManager[Session]: ...

    # ------------------------------------------------------------- resources
    def resource(self, kind: str) -> ResourceVersion | None:
        _check_kind(kind)
        with self.session() as session:
            row = session.scalar(select(ResourceVersionRow).where(ResourceVersionRow.kind == kind)
                                 .order_by(ResourceVersionRow.version.desc()).limit(1))
            return resource_view(row) if row else None

    def resource_history(self, kind: str, limit: int = 50) -> list[ResourceVersion]:
        _check_kind(kind)
        with self.session() as session:
            rows = session.scalars(select(ResourceVersionRow).where(ResourceVersionRow.kind == kind)
                                   .order_by(ResourceVersionRow.version.desc()).limit(limit)).all()
            return [resource_view(row) for row in rows]

    def save_resource(self, kind: str, content: Any, who: str, note: str | None = None) -> ResourceVersion:
        """Store a new full version of a resource (versions only grow; old ones stay for rollback)."""
        _check_kind(kind)
        for _ in range(5):
            try:
                with self.session() as session:
                    current = session.scalar(select(func.max(ResourceVersionRow.version))
                                             .where(ResourceVersionRow.kind == kind)) or 0
                    row = ResourceVersionRow(kind=kind, version=current + 1, content=jsonable(content),
                                             created_by=who, note=note)
                    session.add(row)
                    session.flush()
                    return resource_view(row)
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
                                      parent_version=parent_version, metrics=jsonable(metrics or {}),
                                      n_corrections=n_corrections)
                session.add(row)
            else:
                row.model_dir = model_dir if model_dir is not None else row.model_dir
                if metrics:
                    row.metrics = jsonable({**(row.metrics or {}), **metrics})
            if status == "active":
                self._activate(session, row)
            session.flush()
            return model_view(row)

    def set_model_status(self, version: str, status: str, metrics: dict[str, Any] | None = None) -> ModelVersionView:
        with self.session() as session:
            row = self._model_row(session, version)
            if status == "active":
                self._activate(session, row)
            else:
                row.status = status
            if metrics:
                row.metrics = jsonable({**(row.metrics or {}), **metrics})
            return model_view(row)

    def promote(self, version: str) -> ModelVersionView:
        with self.session() as session:
            row = self._model_row(session, version)
            self._activate(session, row)
            return model_view(row)

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
            return model_view(previous)

    def active_model(self) -> ModelVersionView | None:
        with self.session() as session:
            row = session.scalar(select(ModelVersionRow).where(ModelVersionRow.status == "active"))
            return model_view(row) if row else None

    def model(self, version: str) -> ModelVersionView:
        with self.session() as session:
            return model_view(self._model_row(session, version))

    def list_models(self) -> list[ModelVersionView]:
        with self.session() as session:
            rows = session.scalars(select(ModelVersionRow).order_by(ModelVersionRow.id.desc())).all()
            return [model_view(row) for row in rows]

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


def _check_kind(kind: str) -> None:
    if kind not in RESOURCE_KINDS:
        raise ValueError(f"resource kind must be one of {', '.join(RESOURCE_KINDS)}, got {kind!r}")
