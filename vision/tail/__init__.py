"""A fine-tuned tail of the backbone: the blocks after a cut retrained on the shop's categories.

* ``views``: where the frozen part ends (``Cut``), the views of a photo, seeds (numpy/PIL);
* ``serve``: ``VisionTail``, what a model bundle keeps and serving runs (ONNX Runtime, no torch);
* ``graphs``: the one serving graph's inputs and outputs, and the joining of the two graphs older tails kept
  (onnx only);
* ``network``: the torch side (the backbone run to and after the cut, the tail module, ONNX export);
* ``train``: ``CutExtractor``, ``TailClassifier``, out-of-fold embeddings, ``serving_tail``.

Importing this package imports neither torch nor the training code: training code imports
``skutag.vision.tail.train``. The training names are still reachable here, lazily, because model
bundles written before the split (format 1, and format 2 before it) pickled ``TailClassifier`` under
this module's name; ``skutag.fusion.migrate`` converts those into the current ``VisionTail``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .serve import VisionTail
from .views import DEFAULT_CUTS, VIEWS, Cut, default_cut, view_crop

__all__ = ["VisionTail", "Cut", "DEFAULT_CUTS", "VIEWS", "default_cut", "view_crop"]

_TRAINING_NAMES = {"TailClassifier": "train", "CutExtractor": "train", "out_of_fold_embeddings": "train",
                   "serving_tail": "train", "build_tail": "network", "run_to_cut": "network",
                   "run_after_cut": "network"}


def __getattr__(name: str) -> Any:
    """Training names for unpickling old bundles (imports torch on first use)."""
    if name in _TRAINING_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_TRAINING_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
