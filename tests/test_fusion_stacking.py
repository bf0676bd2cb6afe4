"""FusionTagger: the scikit-learn contract, out-of-fold stacking, missing modalities, calibration."""

from __future__ import annotations

import copy
import csv
import zlib

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.estimator_checks import parametrize_with_checks

from skutag.fusion.linear import ClassParallelLinearSVC
from skutag.fusion.stacking import FusionTagger
from conftest import shared_path


@parametrize_with_checks([FusionTagger(cv=3, random_state=0), ClassParallelLinearSVC(n_jobs=2)])
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def titles():
    """~1,200 real titles of 12 leaf categories from cn_titles, split 75/25 by a hash of the title."""
    path = shared_path("cn_titles", "titles.tsv")
    by_leaf: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            by_leaf.setdefault(row["level3"], []).append(row["title"])
    leaves = sorted(leaf for leaf, rows in by_leaf.items() if len(rows) >= 100)[:12]
    rows = [(title, leaf) for leaf in leaves for title in by_leaf[leaf][:100]]
    test = np.array([zlib.crc32(t.encode()) % 4 == 0 for t, _ in rows])
    texts = np.array([t for t, _ in rows], dtype=object)
    labels = np.array([leaf for _, leaf in rows], dtype=object)
    return texts[~test], labels[~test], texts[test], labels[test]


def _char_tfidf(train, test):
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True).fit(train)
    return vec.transform(train), vec.transform(test)


def test_a_modality_that_memorises_training_rows_does_not_drown_the_real_one(titles):
    train_t, y_train, test_t, y_test = titles
    Xt_train, Xt_test = _char_tfidf(train_t, test_t)
    # "id" block: a one-hot per row. In-sample it is perfect; held out it knows nothing.
    ids_train = sp.identity(len(y_train), format="csr")
    # every test row hits one training id
    ids_test = sp.csr_matrix((np.ones(len(y_test)), (np.arange(len(y_test)), np.zeros(len(y_test), int))),
                             shape=(len(y_test), len(y_train)))
    X_train = sp.hstack([Xt_train, ids_train]).tocsr()
    X_test = sp.hstack([Xt_test, ids_test]).tocsr()
    blocks = [("title", slice(0, Xt_train.shape[1])), ("ids", slice(Xt_train.shape[1], None))]
    model = FusionTagger(blocks=blocks, cv=3, random_state=0).fit(X_train, y_train)
    alone = FusionTagger(cv=3, random_state=0).fit(Xt_train, y_train)
    weights = model.modality_weights_
    assert weights["ids"] < 0.25 * weights["title"]
    assert model.score(X_test, y_test) >= alone.score(Xt_test, y_test) - 0.02
    assert model.score(X_test, y_test) > 0.8


def test_two_partial_views_fuse_better_than_either_and_missing_blocks_still_predict(titles):
    train_t, y_train, test_t, y_test = titles
    heads = lambda texts: [t[: len(t) // 2] for t in texts]  # noqa: E731
    tails = lambda texts: [t[len(t) // 2:] for t in texts]  # noqa: E731
    Xa_train, Xa_test = _char_tfidf(heads(train_t), heads(test_t))
    Xb_train, Xb_test = _char_tfidf(tails(train_t), tails(test_t))
    split = Xa_train.shape[1]
    X_train = sp.hstack([Xa_train, Xb_train]).tocsr()
    X_test = sp.hstack([Xa_test, Xb_test]).tocsr()
    model = FusionTagger(blocks=[("head", slice(0, split)), ("tail", slice(split, None))], cv=3,
                         random_state=0).fit(X_train, y_train)
    head_only = FusionTagger(cv=3, random_state=0).fit(Xa_train, y_train).score(Xa_test, y_test)
    tail_only = FusionTagger(cv=3, random_state=0).fit(Xb_train, y_train).score(Xb_test, y_test)
    fused = model.score(X_test, y_test)
    assert fused > max(head_only, tail_only) + 0.01

    # rows without the tail block: empty sparse rows mean "missing"; the head block alone decides
    X_missing = sp.hstack([Xa_test, sp.csr_matrix(Xb_test.shape)]).tocsr()
    proba, contributions, present = model.explain(X_missing)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert present[:, 0].all() and not present[:, 1].any()
    assert np.all(contributions[:, 1] == 0)
    assert model.score(X_missing, y_test) >= head_only - 0.05


def test_parallel_fold_fits_give_the_same_model_as_sequential_ones(titles):
    from sklearn.svm import LinearSVC

    train_t, y_train, test_t, _ = titles
    Xt_train, Xt_test = _char_tfidf(train_t, test_t)
    split = Xt_train.shape[1] // 2
    blocks = [("a", slice(0, split), LinearSVC(random_state=0)), ("b", slice(split, None))]
    sequential = FusionTagger(blocks=blocks, cv=3, random_state=0, n_jobs=1).fit(Xt_train, y_train)
    parallel = FusionTagger(blocks=blocks, cv=3, random_state=0, n_jobs=2).fit(Xt_train, y_train)
    assert np.array_equal(sequential.oof_predictions_, parallel.oof_predictions_)
    # the same fits; only BLAS rounding may differ between threads
    assert np.array_equal(sequential.predict(Xt_test), parallel.predict(Xt_test))
    assert np.allclose(sequential.predict_proba(Xt_test), parallel.predict_proba(Xt_test), rtol=1e-3, atol=1e-6)
    assert sequential.temperature_ == pytest.approx(parallel.temperature_, rel=1e-3)


def test_dense_nan_block_is_missing_and_oof_answers_are_kept(titles):
    train_t, y_train, test_t, y_test = titles
    Xt_train, Xt_test = _char_tfidf(train_t, test_t)
    svd_train = Xt_train[:, :40].toarray()
    dense = np.hstack([svd_train, np.random.RandomState(0).rand(len(y_train), 5)])
    dense[::2, 40:] = np.nan  # half the rows lack the second block
    model = FusionTagger(blocks=[("a", slice(0, 40)), ("b", slice(40, 45))], cv=3, random_state=0)
    model.fit(dense, y_train)
    assert model.block_coverage_[1] == pytest.approx(0.5, abs=0.01)
    assert model.oof_predictions_.shape == (len(y_train),)
    assert np.all((model.oof_confidences_ > 0) & (model.oof_confidences_ <= 1))


def test_temperature_calibration_gives_honest_confidences(titles):
    train_t, y_train, test_t, y_test = titles
    Xt_train, Xt_test = _char_tfidf(train_t, test_t)
    model = FusionTagger(cv=3, random_state=0).fit(Xt_train, y_train)
    proba = model.predict_proba(Xt_test)
    confidence = proba.max(axis=1)
    correct = model.classes_[proba.argmax(axis=1)] == y_test
    bins = np.minimum((confidence * 10).astype(int), 9)
    ece = sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean()
              for b in range(10) if (bins == b).any())
    assert ece < 0.08
    assert model.temperature_ != 1.0


def test_bad_parameters_are_named():
    X, y = np.random.RandomState(0).rand(20, 3), np.arange(20) % 2
    with pytest.raises(ValueError, match="cv"):
        FusionTagger(cv=1).fit(X, y)
    with pytest.raises(ValueError, match="calibration"):
        FusionTagger(calibration="isotonic-ish").fit(X, y)
    with pytest.raises(ValueError, match="twice"):
        FusionTagger(blocks=[("a", [0]), ("a", [1])]).fit(X, y)


def _ece(confidence, correct) -> float:
    bins = np.minimum((confidence * 10).astype(int), 9)
    return sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean()
               for b in range(10) if (bins == b).any())


def test_a_product_missing_the_strong_modality_is_not_as_sure_as_the_training_rows(titles):
    """Every training row comes with a name of its category (strong: never wrong, like GroceryStore's shop
    titles) and the first characters of its product title (weak); a product that comes with those only is
    scored by that modality set's own temperature, not by the one the names earned."""
    train_t, y_train, test_t, y_test = titles
    Xs_train, Xs_test = _char_tfidf([f"类目 {y}" for y in y_train], [f"类目 {y}" for y in y_test])
    Xw_train, Xw_test = _char_tfidf([t[:3] for t in train_t], [t[:3] for t in test_t])
    split = Xs_train.shape[1]
    model = FusionTagger(blocks=[("name", slice(0, split)), ("title", slice(split, None))], cv=3,
                         random_state=0).fit(sp.hstack([Xs_train, Xw_train]).tocsr(), y_train)
    assert set(model.pattern_temperatures_) == {(True, False), (False, True), (True, True)}
    title_only = sp.hstack([sp.csr_matrix(Xs_test.shape), Xw_test]).tocsr()
    proba = model.predict_proba(title_only)
    correct = model.classes_[proba.argmax(axis=1)] == y_test
    assert 0.4 < correct.mean() < 0.9  # three characters of a title are right only some of the time
    one_temperature = copy.deepcopy(model)
    one_temperature.pattern_temperatures_ = {}  # how models were calibrated before: one temperature for all
    overconfident = one_temperature.predict_proba(title_only).max(axis=1)
    assert _ece(proba.max(axis=1), correct) < 0.08 and _ece(overconfident, correct) > 2 * _ece(proba.max(axis=1), correct)
    # complete products keep the confidence the names earned
    both = sp.hstack([Xs_test, Xw_test]).tocsr()
    assert np.allclose(model.predict_proba(both), one_temperature.predict_proba(both), atol=0.02)


def test_out_of_fold_confidences_and_a_small_calibration_set_use_the_per_set_temperatures(titles):
    """Half the training rows come without the category name: their out-of-fold confidences (what per-class
    thresholds are chosen on) are scaled as serving will scale such rows; a calibration set of 15 rows
    (calibrate takes 10 or more) moves the answers of the modality set its rows have."""
    train_t, y_train, test_t, y_test = titles
    Xs_train, Xs_test = _char_tfidf([f"类目 {y}" for y in y_train], [f"类目 {y}" for y in y_test])
    Xw_train, Xw_test = _char_tfidf([t[:3] for t in train_t], [t[:3] for t in test_t])
    named = np.arange(len(y_train)) % 2 == 0
    Xs_train = sp.diags(named.astype(float)) @ Xs_train  # odd rows: no name (an empty block is a missing one)
    split = Xs_train.shape[1]
    model = FusionTagger(blocks=[("name", slice(0, split)), ("title", slice(split, None))], cv=3,
                         random_state=0).fit(sp.hstack([Xs_train, Xw_train]).tocsr(), y_train)
    unnamed_right = model.oof_predictions_[~named] == y_train[~named]
    assert unnamed_right.mean() < 0.9
    assert _ece(model.oof_confidences_[~named], unnamed_right) < 0.1
    assert model.oof_confidences_[named].min() > 0.9

    title_only = sp.hstack([sp.csr_matrix(Xs_test.shape), Xw_test]).tocsr()
    before = model.predict_proba(title_only)
    assert set(model.modality_set_temperatures_) == {"name", "title", "name+title"}
    trained = model.modality_set_temperatures_["title"]
    shuffled = np.random.RandomState(0).permutation(len(y_test))[:15]  # wrong labels: the model must cool down
    model.refit_temperature(title_only[:15], y_test[shuffled])
    after = model.predict_proba(title_only)
    assert after.max(axis=1).mean() < before.max(axis=1).mean() - 0.02
    # 15 rows move the set's temperature part of the way to what they alone say (the fallback's refit here)
    assert trained < model.modality_set_temperatures_["title"] < model.temperature_


def test_many_modalities_get_temperatures_for_the_sets_seen_and_those_one_modality_short():
    from skutag.fusion.temperature import modality_sets

    present = np.ones((40, 7), dtype=bool)
    present[:10, 6] = False  # some rows lack the last block
    sets = {tuple(np.flatnonzero(mask)) for mask in modality_sets(present, np.arange(7))}
    full, short = tuple(range(7)), tuple(range(6))
    assert {full, short} <= sets and all((b,) in sets for b in range(7))
    assert all(tuple(b for b in full if b != drop) in sets for drop in range(7))
    assert all(tuple(b for b in short if b != drop) in sets for drop in range(6))
    assert len(sets) == 7 + 2 + 7 + 5  # singles, the two seen, full minus one (one is `short`), short minus one


def test_a_one_block_model_neither_copies_nor_changes_the_callers_matrix(titles):
    """One block over every column: the block is the caller's rows as they are (no copy of the catalogue);
    NaN and explicit zeros are cleaned on a copy, never in the caller's matrix."""
    from skutag.fusion.stacking import _block_matrix

    train, y_train, _, _ = titles
    X, _ = _char_tfidf(train, train[:5])
    X = X.tocsr()
    Xb, present = _block_matrix(X, np.arange(X.shape[1]))
    assert Xb is X and present.all()
    dirty = X.copy()
    dirty.data[:3] = [np.nan, 0.0, np.nan]
    before = dirty.data.copy()
    FusionTagger(cv=2, random_state=0).fit(dirty, y_train)
    np.testing.assert_array_equal(dirty.data, before)  # NaN and the zero still there
    Xb, _ = _block_matrix(dirty, np.arange(X.shape[1]))
    assert Xb is not dirty and not np.isnan(Xb.data).any() and Xb.data.all()


def test_one_modality_answers_are_streamed_and_equal_the_score_matrix_path(titles, monkeypatch):
    """A one-block model whose fold fits run one at a time turns each fold's scores into answers as they come
    (``fusion.single_block``, no rows x classes matrix). Same models, so the same out-of-fold answers as the
    matrix path; with temperature calibration the temperature comes from the first fold's rows only."""
    import skutag.fusion.stacking as stacking

    train, y_train, test, y_test = titles
    X, Xt = _char_tfidf(train, test)
    streamed_fits = []
    real = stacking.fit_single_block
    monkeypatch.setattr(stacking, "fit_single_block", lambda *a, **k: streamed_fits.append(1) or real(*a, **k))

    def tagger(n_jobs: int, calibration: str) -> FusionTagger:
        blocks = [("title", slice(None), ClassParallelLinearSVC(n_jobs=n_jobs))]
        return FusionTagger(blocks=blocks, cv=3, n_jobs=1, random_state=0, calibration=calibration).fit(X, y_train)

    for calibration in ("none", "temperature"):
        streamed_fits.clear()
        streamed = tagger(2, calibration)
        assert streamed_fits == [1]
        matrix = tagger(1, calibration)
        assert streamed_fits == [1]  # an estimator on one thread: folds side by side, the matrix path
        np.testing.assert_array_equal(streamed.oof_predictions_, matrix.oof_predictions_)
        np.testing.assert_array_equal(streamed.predict(Xt), matrix.predict(Xt))
        assert streamed.block_names_ == ["title"] and streamed.n_iter_ == 1
        if calibration == "none":
            np.testing.assert_allclose(streamed.oof_confidences_, matrix.oof_confidences_, rtol=1e-4)  # solver tolerance
            assert streamed.oof_log_loss_ == pytest.approx(matrix.oof_log_loss_, rel=1e-4)
        else:
            assert streamed.temperature_ == pytest.approx(matrix.temperature_, rel=0.25)
            assert streamed.temperature_ != 1.0
            np.testing.assert_allclose(streamed.predict_proba(Xt).sum(axis=1), 1.0, rtol=1e-5)


def test_the_stacker_loss_in_cache_sized_chunks_is_the_loss_and_gradient_of_all_rows(titles, monkeypatch):
    """The chunked loss (any chunk size) gives the softmax log-loss of the whole score matrix and its exact
    gradient (central differences), on out-of-fold scores of real titles."""
    from skutag.fusion import stacker_loss

    X, _ = _char_tfidf(titles[0], titles[2])
    y = titles[1]
    model = FusionTagger(blocks=[("a", slice(0, X.shape[1] // 2)), ("b", slice(X.shape[1] // 2, None))], cv=2,
                         random_state=0).fit(X, y)
    Z, _ = model._block_scores(X)
    labels = np.searchsorted(model.classes_, np.asarray(y, dtype=object))
    Z = Z.astype(np.float32)
    n_blocks, n_rows, n_classes = Z.shape
    rng = np.random.RandomState(0)
    theta = np.concatenate([rng.normal(0, 0.1, n_classes), [1.0, 0.8], rng.normal(0, 0.1, n_blocks * n_classes)])
    l2, shared_l2, bias_l2 = 1e-3, 1e-4, 1e-6

    def reference(t: np.ndarray) -> float:
        bias, a = t[:n_classes], t[n_classes:n_classes + n_blocks]
        d = t[n_classes + n_blocks:].reshape(n_blocks, n_classes)
        logits = np.einsum("bnk,bk->nk", Z.astype(np.float64), a[:, None] + d) + bias
        log_norm = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
        nll = np.mean(log_norm - logits[np.arange(n_rows), labels])
        return nll + 0.5 * (l2 * np.sum(d * d) + shared_l2 * a @ a + bias_l2 * bias @ bias)

    whole_value, whole_grad = stacker_loss.StackerLoss(Z, labels, l2, shared_l2, bias_l2)(theta)
    monkeypatch.setattr(stacker_loss, "_CHUNK", 7)  # chunks that do not divide the rows
    value, grad = stacker_loss.StackerLoss(Z, labels, l2, shared_l2, bias_l2)(theta)
    threaded = stacker_loss.StackerLoss(Z, labels, l2, shared_l2, bias_l2, threads=3)
    try:  # chunks shared out over threads: the same sums, added in the same order
        threaded_value, threaded_grad = threaded(theta)
    finally:
        threaded.close()
    assert threaded_value == value
    np.testing.assert_array_equal(threaded_grad, grad)
    assert value == pytest.approx(reference(theta), rel=1e-5) == pytest.approx(whole_value, rel=1e-6)
    np.testing.assert_allclose(grad, whole_grad, rtol=1e-4, atol=1e-7)
    for i in [0, n_classes, n_classes + 1, n_classes + n_blocks + 3, len(theta) - 1]:
        step = np.zeros_like(theta)
        step[i] = 1e-3
        numeric = (reference(theta + step) - reference(theta - step)) / 2e-3
        assert grad[i] == pytest.approx(numeric, rel=2e-2, abs=1e-5)


def test_float32_stacked_logits_fitted_in_place_give_the_float64_temperature():
    from skutag.fusion.temperature import fit_temperature, stacked_logits

    rng = np.random.RandomState(0)
    Z = rng.normal(size=(2, 500, 7)).astype(np.float32)
    masks = rng.rand(500, 2) > 0.3
    owner = rng.randint(0, 2, size=500)
    stackers = [(rng.normal(size=7), rng.rand(2), rng.normal(size=(2, 7)) / 3) for _ in range(2)]
    y = rng.randint(0, 7, size=500)
    rows = np.arange(500)
    wide = stacked_logits(Z, rows, masks, owner, stackers)
    narrow = stacked_logits(Z, rows, masks, owner, stackers, dtype=np.float32)
    assert narrow.dtype == np.float32 and np.array_equal(narrow, wide.astype(np.float32))
    expected = fit_temperature(wide, y)
    assert fit_temperature(narrow, y, overwrite=True) == expected
    assert narrow.max(axis=1).max() == 0.0  # shifted in place: no copy was made
    assert fit_temperature(wide, y) == expected and wide.max() > 0  # the caller's float64 logits are left alone
