"""Fusion-layer variants on GroceryStore (train -> val), each refitted on the same cached evidence in one run.

    python -m bench.bench_fusion_variants ocr-weighting --model DIR [--powers 1,2,3,4,6] [--seeds 0,1]
    python -m bench.bench_fusion_variants tail-oof-views [--out DIR]

ocr-weighting: a bundle trained with ``--modalities vision,ocr --vision-tail`` (its training evidence holds the
tail's out-of-fold embeddings); OCR evidence of train and val is read again (feature cache) with line
prominence; the fusion layer is refitted with flat OCR text and with prominence^p weighting
(``fusion.features.PROMINENCE_POWER``) for each fusion seed; val accuracy with OCR on every photo.

tail-oof-views: trains a vision + OCR tail bundle in ``--out`` with the fold tails fitted once, their held-out
embeddings taken of the centre crop + mirror (what the stack learns from) and of the centre crop + mirror +
whole photo; the fusion layer is refitted on each; val served by the same final tail (its serving views), vision
only and vision + OCR.

Use the OCR settings of docs/fusion.md (``SKUTAG_OCR__ROTATE=off``). Catalogs come from ``bench.datasets``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from bench.datasets import DEFAULT_OUT, build_grocery


def _val(pipe, data_dir: Path):
    from skutag.catalog_io import read_catalog

    products = read_catalog(build_grocery(data_dir)["val"], require_category=True).products
    evidence = pipe.collector.collect(products, ocr=[True] * len(products))
    truth = np.array([p.category for p in products], dtype=object)
    packages = np.array([p.category.startswith("Packages") for p in products])
    return evidence, truth, packages


def _accuracy(fusion_config, pipe, train_ev, training, val_ev, truth, packages) -> dict:
    from skutag.fusion.model import FusionModel
    from skutag.training import _title_featurizer

    model = FusionModel(fusion_config, title_featurizer=_title_featurizer(pipe.config))
    model.fit(train_ev, training.paths, training.brands)
    predicted = model.classes_[model.tagger_.predict_proba(model.featurizer_.transform(val_ev)).argmax(axis=1)]
    right = predicted == truth
    return {"accuracy": round(float(right.mean()), 4), "packages": round(float(right[packages].mean()), 3)}


def ocr_weighting(args) -> list[dict]:
    import skutag.fusion.features as features
    from skutag.fusion import bundle as bundles
    from skutag.catalog_io import read_catalog
    from skutag.config import SkutagConfig
    from skutag.pipeline import load_pipeline

    pipe = load_pipeline(SkutagConfig.load(), args.model)
    training = bundles.load_training(bundles.resolve(args.model))
    by_id = {p.id: p for p in read_catalog(build_grocery(args.data)["train"], require_category=True).products}
    fresh = pipe.collector.collect([by_id[i] for i in training.ids], ocr=[True] * len(training.ids))
    train_ev = [dataclasses.replace(e, ocr=f.ocr) for e, f in zip(training.evidence, fresh)]
    val_ev, truth, packages = _val(pipe, args.data)
    base = dataclasses.replace(pipe.config.fusion, vision_top_k=pipe.config.fusion.vision_top_k_with_tail,
                               modalities=("vision", "ocr"))
    default_power, rows = features.PROMINENCE_POWER, []
    variants = [("flat", None)] + [("prominence", float(p)) for p in args.powers.split(",")]
    try:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for weighting, power in variants:
                features.PROMINENCE_POWER = default_power if power is None else power
                config = dataclasses.replace(base, ocr_text_weighting=weighting, random_state=seed)
                row = {"weighting": weighting, "power": power, "seed": seed,
                       **_accuracy(config, pipe, train_ev, training, val_ev, truth, packages)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        features.PROMINENCE_POWER = default_power
    return rows


def tail_oof_views(args) -> list[dict]:
    import skutag.tail_training as tail_training
    import skutag.vision.tail.train as tails
    from sklearn.base import clone

    from skutag.fusion import bundle as bundles
    from skutag.config import SkutagConfig
    from skutag.pipeline import load_pipeline
    from skutag.training import train_catalog

    held: dict[str, np.ndarray] = {}

    def both_views(tail, X, y, n_splits=5, folds=None, embed_views=None):
        fit_views, whole = tails.as_views(X), tails.as_views(list(embed_views))
        for fit_rows, held_rows in folds:
            fold_tail = clone(tail).fit([v[fit_rows] for v in fit_views], y[fit_rows])
            for name, views in (("crops", fit_views[:2]), ("crops+whole", whole)):
                embedding = fold_tail.embed([v[held_rows] for v in views])
                held.setdefault(name, np.zeros((len(y), embedding.shape[1]), np.float32))[held_rows] = embedding
        return held["crops"]

    original = (tails.out_of_fold_embeddings, tail_training._fit_cache_file, tail_training.OUT_OF_FOLD_VIEWS)
    tails.out_of_fold_embeddings = both_views  # fit_training_tail imports it from skutag.vision.tail.train when it runs
    tail_training._fit_cache_file = lambda *a, **k: Path(f"/tmp/skutag-bench-nocache-{time.time()}.joblib")
    tail_training.OUT_OF_FOLD_VIEWS = ("center", "flip", "full")  # so the whole photo's activations are made
    try:
        config = SkutagConfig.load(overrides={"fusion.modalities": ("vision", "ocr"), "vision.tail": True})
        version, _, _ = train_catalog(build_grocery(args.data)["train"], args.out, config)
    finally:
        tails.out_of_fold_embeddings, tail_training._fit_cache_file, tail_training.OUT_OF_FOLD_VIEWS = original
    pipe = load_pipeline(config, args.out)
    training = bundles.load_training(version)
    val_ev, truth, packages = _val(pipe, args.data)
    base = dataclasses.replace(pipe.config.fusion, vision_top_k=pipe.config.fusion.vision_top_k_with_tail)
    rows = []
    for name, embeddings in held.items():
        train_ev = [dataclasses.replace(e, vision=dataclasses.replace(e.vision, embedding=embeddings[i]))
                    for i, e in enumerate(training.evidence)]
        for modalities in (("vision",), ("vision", "ocr")):
            drop = [m for m in ("vision", "ocr") if m not in modalities]
            strip = (lambda evs: [e.without(*drop) for e in evs]) if drop else (lambda evs: evs)
            config = dataclasses.replace(base, modalities=modalities)
            row = {"out_of_fold_views": name, "modalities": list(modalities),
                   **_accuracy(config, pipe, strip(train_ev), training, strip(val_ev), truth, packages)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_OUT, help="where bench.datasets writes catalogs")
    sub = parser.add_subparsers(dest="command", required=True)
    weighting = sub.add_parser("ocr-weighting", help="flat vs prominence-weighted OCR text")
    weighting.add_argument("--model", type=Path, required=True, help="a vision,ocr bundle trained with --vision-tail")
    weighting.add_argument("--powers", default="1,2,3,4,6")
    weighting.add_argument("--seeds", default="0,1")
    views = sub.add_parser("tail-oof-views", help="the tail's out-of-fold embedding views")
    views.add_argument("--out", type=Path, default=Path("/tmp/runs/bench-tail-oof-views"))
    args = parser.parse_args(argv)
    rows = ocr_weighting(args) if args.command == "ocr-weighting" else tail_oof_views(args)
    print(json.dumps({"command": args.command, "rows": rows}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
