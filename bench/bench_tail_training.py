"""What a tail's training costs, stage by stage, as the photos grow (issue 18: cold `train --vision-tail`).

    .venv/bin/python -m bench.bench_tail_training [--sizes 128,256,512] [--epochs 1] [--json PATH]

GroceryStore train photos (the first N of each size, spread over the categories), the product's own classes:

* activations: ``CutExtractor.transform_views`` over the training views (centre, mirror, 4 random views), photos/s;
  and the same activations with the next batch cropped in a thread while the network runs (``views_ahead``:
  measured, not taken);
* tail fits: one ``TailClassifier`` epoch on those activations, seconds per epoch with 1 and 2 torch threads,
  and two 1-thread fits in two processes at once (how folds could share the cores).

Each figure is the best of ``--repeat`` runs; nothing is cached between runs (no SKUTAG_HOME features).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.datasets import SHARED  # noqa: E402

VIEWS = ["center", "flip", "aug0", "aug1", "aug2", "aug3"]


def train_photos(n: int) -> tuple[list[str], list[str]]:
    import csv

    folder = SHARED / "grocery"
    rows = [r for r in csv.DictReader((folder / "manifest.csv").open(encoding="utf-8")) if r["split"] == "train"]
    step = max(1, len(rows) // n)
    chosen = rows[::step][:n]
    return [str(folder / r["image"]) for r in chosen], [r["fine"] for r in chosen]


def views_ahead(extractor, paths, views, keys, batch_size: int = 32) -> dict[str, np.ndarray]:
    """The same activations, with the next batch decoded and cropped in a thread while the network runs on this one
    (one thread makes every crop, in order: the random views' torch RNG stays that of a sequential run)."""
    from concurrent.futures import ThreadPoolExecutor

    from skutag.vision.image import load_image
    from skutag.vision.tail.train import view_crop
    from skutag.vision.tail.views import key_seed

    spec, out = extractor.spec, {view: [] for view in views}
    starts = list(range(0, len(paths), batch_size))

    def crops(start: int) -> dict[str, list[np.ndarray]]:
        images = [load_image(p, extractor.limits, min_side=spec.resize_shorter) for p in paths[start:start + batch_size]]
        return {view: [view_crop(image, view, spec, key_seed(view, key, 0))
                       for image, key in zip(images, keys[start:start + batch_size])] for view in views}

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(crops, starts[0])
        for k in range(len(starts)):
            batch = pending.result()
            if k + 1 < len(starts):
                pending = pool.submit(crops, starts[k + 1])
            for view in views:
                out[view].append(extractor._forward(batch[view]))
    return {view: np.concatenate(parts) for view, parts in out.items()}


def _fit_seconds(args) -> float:
    views, labels, threads, epochs = args
    from skutag.vision.tail.train import TailClassifier

    started = time.perf_counter()
    TailClassifier("efficientnet-lite0", cut="5.1", epochs=epochs, threads=threads).fit(views, labels)
    return time.perf_counter() - started


def _few(views, labels, threads: int):
    """Four rows spread over the photos (several classes) for one epoch: a warm-up fit."""
    rows = np.linspace(0, len(labels) - 1, 4).astype(int)
    return [v[rows] for v in views], [labels[r] for r in rows], threads, 1


def _fit_together(args, barrier, results) -> None:
    """One of two processes: imports done, both wait, then fit at once; the wall clock of the fit is sent back."""
    import torch  # noqa: F401 - imported before the barrier

    from skutag.vision.tail.train import TailClassifier  # noqa: F401

    views, labels, threads, _ = args
    _fit_seconds(_few(views, labels, threads))  # the network's first load, outside the timing
    barrier.wait()
    started = time.time()
    _fit_seconds(args)
    results.put((started, time.time()))


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def run(n: int, epochs: int, repeat: int) -> dict:
    from skutag.vision.tail.train import CutExtractor

    paths, labels = train_photos(n)
    keys = [f"{k}:{p}" for k, p in enumerate(paths)]
    extractor = CutExtractor("efficientnet-lite0", cut="5.1", threads=os.cpu_count() or 1)
    extractor.transform_views(paths[:8], ["center"], keys[:8])  # export and session outside the timing
    in_order = best(lambda: extractor.transform_views(paths, VIEWS, keys), repeat)
    ahead = best(lambda: views_ahead(extractor, paths, VIEWS, keys), repeat)
    acts = extractor.transform_views(paths, VIEWS, keys)
    views = [acts[v] for v in VIEWS]
    _fit_seconds(_few(views, labels, 1))  # the network's first load, outside the timing
    one = _fit_seconds((views, labels, 1, epochs))
    two = _fit_seconds((views, labels, 2, epochs))
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_fit_together, args=((views, labels, 1, epochs), barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    spans = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    pair = max(end for _, end in spans) - min(start for start, _ in spans)
    return {
        "photos": n, "views": len(VIEWS),
        "activations_photos_per_s": round(n / in_order, 2), "cropped_ahead_photos_per_s": round(n / ahead, 2),
        "cropped_ahead_speedup": round(in_order / ahead, 2),
        "fit_s_per_epoch_1_thread": round(one / epochs, 2), "fit_s_per_epoch_2_threads": round(two / epochs, 2),
        "two_1_thread_fits_at_once_s_per_epoch_each": round(pair / epochs, 2),
        "fits_per_s_2_threads_vs_two_processes": round((2 * two) / pair, 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        results.append(run(n, args.epochs, args.repeat))
        print(json.dumps(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"cpu_count": os.cpu_count(), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
