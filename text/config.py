"""The ``text`` section of the skutag config: title and price feature settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextConfig:
    """Settings of the title/price stage (``SKUTAG_TEXT__<FIELD>`` overrides them).

    ``user_dict``: an extra word list (one word per line, jieba's ``word [freq] [tag]`` lines work
    too) added to the dictionary built from the taxonomy, label map and brand lexicon.
    """

    use_default_words: bool = True
    user_dict: str | None = None
    hmm: bool = True
    word_ngram_max: int = 2
    char_ngram_min: int = 1
    char_ngram_max: int = 3
    min_df: int = 2
    max_features: int | None = None
    sublinear_tf: bool = True
    word_weight: float = 1.0
    char_weight: float = 1.0
    price_min_count: int = 20
    brand_min_score: float = 0.5
    brand_patterns: bool = True
