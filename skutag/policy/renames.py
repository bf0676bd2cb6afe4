"""A served model's answers under today's category names.

A model keeps answering with the class names it was trained on; after ``PUT /v1/taxonomy/categories``
renames ``食品 > 饮料`` to ``食品 > 饮品``, its answers, the stored products, the parent model's training
rows (at the next retraining) and the not-worse comparison all go through one map, old path -> current
path (``taxonomy.aliases``), kept as the service resource ``path_aliases``.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from skutag.fusion.result import Alternative, TagResult
from skutag.catalog import PATH_SEPARATOR
from skutag.taxonomy.aliases import follow


def renamed_result(result: TagResult, renames: Mapping[str, str]) -> TagResult:
    """A model's answer with its paths (and the leaf label that ends them) as the taxonomy names them now."""
    if not renames or result.path is None:
        return result
    path = follow(result.path, renames)
    alternatives = tuple(_renamed_alternative(a, renames) for a in result.alternatives)
    if path == result.path and alternatives == result.alternatives:
        return result
    reasons = result.reasons + ((f"taxonomy: {result.path} is now {path}",) if path != result.path else ())
    return dataclasses.replace(result, path=path, label=_leaf(path, result.label), alternatives=alternatives,
                               reasons=reasons)


def _renamed_alternative(alternative: Alternative, renames: Mapping[str, str]) -> Alternative:
    path = follow(alternative.path, renames)
    return alternative if path == alternative.path else dataclasses.replace(alternative, path=path,
                                                                            label=_leaf(path, alternative.label))


def _leaf(path: str | None, fallback: str | None) -> str | None:
    return path.split(PATH_SEPARATOR)[-1] if path else fallback
