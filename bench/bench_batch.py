"""Catalogue throughput (issue 18): products/s, ratio to the article's way and leaf accuracy of `skutag batch`.

    .venv/bin/python -m bench.bench_batch [--n 600] [--configs a,b,c,d] [--model-a DIR] [--model-b DIR]
                                          [--keep-models DIR] [--train-limit K] [--workers N] [--json PATH]

One run, the same N products (GroceryStore val photos, no titles: the photo alone) for every configuration:

  (a) a vision-only bundle (`skutag train --modalities vision`), `skutag batch` with the OCR gate never
  (b) a vision + OCR bundle trained with `--vision-tail --modalities vision,ocr`, the OCR gate auto
  (c) the same bundle as (b), the OCR gate always (OCR on every photo)
  (d) the article's way (bench/article_way.py, shared with bench_vision): torch eager, the network built and
      its weights loaded for every image, batch 1

Issue 18's targets, in its words ("on this 2-core machine"): "(a) ≥ 60 products/s (≥ 15× the article's way),
(b) ≥ 10 products/s at the accuracy of today's (b) (0.865 val with OCR), (c) ≥ 4/s."

Bundles are trained here on the GroceryStore train split (photos, no titles; `--train-limit K` keeps K photos
spaced evenly over the split, for smoke tests) unless `--model-a` / `--model-b` name trained ones;
`--keep-models DIR` keeps what was trained (DIR/a, DIR/b) for reuse. Before any timing, each bundle tags two
train photos once (one-time exports under SKUTAG_HOME are not timed).

Measured per configuration, each a real process run to its end:
  products/s   (a)-(c): products / the seconds `skutag batch --json` reports (pool start and model loading
               included: what a user waits for; the command's interpreter start only in wall s);
               (d): images / the seconds inside its process (network built per image included, the torch
               import not).
  x (d)        products/s over (d)'s, same run.
  leaf acc.    answer path == the manifest's ``top_level > coarse > fine``, as `skutag eval`'s accuracy (a
               failed product counts as wrong), each distinct val photo once. (d) has none: it answers ImageNet
               labels, not shop categories.
  wall s       the whole process, interpreter start included.
  peak RSS     ``os.wait4``'s ru_maxrss: the largest peak among the batch process and its pool workers (a
               maximum, not a sum). This process imports nothing heavy: a child's ru_maxrss starts from its
               parent's at fork/exec.

The feature cache is off everywhere (``SKUTAG_FUSION__CACHE_FEATURES=false``), so each run really computes
vision and OCR, and the training times printed are cold-cache ones. GroceryStore val holds 296 photos: with N
above that, the extra products are copies of val photos with other bytes (a JPEG comment segment; same
pixels), so no cache keyed by a photo's content (OCR's in-memory one) serves them; they count in products/s,
not in leaf accuracy. `skutag batch` runs with its own defaults (one process per core) unless --workers.

The Celery workers and the 1-vs-2 local process comparison of the earlier version of this file (git history,
d48d4f6 / 163fcdb) are dropped: they answer another question than these four configurations.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a file (bench/bench_batch.py): make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.datasets import SHARED, build_grocery

SKUTAG = [sys.executable, "-m", "skutag"]
CONFIGS = {  # key: (what it is, bundle, OCR gate)
    "a": ("vision only, OCR off", "a", "never"),
    "b": ("vision tail + OCR, gate auto", "b", "auto"),
    "c": ("vision tail + OCR, gate always", "b", "always"),
    "d": ("article's way: torch eager, built per image, batch 1", None, None),
}
TRAIN_FLAGS = {"a": ["--modalities", "vision"], "b": ["--vision-tail", "--modalities", "vision,ocr"]}


# --------------------------------------------------------------------------- data


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return path


def spaced(rows: list, k: int) -> list:
    """``k`` rows spread evenly over ``rows`` (all of them when ``k`` >= their count). The splits are sorted
    by class, so a ``k`` of at least the class count keeps every class."""
    return list(rows) if k >= len(rows) else [rows[int(i * len(rows) / k)] for i in range(k)]


def other_bytes(src: str, folder: Path, i: int) -> str:
    """A copy of a JPEG with the same pixels and another SHA-256: a comment segment (COM) after the SOI marker."""
    data = Path(src).read_bytes()
    if data[:2] != b"\xff\xd8":
        sys.exit(f"not a JPEG, cannot make a distinct copy: {src}")
    payload = f"skutag bench copy {i}".encode()
    path = folder / f"copy{i:04d}.jpg"
    path.write_bytes(data[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + data[2:])
    return str(path)


def make_catalogs(folder: Path, n: int, train_limit: int | None) -> tuple[Path, Path, dict[str, str], Path]:
    """(train catalog, the N products to tag: id + photo only, truth of the distinct ones by id, photo list)."""
    shared = Path(os.environ.get("SKUTAG_SHARED_DATA", SHARED))
    if not (shared / "grocery" / "manifest.csv").is_file():
        sys.exit(f"GroceryStore not found at {shared / 'grocery'} (set SKUTAG_SHARED_DATA)")
    built = build_grocery(folder / "grocery", shared)  # category = top_level > coarse > fine
    train = read_jsonl(built["train_no_title"])
    train_path = write_jsonl(folder / "train.jsonl", spaced(train, train_limit) if train_limit else train)
    distinct = spaced(read_jsonl(built["val_no_title"]), n)
    (folder / "copies").mkdir()
    products, truth = [], {}
    for i in range(n):
        row = distinct[i % len(distinct)]
        pid = f"p{i:04d}"
        if i < len(distinct):
            truth[pid] = row["category"]
            products.append({"id": pid, "image": row["image"]})
        else:
            products.append({"id": pid, "image": other_bytes(row["image"], folder / "copies", i)})
    paths = folder / "photos.txt"
    paths.write_text("".join(p["image"] + "\n" for p in products), encoding="utf-8")
    return train_path, write_jsonl(folder / "products.jsonl", products), truth, paths


# --------------------------------------------------------------------------- processes


def timed(cmd: list[str], env: dict, log: Path) -> tuple[str, float, float]:
    """Run ``cmd`` to its end: (stdout, wall seconds, peak RSS MB from wait4). Output goes to files, not
    pipes, so nothing has to be read while waiting."""
    with open(f"{log}.out", "w+", encoding="utf-8") as out, open(f"{log}.err", "w+", encoding="utf-8") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{err.read()[-3000:]}")
        return out.read(), wall, usage.ru_maxrss / 1024  # Linux: kilobytes


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def train(key: str, catalog: Path, out: Path, env: dict, backbone: list[str], logs: Path) -> float:
    print(f"training ({key}) -> {out}: skutag train {' '.join(TRAIN_FLAGS[key])}", flush=True)
    cmd = [*SKUTAG, "train", str(catalog), "--out", str(out), *TRAIN_FLAGS[key], *backbone, "--no-progress"]
    _, wall, _ = timed(cmd, env, logs / f"train_{key}")
    print(f"  trained in {wall:.1f} s", flush=True)
    return wall


def batch_cmd(catalog: Path, out: Path, model: Path, workers: int | None) -> list[str]:
    return [*SKUTAG, "batch", str(catalog), "--out", str(out), "--model", str(model), "--json", "--no-progress",
            *(["--workers", str(workers)] if workers else [])]


def warm_up(key: str, model: Path, gate: str, train_catalog: Path, env: dict, folder: Path) -> None:
    """Tag two train photos once, so one-time work under SKUTAG_HOME (model exports) is not timed."""
    catalog = write_jsonl(folder / f"warm_{key}.jsonl",
                          [{"id": r["id"], "image": r["image"]} for r in read_jsonl(train_catalog)[:2]])
    timed(batch_cmd(catalog, folder / f"warm_{key}.results.jsonl", model, 1),
          dict(env, SKUTAG_FUSION__OCR_GATE=gate), folder / f"warm_{key}")


def run_batch(key: str, model: Path, catalog: Path, truth: dict[str, str], n: int, env: dict,
              workers: int | None, folder: Path) -> dict:
    out = folder / f"results_{key}.jsonl"
    stdout, wall, rss = timed(batch_cmd(catalog, out, model, workers),
                              dict(env, SKUTAG_FUSION__OCR_GATE=CONFIGS[key][2]), folder / f"batch_{key}")
    summary = last_json(stdout)
    if summary["tagged"] != n:
        sys.exit(f"({key}): skutag batch tagged {summary['tagged']} of {n} products: {summary}")
    answers = {row["id"]: row.get("path") for row in read_jsonl(out)}
    correct = sum(answers.get(pid) == path for pid, path in truth.items())
    return {"products_per_s": n / summary["seconds"], "seconds": summary["seconds"], "wall_s": wall,
            "peak_rss_mb": rss, "leaf_accuracy": correct / len(truth), "failed": summary["failed"],
            "processes": summary.get("processes"), "threads_per_process": summary.get("threads_per_process")}


def run_article(photos: Path, env: dict, backbone: str | None, threads: int, folder: Path) -> dict:
    cmd = [sys.executable, "-m", "bench.article_way", "--paths", str(photos), "--threads", str(threads),
           *(["--backbone", backbone] if backbone else [])]
    stdout, wall, rss = timed(cmd, dict(env, OMP_NUM_THREADS=str(threads)), folder / "article")
    result = last_json(stdout)
    return {"products_per_s": result["batch1"], "seconds": result["seconds"], "wall_s": wall,
            "peak_rss_mb": rss, "leaf_accuracy": None, "failed": 0, "backbone": result["backbone"]}


# --------------------------------------------------------------------------- report


def print_table(report: dict) -> None:
    models = ", ".join(f"({k}) {v}" for k, v in report["models"].items()) or "none"
    print(f"\n{report['n']} products ({report['distinct_photos']} distinct GroceryStore val photos), "
          f"{report['cores']} cores, load average {report['load_average_start'][0]:.2f} at start; bundles: {models}")
    limit = f", {report['train_limit']} train photos" if report["train_limit"] else ""
    for key, seconds in report["train_seconds"].items():
        print(f"trained ({key}) in {seconds:.0f} s (feature cache off{limit})")
    print("\n| config | products/s | x (d) | leaf accuracy | wall s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in report["rows"]:
        ratio = f"{row['x_d']:.1f}" if row["x_d"] is not None else "—"
        accuracy = f"{row['leaf_accuracy']:.3f}" if row["leaf_accuracy"] is not None else "—"
        print(f"| ({row['config']}) {row['label']} | {row['products_per_s']:.2f} | {ratio} | {accuracy} | "
              f"{row['wall_s']:.1f} | {row['peak_rss_mb']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="products to tag (default 600)")
    parser.add_argument("--configs", default="a,b,c,d", help="subset of a,b,c,d (default all)")
    parser.add_argument("--model-a", type=Path, help="trained vision-only bundle for (a) (default: train one)")
    parser.add_argument("--model-b", type=Path, help="trained vision-tail + OCR bundle for (b), (c) (default: train)")
    parser.add_argument("--keep-models", type=Path, help="train the bundles into DIR/a and DIR/b and keep them")
    parser.add_argument("--train-limit", type=int, help="train on K photos spread over the train split (smoke tests)")
    parser.add_argument("--workers", type=int, help="skutag batch --workers (default: its own, one per core)")
    parser.add_argument("--backbone", help="vision backbone for training and (d) (default: vision.backbone)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not configs or any(c not in CONFIGS for c in configs):
        parser.error(f"--configs: choose from {','.join(CONFIGS)}, got {args.configs!r}")
    if args.n < 1 or (args.train_limit is not None and args.train_limit < 2):
        parser.error("--n must be at least 1, --train-limit at least 2")
    for given in (args.model_a, args.model_b):
        if given is not None and not given.is_dir():
            parser.error(f"model folder not found: {given}")

    cores = os.cpu_count() or 1
    env = dict(os.environ, SKUTAG_FUSION__CACHE_FEATURES="false", PYTHONPATH=str(ROOT))
    backbone = ["--backbone", args.backbone] if args.backbone else []
    needed = {CONFIGS[c][1] for c in configs} - {None}
    report: dict = {"n": args.n, "cores": cores, "load_average_start": os.getloadavg(), "configs": configs,
                    "train_limit": args.train_limit, "workers": args.workers, "models": {}, "train_seconds": {},
                    "rows": []}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        folder = Path(tmp)
        train_catalog, catalog, truth, photos = make_catalogs(folder, args.n, args.train_limit)
        report["distinct_photos"] = len(truth)
        given = {"a": args.model_a, "b": args.model_b}
        models: dict[str, Path] = {}
        for key in sorted(needed):
            if given[key] is not None:
                models[key] = given[key].resolve()
                continue
            models[key] = (args.keep_models.resolve() if args.keep_models else folder / "models") / key
            report["train_seconds"][key] = round(train(key, train_catalog, models[key], env, backbone, folder), 1)
        report["models"] = {key: str(path) for key, path in models.items()}
        for key in sorted(needed):
            warm_up(key, models[key], "always" if key == "b" else "never", train_catalog, env, folder)
        results = {}
        for key in configs:
            print(f"running ({key}) {CONFIGS[key][0]} on {args.n} products", flush=True)
            if key == "d":
                results[key] = run_article(photos, env, args.backbone, cores, folder)
            else:
                results[key] = run_batch(key, models[CONFIGS[key][1]], catalog, truth, args.n, env, args.workers,
                                         folder)
            print(f"  {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results[key].items()})}",
                  flush=True)
    base = results.get("d", {}).get("products_per_s")
    for key in configs:
        row = {"config": key, "label": CONFIGS[key][0], **results[key]}
        row["x_d"] = row["products_per_s"] / base if base else None
        report["rows"].append(row)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
