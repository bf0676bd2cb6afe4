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


class HierarchicalLinearSVC(ClassifierMixin, BaseEstimator):
    """One-vs-rest ``LinearSVC`` per node of the category tree; a leaf's score is the sum of the scores of the
    edges on its path (``"a > b > c"``: root -> a, a -> a > b, a > b -> a > b > c).

    Each node's problem only has the rows under that node and the feature columns those rows use, so the
    work is about (depth x rows) binary problems of a few classes instead of (classes x rows), and each
    node keeps a small float32 weight matrix over its own columns instead of a dense classes x features one.
    Labels without ``separator`` form a one-level tree (a plain one-vs-rest LinearSVC, C-weighted per node).

    ``class_paths``: the category path of each label when labels are codes ``0..K-1`` (``FusionTagger``
    passes its classes); None: the labels are the paths. ``C``, ``class_weight`` (None or "balanced", per
    node over its children), ``tol``, ``max_iter`` as in ``LinearSVC``; ``n_jobs`` threads over nodes.
    ``refit_nodes(X, y, labels)`` fits again only the nodes on the paths of ``labels`` (incremental retraining).
    """

    def __init__(self, C: float = 1.0, class_weight: Any = "balanced", tol: float = 1e-4, max_iter: int = 1000,
                 separator: str = " > ", class_paths: Any = None, n_jobs: int = -1, random_state: int | None = 0):
        self.C = C
        self.class_weight = class_weight
        self.tol = tol
        self.max_iter = max_iter
        self.separator = separator
        self.class_paths = class_paths
        self.n_jobs = n_jobs
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _path(self, label: Any) -> tuple[str, ...]:
        text = str(self.class_paths[int(label)]) if self.class_paths is not None else str(label)
        return tuple(part.strip() for part in text.split(self.separator)) if self.separator else (text,)

    def fit(self, X, y) -> "HierarchicalLinearSVC":
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"needs at least 2 classes, got {len(self.classes_)} class")
        self._build_tree()
        self.nodes_ = {}
        self._fit_nodes(X, codes, list(self.children_))
        return self

    def _build_tree(self) -> None:
        """``children_``: node (a path prefix) -> its children; ``edges_``: leaf code -> [(node, child index)]."""
        paths = [self._path(c) for c in self.classes_]
        prefixes = {p[:d] for p in paths for d in range(1, len(p))}
        children: dict[tuple, list[tuple]] = {}
        self.edges_ = []
        for path in paths:
            edges = []
            for d in range(len(path)):
                node, child = path[:d], path[:d + 1]
                edges.append((node, child))
            if path in prefixes:  # a class that is also an inner node: its own "stop here" child
                edges.append((path, path + ("",)))
            for node, child in edges:
                children.setdefault(node, [])
                if child not in children[node]:
                    children[node].append(child)
            self.edges_.append(edges)
        self.children_ = children
        self.edges_ = [[(node, children[node].index(child)) for node, child in edges] for edges in self.edges_]

    def _node_problems(self, codes: np.ndarray, nodes: list[tuple]) -> list[tuple[tuple, np.ndarray, np.ndarray]]:
        """(node, its rows, the child each row goes to) for the nodes with a choice to make, biggest first (threads
        finish together); a node whose rows all go to one child is dropped from the model."""
        leaf_child = {node: np.full(len(self.classes_), -1) for node in nodes}
        for k, edges in enumerate(self.edges_):
            for node, child in edges:
                if node in leaf_child:
                    leaf_child[node][k] = child
        work = []
        for node in nodes:
            child_of_row = leaf_child[node][codes]
            rows = np.flatnonzero(child_of_row >= 0)
            if len(np.unique(child_of_row[rows])) >= 2:
                work.append((node, rows, child_of_row[rows]))
            else:
                self.nodes_.pop(node, None)  # one child: no choice to make at this node
        work.sort(key=lambda item: -len(item[1]))
        return work

    def _run_nodes(self, nodes: list[tuple], calls: list) -> None:
        """Run one fit per node over ``n_jobs`` threads (liblinear and the sparse products release the GIL)."""
        jobs = (os.cpu_count() or 1) if self.n_jobs in (-1, None) else max(1, int(self.n_jobs))
        from joblib import Parallel

        fitted = Parallel(n_jobs=jobs, prefer="threads")(calls)
        self.leaf_gathers_ = None
        for node, result in zip(nodes, fitted):
            self.nodes_[node] = result

    def _fit_nodes(self, X, codes: np.ndarray, nodes: list[tuple]) -> None:
        from joblib import delayed

        work = self._node_problems(codes, nodes)
        self._run_nodes([node for node, _, _ in work], [
            delayed(self._fit_node)(X, rows, labels, len(self.children_[node])) for node, rows, labels in work])

    def _fit_node(self, X, rows: np.ndarray, labels: np.ndarray, width: int):
        from sklearn.svm import LinearSVC

        columns, sub = _node_matrix(X, rows)
        svc = LinearSVC(C=self.C, class_weight=self.class_weight, tol=self.tol, max_iter=self.max_iter,
                        random_state=self.random_state).fit(sub, labels)
        coef, intercept = svc.coef_.astype(np.float32), svc.intercept_.astype(np.float32)
        if len(svc.classes_) == 2:  # one binary margin: the first child gets its negative
            coef, intercept = np.vstack([-coef, coef]) / 2, np.array([-intercept[0], intercept[0]]) / 2
        full_coef = np.zeros((width, len(columns)), dtype=np.float32)
        full_intercept = np.full(width, -1.0, dtype=np.float32)
        full_coef[svc.classes_], full_intercept[svc.classes_] = coef, intercept
        return columns.astype(np.int32), full_coef, full_intercept

    def refit_nodes(self, X, y, labels) -> list[tuple]:
        """Fit again, on ``X, y``, the nodes on the paths of ``labels`` (codes of known classes); the other nodes keep
        their weights. Returns the nodes on those paths.

        A node fitted before starts from its weights (``fusion.warm_start``): the problems of its children on
        those paths are solved again over all its rows, reaching the optimum a fit from scratch reaches in a
        few steps. Its other children keep their weights: their rows did not change, only rows of the touched
        children were added to their negatives. A node that only now has two children is fitted from scratch."""
        check_is_fitted(self, "nodes_")
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        y = np.asarray(y)
        if not np.isin(y, self.classes_).all():
            raise ValueError("refit_nodes: a label the model does not know; fit the model again")
        position = {c: i for i, c in enumerate(self.classes_.tolist())}
        codes = np.array([position[v] for v in y.tolist()])
        touched: dict[tuple, set[int]] = {}
        for k in labels:
            for node, child in self.edges_[position[k]]:
                touched.setdefault(node, set()).add(child)
        nodes = sorted(touched, key=len)
        choosing = [node for node in nodes if len(self.children_[node]) >= 2]
        self._fit_nodes(X, codes, [node for node in choosing if node not in self.nodes_])
        self._warm_fit_nodes(X, codes, {node: touched[node] for node in choosing if node in self.nodes_})
        return nodes

    def _warm_fit_nodes(self, X, codes: np.ndarray, touched: dict[tuple, set[int]]) -> None:
        from joblib import delayed

        work = self._node_problems(codes, list(touched))
        self._run_nodes([node for node, _, _ in work], [
            delayed(self._warm_fit_node)(X, rows, labels, self.nodes_[node], touched[node])
            for node, rows, labels in work])

    def _warm_fit_node(self, X, rows: np.ndarray, labels: np.ndarray, fitted: tuple, children: set[int]):
        from .warm_start import refit_squared_hinge

        old_columns, old_coef, old_intercept = fitted
        columns, sub = _node_matrix(X, rows, old_columns)  # new rows may bring columns the node never saw
        coef = np.zeros((old_coef.shape[0], len(columns)), dtype=np.float32)
        coef[:, np.searchsorted(columns, old_columns)] = old_coef
        intercept = old_intercept.copy()
        present, counts = np.unique(labels, return_counts=True)
        balanced = len(labels) / (len(present) * counts) if self.class_weight == "balanced" else np.ones(len(present))
        weight = dict(zip(present.tolist(), balanced.tolist()))
        if len(present) == 2:  # one binary margin, stored as +-half on the two children (as ``_fit_node`` does)
            negative, positive = present.tolist()
            result = refit_squared_hinge(sub, labels, np.array([positive]), 2 * coef[[positive]],
                                         2 * intercept[[positive]], self.C, {positive: weight[positive]},
                                         rest_weight=weight[negative])
            coef[[negative, positive]] = np.vstack([-result.coef, result.coef]) / 2
            intercept[[negative, positive]] = np.array([-result.intercept[0], result.intercept[0]]) / 2
            return columns, coef, intercept
        problems = np.array(sorted(set(children) & set(present.tolist())))
        if len(problems):
            result = refit_squared_hinge(sub, labels, problems, coef[problems], intercept[problems], self.C,
                                         {c: weight[c] for c in problems.tolist()})
            coef[problems], intercept[problems] = result.coef, result.intercept
        return columns, coef, intercept

    def _leaf_gathers(self) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
        """node -> (the leaves under it, the child each of them goes through): a node's scores are added to
        the leaves under it only."""
        gathers = getattr(self, "leaf_gathers_", None)
        if gathers is None:
            pairs: dict[tuple, tuple[list[int], list[int]]] = {node: ([], []) for node in self.nodes_}
            for leaf, edges in enumerate(self.edges_):
                for node, child in edges:
                    if node in pairs:
                        pairs[node][0].append(leaf)
                        pairs[node][1].append(child)
            gathers = {node: (np.asarray(leaves, dtype=np.intp), np.asarray(children, dtype=np.intp))
                       for node, (leaves, children) in pairs.items()}
            self.leaf_gathers_ = gathers
        return gathers

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "nodes_")
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=False)
        gathers = self._leaf_gathers()
        X = X.tocsc()  # each node takes its columns: a slice per column in CSC, a pass over every row in CSR
        # leaves x rows: each leaf's scores are one contiguous row, so adding a node's child scores to the
        # leaves under it is a row gather, and a node touches only its own leaves
        scores = np.zeros((len(self.classes_), X.shape[0]), dtype=np.float32)
        for node, (columns, coef, intercept) in self.nodes_.items():
            width = coef.shape[0]
            node_scores = np.asarray(X[:, columns] @ coef.T).T
            node_scores += intercept[:width, None]
            leaves, children = gathers[node]
            scores[leaves] += node_scores[children]
        return scores.T

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(axis=1)]


def _node_matrix(X, rows: np.ndarray, also: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
    """(the columns a node's ``rows`` use, plus ``also``; those rows over those columns). The root node has every
    row: no row copy."""
    sub = X if len(rows) == X.shape[0] else X[rows]
    columns = np.flatnonzero(np.bincount(sub.indices, minlength=X.shape[1]))
    if also is not None:
        columns = np.union1d(also, columns)
    return columns.astype(np.int32), sub[:, columns]
