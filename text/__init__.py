"""Text stage: title normalisation, jieba tokenisation with a verified user dictionary, sparse title
features, price features and brand-in-title extraction."""

from .brands import TitleBrand, extract_title_brands
from .config import TextConfig
from .features import TitleFeaturizer
from .normalize import PackSpec, normalize_title, normalize_titles, parse_pack_spec
from .price import PriceFeaturizer, parse_price, usable_price
from .tokenize import TitleTokenizer, default_user_words

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
