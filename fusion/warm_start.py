"""Warm-started refits of one-vs-rest linear SVM problems: the parent's weights as the starting point.

``LinearSVC`` (liblinear) solves each one-vs-rest problem from zero and cannot start from a solution. When a
few rows are added to or relabelled in a problem of tens of thousands, its optimum moves little, so solving
the same objective from the parent's weights takes a few gradient steps instead of a fit from scratch.

The objective is liblinear's L2-regularised squared hinge (``LinearSVC``'s default loss), intercept
included as a regularised weight on a constant feature (``intercept_scaling=1``), one problem per column:

    f(w) = 1/2 |w|^2 + C * sum_i s_i * max(0, 1 - y_i * (x_i . w))^2

with ``s_i`` the sample's class weight (the positive class's ``balanced`` weight, 1 for the rest, as liblinear
weighs one-vs-rest problems). The problem is strictly convex, so its optimum is unique: a warm start reaches
the solution a cold fit reaches, up to the solvers' tolerances. The columns of a node are solved together
(their objectives add up), so each step is one pass of sparse products over the node's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class WarmFit:
    """Weights of ``k`` one-vs-rest problems over ``d`` columns, and how the solver got there."""

    coef: np.ndarray  # (k, d) float32
    intercept: np.ndarray  # (k,) float32
    iterations: int
    gradient_ratio: float  # |grad f(w)| / |grad f(0)| at the end


def problem_costs(labels: np.ndarray, problems: np.ndarray, class_weight: dict[int, float] | None,
                  rest_weight: float = 1.0) -> np.ndarray:
    """``(rows, k)`` sample costs: a positive row of problem ``c`` weighs ``class_weight[c]``, every other row
    ``rest_weight`` (1 in one-vs-rest problems; a two-class problem weighs its negative class too)."""
    costs = np.full((len(labels), len(problems)), float(rest_weight))
    if class_weight:
        for j, c in enumerate(problems):
            costs[labels == c, j] = class_weight.get(int(c), 1.0)
    return costs


def refit_squared_hinge(X: sp.csr_matrix, labels: np.ndarray, problems: np.ndarray, coef0: np.ndarray,
                        intercept0: np.ndarray, C: float, class_weight: dict[int, float] | None = None,
                        rest_weight: float = 1.0, tol: float = 1e-3, max_iter: int = 50) -> WarmFit:
    """Solve problem ``c`` ("label == c" against every other row) for each ``c`` in ``problems``, starting at
    ``coef0`` (``(k, d)``) and ``intercept0``.

    Newton steps as in liblinear's primal solver: each direction from conjugate gradients on the generalised
    Hessian, whose products only read the rows inside a margin, then a backtracking line search. Stops when the
    gradient's norm falls to ``tol`` times its norm at zero weights, scaled as liblinear scales it (by the
    smaller class's share of the rows), or after ``max_iter`` Newton steps. liblinear's primal solver stops at
    ``tol = 0.01``; there the parent's weights often count as solved already, and relabelled rows stay less
    learned than after a fit from scratch, hence a tenth of it by default.
    """
    n, d = X.shape
    k = len(problems)
    X = sp.csr_matrix(X, dtype=np.float64)
    Y = np.where(labels[:, None] == np.asarray(problems)[None, :], 1.0, -1.0)
    S = C * problem_costs(labels, np.asarray(problems), class_weight, rest_weight)

    def value_and_slack(W: np.ndarray) -> tuple[float, np.ndarray]:
        slack = np.maximum(0.0, 1.0 - Y * _times(X, W))
        return 0.5 * float(np.sum(W * W)) + float(np.sum(S * slack * slack)), slack

    def gradient(W: np.ndarray, slack: np.ndarray) -> np.ndarray:
        return W + _transposed_times(X, -2.0 * S * Y * slack)

    zero = np.zeros((k, d + 1))
    zero_norm = max(float(np.linalg.norm(gradient(zero, value_and_slack(zero)[1]))), 1e-300)
    positives = (Y > 0).sum(axis=0)
    share = float(np.min(np.minimum(positives, n - positives))) / n if n else 1.0
    target = tol * max(share, 1.0 / n) * zero_norm
    W = np.hstack([np.asarray(coef0, dtype=np.float64).reshape(k, d),
                   np.asarray(intercept0, dtype=np.float64).reshape(k, 1)])
    value, slack = value_and_slack(W)
    steps = 0
    for steps in range(max_iter + 1):
        grad = gradient(W, slack)
        norm = float(np.linalg.norm(grad))
        if norm <= target or steps == max_iter:
            break
        direction = _newton_direction(X, S, slack > 0, grad)
        slope = float(np.sum(grad * direction))
        step = 1.0
        while True:  # backtracking (Armijo): the squared hinge's Hessian is only piecewise constant
            trial_value, trial_slack = value_and_slack(W + step * direction)
            if trial_value <= value + 0.01 * step * slope or step < 1e-6:
                break
            step /= 2
        W, value, slack = W + step * direction, trial_value, trial_slack
    return WarmFit(coef=W[:, :d].astype(np.float32), intercept=W[:, d].astype(np.float32), iterations=steps,
                   gradient_ratio=norm / zero_norm)


def _times(X: sp.csr_matrix, W: np.ndarray) -> np.ndarray:
    """``(rows, k)`` margins of ``W = [coef | intercept]`` (the intercept is the weight of a constant feature)."""
    return np.asarray(X @ W[:, :-1].T) + W[:, -1]


def _transposed_times(X: sp.csr_matrix, G: np.ndarray, Xt: sp.csr_matrix | None = None) -> np.ndarray:
    """``(k, d + 1)``: ``[X' G | column sums of G]``, the gradient of the margins' terms; ``Xt``: ``X'`` as CSR,
    when the product is taken often enough to pay for the transposed copy."""
    return np.hstack([np.asarray((X.T if Xt is None else Xt) @ G).T, G.sum(axis=0)[:, None]])


def _newton_direction(X: sp.csr_matrix, S: np.ndarray, active: np.ndarray, grad: np.ndarray,
                      max_cg: int = 100) -> np.ndarray:
    """Approximately solve ``H p = -grad`` by conjugate gradients preconditioned with ``H``'s diagonal (as
    liblinear's primal solver does); ``H p = p + 2 X_I' (S_I * X_I p)`` over the rows ``I`` inside a margin of
    their problem (each problem has its own rows, masked in ``D``). On the columns no such row uses ``H`` is the
    identity, so there ``p = -grad`` exactly and the iterations run over the other columns only."""
    rows = np.flatnonzero(active.any(axis=1))
    d = X.shape[1]
    Xi = X[rows]
    used = np.flatnonzero(np.bincount(Xi.indices, minlength=d))
    Xi = Xi[:, used]
    keep = np.append(used, d)  # the intercept's column is always in play
    D = 2.0 * S[rows] * active[rows]
    squared = Xi.copy()
    squared.data **= 2
    inverse_diagonal = 1.0 / (1.0 + _transposed_times(squared, D))
    Xit = Xi.T.tocsr()  # read at every conjugate-gradient step

    def hess(P: np.ndarray) -> np.ndarray:
        return P + _transposed_times(Xi, D * _times(Xi, P), Xit)

    direction = -grad
    direction[:, keep] = _preconditioned_cg(hess, grad[:, keep], inverse_diagonal, max_cg)
    return direction


def _preconditioned_cg(hess, grad: np.ndarray, inverse_diagonal: np.ndarray, max_cg: int) -> np.ndarray:
    """``p`` with ``hess(p) ~ -grad``: the residual down to a tenth of ``grad`` (an inexact Newton step)."""
    p = np.zeros_like(grad)
    r = -grad
    z = inverse_diagonal * r
    q = z.copy()
    rz = float(np.sum(r * z))
    stop = (0.1 ** 2) * float(np.sum(r * r))
    for _ in range(max_cg):
        Hq = hess(q)
        alpha = rz / float(np.sum(q * Hq))
        p += alpha * q
        r -= alpha * Hq
        if float(np.sum(r * r)) <= stop:
            break
        z = inverse_diagonal * r
        new_rz = float(np.sum(r * z))
        q = z + (new_rz / rz) * q
        rz = new_rz
    return p
