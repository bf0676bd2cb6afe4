"""A photo's *look*: its vision embedding projected to ``LOOK_DIM`` numbers, kept with each stored prediction so
the review queue can tell typical products from outliers and look-alikes from new ground without the model.

The projection is a fixed Gaussian matrix (seeded; one per embedding width), so cosine similarities between
looks follow those between the embeddings (Johnson-Lindenstrauss) and every process computes the same look. A
look is stored as base64 of float16 values with the key of the space it lives in (vision model and width):
looks of different spaces are never compared.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

LOOK_DIM = 256
_SEED = 20261206


@dataclass(frozen=True, eq=False)  # compared by identity: the vector is an array
class Look:
    space: str  # "<vision model id>/<embedding width>"
    vector: np.ndarray  # LOOK_DIM float32, unit length

    def to_json(self) -> dict[str, str]:
        return {"space": self.space, "f16": base64.b64encode(self.vector.astype("<f2").tobytes()).decode("ascii")}

    @classmethod
    def from_json(cls, data) -> "Look | None":
        """The stored look, or None for anything that is not one (older predictions have none)."""
        if not isinstance(data, dict) or not isinstance(data.get("space"), str) or not isinstance(data.get("f16"), str):
            return None
        try:
            raw = base64.b64decode(data["f16"], validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != 2 * LOOK_DIM:
            return None
        vector = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0.0:
            return None
        return cls(data["space"], vector / norm)


@lru_cache(maxsize=8)
def _projection(width: int) -> np.ndarray:
    return np.random.RandomState(_SEED + width).standard_normal((width, LOOK_DIM)).astype(np.float32)


def look_of(embedding, model_id: str) -> Look | None:
    """The look of a vision embedding (any width), or None when there is none to project."""
    if embedding is None:
        return None
    vector = np.asarray(embedding, dtype=np.float32).ravel()
    if vector.size == 0 or not np.all(np.isfinite(vector)):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        projected = vector @ _projection(vector.size)
        norm = float(np.linalg.norm(projected))
    if not np.isfinite(norm) or norm == 0.0:  # huge finite values can still overflow here
        return None
    return Look(f"{model_id}/{vector.size}", projected / norm)
