"""``FusionTagger``: a stacked, calibrated scikit-learn classifier over per-modality feature blocks.

How it works
------------
``X`` holds the features of every modality side by side; ``blocks`` names which columns belong to which
modality (vision, ocr, title, price ...). For each block a base estimator is trained, and its
**out-of-fold** scores (every training row scored by a model that never saw it) become the input of a small
stacker:

    logit_k(x) = bias_k + sum_b (a_b + d_bk) * z_bk(x)

where ``z_b(x)`` are the block's centred log-probabilities (or decision scores) and ``a_b + d_bk`` is how
much the stacker trusts modality ``b`` for class ``k`` (``d`` is L2-regularised towards a shared weight per
modality). Because the stacker only sees out-of-fold scores, a modality that fits the training set
perfectly cannot drown the others, and its weight reflects its held-out reliability.

A block is *missing* for a row when all its entries are NaN (dense) or it has no stored entries
(sparse); then ``z_b = 0`` (no evidence) and the row is scored by the other modalities. During fitting,
rows are replayed with modalities dropped at random (``modality_dropout``), so the stacker also learns to
decide from incomplete evidence.

Probabilities are calibrated by a temperature fitted on held-out stacker outputs, one per set of modalities
a product may bring (``pattern_temperatures_``; ``temperature_`` for a set too rare to fit; see
``skutag.fusion.temperature``). ``oof_predictions_`` / ``oof_confidences_`` keep the held-out answers for
choosing per-class decision thresholds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .estimators import bind_classes, block_scores, fit_and_score, fits_one_at_a_time, fold_jobs, make_folds
from .gate import top_candidates
from .single_block import fit_single_block
from .stacker_loss import StackerLoss
from .temperature import (
    TEMPERATURE_ROWS,
    chunk_answers,
    fit_pattern_temperatures,
    fit_temperature,
    refit_pattern_temperatures,
    row_temperatures,
    softmax,
    stacked_logits,
)

# a catalog above this many rows gets at most LARGE_CATALOG_CV folds: each fold still has thousands of rows,
# and the out-of-fold scores cost about one more fit of the base estimators instead of cv - 1 more
LARGE_CATALOG_ROWS = 20000
LARGE_CATALOG_CV = 2
CALIBRATIONS = ("temperature", "none")


@dataclass(frozen=True)
class _Block:
    name: str
    columns: np.ndarray  # column indices into X
    estimator: Any  # unfitted prototype


class FusionTagger(ClassifierMixin, BaseEstimator):
    """Stacked, calibrated fusion of per-modality classifiers.

    Parameters
    ----------
    blocks : None or sequence of (name, columns) or (name, columns, estimator)
        Which columns of ``X`` form each modality's block. ``columns`` is a slice, an index list or a
        boolean mask. None: all columns form one block named ``"features"``.
    base_estimator : estimator or None
        Used for blocks that name none. Default: ``LogisticRegression(max_iter=300)``.
    cv : int
        Folds for the out-of-fold block scores (at least 2).
    shuffle : bool
        Shuffle rows before making folds. False keeps each fold a contiguous run of rows within each class,
        so near-duplicate shots that sit together in a catalog (one photo session, one product's variants)
        land on the same side and held-out scores stay honest.
    meta_l2 : float
        Strength of the pull of class-specific modality weights towards one weight per modality,
        in pseudo-rows per class.
    modality_dropout : float
        Share of training rows (with two or more modalities) replayed with some modalities dropped.
    calibration : {"temperature", "none"}
    max_iter : int
        Iterations of the stacker's L-BFGS fit.
    meta_max_rows : int
        The stacker (few parameters) is fitted on at most this many rows, sampled at random; its calibration
        on the others (out-of-fold stackers only on catalogs this small). One modality: no stacker at all.
    n_jobs : int or None
        Base-estimator fits (the folds and the final fit of each block) run in this many threads
        (None: 1; -1: one per CPU). scikit-learn's liblinear and L-BFGS solvers release the GIL, so on
        large catalogs two cores nearly halve the fit; memory grows by one fit's working set per thread.
    random_state : int, RandomState or None
    oof_without : str or None
        A block (``"ocr"``) to answer the training rows without as well: ``oof_without_`` then holds each row's
        ``oof_top_k`` leading candidates out of fold with that block left out (the OCR gate is fitted on them).
    oof_top_k : int
    """

    def __init__(
        self,
        blocks: Sequence[tuple] | None = None,
        base_estimator: Any = None,
        cv: int = 5,
        shuffle: bool = True,
        meta_l2: float = 10.0,
        modality_dropout: float = 0.3,
        calibration: str = "temperature",
        max_iter: int = 200,
        meta_max_rows: int = 20000,
        n_jobs: int | None = None,
        random_state: Any = None,
        oof_without: str | None = None,
        oof_top_k: int = 3,
    ):
        self.blocks = blocks
        self.base_estimator = base_estimator
        self.cv = cv
        self.shuffle = shuffle
        self.meta_l2 = meta_l2
        self.modality_dropout = modality_dropout
        self.calibration = calibration
        self.max_iter = max_iter
        self.meta_max_rows = meta_max_rows
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.oof_without = oof_without
        self.oof_top_k = oof_top_k

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = True
        return tags

    def _validate(self, X, reset: bool = False):
        return validate_data(self, X, accept_sparse="csr", ensure_all_finite="allow-nan", dtype=np.float64, reset=reset)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, groups=None):
        """``groups``: rows that must stay on one side of every out-of-fold split (photo series), or None."""
        X, y = validate_data(self, X, y, accept_sparse="csr", ensure_all_finite="allow-nan", dtype=np.float64)
        check_classification_targets(y)
        self._check_params()
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"FusionTagger needs samples of at least 2 classes; got 1 class ({self.classes_[0]!r})")
        n_classes = len(self.classes_)
        rng = check_random_state(self.random_state)
        blocks = self._resolve_blocks(X.shape[1], self.classes_)
        folds = self._folds(y_enc, rng, None if groups is None else np.asarray(groups))
        if len(blocks) == 1 and folds and fits_one_at_a_time(blocks[0].estimator) and self._fit_streamed(
                blocks[0], X, y_enc, folds, rng):
            return self

        Z = np.zeros((len(blocks), X.shape[0], n_classes), dtype=np.float32)
        present = np.zeros((X.shape[0], len(blocks)), dtype=bool)
        self.base_estimators_: list[Any] = []
        for b, block in enumerate(blocks):
            Xb, present[:, b] = _block_matrix(X, block.columns)
            fitted = self._fit_block(block, Xb, y_enc, present[:, b], folds, Z[b])
            self.base_estimators_.append(fitted)
            if fitted is None:
                present[:, b] = False
                Z[b] = 0.0
        self.block_names_ = [block.name for block in blocks]
        self.block_columns_ = [block.columns for block in blocks]
        self.block_coverage_ = present.mean(axis=0)

        owner, stackers, held_out = self._fit_stacker(Z, y_enc, present, folds, rng)
        self.temperature_ = 1.0
        self.pattern_temperatures_: dict[tuple[bool, ...], float] = {}
        if self.calibration == "temperature":
            sample = held_out if len(held_out) <= TEMPERATURE_ROWS else np.sort(rng.choice(held_out, TEMPERATURE_ROWS, replace=False))
            self.temperature_ = fit_temperature(stacked_logits(Z, sample, present[sample], owner, stackers,
                                                               dtype=np.float32), y_enc[sample], overwrite=True)
            only_held_out = np.zeros_like(present)
            only_held_out[held_out] = present[held_out]
            self.pattern_temperatures_ = fit_pattern_temperatures(Z, y_enc, only_held_out, owner, stackers, rng)
        self._oof_answers(Z, y_enc, present, owner, stackers)
        return self

    def _fit_streamed(self, block: _Block, X, y_enc, folds, rng) -> bool:
        """One modality, fold models fitted one at a time: answers without the rows x classes matrix
        (``fusion.single_block``). False when the block cannot be fitted (the matrix path says how)."""
        Xb, present = _block_matrix(X, block.columns)
        if not present.any() or len(np.unique(y_enc[present])) < 2:
            return False
        n_classes = len(self.classes_)
        done = fit_single_block(block.estimator, Xb, y_enc, present, folds, n_classes,
                                self.calibration == "temperature", rng)
        self.base_estimators_ = [done.estimator]
        self.block_names_, self.block_columns_ = [block.name], [block.columns]
        self.block_coverage_ = np.array([present.mean()])
        self.bias_, self.block_weight_, self.class_weight_ = np.zeros(n_classes), np.ones(1), np.zeros((1, n_classes))
        self.n_iter_ = 1  # nothing to iterate: no stacker
        self.temperature_, self.pattern_temperatures_ = done.temperature, {}
        self.oof_predictions_, self.oof_confidences_ = self.classes_[done.predictions], done.confidences
        self.oof_without_ = None  # one block: nothing to answer without
        self.oof_log_loss_ = done.log_loss
        return True

    def _fit_stacker(self, Z, y_enc, present, folds, rng) -> tuple[np.ndarray, list[tuple], np.ndarray]:
        """The stacker, and what its calibration is fitted on: ``(owner, stackers, held_out)``, where
        ``stackers[owner[i]]`` scores training row ``i`` and no row of ``held_out`` was seen by its stacker.

        One usable modality: no stacker (the block's out-of-fold scores are the logits; every row is held
        out). Several: one stacker; on a catalog above ``meta_max_rows`` rows it is fitted on a sample of
        that many and the other rows are held out; on a smaller one, out-of-fold stackers as well."""
        n_blocks, n_rows, n_classes = Z.shape
        usable = np.flatnonzero(present.any(axis=0))
        if len(usable) <= 1:
            self.bias_ = np.zeros(n_classes)
            self.block_weight_ = np.zeros(n_blocks)
            self.block_weight_[usable] = 1.0
            self.class_weight_ = np.zeros((n_blocks, n_classes))
            self.n_iter_ = 1  # nothing to iterate: no stacker
            return np.zeros(n_rows, dtype=int), [(self.bias_, self.block_weight_, self.class_weight_)], np.arange(n_rows)
        if n_rows > int(self.meta_max_rows):
            sample = np.sort(rng.choice(n_rows, int(self.meta_max_rows), replace=False))
            rows, mask = _augment(present[sample], self.modality_dropout, rng)
            self.bias_, self.block_weight_, self.class_weight_, self.n_iter_ = self._fit_meta(Z, y_enc, sample[rows], mask)
            held_out = np.setdiff1d(np.arange(n_rows), sample)
            return np.zeros(n_rows, dtype=int), [(self.bias_, self.block_weight_, self.class_weight_)], held_out
        rows, mask = _augment(present, self.modality_dropout, rng)
        self.bias_, self.block_weight_, self.class_weight_, self.n_iter_ = self._fit_meta(Z, y_enc, rows, mask)
        owner, stackers = self._oof_stackers(Z, y_enc, present, folds, rng)
        held_out = np.flatnonzero(owner < len(stackers) - 1) if len(stackers) > 1 else np.arange(n_rows)
        return owner, stackers, held_out

    def _oof_answers(self, Z, y_enc, present, owner, stackers, chunk: int = 4096) -> None:
        """``oof_predictions_``, ``oof_confidences_`` and ``oof_log_loss_``, a chunk of rows at a time (never
        an n x classes matrix of the whole catalog)."""
        n_rows = Z.shape[1]
        predictions = np.empty(n_rows, dtype=int)
        self.oof_confidences_ = np.empty(n_rows, dtype=np.float32)
        dropped = self.block_names_.index(self.oof_without) if self.oof_without in self.block_names_ else None
        k = max(1, min(int(self.oof_top_k), len(self.classes_)))
        top = None if dropped is None else (np.empty((n_rows, k), np.int32), np.empty((n_rows, k), np.float32))
        log_loss = 0.0
        for start in range(0, n_rows, chunk):
            rows = np.arange(start, min(start + chunk, n_rows))
            logits = stacked_logits(Z, rows, present[rows], owner, stackers)
            proba = softmax(logits / self._row_temperatures(present[rows]))  # as serving will scale these rows
            predictions[rows], self.oof_confidences_[rows], log_likelihood = chunk_answers(proba, y_enc[rows])
            log_loss -= float(np.sum(log_likelihood))
            if dropped is not None:  # the same rows as serving scores them before reading that block
                kept = present[rows].copy()
                kept[:, dropped] = False
                proba = softmax(stacked_logits(Z, rows, kept, owner, stackers) / self._row_temperatures(kept))
                top[0][rows], top[1][rows] = top_candidates(proba, k)
        # out-of-fold leading candidates (class indices, probabilities) without block ``oof_without``, or None
        self.oof_without_ = top
        self.oof_predictions_ = self.classes_[predictions]
        self.oof_log_loss_ = log_loss / max(n_rows, 1)

    def refit_temperature(self, X, y) -> "FusionTagger":
        """Fit the calibration temperature again on labelled rows the model never saw (a calibration set).
        Rows of classes the model does not know are ignored here."""
        check_is_fitted(self, "base_estimators_")
        y = np.asarray(y, dtype=object)
        known = np.isin(y, self.classes_)
        if self.calibration != "temperature" or not known.any():
            return self
        Z, present = self._block_scores(X)
        Z, present, y_enc = Z[:, known], present[known], np.searchsorted(self.classes_, y[known])
        self.temperature_ = fit_temperature(self._logits(Z, present), y_enc)
        self.pattern_temperatures_ = refit_pattern_temperatures(self.pattern_temperatures_, Z, present, y_enc,
                                                                self._logits)
        return self

    def _check_params(self) -> None:
        if not isinstance(self.cv, (int, np.integer)) or self.cv < 2:
            raise ValueError(f"cv must be an integer >= 2, got {self.cv!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if not 0.0 <= float(self.modality_dropout) < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {self.modality_dropout!r}")
        if float(self.meta_l2) < 0:
            raise ValueError(f"meta_l2 must be >= 0, got {self.meta_l2!r}")

    def _resolve_blocks(self, n_features: int, classes=None) -> list[_Block]:
        default = self.base_estimator
        if default is None:
            from sklearn.linear_model import LogisticRegression

            default = LogisticRegression(max_iter=300)
        if self.blocks is None:
            return [_Block("features", np.arange(n_features), bind_classes(default, classes))]
        resolved, seen = [], set()
        for spec in self.blocks:
            if len(spec) not in (2, 3):
                raise ValueError(f"a block is (name, columns) or (name, columns, estimator), got {spec!r}")
            name, columns = spec[0], spec[1]
            estimator = spec[2] if len(spec) == 3 and spec[2] is not None else default
            if name in seen:
                raise ValueError(f"block name {name!r} appears twice")
            seen.add(name)
            cols = np.arange(n_features)[columns]
            if cols.size == 0:
                raise ValueError(f"block {name!r} selects no columns")
            resolved.append(_Block(str(name), cols, bind_classes(estimator, classes)))
        return resolved

    def _folds(self, y_enc: np.ndarray, rng, groups: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        n_splits = int(self.cv) if len(y_enc) <= LARGE_CATALOG_ROWS else min(int(self.cv), LARGE_CATALOG_CV)
        seed = rng.randint(np.iinfo(np.int32).max) if self.shuffle else None
        return make_folds(y_enc, n_splits, shuffle=bool(self.shuffle), seed=seed, groups=groups)

    def _fit_block(self, block: _Block, Xb, y_enc, present, folds, Z_out) -> Any:
        """Out-of-fold scores into ``Z_out``; returns the block's estimator fitted on all its rows (or None)."""
        rows = np.flatnonzero(present)
        if len(rows) == 0 or len(np.unique(y_enc[rows])) < 2:
            return None
        n_classes = Z_out.shape[1]
        if not folds:  # too few rows for held-out scores: in-sample scores are all there is
            fitted = clone(block.estimator).fit(Xb[rows], y_enc[rows])
            Z_out[rows] = block_scores(fitted, Xb[rows], n_classes)
            return fitted
        jobs = fold_jobs(folds, present, y_enc)  # a fold without a model: its rows keep z = 0 (no evidence)
        # Fold models write their scores into Z_out and are dropped inside their job: only scores stay in memory.
        outputs = Parallel(n_jobs=1 if fits_one_at_a_time(block.estimator) else self.n_jobs, prefer="threads")(
            delayed(fit_and_score)(block.estimator, Xb, y_enc, train, test, n_classes, Z_out)
            for train, test in [*jobs, (rows, None)]
        )
        return outputs[-1]

    # ------------------------------------------------------------------ stacker
    def _fit_meta(self, Z, y_enc, rows, mask, start: tuple | None = None):
        """``start``: a stacker ``(bias, a, d)`` to start from (the loss is convex: the same optimum, fewer steps
        from a stacker fitted on most of the same rows)."""
        n_blocks, _, n_classes = Z.shape
        if len(rows) > int(self.meta_max_rows):
            keep = np.sort(np.random.RandomState(0).choice(len(rows), int(self.meta_max_rows), replace=False))
            rows, mask = rows[keep], mask[keep]
        theta0 = (np.concatenate([start[0], start[1], np.ravel(start[2])]) if start is not None else
                  np.concatenate([np.zeros(n_classes), np.ones(n_blocks), np.zeros(n_blocks * n_classes)]))
        n_unique = max(len(np.unique(rows)), 1)
        l2 = float(self.meta_l2) / n_unique
        shared_l2 = 0.1 * float(self.meta_l2) / n_unique  # keeps weights finite on separable data
        bias_l2 = 1e-3 / n_unique
        onehot_rows = y_enc[rows]
        Zr = _gather(Z, rows, mask)

        Zr = Zr.astype(np.float32, copy=False)
        # from a fitted stacker (out-of-fold stackers) a quarter of the steps suffices
        steps = int(self.max_iter) if start is None else max(int(self.max_iter) // 4, 10)
        loss = StackerLoss(Zr, onehot_rows, l2, shared_l2, bias_l2, threads=self._threads())
        try:
            result = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": steps})
        finally:
            loss.close()
        theta = result.x
        bias = theta[:n_classes]
        a = theta[n_classes:n_classes + n_blocks]
        d = theta[n_classes + n_blocks:].reshape(n_blocks, n_classes)
        return bias, a, d, max(int(result.nit), 1)

    def _threads(self) -> int:
        """``n_jobs`` as a thread count (None: 1; -1: one per CPU)."""
        if self.n_jobs is None:
            return 1
        return (os.cpu_count() or 1) if int(self.n_jobs) < 0 else max(1, int(self.n_jobs))

    def _oof_stackers(self, Z, y_enc, present, folds, rng) -> tuple[np.ndarray, list[tuple]]:
        """Stackers fitted without some rows: ``stackers[owner[i]]`` = ``(bias, a, d)`` never saw row ``i``.
        Rows no fold held out get the full stacker (the last)."""
        owner = np.full(Z.shape[1], -1)
        stackers: list[tuple] = []
        for train, test in folds:
            if len(np.unique(y_enc[train])) < 2:
                continue
            rows, mask = _augment(present[train], self.modality_dropout, rng)
            bias, a, d, _ = self._fit_meta(Z[:, train], y_enc[train], rows, mask,
                                           start=(self.bias_, self.block_weight_, self.class_weight_))
            owner[test] = len(stackers)
            stackers.append((bias, a, d))
        owner[owner < 0] = len(stackers)
        stackers.append((self.bias_, self.block_weight_, self.class_weight_))
        return owner, stackers

    def _row_temperatures(self, present: np.ndarray) -> np.ndarray:
        """Each row's temperature (a column): its modality set's, else the one fitted on all rows."""
        return row_temperatures(present, self.temperature_, self.pattern_temperatures_)

    def _logits(self, Z, present) -> np.ndarray:
        W = self.block_weight_[:, None] + self.class_weight_
        return self.bias_ + np.einsum("bnk,bk->nk", Z * present.T[:, :, None], W)

    # ------------------------------------------------------------------ predict
    def _block_scores(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self, "base_estimators_")
        X = self._validate(X)
        n_classes = len(self.classes_)
        Z = np.zeros((len(self.base_estimators_), X.shape[0], n_classes), dtype=np.float32)
        present = np.zeros((X.shape[0], len(self.base_estimators_)), dtype=bool)
        for b, (estimator, columns) in enumerate(zip(self.base_estimators_, self.block_columns_)):
            if estimator is None:
                continue
            Xb, present[:, b] = _block_matrix(X, columns)
            rows = np.flatnonzero(present[:, b])
            if len(rows):
                Z[b, rows] = block_scores(estimator, Xb[rows], n_classes)
        return Z, present

    def predict_proba(self, X) -> np.ndarray:
        Z, present = self._block_scores(X)
        return softmax(self._logits(Z, present) / self._row_temperatures(present))

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def explain(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(proba, contributions, present)``.

        ``contributions[i, b]`` is how far modality ``b`` pushes row ``i``'s predicted class above the
        average class (in logits, before temperature); ``present[i, b]`` whether the row had that modality.
        """
        Z, present = self._block_scores(X)
        logits = self._logits(Z, present)
        proba = softmax(logits / self._row_temperatures(present))
        top = proba.argmax(axis=1)
        W = self.block_weight_[:, None] + self.class_weight_
        per_block = Z * present.T[:, :, None] * W[:, None, :]  # (B, n, K)
        centred = per_block - per_block.mean(axis=2, keepdims=True)
        contributions = centred[:, np.arange(len(top)), top].T
        return proba, contributions, present

    @property
    def modality_set_temperatures_(self) -> dict[str, float]:
        """``pattern_temperatures_`` keyed by the modalities' names (``"vision+ocr"``)."""
        check_is_fitted(self, "base_estimators_")
        return {"+".join(n for n, on in zip(self.block_names_, pattern) if on): float(t)
                for pattern, t in self.pattern_temperatures_.items()}

    @property
    def modality_weights_(self) -> dict[str, float]:
        """Mean trust the stacker puts in each modality (across classes)."""
        check_is_fitted(self, "base_estimators_")
        W = self.block_weight_[:, None] + self.class_weight_
        return {name: float(W[b].mean()) for b, name in enumerate(self.block_names_)}


# ---------------------------------------------------------------------- helpers
def _block_matrix(X, columns: np.ndarray):
    """The block's columns with NaN filled by 0, and which rows have the block at all."""
    if sp.issparse(X):
        # every column (a one-block model): the rows as they are, not a copy of the whole matrix
        whole = len(columns) == X.shape[1] and np.array_equal(columns, np.arange(X.shape[1])) and X.format == "csr"
        Xb = X if whole else X[:, columns].tocsr()
        if Xb.nnz and (np.isnan(Xb.data).any() or not Xb.data.all()):
            Xb = X.copy() if Xb is X else Xb  # the caller's matrix is never changed
            Xb.data = np.nan_to_num(Xb.data, nan=0.0)
            Xb.eliminate_zeros()
        present = np.diff(Xb.indptr) > 0
        return Xb, present
    Xb = X[:, columns]
    nan = np.isnan(Xb)
    present = ~nan.all(axis=1)
    if nan.any():
        Xb = np.where(nan, 0.0, Xb)
    return Xb, present


def _augment(present: np.ndarray, dropout: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and modality masks of the stacker's training rows: every row once, plus replays of
    rows that have two or more modalities with some of them dropped."""
    n_rows = present.shape[0]
    rows = [np.arange(n_rows)]
    masks = [present.astype(np.float32)]
    multi = np.flatnonzero(present.sum(axis=1) >= 2)
    if dropout > 0 and len(multi):
        chosen = multi[rng.rand(len(multi)) < dropout]
        if len(chosen):
            keep = present[chosen] & (rng.rand(len(chosen), present.shape[1]) < 0.5)
            empty = ~keep.any(axis=1)
            for i in np.flatnonzero(empty):  # keep at least one modality
                keep[i, rng.choice(np.flatnonzero(present[chosen[i]]))] = True
            rows.append(chosen)
            masks.append(keep.astype(np.float32))
    return np.concatenate(rows), np.concatenate(masks)


def _gather(Z: np.ndarray, rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if len(rows) == Z.shape[1] and np.array_equal(rows, np.arange(Z.shape[1])) and mask.all():
        return Z
    return Z[:, rows] * mask.T[:, :, None]
