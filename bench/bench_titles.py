"""Title benchmarks for the text stage (run from the repo root; CPU only).

1. Title -> leaf category on ``../shared/data/cn_titles/titles.tsv`` (split 80/20 by a hash of the
   title, so repeated titles never straddle the split): leaf accuracy, macro-F1, level-1 and level-2
   accuracy, fit seconds and titles/s, for

   * the baseline: character 1-3-gram TF-IDF + LinearSVC (C=1) on the raw title;
   * skutag, exactly what ``skutag train`` uses for titles: ``text.TitleFeaturizer.from_config`` of the
     default ``text`` section (normalised title, jieba words + bigrams, single characters and character
     2-5-grams capped at 300k as two blocks) + the default
     ``fusion.title_estimator`` (``hierarchical_svc``: one LinearSVC per node of the category tree);
     ``--variants`` adds others (the earlier jieba + char blocks settings among them); ``--mlp`` a hidden layer
     over the product's features (``bench/title_mlp.py``), alone and blended with the product's scores;
     ``--ceiling`` how often near-identical titles disagree on their leaf, and variants chosen on a dev split
     inside the training titles (``bench/title_ceiling.py``),

   trained and scored in the same run on the same split. Each model's gain over the baseline comes with
   McNemar's exact test on the same test titles (titles only one of the two gets right).

2. Brand-in-title precision / recall / F1 of ``text.extract_title_brands`` on
   ``cn_title_brands/dev.jsonl`` and ``cn_cosmetics_titles/dev.jsonl`` with several lexicons (the
   bundled one; one built from the data's own training side, never from the titles scored).

Usage::

    .venv/bin/python bench/bench_titles.py                 # everything (minutes on 2 cores)
    .venv/bin/python bench/bench_titles.py --limit 20000   # quick run on a subset
    .venv/bin/python bench/bench_titles.py --only brands --json out.json

The data is for evaluation only: nothing trained here is saved.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SKUTAG_SHARED_DATA", ROOT.parent / "shared" / "data"))

from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402

from skutag.text import TitleFeaturizer, extract_title_brands, normalize_title  # noqa: E402
from skutag.text.brand_spans import BrandSpanModel  # noqa: E402


# ---------------------------------------------------------------------------------------- titles
def load_titles(path: Path, limit: int | None) -> tuple[list[str], list[str]]:
    titles, paths = [], []
    with path.open(encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            title = (row.get("title") or "").strip()
            if not title:
                continue
            titles.append(title)
            paths.append(" > ".join(row[f"level{i}"].strip() for i in (1, 2, 3)))
    if limit is not None and limit < len(titles):
        keep = sorted(range(len(titles)), key=lambda i: _hash(titles[i] + "#subset"))[:limit]
        keep.sort()
        titles = [titles[i] for i in keep]
        paths = [paths[i] for i in keep]
    return titles, paths


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:8], "big")


def split_by_hash(titles: list[str], test_share: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Every 5th hash bucket (20%) is held out; the same title always lands on the same side."""
    test = np.array([_hash(t) % test_share == 0 for t in titles])
    return np.flatnonzero(~test), np.flatnonzero(test)


def level_accuracy(y_true: list[str], y_pred: list[str], depth: int) -> float:
    cut = lambda p: tuple(p.split(" > ")[:depth])  # noqa: E731
    return float(np.mean([cut(a) == cut(b) for a, b in zip(y_true, y_pred)]))


def score_model(name: str, make: Callable[[], Any], X_train: list, y_train: list, X_test: list, y_test: list) -> dict:
    model = make()
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(X_train, y_train)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    predicted = list(model.predict(X_test))
    predict_s, predict_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    correct = np.asarray(predicted, dtype=object) == np.asarray(y_test, dtype=object)
    result = {
        "model": name,
        "leaf_accuracy": round(accuracy_score(y_test, predicted), 4),
        "macro_f1": round(f1_score(y_test, predicted, average="macro", labels=sorted(set(y_test)), zero_division=0), 4),
        "level1_accuracy": round(level_accuracy(y_test, predicted, 1), 4),
        "level2_accuracy": round(level_accuracy(y_test, predicted, 2), 4),
        "fit_s": round(fit_s, 1),
        "fit_cpu_s": round(fit_cpu_s, 1),
        "predict_titles_per_s": round(len(X_test) / predict_s, 1),
        "predict_titles_per_cpu_s": round(len(X_test) / max(predict_cpu_s, 1e-9), 1),
    }
    print(json.dumps(result, ensure_ascii=False), flush=True)
    result["_correct"] = correct
    return result


def mcnemar(base_correct: np.ndarray, other_correct: np.ndarray) -> dict:
    """Exact McNemar test: titles only the other model gets right vs only the baseline gets right."""
    from scipy.stats import binomtest

    only_other = int(np.sum(other_correct & ~base_correct))
    only_base = int(np.sum(base_correct & ~other_correct))
    p = binomtest(only_other, only_other + only_base, 0.5).pvalue if only_other + only_base else 1.0
    return {"only_this_right": only_other, "only_baseline_right": only_base, "p_value": float(f"{p:.3g}")}


def product_model() -> Any:
    """The title model ``skutag train`` fits (default ``text`` and ``fusion`` sections)."""
    from skutag.fusion.config import FusionConfig
    from skutag.fusion.estimators import make_base_estimator
    from skutag.text import TextConfig

    return make_pipeline(TitleFeaturizer.from_config(TextConfig()), make_base_estimator(FusionConfig().title_estimator))


def baseline_model() -> Any:
    return make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3)), LinearSVC(C=1.0))


TUNED_CHAR_BLOCKS = ((1, 1, None), (2, 5, 300_000))


def skutag_model(C: float = 0.5, class_weight: str | None = None, **featurizer: Any) -> Callable[[], Any]:
    def make() -> Any:
        return make_pipeline(TitleFeaturizer(**featurizer), LinearSVC(C=C, class_weight=class_weight))

    return make


def bench_mlp(X_train: list, y_train: list, X_test: list, y_test: list) -> list[dict]:
    """The product's title model against a hidden layer over the same features, alone and blended: the tree's
    summed scores times ``a`` plus the layer's log-probabilities. The blend weights are read on the test titles
    themselves, so the best blend is an upper bound of what a blend chosen on training rows would score."""
    from bench.title_mlp import SparseMLPClassifier

    model = product_model()
    started = time.perf_counter()
    model.fit(X_train, y_train)
    svc_s = time.perf_counter() - started
    featurizer, svc = model.steps[0][1], model.steps[1][1]
    train_rows, test_rows = featurizer.transform(X_train), featurizer.transform(X_test)
    svc_scores = svc.decision_function(test_rows)
    truth = np.asarray(y_test, dtype=object)
    labels = sorted(set(y_test))

    def row(name: str, predicted: np.ndarray, fit_s: float | None = None) -> dict:
        result = {"model": name, "leaf_accuracy": round(accuracy_score(truth, predicted), 4),
                  "macro_f1": round(f1_score(truth, predicted, average="macro", labels=labels, zero_division=0), 4),
                  **({"fit_s": round(fit_s, 1)} if fit_s is not None else {})}
        print(json.dumps(result, ensure_ascii=False), flush=True)
        return result

    results = [row("skutag defaults (HierarchicalLinearSVC)", svc.classes_[svc_scores.argmax(1)], svc_s)]
    for hidden in (256, 512):
        mlp = SparseMLPClassifier(hidden=hidden)
        started = time.perf_counter()
        mlp.fit(train_rows, y_train)
        mlp_s = time.perf_counter() - started
        log_proba = mlp.decision_function(test_rows)
        assert list(mlp.classes_) == list(svc.classes_)
        results.append(row(f"hidden layer of {hidden} over the same features, 6 epochs", mlp.predict(test_rows), mlp_s))
        for a in (0.5, 1, 2, 4):
            results.append(row(f"  blend: {a} x tree scores + hidden layer {hidden}'s log-probabilities",
                               svc.classes_[(a * svc_scores + log_proba).argmax(1)]))
    return results


def bench_titles(limit: int | None, variants: bool, mlp: bool = False, ceiling: bool = False) -> dict:
    path = SHARED / "cn_titles" / "titles.tsv"
    titles, labels = load_titles(path, limit)
    train, test = split_by_hash(titles)
    X_train = [titles[i] for i in train]
    y_train = [labels[i] for i in train]
    X_test = [titles[i] for i in test]
    y_test = [labels[i] for i in test]
    print(
        f"cn_titles: {len(titles)} titles, {len(set(labels))} leaves; train {len(train)}, test {len(test)}",
        flush=True,
    )
    if ceiling:  # the baseline's figures are in the default run
        from bench.title_ceiling import agreement, dev_variants

        return {"n_titles": len(titles), "n_train": len(train), "n_test": len(test),
                "agreement": agreement(product_model, X_train, y_train, X_test, y_test),
                "dev_variants": dev_variants(X_train, y_train)}
    if mlp:  # the baseline's figures are in the default run: this one compares with the product's model only
        return {"n_titles": len(titles), "n_train": len(train), "n_test": len(test),
                "results": bench_mlp(X_train, y_train, X_test, y_test)}
    results = [score_model("baseline char1-3 tfidf + LinearSVC(C=1)", baseline_model, X_train, y_train, X_test, y_test)]
    results.append(score_model(
        "skutag defaults: jieba 1-2 + char 1 + char 2-5 capped 300k + HierarchicalLinearSVC(C=1, balanced per node)",
        product_model, X_train, y_train, X_test, y_test))
    if variants:
        for name, make in [
            ("skutag 0.2 title model: jieba 1-2 + char 1 + char 2-5 capped 300k + LinearSVC(C=0.5, balanced)",
             skutag_model(0.5, class_weight="balanced", char_blocks=TUNED_CHAR_BLOCKS)),
            ("skutag (jieba 1-2 + char 1 + char 2-5 capped 300k) + LinearSVC(C=0.5), unbalanced",
             skutag_model(0.5, char_blocks=TUNED_CHAR_BLOCKS)),
            ("skutag (jieba 1-2 + char 1-3) + LinearSVC(C=0.5)", skutag_model(0.5)),
            ("skutag words only (jieba 1-2) + LinearSVC(C=0.5)", skutag_model(0.5, char_ngram_range=None)),
            ("skutag (jieba 1-2 + char 1-3) + LinearSVC(C=1)", skutag_model(1.0)),
            ("skutag (jieba 1-2 + char 1-3, no HMM) + LinearSVC(C=0.5)", skutag_model(0.5, hmm=False)),
            ("skutag (jieba 1-2 + char 2-4) + LinearSVC(C=0.5)", skutag_model(0.5, char_ngram_range=(2, 4))),
        ]:
            results.append(score_model(name, make, X_train, y_train, X_test, y_test))
    base = results[0]
    for result in results[1:]:
        result["leaf_accuracy_gain_vs_baseline"] = round(result["leaf_accuracy"] - base["leaf_accuracy"], 4)
        result["mcnemar_vs_baseline"] = mcnemar(base["_correct"], result["_correct"])
        print(f"  {result['model']}: {json.dumps(result['mcnemar_vs_baseline'])}", flush=True)
        result["fit_time_ratio_vs_baseline"] = round(result["fit_s"] / max(base["fit_s"], 1e-9), 2)
        result["fit_cpu_ratio_vs_baseline"] = round(result["fit_cpu_s"] / max(base["fit_cpu_s"], 1e-9), 2)
    for result in results:
        result.pop("_correct")
    return {"n_titles": len(titles), "n_train": len(train), "n_test": len(test), "n_leaves": len(set(labels)), "results": results}


# ---------------------------------------------------------------------------------------- brands
def _norm(text: str) -> str:
    return normalize_title(text).replace(" ", "")


def brand_prf(rows: list[dict], lexicon: Any, patterns: bool, discover: bool = False, min_score: float = 0.0,
              learned: Any = None) -> dict:
    """Micro P/R/F1 over (title, gold brand name) pairs. A found brand is right when its canonical
    name, the text it matched or an alias seen beside it (``ERKE/鸿星尔克``) equals a gold name (after
    normalisation); it then covers every gold name it equals. A found brand equal to none is wrong."""
    tp = fp = fn = 0
    extract_title_brands("warm up", lexicon)  # build the matcher outside the timing
    start = time.perf_counter()
    for row in rows:
        gold = {_norm(b) for b in row["brands"] if _norm(b)}
        found = extract_title_brands(row["title"], lexicon, min_score=min_score, patterns=patterns, discover=discover,
                                     learned=learned)
        hit: set[str] = set()
        for match in found:
            names = {_norm(match.brand), _norm(match.text), *(_norm(a) for a in match.aliases)}
            matched = names & gold
            if matched:
                tp += len(matched - hit)
                hit |= matched
            else:
                fp += 1
        fn += len(gold - hit)
    seconds = time.perf_counter() - start
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "titles_per_s": round(len(rows) / seconds, 1) if seconds else None,
    }


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def bench_brands() -> dict:
    from skutag.taxonomy import BrandLexicon

    bundled = BrandLexicon.default()
    out: dict[str, Any] = {}

    ner_dir = SHARED / "cn_title_brands"
    dev = _read_jsonl(ner_dir / "dev.jsonl")
    train = _read_jsonl(ner_dir / "train.jsonl")
    train_brands = sorted({b for row in train for b in row["brands"]})
    gazetteer = sorted(
        {
            line.strip()
            for dic in sorted((ner_dir / "dicts").glob("brand*.dic"))
            for line in dic.read_text(encoding="utf-8").splitlines()
            if line.strip()
        }
    )
    print(f"cn_title_brands dev: {len(dev)} titles, {sum(len(r['brands']) for r in dev)} gold brands", flush=True)
    results = {}
    for name, lexicon, patterns in [
        (f"bundled lexicon ({len(bundled)} brands)", bundled, False),
        ("bundled lexicon + patterns", bundled, True),
        (f"train-split brands ({len(train_brands)})", train_brands, False),
        ("train-split brands + patterns", train_brands, True),
        ("train-split brands + patterns + jieba discovery", train_brands, "discover"),
        (f"train-split brands + gazetteer ({len(set(train_brands) | set(gazetteer))})", sorted(set(train_brands) | set(gazetteer)), True),
    ]:
        results[name] = brand_prf(dev, lexicon, bool(patterns), discover=patterns == "discover")
        print(f"  {name}: {json.dumps(results[name])}", flush=True)
    started = time.perf_counter()
    learned = BrandSpanModel(C=4.0).fit([r["title"] for r in train], [r["brands"] for r in train])
    fit_s = round(time.perf_counter() - started, 1)
    for name, lexicon in [("learned spans (BrandSpanModel fitted on train.jsonl)", []),
                          ("train-split brands + patterns + learned spans", train_brands)]:
        results[name] = {**brand_prf(dev, lexicon, True, learned=learned), "fit_s": fit_s,
                         "threshold": learned.threshold_}
        print(f"  {name}: {json.dumps(results[name])}", flush=True)
    out["cn_title_brands_dev"] = results

    cosmetics = _read_jsonl(SHARED / "cn_cosmetics_titles" / "dev.jsonl")
    print(f"cn_cosmetics_titles dev: {len(cosmetics)} titles", flush=True)
    results = {}
    # Brands from the other folds only: a title is never scored with a lexicon built from itself.
    folds = 5
    fold_of = [_hash(r["title"]) % folds for r in cosmetics]
    totals = {"tp": 0, "fp": 0, "fn": 0}
    for fold in range(folds):
        lexicon = sorted({b for r, f in zip(cosmetics, fold_of) if f != fold for b in r["brands"]})
        rows = [r for r, f in zip(cosmetics, fold_of) if f == fold]
        part = brand_prf(rows, lexicon, patterns=True)
        for key in totals:
            totals[key] += part[key]
    p = totals["tp"] / max(totals["tp"] + totals["fp"], 1)
    r = totals["tp"] / max(totals["tp"] + totals["fn"], 1)
    results["other-fold brands (5-fold) + patterns"] = {
        "precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / max(p + r, 1e-9), 4), **totals
    }
    results["cn_title_brands learned spans + patterns (no cosmetics brand known)"] = brand_prf(
        cosmetics, [], True, learned=learned)
    print(f"  learned spans from cn_title_brands: {json.dumps(results['cn_title_brands learned spans + patterns (no cosmetics brand known)'])}", flush=True)
    for name, lexicon, patterns in [
        (f"bundled lexicon ({len(bundled)} brands)", bundled, False),
        ("bundled lexicon + patterns + jieba discovery", bundled, "discover"),
        ("cn_title_brands train brands + gazetteer", sorted(set(train_brands) | set(gazetteer)), True),
    ]:
        results[name] = brand_prf(cosmetics, lexicon, bool(patterns), discover=patterns == "discover")
    for name, value in results.items():
        print(f"  {name}: {json.dumps(value)}", flush=True)
    out["cn_cosmetics_titles_dev"] = results
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="use a fixed hash-chosen subset of this many titles")
    parser.add_argument("--only", choices=["titles", "brands"], help="run one part")
    parser.add_argument("--variants", action="store_true", help="also score feature/C variants (slower)")
    parser.add_argument("--mlp", action="store_true",
                        help="only: the product's model against a hidden layer over its features (bench/title_mlp.py)")
    parser.add_argument("--ceiling", action="store_true",
                        help="only: near-duplicate label agreement, variants on a dev split (bench/title_ceiling.py)")
    parser.add_argument("--json", type=Path, help="write all figures to this file")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"shared data not found at {SHARED}; set SKUTAG_SHARED_DATA", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    if args.only in (None, "titles"):
        report["titles"] = bench_titles(args.limit, args.variants, args.mlp, args.ceiling)
    if args.only in (None, "brands"):
        report["brands"] = bench_brands()
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
