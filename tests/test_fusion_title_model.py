"""The title model at scale: HierarchicalLinearSVC (one LinearSVC per node of the category tree) on real
cn_titles rows, a one-modality FusionTagger without a stacker, and the one fold splitter."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from skutag.fusion.estimators import make_folds
from skutag.fusion.linear import HierarchicalLinearSVC
from skutag.fusion.stacking import FusionTagger
from fusion_fixtures import cn_titles_by_leaf


@pytest.fixture(scope="module")
def titles():
    from skutag.text import TextConfig, TitleFeaturizer

    by_leaf = cn_titles_by_leaf()
    leaves = sorted(leaf for leaf, rows in by_leaf.items() if len(rows) >= 80)[::3][:60]
    pairs = [(t, leaf) for leaf in leaves for t in by_leaf[leaf][:80]]
    rng = np.random.RandomState(0)
    order = rng.permutation(len(pairs))
    texts = [pairs[i][0] for i in order]
    y = np.array([pairs[i][1] for i in order], dtype=object)
    featurizer = TitleFeaturizer.from_config(TextConfig())
    cut = int(0.75 * len(texts))
    X_train = featurizer.fit_transform(texts[:cut])
    return X_train, y[:cut], featurizer.transform(texts[cut:]), y[cut:]


def test_hierarchical_svc_scores_like_a_flat_linear_svc(titles):
    X, y, X_test, y_test = titles
    assert len({p.split(" > ")[0] for p in y}) >= 3, "the subset spans several top-level categories"
    tree = HierarchicalLinearSVC(n_jobs=2).fit(X, y)
    flat = LinearSVC(C=1.0, class_weight="balanced").fit(X, y)
    tree_acc = np.mean(tree.predict(X_test) == y_test)
    flat_acc = np.mean(flat.predict(X_test) == y_test)
    assert tree_acc >= flat_acc - 0.02, (tree_acc, flat_acc)
    assert tree_acc > 0.7
    assert tree.decision_function(X_test).dtype == np.float32
    # every node keeps weights only over the columns its own rows use
    assert all(coef.shape[1] == len(columns) <= X.shape[1] for columns, coef, _ in tree.nodes_.values())
    assert sum(coef.size for _, coef, _ in tree.nodes_.values()) < len(tree.classes_) * X.shape[1]


def test_a_leaf_scores_the_sum_of_the_edges_on_its_path(titles):
    """decision_function adds each node's child scores to the leaves under that child only: recomputed here
    edge by edge from the node weights, on real titles, before and after a refit of some nodes."""
    X, y, X_test, _ = titles
    tree = HierarchicalLinearSVC(n_jobs=1).fit(X, y)

    def by_edges() -> np.ndarray:
        X_csr = X_test.tocsr().astype(np.float32)
        expected = np.zeros((X_csr.shape[0], len(tree.classes_)))
        for leaf, edges in enumerate(tree.edges_):
            for node, child in edges:
                if node not in tree.nodes_:  # a node with one child has no problem to solve: it adds nothing
                    continue
                columns, coef, intercept = tree.nodes_[node]
                expected[:, leaf] += np.asarray(X_csr[:, columns] @ coef[child]).ravel() + intercept[child]
        return expected

    np.testing.assert_allclose(tree.decision_function(X_test), by_edges(), rtol=1e-4, atol=1e-4)
    y2 = y.copy()
    y2[1:20] = y[0]
    tree.refit_nodes(X, y2, sorted({y[0], *y[1:20]}))
    np.testing.assert_allclose(tree.decision_function(X_test), by_edges(), rtol=1e-4, atol=1e-4)


def test_refit_nodes_touches_only_the_paths_of_the_corrected_classes(titles):
    X, y, X_test, _ = titles
    tree = HierarchicalLinearSVC(n_jobs=1).fit(X, y)
    before = {node: coef.copy() for node, (_, coef, _) in tree.nodes_.items()}
    learned_before = np.mean(tree.predict(X[1:20]) == y[0])
    target = y[0]
    y2 = y.copy()
    y2[1:20] = target  # corrections: these rows belong to ``target`` (and to whatever they were before)
    refitted = tree.refit_nodes(X, y2, sorted({target, *y[1:20]}))
    on_paths = set(refitted)
    for node, (_, coef, _) in tree.nodes_.items():
        if node not in on_paths:
            assert np.array_equal(before[node], coef)
    assert () in on_paths and tuple(target.split(" > ")[:2]) in on_paths
    assert np.mean(tree.predict(X[1:20]) == target) >= learned_before + 0.3  # the corrections are learned
    assert tree.decision_function(X_test).shape == (X_test.shape[0], len(tree.classes_))


def test_flat_labels_are_a_one_level_tree(titles):
    X, y, X_test, y_test = titles
    flat_labels = np.array([p.replace(" > ", "/") for p in y], dtype=object)
    model = HierarchicalLinearSVC(n_jobs=1).fit(X, flat_labels)
    assert list(model.nodes_) == [()]
    assert np.mean(model.predict(X_test) == np.array([p.replace(" > ", "/") for p in y_test])) > 0.7


def test_one_modality_needs_no_stacker(titles):
    X, y, X_test, y_test = titles
    estimator = HierarchicalLinearSVC(n_jobs=1)
    tagger = FusionTagger(blocks=[("title", slice(None), estimator)], cv=3, random_state=0).fit(X, y)
    assert tagger.block_weight_.tolist() == [1.0] and not tagger.class_weight_.any() and not tagger.bias_.any()
    assert tagger.base_estimators_[0].class_paths == tuple(tagger.classes_)  # the tree comes from the classes
    assert 0.05 < tagger.temperature_ < 20
    assert len(tagger.oof_predictions_) == len(y) and np.mean(tagger.oof_predictions_ == y) > 0.6
    proba = tagger.predict_proba(X_test)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert np.mean(tagger.classes_[proba.argmax(axis=1)] == y_test) > 0.7


def test_make_folds_keeps_groups_together():
    rng = np.random.RandomState(0)
    y = rng.randint(0, 4, size=200)
    groups = rng.randint(0, 40, size=200)
    folds = make_folds(y, 3, shuffle=True, seed=0, groups=groups)
    assert len(folds) == 3
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    plain = make_folds(y, 3, shuffle=True, seed=0)
    assert sorted(np.concatenate([test for _, test in plain]).tolist()) == list(range(200))


def test_a_warm_refit_reaches_the_fit_from_scratch(titles):
    """Relabelled rows: the refitted nodes start from the parent's weights and move to where a fit of the
    corrected labels from scratch ends (the same strictly convex problems), up to the solvers' tolerances."""
    import copy

    X, y, X_test, _ = titles
    tree = HierarchicalLinearSVC(n_jobs=1).fit(X, y)
    parent = copy.deepcopy(tree)
    y2 = y.copy()
    moved = np.arange(1, 40)
    y2[moved] = y[0]
    tree.refit_nodes(X, y2, sorted({y[0], *y[moved]}))
    scratch = HierarchicalLinearSVC(n_jobs=1).fit(X, y2)
    warm, cold, before = (m.decision_function(X_test) for m in (tree, scratch, parent))
    assert np.mean(warm.argmax(axis=1) == cold.argmax(axis=1)) >= 0.99
    gap, moved_by_fit = np.abs(warm - cold), np.abs(before - cold)
    assert gap.mean() < 0.4 * moved_by_fit.mean()
    assert np.percentile(gap, 99) < 0.4 * np.percentile(moved_by_fit, 99)
    assert np.mean(tree.predict(X[moved]) == y[0]) == np.mean(scratch.predict(X[moved]) == y[0])
