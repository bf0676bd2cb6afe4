"""The product database (SQLAlchemy 2 + Alembic): products, photos, predictions, corrections,
resource and model versions, API tokens, operators; plus the photo duplicate cache."""

from skutag.store.db import DatabaseUrlError, current_revision, head_revision, normalise_url, open_engine, upgrade
from skutag.store.dedup import ImageFingerprint, PerceptualIndex, fingerprint, hamming
from skutag.store.repository import Store
from skutag.store.views import (
    Conflict,
    CorrectionView,
    ModelVersionView,
    NotFound,
    PredictionView,
    ProductView,
    ResourceVersion,
    Stats,
    TrainingExample,
)

__all__ = [
    "Conflict", "CorrectionView", "DatabaseUrlError", "ImageFingerprint", "ModelVersionView", "NotFound",
    "PerceptualIndex", "PredictionView", "ProductView", "ResourceVersion", "Stats", "Store", "TrainingExample",
    "current_revision", "fingerprint", "hamming", "head_revision", "normalise_url", "open_engine", "upgrade",
]
