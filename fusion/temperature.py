"""Temperature calibration of ``FusionTagger``'s stacker: one temperature fitted on out-of-fold stacker logits,
and one per set of modalities a product may bring (``pattern_temperatures_``), fitted on the training rows that
have those modalities with the others masked, refitted on a calibration set where it has enough of them.

Plain functions over arrays (the fitted values live on the ``FusionTagger``; see ``skutag.fusion.stacking``).
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
from scipy.optimize import minimize_scalar

# a temperature of its own for a set of modalities when this many training rows have them
MIN_PATTERN_ROWS = 30
# ... refitted on a calibration set when this many of its rows have them (a calibration set has 10 or more),
# moved from the training value by n / (n + MIN_PATTERN_ROWS) in log space
MIN_CALIBRATION_PATTERN_ROWS = 10
PATTERN_ROWS_CAP = 5000  # rows sampled per set of modalities to fit its temperature (one number)
MAX_BLOCKS_FOR_ALL_SETS = 5
TEMPERATURE_ROWS = 20000  # rows a temperature is fitted on at most (a sample of the held-out rows)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed in place of a shifted copy of ``logits``."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def chunk_answers(proba: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's answer from its calibrated probabilities: (top class, its probability, log-likelihood of
    ``truth``), the out-of-fold answers thresholds and the precision expectation are fitted on."""
    top = proba.argmax(axis=1)
    picked = np.arange(len(proba))
    return top, proba[picked, top], np.log(np.clip(proba[picked, truth], 1e-12, 1))


def fit_temperature(logits: np.ndarray, y_enc: np.ndarray, *, overwrite: bool = False) -> float:
    """The temperature minimising the negative log-likelihood of ``y_enc`` under ``softmax(logits / T)``, on
    at most ``TEMPERATURE_ROWS`` rows (one parameter: a sample is plenty), in float32 with each row's maximum
    taken out once (the same for every T), so each step of the search is one pass over the sample.
    ``overwrite``: float32 ``logits`` the caller no longer needs are shifted in place instead of copied."""
    rows = np.arange(len(y_enc))
    if len(rows) > TEMPERATURE_ROWS:
        rows = np.sort(np.random.RandomState(0).choice(len(y_enc), TEMPERATURE_ROWS, replace=False))
    if overwrite and len(rows) == len(logits) and logits.dtype == np.float32 and logits.flags.c_contiguous:
        L = logits
    else:
        L = np.asarray(logits[rows], dtype=np.float32)
    L -= L.max(axis=1, keepdims=True)  # <= 0: exp(L / T) never overflows
    truth = L[np.arange(len(rows)), y_enc[rows]].astype(np.float64)

    scaled = np.empty_like(L)  # one buffer for every step of the search

    def nll(log_t):
        t = float(np.exp(log_t))
        np.divide(L, np.float32(t), out=scaled)
        np.exp(scaled, out=scaled)
        total = scaled.sum(axis=1, dtype=np.float64)
        return float(np.mean(np.log(total) - truth / t))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def stacked_logits(Z: np.ndarray, rows: np.ndarray, masks: np.ndarray, owner: np.ndarray,
                   stackers: list[tuple], chunk: int = 4096, dtype=np.float64) -> np.ndarray:
    """Logits of training ``rows`` (modalities ``masks[i]``) from the stacker that did not see each row;
    ``chunk`` rows at a time, so the masked copy of their block scores stays small whatever ``rows`` is.
    ``dtype``: of the result (each chunk is computed in float64 and rounded once)."""
    out = np.zeros((len(rows), Z.shape[2]), dtype=dtype)
    masks = np.asarray(masks)
    for j, (bias, a, d) in enumerate(stackers):
        weights = a[:, None] + d
        pick = np.flatnonzero(owner[rows] == j)
        for start in range(0, len(pick), chunk):
            part = pick[start:start + chunk]
            picked = Z[:, rows[part]] * masks[part].T[:, :, None]
            out[part] = bias + np.einsum("bnk,bk->nk", picked, weights)
    return out


def fit_pattern_temperatures(Z, y_enc, present, owner, stackers, rng) -> dict[tuple[bool, ...], float]:
    """A temperature per set of modalities a product may bring (when the model has two or more),
    fitted on the out-of-fold stacker logits of the training rows that have them, the others masked: a
    model whose titles make it sure of every training row must not be as sure of a product with no
    title. Every set up to ``MAX_BLOCKS_FOR_ALL_SETS`` modalities; beyond, the sets seen in training
    and the single modalities."""
    usable = np.flatnonzero(present.any(axis=0))
    if len(usable) < 2:
        return {}
    table = {}
    for pattern in modality_sets(present, usable):
        rows = np.flatnonzero(present[:, pattern].all(axis=1))
        if len(rows) < MIN_PATTERN_ROWS or len(np.unique(y_enc[rows])) < 2:
            continue
        if len(rows) > PATTERN_ROWS_CAP:
            rows = np.sort(rng.choice(rows, PATTERN_ROWS_CAP, replace=False))
        masks = np.broadcast_to(pattern, (len(rows), len(pattern)))
        logits = stacked_logits(Z, rows, masks, owner, stackers, dtype=np.float32)  # what the fit reads
        table[tuple(bool(x) for x in pattern)] = fit_temperature(logits, y_enc[rows], overwrite=True)
    return table


def refit_pattern_temperatures(table: dict[tuple[bool, ...], float], Z, present, y_enc,
                               logits: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict[tuple[bool, ...], float]:
    """``table`` refitted on calibration rows (block scores ``Z``, modalities ``present``, classes ``y_enc``;
    ``logits(Z, masks)``: the fitted stacker's), for each set of modalities enough of those rows have."""
    table = dict(table)
    for pattern in table:  # refitted where the calibration rows have that set of modalities
        rows = np.flatnonzero(present[:, np.asarray(pattern)].all(axis=1))
        if len(rows) >= MIN_CALIBRATION_PATTERN_ROWS and len(np.unique(y_enc[rows])) >= 2:
            masks = np.broadcast_to(np.asarray(pattern), (len(rows), len(pattern)))
            fitted = fit_temperature(logits(Z[:, rows], masks), y_enc[rows])
            trust = len(rows) / (len(rows) + MIN_PATTERN_ROWS)  # a few rows move it only part of the way
            table[pattern] = float(np.exp(trust * np.log(fitted) + (1 - trust) * np.log(table[pattern])))
    return table  # the others keep the training rows' temperature: nothing says more


def row_temperatures(present: np.ndarray, temperature: float,
                     table: dict[tuple[bool, ...], float]) -> np.ndarray:
    """Each row's temperature (a column): its modality set's, else ``temperature`` (fitted on all rows)."""
    temperatures = np.full((len(present), 1), float(temperature))
    for pattern, value in table.items():  # {}: fitted before
        temperatures[(present == np.asarray(pattern)).all(axis=1)] = value
    return temperatures


def modality_sets(present: np.ndarray, usable: np.ndarray) -> list[np.ndarray]:
    """Boolean block masks: every non-empty set of the ``usable`` blocks, or (many blocks) each block alone,
    the sets rows have in training and those sets with one block missing."""
    def mask(blocks) -> np.ndarray:
        out = np.zeros(present.shape[1], dtype=bool)
        out[list(blocks)] = True
        return out

    if len(usable) <= MAX_BLOCKS_FOR_ALL_SETS:
        return [mask(combo) for size in range(1, len(usable) + 1) for combo in itertools.combinations(usable, size)]
    seen = {tuple(np.flatnonzero(row)) for row in present[present.any(axis=1)]}
    sets = {(b,) for b in usable} | seen | {tuple(b for b in s if b != drop) for s in seen for drop in s if len(s) > 1}
    return [mask(blocks) for blocks in sorted(sets, key=lambda blocks: (len(blocks), blocks))]
