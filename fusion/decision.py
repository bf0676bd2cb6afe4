"""From class probabilities to a ``TagResult``: rules, thresholds, tiers, whitelist and audit sample.

Order for each product:

1. **Rules** (``RuleEngine``): synonyms merge label aliases into their canonical class, banned labels
   lose their probability, and the chosen path must be a known category path ending in its label
   (path consistency).
2. **Threshold**: the class's own threshold (chosen on held-out predictions so auto-tags of that class
   reach ``target_precision``) or the global ``auto_threshold`` (the article's 60%).
3. **Tiers**: ``auto`` at or above the threshold, ``review`` at or above ``review_threshold``, else
   ``manual``. With ``backoff_to_parent``, an unsure leaf whose parent category is confident is
   suggested at the parent level for review.
4. **Whitelist**: categories in ``always_review`` never go to auto.
5. **Audit**: a deterministic random share (``audit_rate``, by product id) of auto-tags goes to review.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from .config import DecisionConfig
from .result import PATH_SEPARATOR, Alternative, Decision, TagResult

if TYPE_CHECKING:
    from .model import Scores


def leaf_of(path: str) -> str:
    return path.rsplit(PATH_SEPARATOR, 1)[-1]


def parent_of(path: str) -> str | None:
    return path.rsplit(PATH_SEPARATOR, 1)[0] if PATH_SEPARATOR in path else None


# ---------------------------------------------------------------------- rules
@dataclass
class RuleEngine:
    """Synonyms (label or path -> canonical label or path), banned labels/paths, path consistency."""

    synonyms: Mapping[str, str] = field(default_factory=dict)
    banned: Sequence[str] = ()
    known_paths: set[str] | None = None
    path_consistency: bool = True

    @classmethod
    def from_config(cls, config: DecisionConfig, known_paths: Iterable[str] | None = None) -> "RuleEngine":
        synonyms = dict(config.synonyms)
        banned = list(config.banned_labels)
        if config.rules_file:
            extra = load_rules_file(config.rules_file)
            synonyms.update(extra.get("synonyms", {}))
            banned.extend(extra.get("banned_labels", []))
        return cls(synonyms=synonyms, banned=tuple(banned),
                   known_paths=set(known_paths) if known_paths is not None else None,
                   path_consistency=config.path_consistency)

    def canonical(self, path: str) -> str:
        """The path after synonyms (full-path synonyms first, then leaf-label synonyms)."""
        target = self.synonyms.get(path)
        if target is None:
            target = self.synonyms.get(leaf_of(path))
            if target is None:
                return path
        if PATH_SEPARATOR in target:
            return target
        parent = parent_of(path)
        return f"{parent}{PATH_SEPARATOR}{target}" if parent else target

    def is_banned(self, path: str) -> bool:
        return any(path == b or leaf_of(path) == b or path.startswith(b + PATH_SEPARATOR) for b in self.banned)

    def apply(self, classes: Sequence[str], proba: np.ndarray) -> tuple[list[str], np.ndarray, list[str]]:
        """Merge synonyms and drop banned classes. Returns (classes, proba, notes). What remains is not
        renormalised: when the model believed in a banned label, the answer left is as unsure as it was."""
        merged: dict[str, float] = {}
        notes: list[str] = []
        for path, p in zip(classes, proba):
            canonical = self.canonical(str(path))
            if self.is_banned(canonical):
                continue
            merged[canonical] = merged.get(canonical, 0.0) + float(p)
        if not merged:
            return [], np.zeros(0), ["every candidate label is banned"]
        removed = float(np.sum(proba)) - sum(merged.values())
        out_classes = list(merged)
        if removed > 1e-9:
            notes.append(f"banned labels removed ({removed:.0%} of the probability)")
        return out_classes, np.array([merged[c] for c in out_classes]), notes

    def consistent(self, path: str) -> str | None:
        """None when the path is fine, else why not."""
        if not self.path_consistency:
            return None
        if any(not level.strip() for level in path.split(PATH_SEPARATOR)):
            return f"path {path!r} has an empty level"
        if self.known_paths is not None and path not in self.known_paths:
            return f"path {path!r} is not in the category tree"
        return None


def _distinct(confidence: float, threshold: float, kind: str) -> tuple[str, str, str]:
    """Confidence, threshold kind and threshold for a reason, with enough decimals that they read apart
    (never "confidence 1.00 below auto threshold 1.00")."""
    for decimals in (2, 4, 6):
        shown = f"{confidence:.{decimals}f}", f"{threshold:.{decimals}f}"
        if shown[0] != shown[1] or confidence == threshold:
            break
    return shown[0], kind, shown[1]


def load_rules_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"decision rules file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yml", ".yaml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the rules file must hold a mapping with synonyms / banned_labels / always_review")
    return data


def _agreeing_sources(contributions: Mapping[str, float], share: float = 0.2) -> int:
    return sum(1 for value in contributions.values() if value >= share)


# ---------------------------------------------------------------------- decider
def in_audit_sample(product_id: str, rate: float, seed: int = 0) -> bool:
    """The one audit draw: a fixed share ``rate`` of products, drawn by product id (and ``seed``), so the same
    product is drawn or not whether the CLI, a batch or the service decides it."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{product_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


class Decider:
    """Turns ``Scores`` into ``TagResult``s under a ``DecisionConfig``."""

    def __init__(self, config: DecisionConfig | None = None, class_thresholds: Mapping[str, float] | None = None,
                 known_paths: Iterable[str] | None = None, top_k: int = 5):
        self.config = config or DecisionConfig()
        self.class_thresholds = dict(class_thresholds or {}) if self.config.per_class_thresholds else {}
        self.rules = RuleEngine.from_config(self.config, known_paths)
        always = list(self.config.always_review)
        if self.config.rules_file:
            always.extend(load_rules_file(self.config.rules_file).get("always_review", []))
        self.always_review = tuple(always)
        self.top_k = top_k

    def threshold_for(self, path: str) -> float:
        return self.class_thresholds.get(path, self.config.auto_threshold)

    def in_audit_sample(self, product_id: str) -> bool:
        return in_audit_sample(product_id, self.config.audit_rate, self.config.audit_seed)

    def whitelisted(self, path: str) -> bool:
        return any(path == w or path.startswith(w + PATH_SEPARATOR) for w in self.always_review)

    def decide_batch(self, ids: Sequence[str], scores: Scores, *, model_version: str | None = None,
                     errors: Sequence[Sequence[str]] | None = None, audit: bool = True) -> list[TagResult]:
        out = []
        for row, product_id in enumerate(ids):
            contributions = scores.contributions[row] if scores.contributions else {}
            row_errors = errors[row] if errors is not None else ()
            out.append(self.decide(product_id, scores.classes, scores.proba[row], contributions,
                                   model_version=model_version, errors=row_errors, audit=audit,
                                   source=scores.source))
        return out

    def decide(self, product_id: str, classes: Sequence[str], proba: np.ndarray, contributions: Mapping[str, float],
               *, model_version: str | None = None, errors: Sequence[str] = (), audit: bool = True,
               source: str = "model") -> TagResult:
        error = "; ".join(errors) if errors else None
        classes, proba, reasons = self.rules.apply(classes, proba)
        if not classes:
            return TagResult(id=product_id, label=None, path=None, confidence=0.0, decision=Decision.MANUAL,
                             reasons=tuple(reasons), model_version=model_version, error=error)
        order = np.argsort(-proba, kind="stable")
        best = int(order[0])
        path, confidence = classes[best], float(proba[best])
        alternatives = tuple(Alternative(label=leaf_of(classes[j]), path=classes[j], confidence=round(float(proba[j]), 4))
                             for j in order[1:self.top_k])
        if source != "model":
            reasons.append(f"{source}: no trained model")
        problem = self.rules.consistent(path)
        threshold = self.threshold_for(path)
        if problem:
            decision = Decision.REVIEW if confidence >= self.config.review_threshold else Decision.MANUAL
            reasons.append(problem)
        elif confidence >= threshold and source != "model" and _agreeing_sources(contributions) < 2:
            decision = Decision.REVIEW
            reasons.append(f"confidence {confidence:.2f}, but without a trained model one source alone never "
                           "auto-tags")
        elif confidence >= threshold:
            decision = Decision.AUTO
            kind = "class threshold" if path in self.class_thresholds else "global threshold"
            reasons.append("confidence {} >= {} {}".format(*_distinct(confidence, threshold, kind)))
        elif confidence >= self.config.review_threshold:
            decision = Decision.REVIEW
            reasons.append("confidence {} below {} {}".format(*_distinct(confidence, threshold, "auto threshold")))
        else:
            decision = Decision.MANUAL
            reasons.append("confidence {} below {} {}".format(
                *_distinct(confidence, self.config.review_threshold, "review threshold")))
            parent = self._confident_parent(classes, proba) if self.config.backoff_to_parent else None
            if parent is not None:
                path, confidence = parent
                decision = Decision.REVIEW
                reasons.append(f"suggesting parent category {path!r} ({confidence:.2f})")
        if decision is Decision.AUTO and self.whitelisted(path):
            decision = Decision.REVIEW
            reasons.append("category is on the always-review list")
        if decision is Decision.AUTO and audit and self.in_audit_sample(product_id):
            decision = Decision.REVIEW
            reasons.append(f"random audit sample ({self.config.audit_rate:.0%} of auto-tags)")
        return TagResult(
            id=product_id, label=leaf_of(path), path=path, confidence=round(confidence, 4), decision=decision,
            alternatives=alternatives, contributions=dict(contributions), reasons=tuple(reasons),
            model_version=model_version, error=error,
        )

    def _confident_parent(self, classes: Sequence[str], proba: np.ndarray) -> tuple[str, float] | None:
        totals: dict[str, float] = {}
        for path, p in zip(classes, proba):
            parent = parent_of(path)
            while parent:
                totals[parent] = totals.get(parent, 0.0) + float(p)
                parent = parent_of(parent)
        if not totals:
            return None
        # the deepest parent that is as confident as an auto-tag would have to be
        candidates = [(path.count(PATH_SEPARATOR), p, path) for path, p in totals.items()
                      if p >= self.config.auto_threshold]
        if not candidates:
            return None
        _, p, path = max(candidates)
        return path, p
