"""Wall time and peak RSS of ``skutag train`` at catalogue scale (run from the repo root; CPU only).

Trains title-only and title + price models on the first 10k / 30k rows and all 89k shared cn_titles rows (both
sides of ``python -m bench.datasets cn_titles``: only time and memory are measured), and on a larger catalogue
generated from them
(``--rows 1000000``: titles perturbed - words dropped or shuffled, numbers changed - and a random price);
each run is its own ``skutag train`` process, measured by ``/usr/bin/time``-style ``wait4`` accounting.
``--baseline`` also fits the plain char 1-3-gram TF-IDF + LinearSVC on the same rows (one process each).

    .venv/bin/python bench/bench_train_scale.py --sizes 10000,30000,all
    .venv/bin/python bench/bench_train_scale.py --sizes all --baseline --json out.json
    .venv/bin/python bench/bench_train_scale.py --sizes 1000000 --modalities title

cn_titles is for evaluation only: the catalogues and models go to a temporary folder and are deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [Path("/tmp/skutag-data/cn_titles_train.jsonl"), Path("/tmp/skutag-data/cn_titles_test.jsonl")]


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def perturb(title: str, rng: random.Random) -> str:
    """A new title of the same product: words dropped or shuffled, numbers changed."""
    words = title.split()
    if len(words) > 2 and rng.random() < 0.5:
        words.pop(rng.randrange(len(words)))
    if len(words) > 2 and rng.random() < 0.5:
        i, j = rng.randrange(len(words)), rng.randrange(len(words))
        words[i], words[j] = words[j], words[i]
    text = " ".join(words)
    return re.sub(r"\d+", lambda m: str(rng.randint(1, 10 ** len(m.group()))), text) if rng.random() < 0.7 else text


def write_catalog(rows: list[dict], n: int, path: Path, price: bool, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            row = rows[i % len(rows)]
            title = row["title"] if i < len(rows) else perturb(row["title"], rng)
            record = {"id": f"r{i}", "title": title, "category": row["category"]}
            if price:
                record["price"] = round(rng.lognormvariate(4.0, 1.2), 2)
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def measured(command: list[str], env: dict | None = None, stdout_json: bool = False) -> dict:
    """Run ``command``; its wall seconds and peak RSS (the child's, from wait4); with ``stdout_json``, the JSON
    object its standard output ends with, under ``"output"``."""
    import tempfile

    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out if stdout_json else subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        error = process.stderr.read().decode(errors="replace")[-500:] if status else ""
        out.seek(0)
        lines = out.read().decode(errors="replace").strip().splitlines()
    result = {"wall_s": round(wall, 1), "peak_rss_gb": round(usage.ru_maxrss / 1e6, 2), "ok": status == 0,
              **({"error": error} if error else {})}
    if stdout_json and status == 0 and lines:
        result["output"] = json.loads(lines[-1])
    return result


BASELINE = """
import json, sys
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
X = TfidfVectorizer(analyzer="char", ngram_range=(1, 3)).fit_transform([r["title"] for r in rows])
LinearSVC(C=1.0).fit(X, [r["category"] for r in rows])
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,all", help="rows per run; 'all' = the whole training split")
    parser.add_argument("--modalities", default="title,title+price", help="comma list of title / title+price")
    parser.add_argument("--baseline", action="store_true", help="also the plain TF-IDF + LinearSVC (same rows)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--malloc-defaults", action="store_true",
                        help="also train with glibc's default heap behaviour (SKUTAG_MALLOC_DEFAULTS=1), each size "
                             "right after the run with skutag's settings")
    args = parser.parse_args(argv)
    missing = [str(p) for p in SOURCES if not p.is_file()]
    if missing:
        print(f"{', '.join(missing)} missing: run python -m bench.datasets cn_titles", file=sys.stderr)
        return 2
    rows = [row for path in SOURCES for row in read_rows(path)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {name: value for name, value in os.environ.items()  # skutag's own heap settings unless asked
               if not name.startswith("MALLOC_") and name not in ("SKUTAG_MALLOC_DEFAULTS", "GLIBC_TUNABLES")}
        env["SKUTAG_HOME"] = str(Path(tmp) / "home")
        turn = 0
        for size in args.sizes.split(","):
            n = len(rows) if size == "all" else int(size)
            for kind in args.modalities.split(","):
                price = kind == "title+price"
                catalog = Path(tmp) / f"catalog_{n}_{kind}.jsonl"
                write_catalog(rows, n, catalog, price)
                out = Path(tmp) / f"model_{n}_{kind}"
                command = [sys.executable, "-m", "skutag", "train", str(catalog), "--out", str(out),
                           "--modalities", kind.replace("+", ","), "--no-progress"]
                runs = [(f"skutag {kind}", command, env)]
                if args.malloc_defaults:  # which of the two goes first alternates: a warm cache favours the second
                    runs.append((f"skutag {kind}, glibc malloc defaults",
                                 [f"{out}-defaults" if part == str(out) else part for part in command],
                                 {**env, "SKUTAG_MALLOC_DEFAULTS": "1"}))
                    runs = runs[::-1] if turn % 2 else runs
                    turn += 1
                for model, run_command, run_env in runs:
                    result = {"rows": n, "model": model, **measured(run_command, run_env)}
                    print(json.dumps(result, ensure_ascii=False), flush=True)
                    results.append(result)
                if args.baseline and not price:
                    result = {"rows": n, "model": "baseline char1-3 tfidf + LinearSVC",
                              **measured([sys.executable, "-c", BASELINE, str(catalog)])}
                    print(json.dumps(result, ensure_ascii=False), flush=True)
                    results.append(result)
                catalog.unlink()
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps({"cpu_count": os.cpu_count(), "results": results}, indent=1))
    return 0


def print_table(results: list[dict]) -> None:
    """Markdown: each run with its cost per 1,000 rows, and that cost against the same model's smallest run
    (1.0 everywhere = linear in rows)."""
    print("| model | rows | wall s | peak RSS GB | s per 1k rows | x smallest | GB per 100k rows |")
    print("|---|---|---|---|---|---|---|")
    smallest: dict[str, float] = {}
    for r in results:
        per_k = r["wall_s"] / (r["rows"] / 1000)
        base = smallest.setdefault(r["model"], per_k)
        print(f"| {r['model']} | {r['rows']:,} | {r['wall_s']} | {r['peak_rss_gb']} | {per_k:.2f} | "
              f"{per_k / base:.2f} | {r['peak_rss_gb'] / (r['rows'] / 100000):.2f} |" + ("" if r["ok"] else " failed"))


if __name__ == "__main__":
    sys.exit(main())
