"""Typed results of the fusion stage: what skutag answers for one product."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from skutag.taxonomy.nodes import PATH_SEPARATOR  # noqa: F401  (category paths in results are written with it)


class Decision(str, enum.Enum):
    """What happens to a tagged product."""

    AUTO = "auto"  # tag applied without a human
    REVIEW = "review"  # a human confirms or corrects the suggestion
    MANUAL = "manual"  # too uncertain to suggest: a human tags from scratch


@dataclass(frozen=True)
class Alternative:
    label: str
    path: str
    confidence: float


@dataclass(frozen=True)
class TagResult:
    """The answer for one product. ``path`` joins category levels with `` > ``; ``label`` is the leaf."""

    id: str
    label: str | None
    path: str | None
    confidence: float
    decision: Decision
    alternatives: tuple[Alternative, ...] = ()
    contributions: dict[str, float] = field(default_factory=dict)  # modality -> share of the decision
    reasons: tuple[str, ...] = ()  # why this decision (threshold, whitelist, audit sample, rule ...)
    model_version: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["decision"] = self.decision.value
        data["alternatives"] = [asdict(alt) for alt in self.alternatives]
        data["reasons"] = list(self.reasons)
        return data

    @classmethod
    def failed(cls, product_id: str, error: str) -> "TagResult":
        """A row that could not be tagged: it goes to a human, with the reason."""
        return cls(id=product_id, label=None, path=None, confidence=0.0, decision=Decision.MANUAL, error=error)
