"""Price features: parsing, missing/bad prices, per-category statistics only with enough data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skutag.text import PriceFeaturizer, parse_price, usable_price
from skutag.text.price import FEATURE_NAMES


@pytest.mark.parametrize(
    "value, expected",
    [
        (12.5, 12.5), (3, 3.0), (np.float32(2.5), 2.5), ("¥1,299.00", 1299.0), ("￥ 12.5元", 12.5),
        ("12", 12.0), (None, None), (math.nan, None), (math.inf, None), (-3.0, None), (0, None),
        ("free", None), ("", None), ("-5", None), (True, None),
    ],
)
def test_usable_price_counts_what_is_not_a_positive_price_as_missing(value, expected):
    assert usable_price(value) == expected


@pytest.mark.parametrize("value, expected", [("12,50", 12.5), ("1 299,00 kr", 1299.0), ("¥1,299.00", 1299.0),
                                             (" ", None), (None, None), (0, 0.0)])
def test_an_input_price_is_read_one_way_everywhere(value, expected):
    assert parse_price(value) == expected
    assert usable_price(value) == (expected or None)  # the features read "12,50" as the catalog does


@pytest.mark.parametrize("value", [math.nan, "NaN", math.inf, -1, "cheap", "1,299", 2e9, True])
def test_an_input_price_that_is_not_one_is_refused_not_dropped(value):
    with pytest.raises(ValueError, match="not a number|must be a number from 0 to 1e9"):
        parse_price(value)


def test_missing_prices_get_a_flag_and_zero_features():
    featurizer = PriceFeaturizer().fit([10, 20, 30, None])
    X = featurizer.transform([None, math.nan, -1, "abc", 0, 20])
    assert X.shape == (6, len(FEATURE_NAMES)) and np.isfinite(X).all()
    assert list(X[:, 1]) == [1, 1, 1, 1, 1, 0]
    assert np.all(X[:5, [0, 2, 3, 4, 5]] == 0)
    assert X[5, 0] == pytest.approx(math.log1p(20)) and X[5, 2] == pytest.approx(0.0)


def test_category_statistics_need_min_count():
    rng = np.random.default_rng(0)
    cheap = list(rng.uniform(2, 5, 30))  # drinks
    dear = list(rng.uniform(2000, 5000, 30))  # phones
    rare = [50.0] * 3  # too few rows for its own statistics
    prices = cheap + dear + rare + [None]
    categories = ["drinks"] * 30 + ["phones"] * 30 + ["rare"] * 3 + ["drinks"]
    featurizer = PriceFeaturizer(min_count=20).fit(prices, categories=categories)
    assert set(featurizer.categories_) == {"drinks", "phones"}
    X = featurizer.transform([3.5, 3.5, 3.5, None], categories=["drinks", "phones", "rare", "drinks"])
    assert abs(X[0, 3]) < 2 and X[1, 3] == -featurizer.clip_z  # a 3.5 phone is absurdly cheap
    assert list(X[:, 5]) == [1, 1, 0, 0]
    assert X[2, 3] == 0 and X[3, 3] == 0
    # without a category context the category columns are zero, the shape stays the same
    assert featurizer.transform([3.5]).shape == (1, len(FEATURE_NAMES))
    scores = featurizer.category_scores([3.5, 3000, None])
    drinks, phones = list(featurizer.categories_).index("drinks"), list(featurizer.categories_).index("phones")
    assert scores[0, drinks] > scores[0, phones] and scores[1, phones] > scores[1, drinks]
    assert list(scores[2]) == [0.0, 0.0]


def test_path_categories_and_y_as_context():
    paths = [("饮料", "饮用水")] * 20 + [("手机", "手机")] * 20
    featurizer = PriceFeaturizer(min_count=20).fit([2.0] * 20 + [2000.0] * 20, paths)
    assert set(featurizer.categories_) == {"饮料 > 饮用水", "手机 > 手机"}
    X = featurizer.transform([2.0], categories=["饮料 > 饮用水"])
    assert X[0, 5] == 1 and X[0, 3] == pytest.approx(0.0)


def test_bad_inputs_are_clear():
    featurizer = PriceFeaturizer()
    with pytest.raises(ValueError, match="wrap it in a list"):
        featurizer.fit("12.5")
    with pytest.raises(ValueError, match="2 categories for 3 prices"):
        featurizer.fit([1, 2, 3], categories=["a", "b"])
    empty = PriceFeaturizer().fit([None, None])
    assert np.isfinite(empty.transform([5.0, None])).all()
    assert list(empty.get_feature_names_out()) == list(FEATURE_NAMES)
