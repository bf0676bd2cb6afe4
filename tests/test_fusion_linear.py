"""ClassParallelLinearSVC: the one-vs-rest problems of LinearSVC split over threads give the same model
(real cn_titles rows, 40 leaves)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from skutag.fusion.linear import ClassParallelLinearSVC
from fusion_fixtures import cn_titles_by_leaf


@pytest.fixture(scope="module")
def titles():
    from skutag.text import TextConfig, TitleFeaturizer

    by_leaf = cn_titles_by_leaf()
    leaves = sorted(leaf for leaf, rows in by_leaf.items() if len(rows) >= 60)[:40]
    # uneven class sizes, so balanced weights matter
    pairs = [(t, leaf) for k, leaf in enumerate(leaves) for t in by_leaf[leaf][:20 + 2 * k]]
    X = TitleFeaturizer.from_config(TextConfig(min_df=1)).fit_transform([t for t, _ in pairs])
    return X, np.array([leaf for _, leaf in pairs], dtype=object)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_split_over_threads_equals_one_linear_svc(titles, class_weight):
    X, y = titles
    plain = LinearSVC(C=0.5, class_weight=class_weight, random_state=0).fit(X, y)
    split = ClassParallelLinearSVC(C=0.5, class_weight=class_weight, n_jobs=3).fit(X, y)
    assert list(split.classes_) == list(plain.classes_)
    assert np.abs(split.decision_function(X) - plain.decision_function(X)).max() < 0.02
    assert np.mean(split.predict(X) == plain.predict(X)) >= 0.995
    assert split.coef_.flags["F_CONTIGUOUS"], "C-ordered weights make sparse scoring ~100x slower"


def test_few_classes_or_one_job_fall_back_to_one_problem(titles):
    X, y = titles
    two = np.isin(y, np.unique(y)[:2])
    binary = ClassParallelLinearSVC(n_jobs=4).fit(X[two], y[two])
    assert binary.decision_function(X[two]).ndim == 1
    assert np.mean(binary.predict(X[two]) == y[two]) >= 0.95
    with pytest.raises(ValueError, match="at least 2 classes"):
        ClassParallelLinearSVC().fit(X[:3], np.array(["a"] * 3))
    with pytest.raises(ValueError, match="class_weight"):
        ClassParallelLinearSVC(class_weight="weird").fit(X, y)
