"""Photo series: training rows that show the same item (near-duplicate shots, the same product photographed
again on the shelf), so that out-of-fold answers keep a whole series on one side of each fold.

Out-of-fold answers are what the calibration temperature, the per-class auto thresholds and the OCR gate are
fitted on. When the next shot of a series sits in the training folds, the held-out shot is answered as if it
were seen before: the answers are sure and right more often than for a product the model really has not seen,
and the thresholds promise a precision that new products do not get. Keeping series together makes the held-out
answers look like answers to new products.

A series is a connected set of rows of one category whose photo embeddings (the backbone's, L2-normalised)
are at least ``fusion.group_similarity`` alike. Titles are not used: a shop's rows of one product often share
one title, and grouping on it would hold out whole categories at once.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from skutag.config import SkutagConfig
from skutag.fusion.evidence import Evidence

BLOCK = 2048  # rows compared at once (memory: BLOCK x rows of one category)


def photo_series(evidence: Sequence[Evidence], paths: Sequence[str], similarity: float) -> np.ndarray:
    """A group id per row (rows without a photo embedding are their own group)."""
    n = len(evidence)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    paths = np.asarray(paths, dtype=object)
    for path in np.unique(paths):
        rows = [i for i in np.flatnonzero(paths == path)
                if evidence[i].vision is not None and evidence[i].vision.embedding is not None]
        if len(rows) < 2:
            continue
        vectors = np.stack([np.asarray(evidence[i].vision.embedding, dtype=np.float32) for i in rows])
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        for start in range(0, len(rows), BLOCK):
            block = vectors[start:start + BLOCK] @ vectors.T
            for a, b in zip(*np.nonzero(np.triu(block, k=start + 1) >= similarity)):
                ra, rb = find(rows[start + a]), find(rows[b])
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n)])
    _, groups = np.unique(roots, return_inverse=True)
    return groups


def series_summary(groups: np.ndarray) -> dict[str, int]:
    """How many series, and how many rows share theirs with another row."""
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=int)
    return {"series": int(len(sizes)), "rows_in_series": int(sizes[sizes > 1].sum()),
            "largest_series": int(sizes.max()) if len(sizes) else 0}


def training_groups(evidence: Sequence[Evidence], paths: Sequence[str], config: SkutagConfig) -> np.ndarray | None:
    """The groups out-of-fold answers keep together under ``fusion.oof_groups`` (None: plain folds)."""
    if config.fusion.oof_groups == "none":
        return None
    return photo_series(evidence, paths, config.fusion.group_similarity)
