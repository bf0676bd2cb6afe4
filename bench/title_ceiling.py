"""How far above the plain baseline a title-only model can go on cn_titles (issue 17), run by
``bench/bench_titles.py --ceiling``.

Two parts, both on the bench's split (the test titles are only scored, never chosen on):

1. Label agreement of near-duplicate titles: for every test title, its nearest training title by cosine over
   the product's own title features. Among test titles with a training title at least this close, how often
   the two carry the same leaf, and how many of the product model's errors have such a neighbour carrying
   the answer the model gave. Where near-identical titles disagree on their leaf, no title model can get
   both right: this bounds what any title-only model can gain.
2. Variants of the product's model on a dev split inside the training titles (every 5th hash bucket of the
   training titles; the test titles are not used): the tree's C and class weight, the tree's scores blended
   with a flat one-vs-rest LinearSVC or with naive Bayes log-probabilities, and training rows dropped when an
   out-of-fold fit disagrees with their label by a wide margin (noisy-label cleaning).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import numpy as np
from sklearn.preprocessing import normalize


def _report(name: str, value: Any) -> dict:
    row = {"part": name, **value} if isinstance(value, dict) else {"part": name, "value": value}
    print(json.dumps(row, ensure_ascii=False), flush=True)
    return row


def nearest_training_title(train_rows, test_rows, chunk: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(index of each test row's most similar training row, that cosine), over L2-normalised feature rows."""
    train_t = normalize(train_rows).astype(np.float32).T.tocsc()
    test_n = normalize(test_rows).astype(np.float32)
    nearest = np.zeros(test_n.shape[0], dtype=np.int64)
    similarity = np.zeros(test_n.shape[0], dtype=np.float32)
    for start in range(0, test_n.shape[0], chunk):
        block = (test_n[start:start + chunk] @ train_t).toarray()
        nearest[start:start + chunk] = block.argmax(axis=1)
        similarity[start:start + chunk] = block.max(axis=1)
    return nearest, similarity


def agreement(product_model: Any, X_train: list, y_train: list, X_test: list, y_test: list) -> list[dict]:
    featurizer, tree = (step for _, step in product_model().steps)
    train_rows = featurizer.fit_transform(X_train)  # featurized once, for the fit and the neighbours
    tree.fit(train_rows, y_train)
    test_rows = featurizer.transform(X_test)
    predicted = tree.classes_[tree.decision_function(test_rows).argmax(axis=1)]
    truth, train_labels = np.asarray(y_test, dtype=object), np.asarray(y_train, dtype=object)
    nearest, similarity = nearest_training_title(train_rows, test_rows)
    neighbour = train_labels[nearest]
    wrong = predicted != truth
    parent = lambda path: path.rsplit(" > ", 1)[0]  # noqa: E731
    siblings = np.array([parent(p) == parent(t) for p, t in zip(predicted, truth)]) & wrong
    confusions = Counter(f"{t} -> {p}" for t, p in zip(truth[wrong], predicted[wrong]))
    out = [_report("product model on the test titles", {
        "leaf_accuracy": round(float(np.mean(~wrong)), 4), "errors": int(wrong.sum()), "test_titles": len(truth),
        "errors_between_sibling_leaves": int(siblings.sum()),
        "most_common_confusions": confusions.most_common(12)})]
    for threshold in (0.95, 0.9, 0.8, 0.7):
        close = similarity >= threshold
        out.append(_report(f"test titles with a training title at cosine >= {threshold}", {
            "share_of_test": round(float(close.mean()), 4),
            "neighbour_has_the_same_leaf": round(float(np.mean(neighbour[close] == truth[close])), 4),
            "model_errors_among_them": int(np.sum(wrong & close)),
            "of_which_neighbour_has_the_models_answer": int(np.sum(wrong & close & (neighbour == predicted))),
        }))
    return out


def _dev_split(X_train: list, y_train: list) -> tuple[list, np.ndarray, list, np.ndarray]:
    from bench.bench_titles import _hash

    dev = np.array([_hash(t + "#dev") % 5 == 0 for t in X_train])
    fit_titles = [t for t, d in zip(X_train, dev) if not d]
    dev_titles = [t for t, d in zip(X_train, dev) if d]
    labels = np.asarray(y_train, dtype=object)
    return fit_titles, labels[~dev], dev_titles, labels[dev]


def dev_variants(X_train: list, y_train: list) -> list[dict]:
    from sklearn.naive_bayes import MultinomialNB

    from skutag.fusion.linear import ClassParallelLinearSVC, HierarchicalLinearSVC
    from skutag.text import TextConfig, TitleFeaturizer

    fit_titles, fit_y, dev_titles, dev_y = _dev_split(X_train, y_train)
    featurizer = TitleFeaturizer.from_config(TextConfig())
    A, B = featurizer.fit_transform(fit_titles), featurizer.transform(dev_titles)
    out = []

    def scored(name: str, classes: np.ndarray, scores: np.ndarray, **extra: Any) -> None:
        accuracy = float(np.mean(classes[scores.argmax(axis=1)] == dev_y))
        out.append(_report(name, {"dev_leaf_accuracy": round(accuracy, 4), **extra}))

    started = time.perf_counter()
    tree = HierarchicalLinearSVC().fit(A, fit_y)
    tree_scores = tree.decision_function(B)
    scored("tree (the product's defaults: C=1, balanced per node)", tree.classes_, tree_scores,
           fit_s=round(time.perf_counter() - started, 1), fit_rows=len(fit_y), dev_rows=len(dev_y))
    variants = [("tree C=0.3", {"C": 0.3}), ("tree C=2", {"C": 2.0}), ("tree unbalanced", {"class_weight": None})]
    for name, params in variants:
        other = HierarchicalLinearSVC(**params).fit(A, fit_y)
        scored(name, other.classes_, other.decision_function(B))
    started = time.perf_counter()
    flat = ClassParallelLinearSVC(C=0.5).fit(A, fit_y)
    flat_scores = flat.decision_function(B)
    assert list(flat.classes_) == list(tree.classes_)
    scored("flat one-vs-rest LinearSVC (C=0.5)", flat.classes_, flat_scores,
           fit_s=round(time.perf_counter() - started, 1))
    for weight in (0.25, 0.5, 1.0, 2.0):
        scored(f"tree + {weight} x flat", tree.classes_, tree_scores + weight * flat_scores)
    bayes = MultinomialNB(alpha=0.01).fit(A, fit_y)
    log_proba = bayes.predict_log_proba(B)
    scored("multinomial naive Bayes (alpha 0.01)", bayes.classes_, log_proba)
    for weight in (0.01, 0.03, 0.1):
        scored(f"tree + {weight} x naive Bayes log-probabilities", tree.classes_, tree_scores + weight * log_proba)
    # noisy-label cleaning: each fit row's margin against its own label, out of 3 folds
    fold = np.random.default_rng(0).integers(0, 3, len(fit_y))
    margin = np.zeros(len(fit_y))
    for k in range(3):
        part = HierarchicalLinearSVC().fit(A[fold != k], fit_y[fold != k])
        scores = part.decision_function(A[fold == k])
        column = {c: i for i, c in enumerate(part.classes_.tolist())}
        own = np.array([scores[i, column[c]] if c in column else -np.inf for i, c in enumerate(fit_y[fold == k])])
        margin[fold == k] = scores.max(axis=1) - own
    for threshold in (2.0, 1.0, 0.5):
        keep = margin < threshold
        cleaned = HierarchicalLinearSVC().fit(A[keep], fit_y[keep])
        scored(f"tree on fit rows an out-of-fold fit does not overrule by >= {threshold}", cleaned.classes_,
               cleaned.decision_function(B), dropped_rows=int((~keep).sum()))
    return out
