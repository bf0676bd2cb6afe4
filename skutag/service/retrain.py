"""Retraining from operators' corrections, and the not-worse check before a promotion.

The service does not know how a model is trained: it hands the human-verified products to a
``Retrainer`` (injected; the default calls the fusion stage's retrain through ``skutag.pipeline``)
which writes a candidate bundle and returns its folder. The service then loads the candidate,
tags a held-out share of the verified products with both models, and promotes the candidate
only if its accuracy there is not lower than the current model's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from skutag.catalog import Product
from skutag.tagger import Tagger
from skutag.store.views import TrainingExample

TaggerFactory = Callable[[str | None], Tagger]


@dataclass(frozen=True)
class RetrainRequest:
    base_model_dir: str | None  # the model being served (None: the cold-start pipeline)
    base_version: str
    corrections: Sequence[Product]  # human-verified products, ``category`` = the right path
    out_dir: Path  # where the candidate bundle must be written (does not exist yet)
    renames: Mapping[str, str] = field(default_factory=dict)  # old path -> current path (taxonomy edits)


class Retrainer(Protocol):
    def __call__(self, request: RetrainRequest) -> str | Path:
        """Train a candidate from ``request`` and return its model folder."""


@dataclass(frozen=True)
class Comparison:
    n: int
    current_accuracy: float | None
    candidate_accuracy: float | None
    current_leaf_accuracy: float | None
    candidate_leaf_accuracy: float | None

    @property
    def not_worse(self) -> bool:
        if self.n == 0 or self.candidate_accuracy is None or self.current_accuracy is None:
            return False
        return self.candidate_accuracy >= self.current_accuracy

    def to_json(self) -> dict[str, Any]:
        return {"holdout_n": self.n, "current_accuracy": self.current_accuracy,
                "candidate_accuracy": self.candidate_accuracy,
                "current_leaf_accuracy": self.current_leaf_accuracy,
                "candidate_leaf_accuracy": self.candidate_leaf_accuracy}


def in_holdout(product_id: str, fraction: float) -> bool:
    """A stable split: the same product is always on the same side."""
    digest = hashlib.sha256(product_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_examples(examples: Sequence[TrainingExample], fraction: float) -> tuple[list[TrainingExample], list[TrainingExample]]:
    train, holdout = [], []
    for example in examples:
        (holdout if in_holdout(example.product_id, fraction) else train).append(example)
    return train, holdout


def to_product(example: TrainingExample) -> Product:
    return Product(id=example.product_id, image=example.image, title=example.title, price=example.price,
                   category=example.path, brand=example.brand)


def accuracy(tagger: Tagger, products: Sequence[Product], batch_size: int = 32,
             renames: Mapping[str, str] | None = None) -> tuple[float | None, float | None]:
    """(path accuracy, leaf accuracy) of ``tagger`` on products whose ``category`` is known; answers go
    through ``renames`` first (a model trained before a taxonomy edit answers with the old names)."""
    from skutag.policy.renames import renamed_result

    if not products:
        return None, None
    exact = leaf = 0
    for start in range(0, len(products), batch_size):
        chunk = list(products[start:start + batch_size])
        for product, result in zip(chunk, tagger.tag(chunk, audit=False).results):
            result = renamed_result(result, renames or {})
            truth = product.category or ""
            exact += int(result.path == truth)
            leaf += int(result.label is not None and result.label == truth.split(" > ")[-1])
    return exact / len(products), leaf / len(products)


def compare(current: Tagger, candidate: Tagger, holdout: Sequence[Product],
            renames: Mapping[str, str] | None = None) -> Comparison:
    current_acc, current_leaf = accuracy(current, holdout, renames=renames)
    candidate_acc, candidate_leaf = accuracy(candidate, holdout, renames=renames)
    return Comparison(len(holdout), current_acc, candidate_acc, current_leaf, candidate_leaf)


def default_tagger_factory(config=None) -> TaggerFactory:
    """Load models through ``skutag.pipeline.load_pipeline`` (the fusion stage's bundles)."""

    def load(model_dir: str | None) -> Tagger:
        from skutag.pipeline import load_pipeline

        return load_pipeline(config=config, model_dir=model_dir)

    return load


def default_retrainer(config=None) -> Retrainer:
    """Retrain through the fusion stage: on top of the served bundle (``skutag.training.retrain_from_corrections``:
    its training rows + the corrections), or, from the cold start, a first bundle trained on the corrections."""

    def retrain(request: RetrainRequest) -> str | Path:
        from skutag.training import retrain_from_corrections

        if request.base_model_dir is None:
            return first_bundle_from_corrections(request, config)
        outcome = retrain_from_corrections(request.base_model_dir, list(request.corrections), request.out_dir,
                                           config=config, renamed=dict(request.renames))
        return outcome.model_dir

    return retrain


def first_bundle_from_corrections(request: RetrainRequest, config=None) -> Path:
    """Cold start -> the first trained bundle: the verified products are written as a catalog (photos as
    files next to it, kept as the bundle's training data) and trained with ``skutag.training.train_catalog``."""
    import json

    from skutag.config import SkutagConfig
    from skutag.training import train_catalog

    data_dir = request.out_dir.parent / f"{request.out_dir.name}-catalog"
    (data_dir / "images").mkdir(parents=True, exist_ok=True)
    catalog = data_dir / "corrections.jsonl"
    with catalog.open("w", encoding="utf-8") as handle:
        for product in request.corrections:
            row = {"id": product.id, "title": product.title, "price": product.price, "category": product.category,
                   "brand": product.brand}
            if isinstance(product.image, (bytes, bytearray)):
                name = hashlib.sha256(product.image).hexdigest()[:32] + ".img"
                (data_dir / "images" / name).write_bytes(product.image)
                row["image"] = f"images/{name}"
            elif product.image is not None:
                row["image"] = str(Path(product.image).resolve())
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    train_catalog(catalog, request.out_dir, config or SkutagConfig.load())
    return request.out_dir
