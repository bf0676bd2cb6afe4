"""The stored rules on top of a model's answer, the audit sample and the save path.

One snapshot (``Rules.read``) is read for a batch and applied to each result by the HTTP service and by batch
jobs that save into the same product database (``skutag batch --db``, ``skutag worker --db``), so a product
reads the same whichever way it was tagged. The review whitelist is ``decision.always_review`` (the config)
plus the prefixes stored through the dashboard; the audit share is ``decision.audit_rate``, drawn by
``skutag.fusion.decision.in_audit_sample`` as the decision layer draws it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from skutag.catalog import PATH_SEPARATOR
from skutag.fusion.config import DecisionConfig
from skutag.fusion.decision import in_audit_sample
from skutag.fusion.result import Decision, TagResult
from skutag.policy.renames import renamed_result

if TYPE_CHECKING:
    from skutag.store.repository import Store
    from skutag.store.views import ProductView
    from skutag.tagger import Tagger
    from skutag.taxonomy.brands import BrandLexicon


@dataclass(frozen=True)
class Rules:
    """Stored resources read once: old path -> today's path, label -> path overrides, always-reviewed prefixes
    (and which edited brand lexicon is in force: the taggers read brands with it, ``install_stored_lexicon``)."""

    path_aliases: dict[str, str]
    label_map: dict[str, str]
    whitelist: list[str]
    lexicon_version: int | None = None  # the edited brand lexicon's version (None: the model's own lexicon)

    @classmethod
    def read(cls, store: Store, always_review: Sequence[str] = ()) -> "Rules":
        """The rules stored in ``store`` now; ``always_review``: the configured prefixes
        (``decision.always_review``) that join the stored ones."""
        return cls(path_aliases=stored_mapping(store, "path_aliases"), label_map=stored_mapping(store, "label_map"),
                   whitelist=stored_whitelist(store, always_review), lexicon_version=stored_version(store, "lexicon"))

    def apply(self, result: TagResult) -> TagResult:
        """``result`` under these rules, each change named in its reasons (an answer that carries a note, e.g.
        a photo that could not be read beside a title that could, is an answer like any other)."""
        if result.path is None:
            return result
        result = renamed_result(result, self.path_aliases)
        target = self.label_map.get(result.label) if result.label else None
        if target is not None and target != result.path:
            result = dataclasses.replace(result, path=target,
                                         reasons=result.reasons + (f"label map: {result.label} -> {target}",))
        if result.decision is Decision.AUTO and result.path:
            prefix = next((p for p in self.whitelist if under(result.path, p)), None)
            if prefix is not None:
                result = dataclasses.replace(result, decision=Decision.REVIEW,
                                             reasons=result.reasons + (f"whitelist: {prefix} is always reviewed",))
        return result


def stored_mapping(store: Store, kind: str) -> dict[str, str]:
    """A stored ``path_aliases`` or ``label_map`` resource (empty when none was saved)."""
    stored = store.resource(kind)
    return dict(stored.content) if stored else {}


def stored_version(store: Store, kind: str) -> int | None:
    """The version of a stored resource, None when none was saved."""
    stored = store.resource(kind)
    return stored.version if stored else None


def stored_whitelist(store: Store, configured: Sequence[str] = ()) -> list[str]:
    """The stored review whitelist together with the configured prefixes."""
    stored = store.resource("whitelist")
    return sorted(set(configured) | set(stored.content.get("paths", []) if stored else ()))


def stored_lexicon(store: Store) -> tuple[int, BrandLexicon] | None:
    """``(version, BrandLexicon)`` of the brand lexicon edited through the service, or None when none was saved."""
    stored = store.resource("lexicon")
    if stored is None:
        return None
    return stored.version, lexicon_from_entries(stored.content)


def lexicon_from_entries(entries: dict[str, Any]) -> BrandLexicon:
    """A ``BrandLexicon`` from stored entries ``{name: {"aliases": [...], "categories": [...]}}``; raises
    ``taxonomy.brands.LexiconError`` when they clash (an alias that is another brand's name ...)."""
    from skutag.taxonomy.brands import Brand, BrandLexicon

    return BrandLexicon(Brand(name, tuple(entry.get("aliases", ())), tuple(entry.get("categories", ())))
                        for name, entry in entries.items())


def install_stored_lexicon(store: Store, tagger: Tagger) -> int | None:
    """Hand the database's edited brand lexicon to ``tagger`` (``Tagger.use_lexicon``); the stored version, or
    None when none is stored or the tagger reads no brands."""
    found = stored_lexicon(store)
    if found is None:
        return None
    version, lexicon = found
    return version if tagger.use_lexicon(lexicon) else None


def audit_sampled(product_id: str, result: TagResult, decision: DecisionConfig) -> bool:
    """Whether an auto-tagged product goes to the audit page: the decision layer's audit draw
    (``decision.audit_rate``), or an answer the decision layer already sent to review as an audit."""
    if result.decision is not Decision.AUTO:
        return False
    if any("audit" in reason for reason in result.reasons):
        return True
    return in_audit_sample(product_id, decision.audit_rate, decision.audit_seed)


def save_answer(store: Store, product_id: str, *, title: str | None, price: float | None, brand: str | None,
                image_id: int | None, result: TagResult, rules: Rules, decision: DecisionConfig,
                **extra: Any) -> ProductView:
    """The save path: ``result`` under ``rules``, the audit draw, then the product database (one transaction per
    product, ``Store.save_tagging``)."""
    result = rules.apply(result)
    return store.save_tagging(product_id, title=title, price=price, brand=brand, image_id=image_id, result=result,
                              model_version=result.model_version or "unknown",
                              audit=audit_sampled(product_id, result, decision), **extra)


def audit_check(correct: int, audited: int, target: float) -> dict[str, Any]:
    """Audited precision against the promised one (``decision.target_precision``): ``below`` when even the upper
    end of its 95% interval is under the target, ``meets`` when the lower end reaches it, ``uncertain``
    otherwise (too few audits to tell), ``none`` without audits."""
    from skutag.fusion.thresholds import precision_interval

    interval = precision_interval(correct, audited)
    if interval is None:
        status = "none"
    elif interval[1] < target:
        status = "below"
    elif interval[0] >= target:
        status = "meets"
    else:
        status = "uncertain"
    return {"target_precision": target, "audited": audited,
            "audited_precision": round(correct / audited, 4) if audited else None,
            "interval": None if interval is None else [round(interval[0], 4), round(interval[1], 4)],
            "status": status}


def under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or a category below it."""
    return path == prefix or path.startswith(prefix + PATH_SEPARATOR)
