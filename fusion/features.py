"""Evidence -> one sparse feature matrix with a column block per modality (for ``FusionTagger``).

Blocks (only modalities present in the training evidence get one):

* ``vision``: the backbone embedding (dense) + the top-k label probabilities (one column per label seen
  in training).
* ``ocr``: an "OCR ran" flag, recognised brands (score-weighted one-hot) and character n-gram TF-IDF of
  the text read on the package.
* ``title``: ``text.TitleFeaturizer`` (jieba words + character n-grams) + brands the title names.
* ``price``: log price and its square, standardised, plus a "has price" flag.

A modality missing for a product leaves its block row empty, which ``FusionTagger`` reads as missing.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction import DictVectorizer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize
from sklearn.utils.validation import check_is_fitted

from .config import MODALITIES
from .evidence import Evidence

OCR_TEXT_WEIGHTINGS = ("flat", "prominence")
PROMINENCE_POWER = 4.0  # a line's weight: its prominence to this power


class EvidenceFeaturizer(TransformerMixin, BaseEstimator):
    """Turns a list of ``Evidence`` into a CSR matrix; ``blocks_`` names each modality's columns.

    Parameters
    ----------
    modalities : modalities to use (those absent from all training evidence are skipped).
    vision_top_k : label probabilities kept per image.
    title_featurizer : an unfitted title transformer (default ``text.TitleFeaturizer()``).
    ocr_min_df : minimum document frequency of OCR character n-grams.
    ocr_text_weighting : ``"flat"`` (the lines read, joined, as one text) or ``"prominence"`` (each line's
        normalised n-gram vector weighted by how prominent the line is in the photo: large text near the
        middle, the product's own label, outweighs small text at the edges, a neighbour's package).
    """

    def __init__(self, modalities: Sequence[str] = MODALITIES, vision_top_k: int = 5, title_featurizer: Any = None,
                 ocr_min_df: int = 2, ocr_text_weighting: str = "prominence"):
        self.modalities = modalities
        self.vision_top_k = vision_top_k
        self.title_featurizer = title_featurizer
        self.ocr_min_df = ocr_min_df
        self.ocr_text_weighting = ocr_text_weighting

    def fit(self, X: Sequence[Evidence], y: Any = None) -> "EvidenceFeaturizer":
        self._fit_transform(list(X), fit=True)
        return self

    def fit_transform(self, X: Sequence[Evidence], y: Any = None, **params: Any) -> sp.csr_matrix:
        return self._fit_transform(list(X), fit=True)

    def transform(self, X: Sequence[Evidence]) -> sp.csr_matrix:
        check_is_fitted(self, "blocks_")
        return self._fit_transform(list(X), fit=False)

    # ------------------------------------------------------------------ internals
    def _fit_transform(self, evidence: list[Evidence], fit: bool) -> sp.csr_matrix:
        unknown = set(self.modalities) - set(_BUILDERS)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; known: {sorted(_BUILDERS)}")
        fitted: dict[str, sp.csr_matrix] = {}
        if fit:
            self.parts_ = {}
            for name in self.modalities:
                part = _BUILDERS[name](self)
                matrix = part.fit_transform(evidence)
                if matrix is not None:
                    self.parts_[name], fitted[name] = part, matrix
            if not self.parts_:
                raise ValueError("the training evidence has none of the modalities "
                                 f"{list(self.modalities)} (no image, title or price in any row)")
        matrices, blocks, start = [], [], 0
        for name, part in self.parts_.items():
            matrix = (fitted[name] if fit else part.transform(evidence)).tocsr()
            matrices.append(matrix)
            blocks.append((name, slice(start, start + matrix.shape[1])))
            start += matrix.shape[1]
        if fit:
            self.blocks_ = blocks
            self.n_features_out_ = start
        return sp.hstack(matrices, format="csr", dtype=np.float64)

    @property
    def modalities_(self) -> list[str]:
        check_is_fitted(self, "blocks_")
        return [name for name, _ in self.blocks_]


# ---------------------------------------------------------------------- per-modality parts
class _Part(ABC):
    """One modality's columns: ``fit`` (False: no training row has it), ``transform``, and ``fit_transform``
    (the fitted part's matrix of the training rows, or None), which a part overrides where fitting already
    computes it (titles: tokenising twice is most of the featurizing time)."""

    @abstractmethod
    def fit(self, evidence: list[Evidence]) -> bool: ...

    @abstractmethod
    def transform(self, evidence: list[Evidence]) -> sp.csr_matrix: ...

    def fit_transform(self, evidence: list[Evidence]) -> sp.csr_matrix | None:
        return self.transform(evidence) if self.fit(evidence) else None


class _VisionPart(_Part):
    def __init__(self, owner: EvidenceFeaturizer):
        self.top_k = int(owner.vision_top_k)

    def fit(self, evidence: list[Evidence]) -> bool:
        with_vision = [e.vision for e in evidence if e.vision is not None]
        if not with_vision:
            return False
        dims = {len(v.embedding) for v in with_vision if v.embedding is not None}
        if len(dims) > 1:
            raise ValueError(f"vision embeddings of different sizes {sorted(dims)}: mixed backbones in one training set")
        self.dim = dims.pop() if dims else 0
        seen = sorted({index for v in with_vision for _, index, _ in v.labels[: self.top_k]})
        self.label_column = {index: self.dim + i for i, index in enumerate(seen)}
        self.labels = {index: label for v in with_vision for label, index, _ in v.labels[: self.top_k]}
        return True

    def transform(self, evidence: list[Evidence]) -> sp.csr_matrix:
        width = self.dim + len(self.label_column)
        rows, cols, vals = [], [], []
        for r, e in enumerate(evidence):
            v = e.vision
            if v is None:
                continue
            if v.embedding is not None and self.dim:
                if len(v.embedding) != self.dim:
                    raise ValueError(f"product {e.id}: vision embedding has {len(v.embedding)} values, the model "
                                     f"was trained with {self.dim} (another vision backbone?)")
                rows.extend([r] * self.dim)
                cols.extend(range(self.dim))
                vals.extend(np.asarray(v.embedding, dtype=np.float64).tolist())
            for _, index, prob in v.labels[: self.top_k]:
                column = self.label_column.get(index)
                if column is not None and prob > 0:
                    rows.append(r)
                    cols.append(column)
                    vals.append(float(prob))
        return sp.csr_matrix((vals, (rows, cols)), shape=(len(evidence), width))


class _OcrPart(_Part):
    def __init__(self, owner: EvidenceFeaturizer):
        self.min_df = int(owner.ocr_min_df)
        self.weighting = owner.ocr_text_weighting
        if self.weighting not in OCR_TEXT_WEIGHTINGS:
            raise ValueError(f"ocr_text_weighting must be one of {OCR_TEXT_WEIGHTINGS}, not {self.weighting!r}")

    def fit(self, evidence: list[Evidence]) -> bool:
        with_ocr = [e.ocr for e in evidence if e.ocr is not None]
        if not with_ocr:
            return False
        self.brands = DictVectorizer().fit([dict(o.brands) for o in with_ocr])
        texts = [_ocr_text(o) for o in with_ocr]
        self.text = None
        if sum(1 for t in texts if t) >= 2:
            self.text = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=min(self.min_df, 2),
                                        sublinear_tf=True, max_features=30000, lowercase=True, dtype=np.float64)
            try:
                self.text.fit(texts)
            except ValueError:  # nothing survives min_df
                self.text = None
        return True

    def transform(self, evidence: list[Evidence]) -> sp.csr_matrix:
        ran = np.array([e.ocr is not None for e in evidence], dtype=np.float64)
        empty_text = np.array([e.ocr is not None and not _ocr_text(e.ocr) for e in evidence], dtype=np.float64)
        flags = sp.csr_matrix(np.column_stack([ran, empty_text]))
        brand_rows = [{b: s for b, s in e.ocr.brands} if e.ocr is not None else {} for e in evidence]
        parts = [flags, self.brands.transform(brand_rows)]
        if self.text is not None:
            parts.append(self._text_features([e.ocr for e in evidence]))
        return sp.hstack(parts, format="csr")

    def _text_features(self, ocrs: list) -> sp.csr_matrix:
        if self.weighting == "flat":
            return self.text.transform([_ocr_text(o) if o is not None else "" for o in ocrs])
        return self._prominence_weighted(ocrs)

    def _prominence_weighted(self, ocrs: list) -> sp.csr_matrix:
        """Each kept line's TF-IDF vector (L2-normalised on its own) times its prominence weight, summed per
        product and L2-normalised again: a line counts by how prominent it is, not by how long it is."""
        texts, owners, weights = [], [], []
        for row, ocr in enumerate(ocrs):
            for text, weight in _weighted_ocr_lines(ocr):
                texts.append(text)
                owners.append(row)
                weights.append(weight)
        width = len(self.text.vocabulary_)
        if not texts:
            return sp.csr_matrix((len(ocrs), width))
        per_line = self.text.transform(texts)
        gather = sp.csr_matrix((weights, (owners, np.arange(len(texts)))), shape=(len(ocrs), len(texts)))
        return normalize(gather @ per_line, norm="l2", copy=False).tocsr()


class _TitlePart(_Part):
    def __init__(self, owner: EvidenceFeaturizer):
        self.prototype = owner.title_featurizer

    def fit(self, evidence: list[Evidence]) -> bool:
        return self.fit_transform(evidence) is not None

    def fit_transform(self, evidence: list[Evidence]) -> sp.csr_matrix | None:
        titled = [i for i, e in enumerate(evidence) if e.title]
        titles = [evidence[i].title for i in titled]
        if not titles:
            return None
        from sklearn.base import clone

        if self.prototype is None:
            from skutag.text import TextConfig, TitleFeaturizer

            self.featurizer = TitleFeaturizer.from_config(TextConfig())
        else:
            self.featurizer = clone(self.prototype)
        if len(titles) < 200:  # a small catalog: a word seen once is still worth a column
            self.featurizer.set_params(min_df=1)
        text = _scatter_rows(self.featurizer.fit_transform(titles).tocsr(), titled, len(evidence))
        self.brands = DictVectorizer().fit([{b: 1.0 for b in e.title_brands} for e in evidence])
        return self._with_brands(text, evidence)

    def transform(self, evidence: list[Evidence]) -> sp.csr_matrix:
        titled = [i for i, e in enumerate(evidence) if e.title]
        text = sp.csr_matrix((len(evidence), self.featurizer.n_features_out_))
        if titled:
            features = self.featurizer.transform([evidence[i].title for i in titled]).tocsr()
            text = _scatter_rows(features, titled, len(evidence))
        return self._with_brands(text, evidence)

    def _with_brands(self, text: sp.csr_matrix, evidence: list[Evidence]) -> sp.csr_matrix:
        brand_rows = [{b: 1.0 for b in e.title_brands} if e.title else {} for e in evidence]
        return sp.hstack([text, self.brands.transform(brand_rows)], format="csr")


class _PricePart(_Part):
    def __init__(self, owner: EvidenceFeaturizer):
        pass

    def fit(self, evidence: list[Evidence]) -> bool:
        logs = np.array([math.log1p(e.price) for e in evidence if e.price is not None and e.price >= 0])
        if len(logs) < 2:
            return False
        self.mean, self.std = float(logs.mean()), float(logs.std() or 1.0)
        return True

    def transform(self, evidence: list[Evidence]) -> sp.csr_matrix:
        out = np.zeros((len(evidence), 4))
        for r, e in enumerate(evidence):
            if e.price is None or e.price < 0:
                continue
            z = (math.log1p(e.price) - self.mean) / self.std
            out[r] = (1.0, z, z * z, z ** 3 / 3.0)
        return sp.csr_matrix(out)


_BUILDERS = {"vision": _VisionPart, "ocr": _OcrPart, "title": _TitlePart, "price": _PricePart}


def _ocr_text(ocr) -> str:
    return " ".join(text for text, score in ocr.lines if score >= 0.5).strip()


def _weighted_ocr_lines(ocr) -> list[tuple[str, float]]:
    """The lines ``_ocr_text`` keeps, each with its prominence weight (1 where none was recorded)."""
    if ocr is None:
        return []
    prominence = getattr(ocr, "prominence", ()) or ()
    if len(prominence) != len(ocr.lines):
        prominence = (1.0,) * len(ocr.lines)
    return [(text, float(p) ** PROMINENCE_POWER)
            for (text, score), p in zip(ocr.lines, prominence) if score >= 0.5 and text.strip()]


def _scatter_rows(matrix: sp.csr_matrix, rows: list[int], n_rows: int) -> sp.csr_matrix:
    """Place ``matrix``'s rows at positions ``rows`` of an ``n_rows``-row matrix (others empty)."""
    selector = sp.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(n_rows, len(rows)))
    return (selector @ matrix).tocsr()
