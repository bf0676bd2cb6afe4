"""Taxonomy: the shop's category tree, the vision label -> category map and the brand lexicon.

Every managed table has a Python API (load/save/CRUD) and a ``version`` that changes with every edit,
so trained models can record what they were trained with.
"""

from .labelmap import LabelMap, LabelMapEntry, LabelMapError
from .tree import PATH_SEPARATOR, CategoryNode, CategoryTree, TaxonomyError, join_path, split_path

__all__ = [
    "CategoryNode",
    "CategoryTree",
    "LabelMap",
    "LabelMapEntry",
    "LabelMapError",
    "PATH_SEPARATOR",
    "TaxonomyError",
    "join_path",
    "split_path",
    "managed_versions",
]

from .brands import BrandLexicon

__all__.append("BrandLexicon")


def managed_versions(lexicon: BrandLexicon | None = None) -> dict[str, str]:
    """The versions of the managed tree, label map and brand lexicon tagging reads now (``lexicon``: the one a
    tagger reads with, when it was handed another, e.g. the service's edited lexicon)."""
    return {"taxonomy": CategoryTree.active().version, "label_map": LabelMap.active().version,
            "lexicon": (lexicon or BrandLexicon.active()).version}
