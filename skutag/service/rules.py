"""The service's stored rules on top of a model's answer: renamed categories, label-map overrides, the review
whitelist. One snapshot (``ServiceRules.read``) is read for a batch and applied to each result, by the HTTP
service and by batch jobs that save into the same product database (``skutag batch --db``,
``skutag worker --db``), so a product reads the same whichever way it was tagged."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

from skutag.fusion.result import Decision, TagResult
from skutag.catalog import PATH_SEPARATOR
from skutag.service.renames import renamed_result


@dataclass(frozen=True)
class ServiceRules:
    """Stored resources read once: old path -> today's path, label -> path overrides, always-reviewed prefixes
    (and which edited brand lexicon is in force: the taggers read brands with it, ``install_stored_lexicon``)."""

    path_aliases: dict[str, str]
    label_map: dict[str, str]
    whitelist: list[str]
    lexicon_version: int | None = None  # the edited brand lexicon's version (None: the model's own lexicon)

    @classmethod
    def read(cls, store: Any, whitelist: Sequence[str] = ()) -> "ServiceRules":
        """The rules stored in ``store`` (a ``skutag.store.Store``) now; ``whitelist``: prefixes configured
        beside the stored ones (``service.review_whitelist``)."""
        return cls(path_aliases=stored_mapping(store, "path_aliases"), label_map=stored_mapping(store, "label_map"),
                   whitelist=stored_whitelist(store, whitelist), lexicon_version=stored_version(store, "lexicon"))

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


def stored_mapping(store: Any, kind: str) -> dict[str, str]:
    """A stored ``path_aliases`` or ``label_map`` resource (empty when none was saved)."""
    stored = store.resource(kind)
    return dict(stored.content) if stored else {}


def stored_version(store: Any, kind: str) -> int | None:
    """The version of a stored resource, None when none was saved."""
    stored = store.resource(kind)
    return stored.version if stored else None


def stored_whitelist(store: Any, configured: Sequence[str] = ()) -> list[str]:
    """The stored review whitelist together with the configured prefixes."""
    stored = store.resource("whitelist")
    return sorted(set(configured) | set(stored.content.get("paths", []) if stored else ()))


def stored_lexicon(store: Any):
    """``(version, BrandLexicon)`` of the brand lexicon edited through the service, or None when none was saved."""
    stored = store.resource("lexicon")
    if stored is None:
        return None
    return stored.version, lexicon_from_entries(stored.content)


def lexicon_from_entries(entries: dict[str, Any]):
    """A ``BrandLexicon`` from stored entries ``{name: {"aliases": [...], "categories": [...]}}``; raises
    ``taxonomy.brands.LexiconError`` when they clash (an alias that is another brand's name ...)."""
    from skutag.taxonomy.brands import Brand, BrandLexicon

    return BrandLexicon(Brand(name, tuple(entry.get("aliases", ())), tuple(entry.get("categories", ())))
                        for name, entry in entries.items())


def install_stored_lexicon(store: Any, tagger: Any) -> int | None:
    """Hand the database's edited brand lexicon to ``tagger``'s brand readers (``Pipeline.use_lexicon``); the
    stored version, or None when none is stored or the tagger reads no brands."""
    found = stored_lexicon(store)
    if found is None:
        return None
    version, lexicon = found
    if callable(getattr(tagger, "use_lexicon", None)):
        tagger.use_lexicon(lexicon)
    elif hasattr(getattr(tagger, "collector", None), "lexicon"):
        tagger.collector.lexicon = lexicon
    else:
        return None
    return version


def audit_sampled(product_id: str, model_version: str, result: TagResult, rate: float) -> bool:
    """Whether an auto-tagged product goes to the service's audit page (``service.audit_rate``): a fixed share
    of auto-tags, drawn by product id and model version (the same product and model: the same draw)."""
    if result.decision is not Decision.AUTO:
        return False
    if any("audit" in reason for reason in result.reasons):
        return True
    digest = hashlib.sha256(f"{product_id}|{model_version}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or a category below it."""
    return path == prefix or path.startswith(prefix + PATH_SEPARATOR)
