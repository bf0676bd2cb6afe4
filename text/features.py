"""Sparse title features for the fusion layer: TF-IDF over jieba words (+ bigrams) and character n-grams.

:class:`TitleFeaturizer` is a scikit-learn transformer: ``fit``/``transform`` take a sequence of titles
(str, None or NaN) and return a ``scipy.sparse.csr_matrix``; a missing or empty title is an all-zero row.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.preprocessing import normalize
from sklearn.utils.validation import check_is_fitted

from .char_ngrams import CharNgramCounter, fit_vocabulary
from .normalize import normalize_title
from .tokenize import TitleTokenizer

_OVERLAP_MIN_TITLES = 20_000  # below this, a fit is quick enough that a second thread is not worth starting


def _identity(value: Any) -> Any:
    return value


def _compacted(vocabulary: dict[str, int]) -> dict[str, int]:
    """``vocabulary`` with new copies of its keys. Fitting made every n-gram of every title (millions of small
    strings) and kept a few hundred thousand; those lie scattered over the memory the rest freed and keep
    all of it from going back to the system. Copied, they sit together and the old memory is released."""
    return {key.encode("utf-8").decode("utf-8"): index for key, index in vocabulary.items()}


def _tfidf(vectorizer: TfidfVectorizer, counts: sp.csr_matrix) -> sp.csr_matrix:
    """``vectorizer``'s TF-IDF step (what its ``transform`` does after counting) on a count matrix, in place."""
    if vectorizer.sublinear_tf:
        np.log(counts.data, out=counts.data)
        counts.data += 1.0
    if vectorizer.use_idf:
        counts.data *= vectorizer.idf_[counts.indices]
    return normalize(counts, norm=vectorizer.norm, copy=False) if vectorizer.norm is not None else counts


def _as_title_list(X: Any) -> list[Any]:
    if isinstance(X, str):
        raise ValueError("TitleFeaturizer expects a sequence of titles, got one string; wrap it in a list")
    if hasattr(X, "tolist") and not isinstance(X, list):
        X = X.tolist()
    titles = list(X)
    # A 2-D column (n, 1) from a ColumnTransformer comes in as a list of 1-item lists.
    return [t[0] if isinstance(t, (list, tuple)) and len(t) == 1 else t for t in titles]


class TitleFeaturizer(TransformerMixin, BaseEstimator):
    """Word (jieba, user dictionary) + character n-gram TF-IDF of normalised titles, stacked side by side.

    Parameters
    ----------
    user_words: extra words for the jieba user dictionary (brands, product words).
    use_default_words: also add the bundled taxonomy / label map / brand lexicon words.
    word_ngram_range, char_ngram_range: n-gram ranges (``char_ngram_range=None`` turns characters off,
        ``word_ngram_range=None`` turns words off).
    min_df, max_df, max_features, sublinear_tf: as in ``TfidfVectorizer`` (per block).
    word_weight, char_weight: scale of each block (rows of each block are L2-normalised first).
    hmm: jieba's HMM for unknown words.
    char_blocks: several character TF-IDF blocks instead of the one from ``char_ngram_range``, each
        ``(min_n, max_n, max_features)``, each L2-normalised on its own; e.g. ``((1, 1, None), (2, 5, 300000))``
        keeps single characters as their own block and caps the long n-grams (the most accurate setting
        on cn_titles, see ``bench/bench_titles.py``).
    """

    def __init__(
        self,
        user_words: Sequence[str] = (),
        use_default_words: bool = True,
        word_ngram_range: tuple[int, int] | None = (1, 2),
        char_ngram_range: tuple[int, int] | None = (1, 3),
        min_df: int | float = 2,
        max_df: int | float = 1.0,
        max_features: int | None = None,
        sublinear_tf: bool = True,
        word_weight: float = 1.0,
        char_weight: float = 1.0,
        hmm: bool = True,
        char_blocks: Sequence[tuple[int, int, int | None]] | None = None,
        dtype: Any = np.float32,
    ):
        self.user_words = user_words
        self.use_default_words = use_default_words
        self.word_ngram_range = word_ngram_range
        self.char_ngram_range = char_ngram_range
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.word_weight = word_weight
        self.char_weight = char_weight
        self.hmm = hmm
        self.char_blocks = char_blocks
        self.dtype = dtype

    @classmethod
    def from_config(cls, config: Any) -> "TitleFeaturizer":
        """From a ``text.config.TextConfig`` (the ``text`` section of the skutag config)."""
        from .tokenize import read_user_dict

        return cls(
            user_words=tuple(read_user_dict(config.user_dict)) if config.user_dict else (),
            use_default_words=config.use_default_words,
            word_ngram_range=(1, config.word_ngram_max) if config.word_ngram_max > 0 else None,
            char_ngram_range=(config.char_ngram_min, config.char_ngram_max) if config.char_ngram_max > 0 else None,
            min_df=config.min_df,
            max_features=config.max_features,
            sublinear_tf=config.sublinear_tf,
            word_weight=config.word_weight,
            char_weight=config.char_weight,
            hmm=config.hmm,
            # char_ngram_max = 0 turns characters off; otherwise char_blocks (when set) replace the one range
            char_blocks=config.char_block_specs() if config.char_ngram_max > 0 else None,
        )

    # ------------------------------------------------------------------ sklearn API
    def fit(self, X: Iterable[Any], y: Any = None) -> "TitleFeaturizer":
        self._fit_transform(X, fit=True)
        return self

    def fit_transform(self, X: Iterable[Any], y: Any = None, **fit_params: Any) -> sp.csr_matrix:
        return self._fit_transform(X, fit=True)

    def transform(self, X: Iterable[Any]) -> sp.csr_matrix:
        check_is_fitted(self, "n_features_out_")
        return self._fit_transform(X, fit=False)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "n_features_out_")
        names: list[str] = []
        if self.word_vectorizer_ is not None:
            names.extend(f"w:{' '.join(n.split())}" for n in self.word_vectorizer_.get_feature_names_out())
        for vectorizer in self.char_vectorizers_:
            names.extend(f"c:{n}" for n in vectorizer.get_feature_names_out())
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_counters", None)  # derived from the vocabularies, rebuilt on first use
        return state

    # ------------------------------------------------------------------ internals
    def _char_counters(self) -> list[CharNgramCounter | None]:
        """One :class:`CharNgramCounter` per character block (None where it cannot take the vocabulary: that
        block goes through scikit-learn's transform), built on first use from the fitted vocabularies."""
        counters = self.__dict__.get("_counters")
        if counters is None:
            counters = []
            for vectorizer in self.char_vectorizers_:
                try:
                    counters.append(CharNgramCounter(vectorizer.vocabulary_, vectorizer.ngram_range, self.dtype))
                except ValueError:
                    counters.append(None)
            self._counters = counters
        return counters

    def _check_params(self) -> None:
        if self.word_ngram_range is None and self.char_ngram_range is None and not self.char_blocks:
            raise ValueError("TitleFeaturizer needs word_ngram_range, char_ngram_range or char_blocks (all are None)")
        for block in self.char_blocks or ():
            if len(block) != 3 or not 1 <= int(block[0]) <= int(block[1]):
                raise ValueError(f"char_blocks entries are (min_n, max_n, max_features) with 1 <= min_n <= max_n; got {block!r}")

    def _char_specs(self) -> list[tuple[tuple[int, int], int | None]]:
        if self.char_blocks:
            return [((int(lo), int(hi)), cap) for lo, hi, cap in self.char_blocks]
        if self.char_ngram_range is not None:
            return [(tuple(self.char_ngram_range), self.max_features)]
        return []

    def _vectorizer(self, max_features: int | None = None, **kwargs: Any) -> TfidfVectorizer:
        return TfidfVectorizer(
            min_df=self.min_df,
            max_df=self.max_df,
            max_features=max_features,
            sublinear_tf=self.sublinear_tf,
            dtype=self.dtype,
            lowercase=False,
            **kwargs,
        )

    def _fit_char_block(self, vectorizer: TfidfVectorizer, compact: list[str]) -> tuple[CharNgramCounter | None, Any]:
        """Fit one character block: the vocabulary scikit-learn's fit would choose (``fit_vocabulary``), counted
        with numpy, and the vectorizer given that vocabulary and the idf of those counts, so that it is the
        vectorizer scikit-learn's ``fit_transform`` makes (tests compare both). Returns (its counter, its
        features of ``compact``)."""
        vocabulary = fit_vocabulary(compact, vectorizer.ngram_range, vectorizer.min_df, vectorizer.max_df,
                                    vectorizer.max_features, self.dtype)
        try:
            counter = CharNgramCounter(vocabulary, vectorizer.ngram_range, self.dtype)
        except ValueError:  # two n-grams share a 64-bit hash: scikit-learn fits this block
            return None, vectorizer.fit_transform(compact)
        counts = counter.counts(compact)
        transformer = TfidfTransformer(norm=vectorizer.norm, use_idf=vectorizer.use_idf,
                                       smooth_idf=vectorizer.smooth_idf, sublinear_tf=vectorizer.sublinear_tf)
        vectorizer.set_params(vocabulary=vocabulary)
        vectorizer.idf_ = transformer.fit(counts).idf_  # the setter takes the vocabulary in: fitted
        vectorizer.set_params(vocabulary=None)  # ``vocabulary_`` holds it; the parameter would be a second copy
        return counter, _tfidf(vectorizer, counts)

    def _word_block(self, titles: list[str], fit: bool) -> sp.csr_matrix:
        """The jieba word n-gram TF-IDF block of normalised ``titles``."""
        tokens = [self.tokenizer_.tokenize_normalized(t) for t in titles]
        matrix = self.word_vectorizer_.fit_transform(tokens) if fit else self.word_vectorizer_.transform(tokens)
        return matrix * self.word_weight if self.word_weight != 1.0 else matrix

    def _char_blocks(self, compact: list[str], fit: bool) -> list[Any]:
        """The character n-gram TF-IDF blocks of ``compact`` titles (fitting: their counters go to ``_counters``)."""
        if fit:
            fitted = [self._fit_char_block(vectorizer, compact) for vectorizer in self.char_vectorizers_]
            self._counters = [counter for counter, _ in fitted]
            return [matrix for _, matrix in fitted]
        return [_tfidf(vectorizer, counter.counts(compact)) if counter is not None else vectorizer.transform(compact)
                for vectorizer, counter in zip(self.char_vectorizers_, self._char_counters())]

    def _fit_transform(self, X: Iterable[Any], fit: bool) -> sp.csr_matrix:
        titles = [normalize_title(t) for t in _as_title_list(X)]
        if fit:
            self._check_params()
            self.tokenizer_ = TitleTokenizer(
                user_words=self.user_words, use_default_words=self.use_default_words, hmm=self.hmm
            )
            self.word_vectorizer_ = (
                self._vectorizer(
                    analyzer="word",
                    tokenizer=_identity,
                    preprocessor=_identity,
                    token_pattern=None,
                    ngram_range=tuple(self.word_ngram_range),
                    max_features=self.max_features,
                )
                if self.word_ngram_range is not None
                else None
            )
            self.char_vectorizers_ = [
                self._vectorizer(analyzer="char", ngram_range=ngrams, max_features=cap) for ngrams, cap in self._char_specs()
            ]
        compact = [t.replace(" ", "") for t in titles] if self.char_vectorizers_ else []
        pending = None
        if fit and self.word_vectorizer_ is not None and len(titles) >= _OVERLAP_MIN_TITLES:
            # the character blocks (numpy, mostly outside the GIL) fitted in a thread while this one runs
            # jieba (Python): the same result as one after the other, in less wall time
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(self._char_blocks, compact, fit)
                blocks = [self._word_block(titles, fit)]
                char_blocks = pending.result()
        else:
            blocks = [self._word_block(titles, fit)] if self.word_vectorizer_ is not None else []
            char_blocks = self._char_blocks(compact, fit)
        for matrix in char_blocks:
            blocks.append(matrix * self.char_weight if self.char_weight != 1.0 else matrix)
        out = sp.hstack(blocks, format="csr", dtype=self.dtype) if len(blocks) > 1 else blocks[0].tocsr()
        if fit:
            self.n_features_out_ = out.shape[1]
            for vectorizer in [self.word_vectorizer_, *self.char_vectorizers_]:
                if vectorizer is not None:
                    vectorizer.vocabulary_ = _compacted(vectorizer.vocabulary_)
        return out
