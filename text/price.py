"""Price features: log price, and where the shop has enough data, price relative to a category.

Prices come as floats, ints, numeric strings (``"¥1,299.00"``, ``"12.5元"``), None or NaN. Missing,
non-numeric, zero, negative and infinite prices count as missing: they get a zero feature row plus a
``price_missing`` flag, never an error.

:class:`PriceFeaturizer` is a scikit-learn transformer. ``fit(prices, categories)`` learns the median and
spread of log price per category (only categories with at least ``min_count`` priced rows) and over all
rows. ``transform(prices, categories=None)`` returns a dense float matrix with fixed columns
(``get_feature_names_out``); the category columns are zero when no category is given or the category
has too little data. :meth:`PriceFeaturizer.category_scores` gives, for every known category, how typical
each price is there (a per-class price likelihood the fusion layer can stack).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .price_parse import parse_price  # the features read prices by the input rule

_MIN_SPREAD = 0.05  # log units; keeps z-scores finite for categories with one price

FEATURE_NAMES = (
    "log_price",
    "price_missing",
    "price_z_global",
    "price_z_category",
    "log_price_ratio_category",
    "category_stats_known",
)


def usable_price(value: Any) -> float | None:
    """A positive finite price for the features, or None: missing, unparseable, zero, negative or infinite
    prices count as missing there (``parse_price`` is where input is checked)."""
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return None
    try:
        number = parse_price(value.item() if isinstance(value, (np.integer, np.floating)) else value)
    except ValueError:
        return None
    return number if number is not None and number > 0 else None


def log_prices(values: Iterable[Any]) -> np.ndarray:
    """log1p of each parsed price, NaN where missing."""
    out = []
    for value in values:
        price = usable_price(value)
        out.append(math.log1p(price) if price is not None else math.nan)
    return np.asarray(out, dtype=np.float64)


def _robust_stats(values: np.ndarray) -> tuple[float, float]:
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median))) * 1.4826
    return median, max(mad, _MIN_SPREAD)


def _as_list(X: Any) -> list[Any]:
    if X is None:
        raise ValueError("PriceFeaturizer expects a sequence of prices, got None")
    if isinstance(X, (str, bytes)):
        raise ValueError("PriceFeaturizer expects a sequence of prices, got one string; wrap it in a list")
    if hasattr(X, "tolist") and not isinstance(X, list):
        X = X.tolist()
    values = list(X)
    return [v[0] if isinstance(v, (list, tuple)) and len(v) == 1 else v for v in values]


class PriceFeaturizer(TransformerMixin, BaseEstimator):
    """Log price + price relative to all rows and to a category (when it has ``min_count`` prices)."""

    def __init__(self, min_count: int = 20, clip_z: float = 5.0):
        self.min_count = min_count
        self.clip_z = clip_z

    def fit(self, X: Iterable[Any], y: Any = None, categories: Sequence[Any] | None = None) -> "PriceFeaturizer":
        """``categories`` (or ``y`` when ``categories`` is None) gives each row's category for the
        per-category statistics; without either only global statistics are learned."""
        values = log_prices(_as_list(X))
        context = categories if categories is not None else y
        known = values[~np.isnan(values)]
        if known.size:
            self.global_median_, self.global_spread_ = _robust_stats(known)
        else:
            self.global_median_, self.global_spread_ = 0.0, 1.0
        self.category_stats_: dict[Any, tuple[float, float, int]] = {}
        if context is not None:
            labels = _as_list(context)
            if len(labels) != len(values):
                raise ValueError(f"{len(labels)} categories for {len(values)} prices")
            groups: dict[Any, list[float]] = {}
            for label, value in zip(labels, values):
                if label is None or (isinstance(label, float) and math.isnan(label)) or math.isnan(value):
                    continue
                groups.setdefault(_key(label), []).append(value)
            for label, group in groups.items():
                if len(group) >= self.min_count:
                    median, spread = _robust_stats(np.asarray(group))
                    self.category_stats_[label] = (median, spread, len(group))
        self.categories_ = np.asarray(list(self.category_stats_), dtype=object)
        self.n_priced_ = int(known.size)
        self.n_features_out_ = len(FEATURE_NAMES)
        return self

    def transform(self, X: Iterable[Any], categories: Sequence[Any] | None = None) -> np.ndarray:
        check_is_fitted(self, "n_features_out_")
        values = log_prices(_as_list(X))
        labels = _as_list(categories) if categories is not None else [None] * len(values)
        if len(labels) != len(values):
            raise ValueError(f"{len(labels)} categories for {len(values)} prices")
        out = np.zeros((len(values), len(FEATURE_NAMES)), dtype=np.float64)
        missing = np.isnan(values)
        out[:, 1] = missing
        present = ~missing
        out[present, 0] = values[present]
        out[present, 2] = np.clip((values[present] - self.global_median_) / self.global_spread_, -self.clip_z, self.clip_z)
        for row, (label, value) in enumerate(zip(labels, values)):
            if math.isnan(value) or label is None:
                continue
            stats = self.category_stats_.get(_key(label))
            if stats is None:
                continue
            median, spread, _ = stats
            out[row, 3] = float(np.clip((value - median) / spread, -self.clip_z, self.clip_z))
            out[row, 4] = value - median
            out[row, 5] = 1.0
        return out

    def category_scores(self, X: Iterable[Any]) -> np.ndarray:
        """(n, len(categories_)) Gaussian log-density of each log price under each category's
        robust stats; 0 for a missing price (no evidence either way)."""
        check_is_fitted(self, "n_features_out_")
        values = log_prices(_as_list(X))
        if not len(self.categories_):
            return np.zeros((len(values), 0))
        medians = np.array([self.category_stats_[c][0] for c in self.categories_])
        spreads = np.array([self.category_stats_[c][1] for c in self.categories_])
        z = (values[:, None] - medians[None, :]) / spreads[None, :]
        scores = -0.5 * np.clip(z, -self.clip_z * 2, self.clip_z * 2) ** 2 - np.log(spreads)[None, :]
        scores[np.isnan(values)] = 0.0
        return scores

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(FEATURE_NAMES, dtype=object)


def _key(label: Any) -> Any:
    if isinstance(label, (list, tuple)):
        return " > ".join(str(x).strip() for x in label)
    return label
