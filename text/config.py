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
    char_blocks: str = "1-1,2-5:300000"
    """Character TF-IDF blocks, each L2-normalised on its own: ``MIN-MAX[:CAP]`` comma-separated (CAP =
    most frequent n-grams kept). Default: single characters + 2-5-grams capped at 300k (the most accurate
    setting on cn_titles, ``bench/bench_titles.py``). Empty: one block of ``char_ngram_min``..``char_ngram_max``."""
    min_df: int = 2
    max_features: int | None = None
    sublinear_tf: bool = True
    word_weight: float = 1.0
    char_weight: float = 1.0
    price_min_count: int = 20
    brand_min_score: float = 0.5
    brand_patterns: bool = True
    brand_model: str = ""
    """A brand-span model learned from your titles (``skutag brands learn``): empty = the one in
    ``$SKUTAG_HOME/taxonomy/brand_spans.joblib`` when there is one, ``off`` = none, else a file path."""

    def char_block_specs(self) -> tuple[tuple[int, int, int | None], ...] | None:
        """``char_blocks`` as ``TitleFeaturizer(char_blocks=...)`` takes it; None when empty."""
        return parse_char_blocks(self.char_blocks)


def parse_char_blocks(text: str | None) -> tuple[tuple[int, int, int | None], ...] | None:
    """``"1-1,2-5:300000"`` -> ``((1, 1, None), (2, 5, 300000))``; a clear error names a bad entry."""
    if not text or not str(text).strip():
        return None
    blocks = []
    for part in str(text).split(","):
        spec, _, cap = part.strip().partition(":")
        try:
            low, _, high = spec.partition("-")
            lo, hi = int(low), int(high or low)
            limit = int(cap) if cap.strip() else None
        except ValueError:
            raise ValueError(f"text.char_blocks: cannot read {part.strip()!r}; write MIN-MAX[:CAP], e.g. 2-5:300000") from None
        if not 1 <= lo <= hi or (limit is not None and limit < 1):
            raise ValueError(f"text.char_blocks: {part.strip()!r} needs 1 <= MIN <= MAX and CAP >= 1")
        blocks.append((lo, hi, limit))
    return tuple(blocks)
