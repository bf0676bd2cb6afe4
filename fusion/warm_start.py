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
    smaller class's share of the rows), or after ``max_iter`` Newton steps.
    """
    n, d = X.shape
    k = len(problems)
    Xb = sp.hstack([sp.csr_matrix(X, dtype=np.float64), np.ones((n, 1))], format="csr")  # intercept column
    Xbt = Xb.T.tocsr()  # gradient products read columns: one transpose, not one per step
    Y = np.where(labels[:, None] == np.asarray(problems)[None, :], 1.0, -1.0)
    S = C * problem_costs(labels, np.asarray(problems), class_weight, rest_weight)

    def value_and_slack(W: np.ndarray) -> tuple[float, np.ndarray]:
        slack = np.maximum(0.0, 1.0 - Y * np.asarray(Xb @ W.T))
        return 0.5 * float(np.sum(W * W)) + float(np.sum(S * slack * slack)), slack

    def gradient(W: np.ndarray, slack: np.ndarray) -> np.ndarray:
        return W + np.asarray(Xbt @ (-2.0 * S * Y * slack)).T

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
        direction = _newton_direction(Xb, S, slack > 0, grad)
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


def _newton_direction(Xb: sp.csr_matrix, S: np.ndarray, active: np.ndarray, grad: np.ndarray,
                      max_cg: int = 100) -> np.ndarray:
    """Approximately solve ``H p = -grad`` by conjugate gradients; ``H p = p + 2 X_I' (S_I * X_I p)`` over the
    rows ``I`` inside a margin of their problem (each problem has its own rows, masked in ``D``)."""
    rows = np.flatnonzero(active.any(axis=1))
    Xi = Xb[rows]
    Xit = Xi.T.tocsr()
    D = 2.0 * S[rows] * active[rows]

    def hess(P: np.ndarray) -> np.ndarray:
        return P + np.asarray(Xit @ (D * np.asarray(Xi @ P.T))).T

    p = np.zeros_like(grad)
    r = -grad
    q = r.copy()
    rr = float(np.sum(r * r))
    stop = (0.1 ** 2) * rr  # an inexact Newton step: the residual a tenth of the gradient
    for _ in range(max_cg):
        Hq = hess(q)
        alpha = rr / float(np.sum(q * Hq))
        p += alpha * q
        r -= alpha * Hq
        new_rr = float(np.sum(r * r))
        if new_rr <= stop:
            break
        q = r + (new_rr / rr) * q
        rr = new_rr
    return p
