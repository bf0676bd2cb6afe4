"""SQLAlchemy 2 models of the product database.

One row per product (its latest state), the photo it came with (content hashes and a
perceptual hash for the duplicate cache), every prediction made for it (model version,
per-modality outputs, decision), every human correction (who, when, old -> new), the
versions of the taxonomy / label map / brand lexicon, the model versions, API tokens and
dashboard operators. The schema is created and changed only by the Alembic migrations in
``skutag/store/migrations``; ``Base.metadata`` is what they are checked against.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ImageRow(Base):
    """A stored photo, deduplicated by its SHA-256. ``phash`` is the signed 64-bit DCT hash."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    md5: Mapped[str] = mapped_column(String(32), index=True)
    phash: Mapped[int] = mapped_column(BigInteger, index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProductRow(Base):
    """A product's latest state. ``status``: auto | review | manual | accepted | corrected | error."""

    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str | None] = mapped_column(Text)
    price: Mapped[float | None] = mapped_column(Float)
    brand: Mapped[str | None] = mapped_column(String(200))
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    path: Mapped[str | None] = mapped_column(Text)  # the category in force (prediction or correction)
    audit: Mapped[bool] = mapped_column(Boolean, default=False, index=True)  # auto-tagged, sampled for audit
    audit_verdict: Mapped[str | None] = mapped_column(String(16))  # correct | wrong
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    image: Mapped[ImageRow | None] = relationship(lazy="joined")
    predictions: Mapped[list["PredictionRow"]] = relationship(
        back_populates="product", order_by="PredictionRow.id", cascade="all, delete-orphan"
    )


class PredictionRow(Base):
    """One answer of one model version for one product; ``outputs`` is the full TagResult JSON."""

    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), index=True)
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    label: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    decision: Mapped[str] = mapped_column(String(16), index=True)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    contributions: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    cache_hit: Mapped[str | None] = mapped_column(String(16))  # exact | near | None (tagged by the model)
    duplicate_of: Mapped[int | None] = mapped_column(Integer)  # the prediction id reused
    latency_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)

    product: Mapped[ProductRow] = relationship(back_populates="predictions")


class CorrectionRow(Base):
    """A human verdict: ``kind`` accept | correct | audit_ok | audit_fix; ``old_path`` -> ``new_path``."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))
    old_path: Mapped[str | None] = mapped_column(Text)
    new_path: Mapped[str] = mapped_column(Text)
    who: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    trained_in: Mapped[str | None] = mapped_column(String(128))  # first model version trained with it


class ResourceVersionRow(Base):
    """A full snapshot of an editable resource: ``kind`` taxonomy | label_map | lexicon | whitelist."""

    __tablename__ = "resource_versions"
    __table_args__ = (UniqueConstraint("kind", "version", name="uq_resource_versions_kind_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[Any] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersionRow(Base):
    """A model bundle the service can serve. ``status``: active | candidate | retired | rejected."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(128), unique=True)
    model_dir: Mapped[str | None] = mapped_column(Text)  # None: the built-in cold-start pipeline
    status: Mapped[str] = mapped_column(String(16), index=True)
    parent_version: Mapped[str | None] = mapped_column(String(128))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_corrections: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    promoted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ApiTokenRow(Base):
    """An API token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class OperatorRow(Base):
    """A dashboard login; ``password_hash`` is scrypt with a per-user salt."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SettingRow(Base):
    """Small shared key/value settings (e.g. the session signing key shared by all instances)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


Index("ix_predictions_product_latest", PredictionRow.product_id, PredictionRow.id)
