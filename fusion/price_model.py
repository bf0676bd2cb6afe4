"""``PriceDensityClassifier``: how typical a price is of each category, as class probabilities for the stack.

The price block (``fusion.features``: ``1, z, z^2, z^3 / 3`` of the standardised log price) holds one number per
product, so a category's prices are summarised by a normal density over ``z``: its mean and spread, each shrunk
towards the whole catalogue's by ``n / (n + prior_rows)`` (a category with three prices is not certain of them),
the spread floored at ``min_std``. Fitting is one pass over the rows and scoring one pass over rows x classes,
where a multinomial logistic regression over the same four columns iterates over rows x classes hundreds of times.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

Z_COLUMN = 1  # the standardised log price in the price block


class PriceDensityClassifier(ClassifierMixin, BaseEstimator):
    """Per-class normal density of the standardised log price (column ``Z_COLUMN``) times the class prior.

    ``prior_rows``: rows' worth of weight the catalogue-wide mean and spread get in each class's; ``min_std``:
    the least spread a class may have (z units).
    """

    def __init__(self, prior_rows: float = 5.0, min_std: float = 0.1):
        self.prior_rows = prior_rows
        self.min_std = min_std

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _z(self, X) -> np.ndarray:
        column = X[:, Z_COLUMN]
        return np.asarray(column.toarray() if hasattr(column, "toarray") else column, dtype=np.float64).ravel()

    def fit(self, X, y) -> "PriceDensityClassifier":
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64)
        check_classification_targets(y)
        if X.shape[1] <= Z_COLUMN:
            raise ValueError(f"PriceDensityClassifier reads column {Z_COLUMN} (z of the log price); "
                             f"got {X.shape[1]} columns")
        self.classes_, codes = np.unique(y, return_inverse=True)
        z = self._z(X)
        k = len(self.classes_)
        counts = np.bincount(codes, minlength=k).astype(float)
        sums = np.bincount(codes, weights=z, minlength=k)
        squares = np.bincount(codes, weights=z * z, minlength=k)
        mean_all, var_all = float(z.mean()), float(z.var())
        means = sums / np.maximum(counts, 1)
        variances = np.maximum(squares / np.maximum(counts, 1) - means ** 2, 0.0)
        trust = counts / (counts + float(self.prior_rows))
        self.means_ = trust * means + (1 - trust) * mean_all
        self.stds_ = np.sqrt(np.maximum(trust * variances + (1 - trust) * var_all, float(self.min_std) ** 2))
        self.log_prior_ = np.log(counts / counts.sum())
        return self

    def predict_log_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "means_")
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        z = self._z(X)[:, None]
        joint = self.log_prior_ - np.log(self.stds_) - 0.5 * ((z - self.means_) / self.stds_) ** 2
        return joint - np.logaddexp.reduce(joint, axis=1, keepdims=True)

    def predict_proba(self, X) -> np.ndarray:
        return np.exp(self.predict_log_proba(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_log_proba(X).argmax(axis=1)]
