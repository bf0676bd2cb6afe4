"""The warm-start solver (fusion/warm_start.py) solves liblinear's problems: from zero weights it reaches what
LinearSVC reaches on real titles, and from a solution of fewer rows it reaches the solution of all rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from skutag.fusion.warm_start import refit_squared_hinge
from fusion_fixtures import cn_titles_by_leaf


@pytest.fixture(scope="module")
def problem():
    from skutag.text import TextConfig, TitleFeaturizer

    by_leaf = cn_titles_by_leaf()
    leaves = sorted(leaf for leaf, rows in by_leaf.items() if len(rows) >= 60)[::7][:6]
    texts = [t for leaf in leaves for t in by_leaf[leaf][:60]]
    labels = np.repeat(np.arange(len(leaves)), 60)
    X = TitleFeaturizer.from_config(TextConfig()).fit_transform(texts)
    return X.tocsr(), labels


def balanced(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels)
    return {c: len(labels) / (len(counts) * n) for c, n in enumerate(counts)}


def test_from_zero_it_reaches_linear_svc_one_vs_rest(problem):
    X, labels = problem
    classes = np.unique(labels)
    svc = LinearSVC(C=1.0, class_weight="balanced", tol=1e-6, max_iter=20000).fit(X, labels)
    fit = refit_squared_hinge(X, labels, classes, np.zeros((len(classes), X.shape[1])), np.zeros(len(classes)),
                              1.0, balanced(labels), tol=1e-4)
    assert fit.gradient_ratio < 1e-3
    scale = np.abs(svc.coef_).max()
    assert np.abs(fit.coef - svc.coef_).max() < 0.02 * scale
    assert np.abs(fit.intercept - svc.intercept_).max() < 0.02 * max(1.0, np.abs(svc.intercept_).max())


def test_two_classes_weigh_the_negative_class_too(problem):
    X, labels = problem
    keep = labels < 2
    X2, y2 = X[keep], labels[keep]
    y2 = np.where(np.arange(len(y2)) < 90, y2, 0)  # uneven classes: the weights matter
    weights = balanced(y2)
    svc = LinearSVC(C=1.0, class_weight="balanced", tol=1e-6, max_iter=20000).fit(X2, y2)
    fit = refit_squared_hinge(X2, y2, np.array([1]), np.zeros((1, X.shape[1])), np.zeros(1), 1.0,
                              {1: weights[1]}, rest_weight=weights[0], tol=1e-4)
    assert np.abs(fit.coef - svc.coef_).max() < 0.02 * np.abs(svc.coef_).max()


def test_from_a_solution_of_fewer_rows_it_reaches_the_solution_of_all_rows(problem):
    X, labels = problem
    classes = np.unique(labels)
    first = np.arange(len(labels)) % 10 != 0  # the parent saw 90 % of the rows
    parent = LinearSVC(C=1.0, class_weight="balanced", tol=1e-6, max_iter=20000).fit(X[first], labels[first])
    full = LinearSVC(C=1.0, class_weight="balanced", tol=1e-6, max_iter=20000).fit(X, labels)
    moved = np.abs(full.coef_ - parent.coef_).max()
    tight = refit_squared_hinge(X, labels, classes, parent.coef_, parent.intercept_, 1.0, balanced(labels), tol=1e-4)
    assert np.abs(tight.coef - full.coef_).max() < 0.1 * moved
    # the default tolerance: most of the way, in fewer steps
    fit = refit_squared_hinge(X, labels, classes, parent.coef_, parent.intercept_, 1.0, balanced(labels))
    assert 0 < fit.iterations <= tight.iterations
    assert np.abs(fit.coef - full.coef_).max() < 0.5 * moved
    again = refit_squared_hinge(X, labels, classes, full.coef_, full.intercept_, 1.0, balanced(labels))
    assert again.iterations == 0  # a solution is left as it is
