"""Per-modality base estimators, chosen by name (``FusionConfig.<modality>_estimator``), and the out-of-fold
splits they are scored on (``make_folds``).

Each factory returns a fresh, unfitted scikit-learn classifier. The stack only needs
``predict_proba`` or ``decision_function``: scores are turned into centred log-scores per class.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold


LOG_FLOOR = np.log(1e-6)  # the log-score of a class a probabilistic estimator gives no chance
SCORE_CHUNK = 20000  # rows scored at a time: a chunk's rows x classes scores in memory, not the catalogue's


def _logreg() -> BaseEstimator:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=300)


def _scaled_logreg() -> BaseEstimator:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # with_mean=False keeps sparse input sparse; dense embeddings still get unit variance
    return make_pipeline(StandardScaler(with_mean=False), LogisticRegression(C=0.05, max_iter=300))


def _linear_svc() -> BaseEstimator:
    from sklearn.svm import LinearSVC

    return LinearSVC(C=1.0, random_state=0)  # fixed: liblinear shuffles, and folds may fit in parallel threads


def _linear_svc_balanced() -> BaseEstimator:
    from .linear import ClassParallelLinearSVC

    # many categories with few rows (shop catalogs, cn_titles): balanced class weights lift the rare ones;
    # the one-vs-rest problems run on every core (hundreds of title categories take minutes on one)
    return ClassParallelLinearSVC(C=0.5, class_weight="balanced", n_jobs=-1, random_state=0)


def _hierarchical_svc() -> BaseEstimator:
    from .linear import HierarchicalLinearSVC

    # category paths: one small one-vs-rest problem per node of the tree (docs/taxonomy-and-text.md)
    return HierarchicalLinearSVC(C=1.0, class_weight="balanced", n_jobs=-1, random_state=0)


def _price_density() -> BaseEstimator:
    from .price_model import PriceDensityClassifier

    # one number per product: a per-category density, one pass to fit (fusion/price_model.py)
    return PriceDensityClassifier()


def _sgd() -> BaseEstimator:
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss="modified_huber", alpha=1e-5, max_iter=30, tol=None, random_state=0)


def _complement_nb() -> BaseEstimator:
    from sklearn.naive_bayes import ComplementNB

    return ComplementNB(alpha=0.3)


BASE_ESTIMATORS: dict[str, Callable[[], BaseEstimator]] = {
    "logreg": _logreg,
    "scaled_logreg": _scaled_logreg,
    "linear_svc": _linear_svc,
    "linear_svc_balanced": _linear_svc_balanced,
    "hierarchical_svc": _hierarchical_svc,
    "price_density": _price_density,
    "sgd": _sgd,
    "complement_nb": _complement_nb,
}


def make_base_estimator(name: str) -> BaseEstimator:
    try:
        factory = BASE_ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown base estimator {name!r}; choose one of {sorted(BASE_ESTIMATORS)}") from None
    return factory()


def bind_classes(estimator, classes) -> BaseEstimator:
    """``estimator``, or where it reads the class names (``class_paths``: labels come as codes 0..K-1) a clone
    told them."""
    if classes is None or "class_paths" not in estimator.get_params(deep=False):
        return estimator
    from sklearn.base import clone

    return clone(estimator).set_params(class_paths=tuple(str(c) for c in classes))


def make_folds(y_enc: np.ndarray, n_splits: int, shuffle: bool = True, seed: int | None = None,
               groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The out-of-fold splits of the training rows (the one place they are made).

    ``groups`` None: stratified folds (plain folds when no class has ``n_splits`` rows); ``shuffle`` False
    keeps each fold a contiguous run of rows within each class. ``groups`` given (one label per row, e.g. a
    photo series): no group straddles two folds (``StratifiedGroupKFold``)."""
    n_splits = min(int(n_splits), len(y_enc))
    if groups is not None:
        groups = np.asarray(groups)
        if len(np.unique(groups)) == len(groups):  # every row its own group (e.g. no photos): plain folds
            groups = None
    if groups is not None:
        n_splits = min(n_splits, len(np.unique(groups)))
    if n_splits < 2:
        return []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        if groups is not None:
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=shuffle, random_state=seed)
            return list(splitter.split(np.zeros(len(y_enc)), y_enc, groups))
        if np.bincount(y_enc).max() >= n_splits:
            splitter = StratifiedKFold(n_splits=n_splits, shuffle=shuffle, random_state=seed)
        else:
            splitter = KFold(n_splits=n_splits, shuffle=shuffle, random_state=seed)
        return list(splitter.split(np.zeros(len(y_enc)), y_enc))


def fits_one_at_a_time(estimator) -> bool:
    """An estimator that spreads its own work over the cores (``n_jobs``) gets its fold fits one at a time: fits
    side by side would hold several copies of the rows for no gain in speed."""
    return estimator.get_params().get("n_jobs") not in (None, 1)


def fold_jobs(folds: list, present: np.ndarray, y_enc: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds' (train, test) rows that have the block, for the folds whose training rows hold two classes."""
    jobs = []
    for train, test in folds:
        train, test = train[present[train]], test[present[test]]
        if len(test) and len(np.unique(y_enc[train])) >= 2:
            jobs.append((train, test))
    return jobs


def fit_and_score(prototype, Xb, y_enc: np.ndarray, train: np.ndarray, test: np.ndarray | None, n_classes: int,
                  out: np.ndarray | None = None) -> Any:
    """Fit a clone on ``train``; write its scores on ``test`` into ``out`` (a chunk of rows at a time), or
    return the fitted model when ``test`` is None."""
    model = clone(prototype).fit(take_rows(Xb, train), y_enc[train])
    if test is None:
        return model
    for start in range(0, len(test), SCORE_CHUNK):
        rows = test[start:start + SCORE_CHUNK]
        out[rows] = block_scores(model, Xb[rows], n_classes)
    return None


def take_rows(X, rows: np.ndarray):
    """``X[rows]``, without copying the matrix when ``rows`` is every row in order (the final fit)."""
    if len(rows) == X.shape[0] and np.array_equal(rows, np.arange(X.shape[0])):
        return X
    return X[rows]


def block_scores(estimator, Xb, n_classes: int) -> np.ndarray:
    """Centred per-class log-scores (float32) of a fitted base estimator over all ``n_classes``."""
    if hasattr(estimator, "predict_proba"):
        raw = np.log(np.clip(estimator.predict_proba(Xb), 1e-6, 1.0)).astype(np.float32)
        floor = LOG_FLOOR
    else:
        raw = np.asarray(estimator.decision_function(Xb), dtype=np.float32)
        if raw.ndim == 1:
            raw = np.column_stack([-raw / 2, raw / 2])
        floor = None
    known = np.asarray(estimator.classes_, dtype=int)
    if len(known) == n_classes:
        out = raw if raw.flags.writeable and raw.flags.c_contiguous else raw.copy()
    else:
        fill = floor if floor is not None else raw.min(axis=1, keepdims=True) - 1.0
        out = np.empty((raw.shape[0], n_classes), dtype=np.float32)
        out[:] = fill
        out[:, known] = raw
    out -= out.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    return out
