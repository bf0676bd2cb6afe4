"""Per-modality base estimators, chosen by name (``FusionConfig.<modality>_estimator``).

Each factory returns a fresh, unfitted scikit-learn classifier. The stack only needs
``predict_proba`` or ``decision_function``: scores are turned into centred log-scores per class.
"""

from __future__ import annotations

from typing import Callable

from sklearn.base import BaseEstimator


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
    "sgd": _sgd,
    "complement_nb": _complement_nb,
}


def make_base_estimator(name: str) -> BaseEstimator:
    try:
        factory = BASE_ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown base estimator {name!r}; choose one of {sorted(BASE_ESTIMATORS)}") from None
    return factory()
