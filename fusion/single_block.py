"""Out-of-fold answers of a one-modality model without an n x classes score matrix.

With one modality there is no stacker: a row's logits are its block's out-of-fold scores, and all training needs of
them is a temperature (fitted on a sample) and each row's answer (its top class, that class's calibrated
probability, the log-likelihood of the truth). When the fold models are fitted one at a time (an estimator that
spreads its own work over the cores), the first fold's model scores the temperature sample, the temperature is
fitted, and from then on every scored chunk is turned into answers at once and dropped. Memory: a chunk of scores
and the sample's, never the catalogue's (``tests/test_fusion_stacking.py`` checks the answers equal the
matrix path's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from .estimators import SCORE_CHUNK, block_scores, fold_jobs, take_rows
from .temperature import TEMPERATURE_ROWS, chunk_answers, fit_temperature, softmax


@dataclass
class SingleBlockFit:
    estimator: object  # fitted on every row that has the block
    temperature: float
    predictions: np.ndarray  # class codes, one per training row
    confidences: np.ndarray  # float32
    log_loss: float  # mean over the training rows


def fit_single_block(estimator, Xb, y_enc: np.ndarray, present: np.ndarray, folds: list, n_classes: int,
                     calibrate: bool, rng) -> SingleBlockFit:
    """``estimator`` fitted fold by fold on the block's rows (``Xb``, ``present``) and on all of them, the answers
    streamed. A row without the block, or in a fold with no model, scores 0 for every class (uniform)."""
    n_rows = len(y_enc)
    predictions = np.zeros(n_rows, dtype=int)
    confidences = np.full(n_rows, 1.0 / n_classes, dtype=np.float32)
    log_likelihood = np.full(n_rows, -np.log(n_classes))
    temperature = 1.0
    for k, (train, test) in enumerate(fold_jobs(folds, present, y_enc)):
        model = clone(estimator).fit(take_rows(Xb, train), y_enc[train])
        if k == 0 and calibrate:
            sample = test if len(test) <= TEMPERATURE_ROWS else np.sort(rng.choice(test, TEMPERATURE_ROWS, replace=False))
            temperature = fit_temperature(block_scores(model, Xb[sample], n_classes).astype(np.float64), y_enc[sample])
        for start in range(0, len(test), SCORE_CHUNK):
            rows = test[start:start + SCORE_CHUNK]
            proba = softmax(block_scores(model, Xb[rows], n_classes).astype(np.float64) / temperature)
            predictions[rows], confidences[rows], log_likelihood[rows] = chunk_answers(proba, y_enc[rows])
        del model
    every = np.flatnonzero(present)
    final = clone(estimator).fit(take_rows(Xb, every), y_enc[every])
    return SingleBlockFit(final, float(temperature), predictions, confidences, float(-log_likelihood.sum() / max(n_rows, 1)))
