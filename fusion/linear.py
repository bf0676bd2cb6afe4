"""One-vs-rest LinearSVC whose per-class problems run on several cores.

liblinear solves a K-class problem as K binary ones (class k against every other row), one after the
other on one core: 700+ title categories take minutes. ``ClassParallelLinearSVC`` gives each thread a
group of classes; within a group every row of another group's class carries one shared placeholder label,
so each binary problem (class k vs all the rest) is the same one liblinear would have solved, with the
same class weight (``balanced`` weights come from the full label set). liblinear releases the GIL, so
threads use the cores without copying the data. Solutions equal the single-core ones up to the solver's
tolerance (its random visiting order differs).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

_REST = -1  # the placeholder label of "a class of another group" (labels are encoded as 0..K-1)


class ClassParallelLinearSVC(ClassifierMixin, BaseEstimator):
    """``LinearSVC`` (squared hinge, L2) with its one-vs-rest problems split over ``n_jobs`` threads.

    ``C``, ``class_weight`` (None, "balanced" or a dict), ``tol``, ``max_iter``, ``random_state`` as in
    ``sklearn.svm.LinearSVC``; ``n_jobs``: threads (-1: one per CPU). Fewer than ``2 * n_jobs`` classes or
    ``n_jobs == 1``: one plain LinearSVC.
    """

    def __init__(self, C: float = 1.0, class_weight: Any = None, tol: float = 1e-4, max_iter: int = 1000,
                 n_jobs: int = -1, random_state: int | None = 0):
        self.C = C
        self.class_weight = class_weight
        self.tol = tol
        self.max_iter = max_iter
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _svc(self, class_weight: Any):
        from sklearn.svm import LinearSVC

        return LinearSVC(C=self.C, class_weight=class_weight, tol=self.tol, max_iter=self.max_iter,
                         random_state=self.random_state)

    def _weights(self, codes: np.ndarray, n_classes: int) -> np.ndarray:
        if self.class_weight is None:
            return np.ones(n_classes)
        if isinstance(self.class_weight, str):
            if self.class_weight != "balanced":
                raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {self.class_weight!r}")
            return len(codes) / (n_classes * np.bincount(codes, minlength=n_classes))
        return np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # CSR title features are what it is for
        return tags

    def fit(self, X, y) -> "ClassParallelLinearSVC":
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(f"needs at least 2 classes, got {n_classes} class")
        jobs = (os.cpu_count() or 1) if self.n_jobs in (-1, None) else max(1, int(self.n_jobs))
        weights = self._weights(codes, n_classes)
        if jobs == 1 or n_classes < 2 * jobs or n_classes == 2:
            single = self._svc({k: w for k, w in enumerate(weights)}).fit(X, codes)
            self.coef_, self.intercept_ = single.coef_, single.intercept_
            self.n_iter_ = int(np.max(single.n_iter_))
            return self
        groups = np.array_split(np.arange(n_classes), jobs)
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=jobs, prefer="threads")(delayed(self._fit_group)(X, codes, g, weights) for g in groups)
        # Fortran order, as liblinear's own coef_: sparse rows @ coef_.T then read contiguous memory
        # (C order makes scoring far slower on wide title features: every row gathers across all classes)
        coef = np.zeros((n_classes, X.shape[1]), order="F")
        intercept = np.zeros(n_classes)
        for group, (group_coef, group_intercept, _) in zip(groups, parts):
            coef[group], intercept[group] = group_coef, group_intercept
        self.coef_, self.intercept_ = coef, intercept
        self.n_iter_ = int(max(n for _, _, n in parts))
        return self

    def _fit_group(self, X, codes: np.ndarray, group: np.ndarray, weights: np.ndarray):
        """The binary problems of the classes in ``group``; rows of other classes are one placeholder class."""
        inside = np.isin(codes, group)
        labels = np.where(inside, codes, _REST)
        class_weight = {int(k): float(weights[k]) for k in group}
        class_weight[_REST] = 1.0
        svc = self._svc(class_weight).fit(X, labels)
        order = {int(c): i for i, c in enumerate(svc.classes_)}
        rows = [order[int(k)] for k in group]  # the placeholder's own problem is dropped
        return svc.coef_[rows], svc.intercept_[rows], int(np.max(svc.n_iter_))

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        if not self.coef_.flags["F_CONTIGUOUS"]:
            self.coef_ = np.asfortranarray(self.coef_)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        scores = X @ self.coef_.T + self.intercept_
        return np.asarray(scores).ravel() if len(self.classes_) == 2 else np.asarray(scores)

    def predict(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[scores.argmax(axis=1)]
