"""Throughput of `skutag batch`: 1 and 2 local processes, 1 and 2 Celery workers, same 200 photos.

    .venv/bin/python bench/bench_batch.py [--n 200] [--model MODEL_DIR] [--broker redis://127.0.0.1:6379/13]
                                          [--report bench-batch.json]

The photos are GroceryStore val (``../shared/data/grocery``), evenly spaced over the split, with
their shop titles. Every configuration runs once, as real `skutag batch` / `skutag worker`
processes, with the feature cache off (``SKUTAG_FUSION__CACHE_FEATURES=false``) so every run
really computes vision, OCR and title features.

Reported per configuration: products/s over the batch (local: pool start and model loading
included, that is what a user waits for; the interpreter start of the command itself is in
``wall_s`` only), and products/s after the first result (start-up excluded). Celery workers
are long-running: they are started, warmed up on 4 other photos, and
the batch is timed from enqueue to the last result collected. Ratios are against 1 local process
from the same run. processes x threads <= cores everywhere (2 processes -> 1 thread each).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 16  # products per tagger call on the local pool (Celery tasks carry one product each)
DATA = Path(os.environ.get("SKUTAG_SHARED_DATA", ROOT.parent / "shared" / "data"))


def grocery_catalog(folder: Path, split: str, n: int, name: str) -> Path:
    manifest = DATA / "grocery" / "manifest.csv"
    if not manifest.exists():
        sys.exit(f"GroceryStore not found at {manifest} (set SKUTAG_SHARED_DATA)")
    with manifest.open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == split]
    picked = [rows[int(i * len(rows) / n)] for i in range(min(n, len(rows)))]
    path = folder / name
    with path.open("w", encoding="utf-8") as handle:
        for i, row in enumerate(picked):
            handle.write(json.dumps({"id": f"{split}-{i:04d}", "image": str(manifest.parent / row["image"]),
                                     "title": row["title_sv"]}, ensure_ascii=False) + "\n")
    return path


def run_json(cmd: list[str], env: dict) -> dict:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(label: str, cmd: list[str], env: dict, n: int, first_batch: int) -> dict:
    """Run one `skutag batch --json`; ``first_batch`` = results that arrive with the first one (a chunk)."""
    started = time.perf_counter()
    summary = run_json(cmd, env)
    wall = time.perf_counter() - started
    assert summary["tagged"] == n, summary
    first = summary.get("first_result_seconds") or 0.0
    after_first = summary["seconds"] - first
    row = {
        "config": label,
        "products": summary["tagged"],
        "failed": summary["failed"],
        "wall_s": round(wall, 2),
        "seconds": round(summary["seconds"], 2),  # inside `skutag batch` (pool + models / enqueue..collect)
        "products_per_s": round(n / summary["seconds"], 3),
        "first_result_s": round(first, 2),
        "products_per_s_after_first": round((n - first_batch) / after_first, 3) if after_first > 0 else None,
    }
    print(json.dumps(row), flush=True)
    return row


def start_workers(count: int, broker: str, queue: str, folder: Path, env: dict, model: str | None,
                  threads: int) -> list[subprocess.Popen]:
    procs = []
    for i in range(count):
        cmd = [sys.executable, "-m", "skutag", "worker", "--broker", broker, "--queue", queue, "--concurrency", "1",
               "--threads", str(threads), "--hostname", f"bench{i}@%h", "--loglevel", "WARNING"]
        if model:
            cmd += ["--model", model]
        log = (folder / f"worker{i}.log").open("w")
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--model", help="model bundle folder (default: cold start)")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument("--report", type=Path, help="write the table as JSON here")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    env = dict(os.environ, SKUTAG_FUSION__CACHE_FEATURES="false", PYTHONPATH=str(ROOT))
    skutag = [sys.executable, "-m", "skutag"]
    model = ["--model", args.model] if args.model else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        folder = Path(tmp)
        catalog = grocery_catalog(folder, "val", args.n, "val.jsonl")
        warmup = grocery_catalog(folder, "train", 4, "warmup.jsonl")
        for workers in (1, 2):
            out = folder / f"local{workers}.jsonl"
            cmd = [*skutag, "batch", str(catalog), "--out", str(out), "--workers", str(workers),
                   "--threads", str(max(1, cores // workers)), "--chunk-size", str(CHUNK), "--json", "--no-progress",
                   *model]
            rows.append(measure(f"local x{workers}", cmd, env, args.n, first_batch=CHUNK))
        if not args.skip_celery:
            for count in (1, 2):
                queue = f"bench-{uuid.uuid4().hex[:8]}"
                procs = start_workers(count, args.broker, queue, folder, env, args.model, max(1, cores // count))
                try:
                    common = ["--broker", args.broker, "--queue", queue, "--force", "--json", "--no-progress", *model]
                    run_json([*skutag, "batch", str(warmup), "--out", str(folder / f"warm{count}.jsonl"), *common], env)
                    out = folder / f"celery{count}.jsonl"
                    rows.append(measure(f"celery x{count}", [*skutag, "batch", str(catalog), "--out", str(out),
                                                              *common], env, args.n, first_batch=1))
                finally:
                    stop_workers(procs)
                    from kombu import Connection

                    with Connection(args.broker) as connection:
                        connection.default_channel.queue_delete(queue)
    base = rows[0]
    for row in rows:
        row["ratio_vs_local_x1"] = round(row["products_per_s"] / base["products_per_s"], 2)
        if row["products_per_s_after_first"] and base["products_per_s_after_first"]:
            row["ratio_after_first_vs_local_x1"] = round(
                row["products_per_s_after_first"] / base["products_per_s_after_first"], 2)
    print(f"\n{args.n} GroceryStore val photos, {cores} cores, model: {args.model or 'cold start'}")
    print(f"{'config':<12}{'products/s':>12}{'ratio':>8}{'after 1st':>11}{'ratio':>8}{'wall s':>9}{'1st s':>8}")
    for row in rows:
        print(f"{row['config']:<12}{row['products_per_s']:>12.2f}{row['ratio_vs_local_x1']:>8.2f}"
              f"{(row['products_per_s_after_first'] or 0):>11.2f}{row.get('ratio_after_first_vs_local_x1', 0):>8.2f}"
              f"{row['wall_s']:>9.1f}{row['first_result_s']:>8.1f}")
    if args.report:
        args.report.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
