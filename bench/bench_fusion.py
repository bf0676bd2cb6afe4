"""Fusion benchmarks on GroceryStore (train -> val): OCR gating savings/cost, and the corrections loop.

    python -m bench.bench_fusion gating      [--modalities vision,ocr,title] [--out DIR]
    python -m bench.bench_fusion corrections [--modalities vision,ocr] [--chunk 100] [--start 0.1] [--out DIR]

Stage outputs come from the feature cache (``$SKUTAG_HOME/features``); the first run computes them.
Catalogs are built under /tmp (``bench.datasets``), never in the repository.

gating: one model, val tagged with OCR always / gated (auto) / never: accuracy overall and on Packages,
OCR calls made, and seconds per product of each stage (measured on this run, OCR cache bypassed).
corrections: a model on a random 10% of train; the rest streams in chunks; each chunk is tagged, its wrong
answers are corrected and added, and the model is retrained; val accuracy after every retrain is plotted
against the number of corrections, with retrain seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.datasets import DEFAULT_OUT, build_grocery
from skutag.fusion.model import FusionModel
from skutag.catalog_io import read_catalog
from skutag.config import SkutagConfig
from skutag.evidence import EvidenceCollector
from skutag.training import collect_training_set


def _config(modalities: str, **extra) -> SkutagConfig:
    overrides = {"fusion.modalities": tuple(m for m in modalities.split(",") if m)}
    overrides.update(extra)
    return SkutagConfig.load(overrides=overrides)


def _load(config: SkutagConfig, data_dir: Path):
    paths = build_grocery(data_dir)
    collector = EvidenceCollector(config)
    sets = {}
    for split in ("train", "val"):
        catalog = read_catalog(paths[split], require_category=True)
        sets[split] = (catalog, collect_training_set(collector, catalog.products, config))
    return collector, sets


def _accuracy(model: FusionModel, evidence, truth) -> tuple[float, float]:
    predicted, _ = model.score(evidence).best()
    truth = np.asarray(truth, dtype=object)
    packages = np.array([t.startswith("Packages") for t in truth])
    right = predicted == truth
    return float(right.mean()), float(right[packages].mean())


def run_gating(args) -> dict:
    from skutag.pipeline import Pipeline

    config = _config(args.modalities)
    collector, sets = _load(config, args.data)
    train, val = sets["train"][1], sets["val"][1]
    model = FusionModel(config.fusion).fit(train.evidence, train.paths, train.brands)
    val_catalog = sets["val"][0]
    out = {"modalities": model.modalities_, "n_val": len(val)}
    for gate in ("always", "auto", "never"):
        pipeline = Pipeline(config, model=model, collector=collector)
        evidence = pipeline.gather(val_catalog.products, ocr_gate=gate)
        acc, acc_pk = _accuracy(model, evidence, val.paths)
        out[gate] = {"accuracy": round(acc, 4), "packages_accuracy": round(acc_pk, 4),
                     "ocr_ran": pipeline.gate_stats.ran, "ocr_candidates": pipeline.gate_stats.candidates}
    # stage cost per product, measured fresh (no cache) on a sample of val photos
    sample = val_catalog.products[:: max(1, len(val_catalog.products) // 40)]
    fresh = EvidenceCollector(config, use_cache=False)
    fresh.collect(sample[:1], ocr=True)  # load the models first
    started = time.perf_counter()
    fresh.collect(sample, ocr=False)
    vision_s = (time.perf_counter() - started) / len(sample)
    images = fresh.photos(sample, ocr=True)
    started = time.perf_counter()
    fresh.ocr(images)
    ocr_s = (time.perf_counter() - started) / len(sample)
    share = out["auto"]["ocr_ran"] / max(out["auto"]["ocr_candidates"], 1)
    out["seconds_per_product"] = {"vision": round(vision_s, 4), "ocr": round(ocr_s, 4),
                                  "always": round(vision_s + ocr_s, 4), "auto": round(vision_s + share * ocr_s, 4),
                                  "never": round(vision_s, 4)}
    out["ocr_saved_share"] = round(1 - share, 4)
    return out


def run_corrections(args) -> dict:
    config = _config(args.modalities)
    _, sets = _load(config, args.data)
    train, val = sets["train"][1], sets["val"][1]
    rng = np.random.RandomState(args.seed)
    order = rng.permutation(len(train))
    n_start = int(round(args.start * len(train)))
    ids = lambda idx: [int(i) for i in idx]  # noqa: E731
    known = ids(order[:n_start])
    stream = ids(order[n_start:])
    take = lambda rows, attr: [getattr(train, attr)[i] for i in rows]  # noqa: E731

    def fit(rows):
        started = time.perf_counter()
        model = FusionModel(config.fusion).fit(take(rows, "evidence"), take(rows, "paths"), take(rows, "brands"))
        return model, time.perf_counter() - started

    model, seconds = fit(known)
    acc, acc_pk = _accuracy(model, val.evidence, val.paths)
    curve = [{"corrections": 0, "rows": len(known), "val_accuracy": round(acc, 4), "val_packages": round(acc_pk, 4),
              "retrain_seconds": round(seconds, 2)}]
    corrections = 0
    for start in range(0, len(stream), args.chunk):
        chunk = stream[start:start + args.chunk]
        predicted, _ = model.score(take(chunk, "evidence")).best()
        wrong = [i for i, p in zip(chunk, predicted) if p != train.paths[i]]
        corrections += len(wrong)
        known.extend(wrong if not args.add_confirmed else chunk)
        model, seconds = fit(known)
        acc, acc_pk = _accuracy(model, val.evidence, val.paths)
        curve.append({"corrections": corrections, "rows": len(known), "chunk_wrong": len(wrong),
                      "val_accuracy": round(acc, 4), "val_packages": round(acc_pk, 4),
                      "retrain_seconds": round(seconds, 2)})
        print(json.dumps(curve[-1]), flush=True)
    full, seconds = fit(list(range(len(train))))
    acc, _ = _accuracy(full, val.evidence, val.paths)
    result = {"modalities": model.modalities_, "start_rows": n_start, "chunk": args.chunk, "curve": curve,
              "all_train_val_accuracy": round(acc, 4), "all_train_fit_seconds": round(seconds, 2)}
    if args.out:
        _plot_corrections(result, Path(args.out))
    return result


def _plot_corrections(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    curve = result["curve"]
    x = [c["corrections"] for c in curve]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(x, [c["val_accuracy"] for c in curve], marker="o", ms=3, label="val accuracy (all)")
    ax.plot(x, [c["val_packages"] for c in curve], marker="s", ms=3, label="val accuracy (Packages)")
    ax.axhline(result["all_train_val_accuracy"], color="grey", ls="--", lw=0.8, label="trained on all of train")
    ax.set_xlabel("corrections made (wrong answers fixed by a human)")
    ax.set_ylabel("val leaf accuracy")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.bar(x, [c["retrain_seconds"] for c in curve], width=max(x[-1] / 80, 1), alpha=0.25, color="C3")
    twin.set_ylabel("retrain seconds", color="C3")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Corrections loop: start {result['start_rows']} rows, chunks of {result['chunk']} "
                 f"({', '.join(result['modalities'])})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "corrections_loop.png", dpi=110)
    plt.close(fig)
    (out / "corrections_loop.json").write_text(json.dumps(result, indent=1), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("gating", "corrections"))
    parser.add_argument("--modalities", default=None)
    parser.add_argument("--data", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--start", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--add-confirmed", action="store_true", help="corrections loop: add right answers too")
    args = parser.parse_args()
    if args.modalities is None:
        args.modalities = "vision,ocr,title" if args.what == "gating" else "vision,ocr"
    result = run_gating(args) if args.what == "gating" else run_corrections(args)
    print(json.dumps(result if args.what == "gating" else {k: v for k, v in result.items() if k != "curve"}))


if __name__ == "__main__":
    main()
