"""The featurizer's fast paths give exactly what the library paths give, on real cn_titles titles: the numpy
character n-gram counter against scikit-learn's char analyzer, the one-pass DAG segmenter against jieba's cut."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
from conftest import shared_path
from sklearn.feature_extraction.text import CountVectorizer
from skutag.text import TextConfig, TitleFeaturizer, TitleTokenizer
from skutag.text.char_ngrams import CharNgramCounter, fit_vocabulary
from skutag.text.normalize import normalize_title
from skutag.text.segment import DagSegmenter

ODD = ["", "a", "ab", "x  y\t\tz", "农夫山泉 550ml×24瓶", "🍺\u200b啤酒", "１２３ＡＢＣ", "a" * 40, "\n"]


@pytest.fixture(scope="module")
def titles() -> list[str]:
    with shared_path("cn_titles", "titles.tsv").open(encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["title"] for _, row in zip(range(12000), rows)]


@pytest.mark.parametrize("ngram_range", [(1, 1), (2, 5), (1, 3)])
def test_char_counter_counts_what_count_vectorizer_counts(titles, ngram_range):
    fit_on, score = titles[:8000], titles[8000:] + ODD
    vectorizer = CountVectorizer(analyzer="char", ngram_range=ngram_range, lowercase=False, min_df=2,
                                 dtype=np.float32).fit(fit_on)
    counter = CharNgramCounter(vectorizer.vocabulary_, ngram_range)
    expected, got = vectorizer.transform(score), counter.counts(score)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert got.nnz == expected.nnz > 0
    assert (got != expected).nnz == 0


def test_char_counter_refuses_a_vocabulary_outside_its_range():
    with pytest.raises(ValueError, match="outside the n-gram range"):
        CharNgramCounter({"abc": 0, "a": 1}, (2, 5))


def test_featurizer_matches_scikit_learn_transform_and_pickles_without_counters(titles):
    featurizer = TitleFeaturizer.from_config(TextConfig()).fit(titles[:8000])
    score = titles[8000:] + ODD + [None]
    fast = featurizer.transform(score)
    assert all(counter is not None for counter in featurizer._char_counters())
    featurizer._counters = [None] * len(featurizer.char_vectorizers_)  # every block through scikit-learn
    slow = featurizer.transform(score)
    assert fast.nnz == slow.nnz > 0 and (fast != slow).nnz == 0
    restored = pickle.loads(pickle.dumps(featurizer))
    assert "_counters" not in restored.__dict__
    assert (restored.transform(score) != slow).nnz == 0


def test_dag_segmenter_cuts_as_jieba_does(titles):
    tokenizer = TitleTokenizer(use_default_words=True)
    tokenizer.segment("")
    jieba = tokenizer._jieba
    segmenter = DagSegmenter(jieba)
    texts = [normalize_title(t) for t in titles] + titles[:2000] + ODD  # raw titles: spaces, punctuation, Latin
    assert [segmenter.cut(t) for t in texts] == [list(jieba.cut(t, HMM=True)) for t in texts]
    assert segmenter._runs, "unknown runs went through the HMM and were kept"


def test_dag_segmenter_run_cache_is_bounded(titles, monkeypatch):
    from skutag.text import segment

    monkeypatch.setattr(segment, "_RUN_CACHE_SIZE", 20)
    tokenizer = TitleTokenizer()
    tokenizer.segment("")
    segmenter = DagSegmenter(tokenizer._jieba)
    for title in titles[:2000]:
        segmenter.cut(title)
        assert len(segmenter._runs) <= 20


def test_char_counter_takes_many_texts_in_blocks(titles, monkeypatch):
    from skutag.text import char_ngrams

    vectorizer = CountVectorizer(analyzer="char", ngram_range=(2, 5), lowercase=False, min_df=2,
                                 dtype=np.float32).fit(titles[:8000])
    counter = CharNgramCounter(vectorizer.vocabulary_, (2, 5))
    monkeypatch.setattr(char_ngrams, "_BLOCK", 700)
    got = counter.counts(titles[8000:])
    assert got.shape[0] == len(titles) - 8000 and (got != vectorizer.transform(titles[8000:])).nnz == 0
    assert counter.counts([]).shape == (0, len(vectorizer.vocabulary_))


@pytest.mark.parametrize(("ngram_range", "min_df", "cap"), [((1, 1), 2, None), ((2, 5), 2, 3000), ((1, 3), 0.001, None)])
def test_vocabulary_is_the_one_scikit_learn_fits(titles, ngram_range, min_df, cap):
    """Same n-grams, same columns; a low cap puts many n-grams of equal count at the cut: the same ones kept."""
    texts = [normalize_title(t).replace(" ", "") for t in titles] + ODD
    expected = CountVectorizer(analyzer="char", ngram_range=ngram_range, lowercase=False, min_df=min_df,
                               max_features=cap, dtype=np.float32).fit(texts).vocabulary_
    assert fit_vocabulary(texts, ngram_range, min_df, 1.0, cap) == expected


def test_featurizer_fit_is_scikit_learn_fit(titles):
    from sklearn.feature_extraction.text import TfidfVectorizer

    featurizer = TitleFeaturizer.from_config(TextConfig())
    fitted = featurizer.fit_transform(titles[:8000])
    texts = [normalize_title(t).replace(" ", "") for t in titles[:8000]]
    for ours, (ngrams, cap) in zip(featurizer.char_vectorizers_, featurizer._char_specs()):
        reference = TfidfVectorizer(analyzer="char", ngram_range=ngrams, max_features=cap, min_df=featurizer.min_df,
                                    sublinear_tf=True, lowercase=False, dtype=np.float32).fit(texts)
        assert ours.vocabulary_ == reference.vocabulary_
        assert np.array_equal(ours.idf_, reference.idf_) and ours.idf_.dtype == reference.idf_.dtype
        assert (ours.transform(texts[:500]) != reference.transform(texts[:500])).nnz == 0
        assert ours.get_params()["vocabulary"] is None
    assert (fitted != featurizer.transform(titles[:8000])).nnz == 0


def test_char_counter_takes_lone_surrogates_as_scikit_learn_does():
    texts = ["ab\ud800cd", "\udfffab", "abcd"]
    vectorizer = CountVectorizer(analyzer="char", ngram_range=(1, 3), lowercase=False, dtype=np.float32).fit(texts)
    counter = CharNgramCounter(vectorizer.vocabulary_, (1, 3))
    assert (counter.counts(texts) != vectorizer.transform(texts)).nnz == 0
    assert fit_vocabulary(texts, (1, 3)) == vectorizer.vocabulary_
