"""Retraining on corrections: an incremental update against a full refit, same corrections, same run (CPU only).

Trains a title-only model on the cn_titles training split (``python -m bench.datasets cn_titles``), takes
``--corrections`` rows of the test split as operators' corrections, and retrains twice from the same parent:
``skutag retrain`` (incremental: tree nodes on the corrected categories' paths) and ``skutag retrain --full``.
Each is its own process (wall seconds, peak RSS); all three models are scored on the rest of the test split
(leaf accuracy, macro-F1) and on the corrected rows themselves.

    .venv/bin/python bench/bench_retrain.py --corrections 100 --json out.json

cn_titles is for evaluation only: catalogues and models go to a temporary folder and are deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_train_scale import measured, read_rows  # noqa: E402

TRAIN = Path("/tmp/skutag-data/cn_titles_train.jsonl")
TEST = Path("/tmp/skutag-data/cn_titles_test.jsonl")


def write(rows: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for r in rows:
            handle.write(json.dumps({"id": r["id"], "title": r["title"], "category": r["category"]},
                                    ensure_ascii=False) + "\n")


def score(model: Path, rows: list[dict], env: dict) -> dict:
    from sklearn.metrics import f1_score

    from skutag.catalog import Product
    from skutag.config import SkutagConfig
    from skutag.pipeline import load_pipeline

    os.environ.update(env)
    pipeline = load_pipeline(SkutagConfig.load(), model)
    answers = [r.path for r in pipeline.tag([Product(id=r["id"], title=r["title"]) for r in rows]).results]
    truth = [r["category"] for r in rows]
    return {"leaf": round(sum(a == t for a, t in zip(answers, truth)) / len(rows), 4),
            "macro_f1": round(f1_score(truth, answers, average="macro", labels=sorted(set(truth))), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corrections", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not (TRAIN.is_file() and TEST.is_file()):
        print("cn_titles split missing: run python -m bench.datasets cn_titles", file=sys.stderr)
        return 2
    train, test = read_rows(TRAIN), read_rows(TEST)
    known = {r["category"] for r in train}
    test = [r for r in test if r["category"] in known]
    random.Random(args.seed).shuffle(test)
    corrections, held_out = test[:args.corrections], test[args.corrections:]
    report: dict = {"train_rows": len(train), "corrections": len(corrections), "scored_rows": len(held_out)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "SKUTAG_HOME": str(tmp / "home")}
        write(train, tmp / "train.jsonl")
        write(corrections, tmp / "corrections.jsonl")
        skutag = [sys.executable, "-m", "skutag"]
        runs = {
            "train": skutag + ["train", str(tmp / "train.jsonl"), "--out", str(tmp / "parent"),
                               "--modalities", "title", "--no-progress"],
            "retrain (incremental)": skutag + ["retrain", "--model", str(tmp / "parent"), "--corrections",
                                               str(tmp / "corrections.jsonl"), "--out", str(tmp / "updated"), "--json"],
            "retrain --full": skutag + ["retrain", "--model", str(tmp / "parent"), "--corrections",
                                        str(tmp / "corrections.jsonl"), "--out", str(tmp / "full"), "--full", "--json"],
        }
        models = {"train": "parent", "retrain (incremental)": "updated", "retrain --full": "full"}
        for name, command in runs.items():
            result = measured(command, env, stdout_json=name != "train")
            retraining = result.pop("output", {}).get("retraining")
            if retraining:  # what the update spent its time on (featurizing, fitting), and why it was one
                result["retraining"] = retraining
            result.update({f"held_out_{k}": v for k, v in score(tmp / models[name], held_out, env).items()})
            result["corrections_leaf"] = score(tmp / models[name], corrections, env)["leaf"]
            report[name] = result
            print(json.dumps({"run": name, **result}, ensure_ascii=False), flush=True)
    base = report["retrain --full"]["wall_s"]
    print(f"incremental / full wall time: {report['retrain (incremental)']['wall_s'] / base:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
