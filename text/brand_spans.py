"""Brands no lexicon lists, found by a span model learned from the shop's own titles.

A brand lexicon only knows the brands it lists; a shop's catalogue names hundreds it does not. Titles
whose brand is known (the catalogue's ``brand`` column, or labelled spans) teach what a brand looks like
*in a title*: where it stands, what follows it, which characters brand names use, which words are
product words. ``BrandSpanModel`` scores candidate spans (runs of 1-3 jieba words at word boundaries)
with a logistic regression over those clues and keeps the best non-overlapping ones:

    model = BrandSpanModel().fit(titles, brands)          # brands: the brand names of each title
    model.find("宏情 中老年晨练太极服")                     # [TitleBrand("宏情", ..., source="learned")]

``fit`` picks the decision threshold by cross-validation on the training titles (best span F1).
``extract_title_brands(..., learned=model)`` adds its finds to lexicon and pattern matches.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterable, Sequence

import numpy as np
from sklearn.base import BaseEstimator

from .brands import TitleBrand, aligned_view

_WORDY = re.compile(r"[0-9a-z\u4e00-\u9fff]")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN = re.compile(r"^[a-z0-9][a-z0-9 .&'+\-#!]*$")


def _pieces(view: str, jieba: Any) -> list[tuple[int, int]]:
    """(start, end) of each jieba piece of ``view`` (whitespace and punctuation pieces included)."""
    out, position = [], 0
    for piece in jieba.cut(view, HMM=True):
        out.append((position, position + len(piece)))
        position += len(piece)
    return out


def _candidates(view: str, pieces: list[tuple[int, int]], max_words: int, max_chars: int
                ) -> list[tuple[int, int, int, int]]:
    """(start, end, first piece index, pieces) of runs of word pieces; latin words may be joined by one space."""
    wordy = [bool(_WORDY.search(view[s:e])) for s, e in pieces]
    found = []
    for i, (start, _) in enumerate(pieces):
        if not wordy[i]:
            continue
        taken, j = 0, i
        while j < len(pieces) and taken < max_words:
            s, e = pieces[j]
            if not wordy[j]:
                joinable = (view[s:e] == " " and j + 1 < len(pieces) and _LATIN.match(view[pieces[j - 1][0]:pieces[j - 1][1]])
                            and _LATIN.match(view[pieces[j + 1][0]:pieces[j + 1][1]]))
                if not joinable:
                    break
                j += 1
                continue
            taken += 1
            end = e
            if end - start > max_chars:
                break
            if end - start >= 2:
                found.append((start, end, i, taken))
            j += 1
    return found


class BrandSpanModel(BaseEstimator):
    """Learned brand spans in titles (scikit-learn estimator contract: ``fit`` returns self).

    Parameters: ``C`` (logistic regression), ``max_words`` / ``max_chars`` (longest candidate),
    ``threshold`` (None: chosen by ``cv``-fold cross-validation for the best span F1), ``n_features``
    (hashed feature space), ``user_words`` (extra jieba words, e.g. the brand lexicon).
    """

    def __init__(self, C: float = 1.0, max_words: int = 3, max_chars: int = 12, threshold: float | None = None,
                 cv: int = 3, n_features: int = 2 ** 20, user_words: Sequence[str] = ()):
        self.C = C
        self.max_words = max_words
        self.max_chars = max_chars
        self.threshold = threshold
        self.cv = cv
        self.n_features = n_features
        self.user_words = user_words

    # ------------------------------------------------------------------ features
    def _tokenizer(self):
        if getattr(self, "_jieba", None) is None:
            from .tokenize import TitleTokenizer

            self._jieba = TitleTokenizer(user_words=list(self.user_words), use_default_words=False,
                                         quantity_tokens=False)._ensure()
        return self._jieba

    def _title_candidates(self, title: str) -> tuple[str, list[tuple[int, int]], list[dict[str, float]]]:
        view = aligned_view(title)
        jieba = self._tokenizer()
        pieces = _pieces(view, jieba)
        spans, features = [], []
        for start, end, first, words in _candidates(view, pieces, self.max_words, self.max_chars):
            spans.append((start, end))
            features.append(self._features(view, pieces, start, end, first, words, jieba))
        return view, spans, features

    @staticmethod
    def _features(view: str, pieces, start: int, end: int, first: int, words: int, jieba) -> dict[str, float]:
        text = view[start:end]
        script = "latin" if _LATIN.match(text) else ("cjk" if not re.search(r"[a-z0-9]", text) else "mixed")
        last = first + words - 1
        left = view[pieces[first - 1][0]:pieces[first - 1][1]] if first > 0 else "^"
        right_index = next((k for k in range(first + 1, len(pieces)) if pieces[k][0] >= end), None)
        right = view[pieces[right_index][0]:pieces[right_index][1]] if right_index is not None else "$"
        freq = jieba.FREQ.get(text, 0)
        f = {
            f"s={text}": 1.0, f"len={min(len(text), 9)}": 1.0, f"script={script}": 1.0, f"words={words}": 1.0,
            f"first={text[0]}": 1.0, f"last={text[-1]}": 1.0, f"lw={left}": 1.0, f"rw={right}": 1.0,
            f"lc={view[start - 1] if start else '^'}": 1.0, f"rc={view[end] if end < len(view) else '$'}": 1.0,
            f"pos={_bucket(start, (0, 1, 4, 11, 25))}": 1.0, f"piece={_bucket(first, (0, 1, 2, 4, 8))}": 1.0,
            f"freq={_bucket(freq, (0, 1, 50, 500, 5000))}": 1.0, f"known={freq > 0}&words={words}": 1.0,
            f"script={script}&pos={_bucket(start, (0, 1, 4, 11))}": 1.0, f"rw={right}&script={script}": 1.0,
            "last_piece": float(last == len(pieces) - 1),
        }
        for char in set(text):
            f[f"c={char}"] = 1.0
        for k in range(len(text) - 1):
            f[f"b={text[k:k + 2]}"] = 1.0
        return f

    def _hasher(self):
        from sklearn.feature_extraction import FeatureHasher

        return FeatureHasher(n_features=self.n_features, input_type="dict", alternate_sign=False)

    # ------------------------------------------------------------------ training
    def _examples(self, titles: Sequence[str], brands: Sequence[Iterable[str]]):
        rows, labels, owners = [], [], []
        for t, (title, names) in enumerate(zip(titles, brands)):
            if not isinstance(title, str) or not title.strip():
                continue
            gold = {_key(n) for n in names or () if _key(n)}
            view, spans, features = self._title_candidates(title)
            for (start, end), feats in zip(spans, features):
                rows.append(feats)
                labels.append(_key(view[start:end]) in gold)
                owners.append(t)
        return rows, np.asarray(labels, bool), np.asarray(owners, int)

    def fit(self, titles: Sequence[str], brands: Sequence[Iterable[str]]) -> "BrandSpanModel":
        """``brands[i]``: the brand names written in ``titles[i]`` (empty when it names none)."""
        from sklearn.linear_model import LogisticRegression

        if len(titles) != len(brands):
            raise ValueError(f"{len(titles)} titles but {len(brands)} brand lists")
        rows, y, owners = self._examples(titles, brands)
        if y.sum() == 0 or y.all():
            raise ValueError("BrandSpanModel needs titles whose brand is written in them and candidates that are not brands")
        X = self._hasher().transform(rows)
        self.threshold_ = float(self.threshold) if self.threshold is not None else self._cv_threshold(
            X, y, owners, titles, brands)
        self.classifier_ = LogisticRegression(C=self.C, solver="liblinear").fit(X, y)
        self.n_titles_ = len(titles)
        return self

    def _cv_threshold(self, X, y, owners, titles, brands) -> float:
        from sklearn.linear_model import LogisticRegression

        folds = max(2, int(self.cv))
        fold_of = owners % folds
        proba = np.zeros(len(y))
        for k in range(folds):
            held = fold_of == k
            proba[held] = LogisticRegression(C=self.C, solver="liblinear").fit(X[~held], y[~held]).predict_proba(X[held])[:, 1]
        gold_total = sum(len({_key(n) for n in names or () if _key(n)}) for t, names in enumerate(brands)
                         if isinstance(titles[t], str) and titles[t].strip())
        best, best_f1 = 0.5, -1.0
        for threshold in np.arange(0.05, 0.81, 0.05):
            picked = proba >= threshold
            tp, fp = int((picked & y).sum()), int((picked & ~y).sum())
            f1 = 2 * tp / max(1, 2 * tp + fp + (gold_total - tp))
            if f1 > best_f1:
                best, best_f1 = float(round(threshold, 2)), f1
        return best

    # ------------------------------------------------------------------ finding
    def find(self, title: Any) -> list[TitleBrand]:
        """Brands the model finds in ``title``, best first, non-overlapping, one per brand."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "classifier_")
        if not isinstance(title, str) or not title.strip():
            return []
        view, spans, features = self._title_candidates(title)
        if not spans:
            return []
        proba = self.classifier_.predict_proba(self._hasher().transform(features))[:, 1]
        chosen: list[tuple[int, int, float]] = []
        for k in np.argsort(-proba):
            if proba[k] < self.threshold_:
                break
            start, end = spans[k]
            if any(s < end and start < e for s, e, _ in chosen):
                continue
            chosen.append((start, end, float(proba[k])))
        seen, out = set(), []
        for start, end, p in chosen:
            key = _key(view[start:end])
            if key in seen:
                continue
            seen.add(key)
            out.append(TitleBrand(title[start:end], title[start:end], start, end, round(0.5 + 0.4 * p, 4), "learned"))
        return out

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_jieba", None)
        return state


def _key(text: str) -> str:
    return "".join(aligned_view(str(text)).replace("\0", " ").split())


def _bucket(value: int, edges: tuple[int, ...]) -> str:
    for edge in reversed(edges):
        if value >= edge:
            return f">={edge}"
    return f"<{edges[0]}"


_BRAND_PARTS = re.compile(r"[()（）/|、,，\[\]【】]+")


def brands_written_in(title: Any, brand: Any) -> list[str]:
    """The forms of a catalogue ``brand`` value written in ``title``: ``鸿星尔克（ERKE）`` -> the parts
    ``鸿星尔克`` and ``ERKE`` (and the whole value) that the title contains. Empty when none is."""
    if not isinstance(title, str) or not isinstance(brand, str) or not brand.strip():
        return []
    parts = [brand.strip()] + [p.strip() for p in _BRAND_PARTS.split(brand) if p.strip()]
    title_key = _key(title)
    found = []
    for part in dict.fromkeys(parts):
        key = _key(part)
        if len(key) >= 2 and key in title_key and not any(key in _key(f) for f in found):
            found.append(part)
    return found


def span_scores(model: BrandSpanModel, titles: Sequence[str], brands: Sequence[Iterable[str]]) -> dict[str, float]:
    """Precision / recall / F1 of ``model.find`` against the brands written in each title."""
    tp = fp = fn = 0
    for title, names in zip(titles, brands):
        gold = {_key(n) for n in names or () if _key(n)}
        found = {_key(b.text) for b in model.find(title)}
        tp, fp, fn = tp + len(found & gold), fp + len(found - gold), fn + len(gold - found)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "tp": tp, "fp": fp, "fn": fn}


def held_out(title: str, share: int = 5) -> bool:
    """Whether ``title`` is in the 1-in-``share`` check split of ``skutag brands learn`` (by a hash)."""
    return int(hashlib.sha256(f"brand-check:{title}".encode()).hexdigest(), 16) % share == 0
