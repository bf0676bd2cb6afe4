"""Cold start: sensible category paths before any training data, from the managed taxonomy alone.

Three sources score every leaf of the category tree:

* **vision**: each top-k label's probability goes to the category the label map gives it (spread over
  the leaves below when the map points at an inner category);
* **title**: character-bigram TF-IDF similarity between the title and each leaf's "document" (its path
  names, keywords, synonyms, the vision labels mapped to it and the brands the lexicon files under it);
* **brands**: brands named in the title or read on the package vote for the categories the brand
  lexicon lists for them.

Scores are weighted (``FusionConfig.cold_start_*_weight``) and normalised with a prior mass of 1 spread
over all leaves, so weak evidence yields low confidence (and a review decision) rather than a confident
guess.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from .config import FusionConfig
from .evidence import Evidence
from .model import Scores
from .result import PATH_SEPARATOR

PRIOR_MASS = 0.5
TITLE_SHARPNESS = 25.0


class ColdStartScorer:
    """Scores evidence against the leaves of a ``taxonomy.CategoryTree`` without training."""

    def __init__(self, tree: Any = None, label_map: Any = None, lexicon: Any = None, config: FusionConfig | None = None):
        from skutag.taxonomy import CategoryTree, LabelMap

        self.tree = tree if tree is not None else CategoryTree.active()
        self.label_map = label_map if label_map is not None else LabelMap.active()
        if lexicon is None:
            from skutag.taxonomy.brands import BrandLexicon

            lexicon = BrandLexicon.active()
        self.lexicon = lexicon
        self.config = config or FusionConfig()
        leaves = self.tree.leaves()
        self.classes = np.asarray([PATH_SEPARATOR.join(self.tree.path_of(n.id)) for n in leaves], dtype=object)
        self._column = {leaf.id: i for i, leaf in enumerate(leaves)}
        self._leaf_columns_cache: dict[str, np.ndarray] = {}
        self._build_documents(leaves)

    # ------------------------------------------------------------------ setup
    def leaf_columns(self, path: Sequence[str] | str) -> np.ndarray:
        """Columns of the leaves at or below a category path (empty when the tree lacks it)."""
        key = path if isinstance(path, str) else PATH_SEPARATOR.join(path)
        cached = self._leaf_columns_cache.get(key)
        if cached is None:
            node = self.tree.find_path(key)
            if node is None:
                cached = np.zeros(0, dtype=int)
            elif node.id in self._column:
                cached = np.array([self._column[node.id]])
            else:
                cached = np.array([self._column[d.id] for d in self.tree.descendants(node.id) if d.id in self._column])
            self._leaf_columns_cache[key] = cached
        return cached

    def _build_documents(self, leaves) -> None:
        docs: list[list[str]] = []
        for leaf in leaves:
            words = []
            for node in [*self.tree.ancestors(leaf.id), leaf]:
                weight = 3 if node.id == leaf.id else 1
                words.extend([node.name, *node.keywords, *node.synonyms] * weight)
            docs.append(words)
        for entry in self.label_map.entries():
            for column in self.leaf_columns(entry.path):
                docs[column].append(entry.label)
        for brand in self.lexicon:
            for category in brand.categories:
                for column in self.leaf_columns(category):
                    docs[column].extend([brand.name, *brand.aliases])
        self._vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 2), sublinear_tf=True, lowercase=True)
        self._leaf_matrix = self._vectorizer.fit_transform([" ".join(d) for d in docs])

    @property
    def versions(self) -> dict[str, str]:
        return {"taxonomy": self.tree.version, "label_map": self.label_map.version, "lexicon": self.lexicon.version}

    # ------------------------------------------------------------------ scoring
    def score(self, evidence: Sequence[Evidence]) -> Scores:
        n, k = len(evidence), len(self.classes)
        sources = {"vision": np.zeros((n, k)), "title": np.zeros((n, k)), "brand": np.zeros((n, k))}
        for row, ev in enumerate(evidence):
            if ev.vision is not None:
                self._add_vision(sources["vision"][row], ev)
            self._add_brands(sources["brand"][row], ev)
        titled = [i for i, ev in enumerate(evidence) if ev.title]
        if titled:
            sims = (self._vectorizer.transform([evidence[i].title for i in titled]) @ self._leaf_matrix.T).toarray()
            for i, sim in zip(titled, sims):
                sources["title"][i] = _title_mass(sim)
        weights = {"vision": self.config.cold_start_vision_weight, "title": self.config.cold_start_title_weight,
                   "brand": self.config.cold_start_brand_weight}
        total = sum(weights[name] * sources[name] for name in sources)
        proba = (total + PRIOR_MASS / k) / (total.sum(axis=1, keepdims=True) + PRIOR_MASS)
        best = proba.argmax(axis=1)
        contributions = []
        for row in range(n):
            parts = {name: weights[name] * sources[name][row, best[row]] for name in sources}
            whole = sum(parts.values())
            contributions.append({name: round(float(v / whole), 3) for name, v in parts.items() if v > 0} if whole > 0 else {})
        return Scores(classes=self.classes, proba=proba, contributions=contributions, source="cold-start")

    def _add_vision(self, out: np.ndarray, ev: Evidence) -> None:
        for label, index, prob in ev.vision.labels[: self.config.vision_top_k]:
            path = self.label_map.lookup(label, index)
            if path is None:
                continue
            columns = self.leaf_columns(path)
            if len(columns):
                out[columns] += prob / len(columns)

    def _add_brands(self, out: np.ndarray, ev: Evidence) -> None:
        votes: dict[str, float] = defaultdict(float)
        for brand in ev.title_brands:
            votes[brand] = max(votes[brand], 1.0)
        if ev.ocr is not None:
            for brand, score in ev.ocr.brands:
                votes[brand] = max(votes[brand], float(score))
        for brand, score in votes.items():
            canonical = self.lexicon.resolve(brand)
            if canonical is None:
                continue
            categories = self.lexicon.categories_of(canonical)
            columns = np.unique(np.concatenate([self.leaf_columns(c) for c in categories])) if categories else []
            if len(columns):
                out[columns] += score / len(columns)


def _title_mass(sim: np.ndarray) -> np.ndarray:
    """A distribution over leaves from title similarities, scaled by how well the best leaf matches."""
    top = float(sim.max())
    if top <= 0.05:
        return np.zeros_like(sim)
    weights = np.exp(TITLE_SHARPNESS * (sim - top))
    weights[sim <= 0] = 0.0
    return min(1.0, 2.0 * top) * weights / weights.sum()
