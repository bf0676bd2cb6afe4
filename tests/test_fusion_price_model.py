"""The price block's estimator: a per-category density of the standardised log price, shrunk towards the
catalogue's for categories with few prices, as probabilities the stack reads like any other block's."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from skutag.fusion.price_model import PriceDensityClassifier


def _block(z: np.ndarray) -> np.ndarray:
    """Price block rows as fusion.features writes them: 1, z, z^2, z^3 / 3."""
    return np.column_stack([np.ones_like(z), z, z * z, z ** 3 / 3])


def test_prices_tell_cheap_from_dear_categories_and_sparse_equals_dense():
    rng = np.random.RandomState(0)
    z = np.concatenate([rng.normal(-1.0, 0.3, 300), rng.normal(1.5, 0.4, 300)])
    y = np.array(["食品 > 零食 > 糖果"] * 300 + ["数码 > 手机 > 手机"] * 300, dtype=object)
    model = PriceDensityClassifier().fit(sp.csr_matrix(_block(z)), y)
    probe = _block(np.array([-1.0, 1.5, 0.25]))
    proba = model.predict_proba(sp.csr_matrix(probe))
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert list(model.predict(probe)[:2]) == ["食品 > 零食 > 糖果", "数码 > 手机 > 手机"]
    assert proba[0, list(model.classes_).index("食品 > 零食 > 糖果")] > 0.99
    assert 0.05 < proba[2].max() < 0.95  # between the two: unsure
    assert np.allclose(model.predict_proba(probe), proba)


def test_a_category_with_two_identical_prices_is_not_certain_of_them():
    rng = np.random.RandomState(1)
    z = np.concatenate([rng.normal(0.0, 1.0, 500), [2.0, 2.0]])
    y = np.array(["a"] * 500 + ["b"] * 2, dtype=object)
    model = PriceDensityClassifier(prior_rows=5.0, min_std=0.1).fit(_block(z), y)
    b = list(model.classes_).index("b")
    assert model.stds_[b] > 0.5  # shrunk towards the catalogue's spread, not the 0 of two equal prices
    assert model.predict_proba(_block(np.array([2.0])))[0, b] < 0.5  # two rows do not outweigh 500
