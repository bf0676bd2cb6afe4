"""Confidence histograms and how far two of them are apart: what a model answered on its own training rows
(out of fold, kept with the bundle as ``training_confidences``) against what it answers in service.

A histogram is ``DRIFT_BINS`` equal bins on [0, 1] (bin ``i`` holds confidences in ``[i/b, (i+1)/b)``, the
last bin includes 1.0) as shares of ``n``. The drift number is the total variation distance: half the sum of
the absolute differences of the shares, 0 when the two histograms are equal, 1 when no bin is shared; read
as the share of answers that would have to move to another bin for one histogram to become the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DRIFT_BINS = 20


@dataclass(frozen=True)
class ConfidenceHistogram:
    fractions: tuple[float, ...]  # one share per bin, summing to 1 (all 0 when n == 0)
    n: int  # how many confidences were counted

    @property
    def bins(self) -> int:
        return len(self.fractions)

    @classmethod
    def of(cls, confidences: Sequence[float] | np.ndarray, bins: int = DRIFT_BINS) -> ConfidenceHistogram:
        values = np.clip(np.asarray(confidences, dtype=float).ravel(), 0.0, 1.0)
        values = values[~np.isnan(values)]
        counts = np.bincount(np.minimum((values * bins).astype(int), bins - 1), minlength=bins)
        n = int(counts.sum())
        fractions = counts / n if n else np.zeros(bins)
        return cls(tuple(round(float(f), 6) for f in fractions), n)

    def to_json(self) -> dict[str, Any]:
        return {"bins": self.bins, "n": self.n, "fractions": list(self.fractions)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConfidenceHistogram:
        """The histogram ``to_json`` wrote; ValueError when the record does not hold one."""
        fractions = tuple(float(f) for f in data["fractions"])
        if len(fractions) != int(data["bins"]) or not fractions or int(data["n"]) < 0:
            raise ValueError(f"not a confidence histogram: {data!r}")
        return cls(fractions, int(data["n"]))


def total_variation(a: ConfidenceHistogram, b: ConfidenceHistogram) -> float | None:
    """Total variation distance between the two histograms' shares, in [0, 1]; None when either counted
    nothing. ValueError for histograms with different bins."""
    if a.bins != b.bins:
        raise ValueError(f"histograms with {a.bins} and {b.bins} bins cannot be compared")
    if not a.n or not b.n:
        return None
    return round(0.5 * float(np.abs(np.subtract(a.fractions, b.fractions)).sum()), 4)
