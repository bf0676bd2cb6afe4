"""TitleFeaturizer: sparse rows, None/empty titles as zero rows, sklearn contract, a real classification check."""

from __future__ import annotations

import csv
import hashlib
import math
import pickle
from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from conftest import shared_path
from skutag.text import TitleFeaturizer

TITLES = [
    "农夫山泉 饮用天然水 550ML*24瓶 整箱",
    "怡宝 纯净水 555ml×24瓶",
    "ERKE/鸿星尔克 跑步鞋 女式运动鞋",
    "安踏 跑步鞋 男 2014新款",
    "雀巢咖啡 1+2 原味 速溶咖啡 15g×30条",
    "雀巢 咖啡 原味 条装",
]


@pytest.fixture(scope="module")
def fitted() -> TitleFeaturizer:
    return TitleFeaturizer(min_df=1, use_default_words=False, user_words=["鸿星尔克", "跑步鞋"]).fit(TITLES)


def test_sparse_output_and_missing_titles_are_zero_rows(fitted):
    X = fitted.transform([TITLES[0], None, "", math.nan, "   \u200b👍", TITLES[2]])
    assert sp.isspmatrix_csr(X) and X.dtype == np.float32
    assert X.shape == (6, fitted.n_features_out_) == (6, len(fitted.get_feature_names_out()))
    assert list(X.getnnz(axis=1)[1:5]) == [0, 0, 0, 0]
    assert X[0].nnz > 0 and X[5].nnz > 0
    names = set(fitted.get_feature_names_out())
    assert {"w:鸿星尔克", "w:跑步鞋", "c:咖啡", "w:#ml"} <= names


def test_unseen_words_and_junk_do_not_break_transform(fitted):
    X = fitted.transform(["完全没见过的东西 xyz", "ＮＯＮＧＦＵ 农夫山泉\x00\u200b"])
    assert X.shape[0] == 2
    same = fitted.transform(["农夫山泉"])
    assert (fitted.transform(["农\u200b夫山泉👍"]) != same).nnz == 0


def test_sklearn_contract(fitted):
    featurizer = TitleFeaturizer(min_df=1)
    assert featurizer.get_params()["min_df"] == 1 and not hasattr(featurizer, "n_features_out_")
    assert clone(featurizer).get_params() == featurizer.get_params()
    clone_fitted = pickle.loads(pickle.dumps(fitted))
    assert (clone_fitted.transform(TITLES) != fitted.transform(TITLES)).nnz == 0
    with pytest.raises(ValueError, match="sequence of titles"):
        fitted.transform("one title")
    with pytest.raises(ValueError, match="word_ngram_range, char_ngram_range or char_blocks"):
        TitleFeaturizer(word_ngram_range=None, char_ngram_range=None).fit(TITLES)
    words_only = TitleFeaturizer(char_ngram_range=None, min_df=1, use_default_words=False).fit(TITLES)
    assert all(name.startswith("w:") for name in words_only.get_feature_names_out())
    # a (n, 1) column, as a ColumnTransformer hands it over, works too
    column = np.array(TITLES, dtype=object).reshape(-1, 1)
    assert (fitted.transform(column) != fitted.transform(TITLES)).nnz == 0


def test_char_blocks_are_normalised_apart_and_capped():
    featurizer = TitleFeaturizer(min_df=1, use_default_words=False, word_ngram_range=None,
                                 char_blocks=((1, 1, None), (2, 5, 40)))
    X = featurizer.fit_transform(TITLES).toarray()
    names = featurizer.get_feature_names_out()
    singles = np.array([len(n) == 3 for n in names])  # "c:" + one character
    assert singles.sum() == len(featurizer.char_vectorizers_[0].vocabulary_) and (~singles).sum() == 40
    assert all(2 <= len(n) - 2 <= 5 for n in names[~singles])
    # each block is L2-normalised on its own: a title has unit norm in both
    assert np.allclose(np.linalg.norm(X[:, singles], axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(X[:, ~singles], axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="char_blocks entries"):
        TitleFeaturizer(char_blocks=((3, 2, None),)).fit(TITLES)


def test_real_titles_classify_well(shared_data):
    """A small real subset of cn_titles: 12 sibling leaves x 150 titles, held out by a hash of the title."""
    by_leaf: dict[str, list[str]] = defaultdict(list)
    with shared_path("cn_titles", "titles.tsv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            by_leaf[" > ".join((row["level1"], row["level2"], row["level3"]))].append(row["title"])
    # siblings under one top level (shoes, bags and clothes of 服饰、鞋、包): not an easy split
    leaves = sorted(leaf for leaf, titles in by_leaf.items() if len(titles) >= 150 and leaf.startswith("服饰"))[:12]
    assert len(leaves) == 12
    titles, labels = [], []
    for leaf in leaves:
        for title in by_leaf[leaf][:150]:
            titles.append(title)
            labels.append(leaf)
    test = np.array([int(hashlib.md5(t.encode()).hexdigest(), 16) % 5 == 0 for t in titles])
    X = np.array(titles, dtype=object)
    y = np.array(labels)
    model = make_pipeline(TitleFeaturizer(), LinearSVC(C=0.5)).fit(X[~test], y[~test])
    accuracy = float(np.mean(model.predict(X[test]) == y[test]))
    print(f"{len(leaves)} leaves, {int(test.sum())} held out, accuracy {accuracy:.3f}")
    assert accuracy >= 0.85, accuracy


def test_from_config_reads_the_user_dictionary(tmp_path):
    from skutag.text import TextConfig

    user_dict = tmp_path / "words.txt"
    user_dict.write_text("# shop words\n鸿星尔克 100 nz\nhello kitty\n\n", encoding="utf-8")
    featurizer = TitleFeaturizer.from_config(
        TextConfig(user_dict=str(user_dict), use_default_words=False, char_ngram_max=0, min_df=1)
    )
    assert featurizer.user_words == ("鸿星尔克", "hello kitty") and featurizer.char_ngram_range is None
    featurizer.fit(["ERKE/鸿星尔克 跑步鞋", "hello kitty 女童装"])
    assert {"w:鸿星尔克", "w:hello kitty"} <= set(featurizer.get_feature_names_out())
    with pytest.raises(FileNotFoundError, match="user dictionary not found"):
        TitleFeaturizer.from_config(TextConfig(user_dict=str(tmp_path / "missing.txt")))


def test_char_blocks_setting_is_read_and_bad_entries_are_named():
    from skutag.text import TextConfig
    from skutag.text.config import parse_char_blocks

    assert parse_char_blocks("1-1, 2-5:300000") == ((1, 1, None), (2, 5, 300000))
    assert parse_char_blocks("3") == ((3, 3, None),) and parse_char_blocks("") is None
    for bad in ("5-2", "a-b", "2-5:0", "2-5:many"):
        with pytest.raises(ValueError, match="text.char_blocks"):
            parse_char_blocks(bad)
    assert TitleFeaturizer.from_config(TextConfig()).char_blocks == ((1, 1, None), (2, 5, 300000))
    one_range = TitleFeaturizer.from_config(TextConfig(char_blocks="", char_ngram_max=4))
    assert one_range.char_blocks is None and one_range.char_ngram_range == (1, 4)
    words_only = TitleFeaturizer.from_config(TextConfig(char_ngram_max=0, min_df=1)).fit(TITLES)
    assert all(name.startswith("w:") for name in words_only.get_feature_names_out())


def test_transform_after_fit_gives_the_fitted_matrix_on_real_titles():
    """The vocabularies are compacted after fitting: transforming the training titles again must give the very
    matrix the fit returned (same columns, same values)."""
    from skutag.text import TextConfig

    with shared_path("cn_titles", "titles.tsv").open(encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        titles = [row["title"] for _, row in zip(range(3000), rows)]
    featurizer = TitleFeaturizer.from_config(TextConfig())
    fitted = featurizer.fit_transform(titles)
    again = featurizer.transform(titles)
    assert fitted.shape == again.shape and fitted.nnz > 20 * len(titles)
    assert (fitted != again).nnz == 0


def test_fit_with_the_character_blocks_in_a_second_thread_gives_the_same_features(monkeypatch):
    """A large fit counts the character blocks in a thread while jieba runs: the same vocabularies, idf and
    matrix as one block after the other, on real titles."""
    from skutag.text import TextConfig
    from skutag.text import features as features_module

    with shared_path("cn_titles", "titles.tsv").open(encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        titles = [row["title"] for _, row in zip(range(3000), rows)]
    monkeypatch.setattr(features_module, "_OVERLAP_MIN_TITLES", 10**9)
    alone = TitleFeaturizer.from_config(TextConfig())
    expected = alone.fit_transform(titles)
    monkeypatch.setattr(features_module, "_OVERLAP_MIN_TITLES", 1)
    overlapped = TitleFeaturizer.from_config(TextConfig())
    got = overlapped.fit_transform(titles)
    assert got.shape == expected.shape and got.nnz > 20 * len(titles)
    assert (got != expected).nnz == 0
    for mine, theirs in zip(overlapped.char_vectorizers_, alone.char_vectorizers_):
        assert mine.vocabulary_ == theirs.vocabulary_
        np.testing.assert_array_equal(mine.idf_, theirs.idf_)
    assert (overlapped.transform(titles[:200]) != alone.transform(titles[:200])).nnz == 0
