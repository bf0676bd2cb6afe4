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
]

try:  # owned by the OCR stage; absent in builds that predate it
    from .brands import BrandLexicon  # noqa: E402

    __all__.append("BrandLexicon")
except ModuleNotFoundError as _exc:  # pragma: no cover - only before taxonomy/brands.py exists
    if _exc.name != f"{__name__}.brands":
        raise
