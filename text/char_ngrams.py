"""Character n-gram counts of many titles at once, over a fitted vocabulary, with numpy instead of a Python loop.

scikit-learn's ``TfidfVectorizer(analyzer="char")`` makes every n-gram of every title as a Python string and
looks each one up in its vocabulary: for titles of 30 characters and n-grams of 2-5 that is over a hundred
strings per title, and the featurizer's largest cost at prediction. :class:`CharNgramCounter` takes the
same vocabulary and gives the same count matrix: all titles' code points go into one array, each n-gram
becomes a 64-bit hash computed for all positions at once, and the hashes are matched against the sorted
hashes of the vocabulary. The vectorizer's own TF-IDF step then turns the counts into its features, so the
output is the vectorizer's ``transform`` exactly (tests compare the two on real titles).

:func:`fit_vocabulary` chooses the vocabulary itself the same way, from the hashes: the one scikit-learn's fit
would choose.

A hash shared by two vocabulary entries is found when the counter is built, and the counter refuses (the
caller keeps scikit-learn's path); an n-gram outside the vocabulary matching an entry's 64-bit hash is a
chance of about |vocabulary| / 2^64 per n-gram, and two distinct n-grams of the fitted texts sharing one
(``fit_vocabulary`` would count them as one) about (distinct n-grams)^2 / 2^65.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from numbers import Integral

import numpy as np
import scipy.sparse as sp

_WHITE_SPACES = re.compile(r"\s\s+")  # the runs scikit-learn's char analyzer collapses to one space
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0x243F6A8885A308D3)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_BLOCK = 20_000  # texts per pass of counts()


def _finalize(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit (the polynomial alone is weak in its
    low bits for small code points)."""
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX_1
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX_2
    return h ^ (h >> np.uint64(31))


def _code_points(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(every text's code points one after another, the offset where each text starts, plus the total)."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    points = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    return points, offsets


def _ngram_hashes(points: np.ndarray, offsets: np.ndarray, min_n: int, max_n: int):
    """Yield (n, start positions, the text each starts in, hashes) of every n-gram of length min_n..max_n lying
    inside one text."""
    total = len(points)
    if total == 0:
        return
    text_of = np.repeat(np.arange(len(offsets) - 1, dtype=np.int32), np.diff(offsets))
    end_of = offsets[1:][text_of]  # where the text holding each position ends
    positions = np.arange(total)
    h = np.full(total, _SEED, dtype=np.uint64)
    for n in range(1, max_n + 1):
        # h[i] now covers points[i : i + n - 1]; extend by one code point (wraps mod 2^64)
        valid = positions[: total - n + 1]
        h = h[: total - n + 1] * _MULTIPLIER + points[n - 1 :]
        if n >= min_n:
            inside = valid + n <= end_of[: total - n + 1]
            starts = valid[inside]
            yield n, starts, text_of[starts], _finalize(h[inside])


class CharNgramCounter:
    """Counts of the character n-grams (``ngram_range``) of texts over a fixed ``vocabulary`` (n-gram -> column),
    as the CSR matrix a ``CountVectorizer(analyzer="char", lowercase=False)`` with that vocabulary gives."""

    def __init__(self, vocabulary: dict[str, int], ngram_range: tuple[int, int], dtype: type = np.float32):
        self.min_n, self.max_n = int(ngram_range[0]), int(ngram_range[1])
        self.n_columns = len(vocabulary)
        self.dtype = dtype
        keys = list(vocabulary)
        key_columns = np.fromiter(vocabulary.values(), dtype=np.int32, count=len(keys))
        if any(not self.min_n <= len(key) <= self.max_n for key in keys):
            raise ValueError("vocabulary holds n-grams outside the n-gram range")
        points, offsets = _code_points(keys)
        key_at = np.full(len(points), -1, dtype=np.int64)  # the key starting at each position, -1 inside keys
        key_at[offsets[:-1]] = np.arange(len(keys))
        lengths = np.diff(offsets)
        hashes = np.empty(len(keys), dtype=np.uint64)
        for n, starts, _, h in _ngram_hashes(points, offsets, self.min_n, self.max_n):
            # a key's hash is the one of its n-gram of full length starting where the key starts
            key = key_at[starts]
            whole = key >= 0
            whole[whole] = lengths[key[whole]] == n
            hashes[key[whole]] = h[whole]
        order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[order]
        if len(self.hashes) > 1 and bool(np.any(self.hashes[1:] == self.hashes[:-1])):
            raise ValueError("two vocabulary n-grams share a 64-bit hash")
        self.columns = key_columns[order]

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The count matrix of ``texts``, made ``_BLOCK`` texts at a time: the per-position arrays (a few
        8-byte numbers per character) stay small however many texts come in."""
        blocks = [self._block_counts(texts[i : i + _BLOCK]) for i in range(0, len(texts), _BLOCK)]
        if len(blocks) == 1:
            return blocks[0]
        if not blocks:
            return sp.csr_matrix((0, self.n_columns), dtype=self.dtype)
        return sp.vstack(blocks, format="csr", dtype=self.dtype)

    def _block_counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        texts = [_WHITE_SPACES.sub(" ", text) for text in texts]
        points, offsets = _code_points(texts)
        rows, columns = [], []
        for _, _, text, h in _ngram_hashes(points, offsets, self.min_n, self.max_n):
            if not len(self.hashes):
                break
            at = np.minimum(np.searchsorted(self.hashes, h), len(self.hashes) - 1)
            known = self.hashes[at] == h
            rows.append(text[known])
            columns.append(self.columns[at[known]])
        row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        column = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int32)
        matrix = sp.csr_matrix(
            (np.ones(len(row), dtype=self.dtype), (row, column)), shape=(len(texts), self.n_columns), dtype=self.dtype
        )
        matrix.sum_duplicates()
        return matrix


def fit_vocabulary(
    texts: Sequence[str],
    ngram_range: tuple[int, int],
    min_df: float = 1,
    max_df: float = 1.0,
    max_features: int | None = None,
    dtype: type = np.float32,
) -> dict[str, int]:
    """The vocabulary ``CountVectorizer(analyzer="char", lowercase=False, min_df=..., max_df=...,
    max_features=..., dtype=...)`` fits on ``texts``, without a Python string per n-gram occurrence.

    As scikit-learn does it: n-grams whose document frequency lies within [min_df, max_df] (an int is a count,
    a float a share of the texts), sorted by their characters; past ``max_features`` the most frequent (total
    count) kept, chosen by the same ``argsort`` over the same array (counts in ``dtype``, in that order), so
    ties at the cut fall the same way; columns numbered in character order.
    """
    min_n, max_n = int(ngram_range[0]), int(ngram_range[1])
    texts = [_WHITE_SPACES.sub(" ", text) for text in texts]
    n_texts = len(texts)
    max_count = max_df if isinstance(max_df, Integral) else max_df * n_texts
    min_count = min_df if isinstance(min_df, Integral) else min_df * n_texts
    if max_count < min_count:
        raise ValueError("max_df corresponds to < documents than min_df")
    points, offsets = _code_points(texts)
    starts, lengths, totals = [], [], []
    for n, at, text, h in _ngram_hashes(points, offsets, min_n, max_n):
        # one n-gram length at a time: distinct n-grams, their total counts and document frequencies
        order = np.lexsort((text, h))
        h, text, at = h[order], text[order], at[order]
        first = np.ones(len(h), dtype=bool)
        first[1:] = h[1:] != h[:-1]
        first_in_text = first.copy()
        first_in_text[1:] |= text[1:] != text[:-1]
        group = np.cumsum(first) - 1
        total = np.bincount(group)
        documents = np.bincount(group[first_in_text])
        keep = (documents >= min_count) & (documents <= max_count)
        starts.append(at[first][keep])
        lengths.append(np.full(int(keep.sum()), n, dtype=np.int64))
        totals.append(total[keep])
    if not starts or not sum(len(s) for s in starts):
        raise ValueError("After pruning, no terms remain. Try a lower min_df or a higher max_df.")
    start, length, total = np.concatenate(starts), np.concatenate(lengths), np.concatenate(totals)
    # Python's string order: code point by code point, a string before the longer ones it begins
    characters = np.full((len(start), max_n), -1, dtype=np.int64)
    for j in range(max_n):
        longer = length > j
        characters[longer, j] = points[start[longer] + j]
    alphabetical = np.lexsort(characters.T[::-1])
    start, length, total = start[alphabetical], length[alphabetical], total[alphabetical]
    if max_features is not None and len(start) > max_features:
        top = np.sort((-total.astype(dtype)).argsort()[:max_features])
        start, length = start[top], length[top]
    joined = "".join(texts)
    return {joined[s : s + n]: column for column, (s, n) in enumerate(zip(start.tolist(), length.tolist()))}
