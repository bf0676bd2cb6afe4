"""Text stage: title normalisation, jieba tokenisation with a verified user dictionary, sparse title
features, price features and brand-in-title extraction.

The scikit-learn estimators (``TitleFeaturizer``, ``PriceFeaturizer`` and ``usable_price`` beside it) are
imported on first use: reading the ``text`` config section, or tokenizing a title, does not import
scikit-learn and SciPy (seconds at the start of every command and pool process)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .brands import TitleBrand, extract_title_brands
from .config import TextConfig
from .normalize import PackSpec, normalize_title, normalize_titles, parse_pack_spec
from .price_parse import parse_price
from .tokenize import TitleTokenizer, default_user_words

if TYPE_CHECKING:
    from .features import TitleFeaturizer
    from .price import PriceFeaturizer, usable_price

_ON_FIRST_USE = {"TitleFeaturizer": ".features", "PriceFeaturizer": ".price", "usable_price": ".price"}


def __getattr__(name: str) -> Any:
    if name in _ON_FIRST_USE:
        value = getattr(importlib.import_module(_ON_FIRST_USE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PackSpec",
    "PriceFeaturizer",
    "TextConfig",
    "TitleBrand",
    "TitleFeaturizer",
    "TitleTokenizer",
    "default_user_words",
    "extract_title_brands",
    "normalize_title",
    "normalize_titles",
    "parse_pack_spec",
    "parse_price",
    "usable_price",
]
