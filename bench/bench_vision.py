"""Vision stage benchmark: images/s and peak memory of four ways to run the classifier, and accuracy.

    python -m bench.bench_vision                 # speed + memory, all four modes, 2 threads
    python -m bench.bench_vision --accuracy      # top-1/top-5 on the 80 imagenet_retail photos, fp32 vs INT8
    python -m bench.bench_vision --all --json    # both, as JSON

Modes (all efficientnet-lite0 unless --backbone, same photos, same thread count):
  (a) article  the article's way: torch eager, the model built and its weights loaded for every call, batch 1
  (b) torch    torch eager, model kept loaded
  (c) onnx     ONNX Runtime fp32 (exported once, cached)
  (d) int8     ONNX Runtime static INT8 (QDQ, per-channel; calibrated on models/calibration)

Each mode runs in its own fresh Python process, so its peak RSS (ru_maxrss) is its own; images/s is end to
end from JPEG files (decode, preprocess, inference, softmax top-5). Speeds are reported as ratios to (a) from
the same run. Photos: ../shared/data/imagenet_retail (ImageNet terms: read at run time, never copied).
The machine may be shared: compare ratios within one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.article_way import article_rate

ROOT = Path(__file__).resolve().parent.parent
RETAIL = Path(os.environ.get("SKUTAG_SHARED_DATA", ROOT.parent / "shared" / "data")) / "imagenet_retail"
MODES = {
    "article": "(a) torch eager, model built+loaded per call, batch 1",
    "torch": "(b) torch eager, model kept",
    "onnx": "(c) ONNX Runtime fp32",
    "int8": "(d) ONNX Runtime INT8 (static QDQ)",
}
ARTICLE_IMAGES = 8  # building the model per call is slow: a few calls are enough for a rate


def retail_photos() -> list[tuple[str, int]]:
    manifest = RETAIL / "manifest.csv"
    if not manifest.is_file():
        sys.exit(f"benchmark photos not found: {manifest} (needs ../shared/data/imagenet_retail)")
    with open(manifest, encoding="utf-8") as handle:
        return [(str(RETAIL / row["image"]), int(row["class_index"])) for row in csv.DictReader(handle)]


def peak_rss_mb() -> float:
    """This process's peak resident set size. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the parent across fork+exec, which would charge every child with the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- one mode, in a child process


def _model_rates(mode: str, backbone: str, paths: list[str], threads: int, repeats: int) -> dict:
    from skutag import vision
    started = time.perf_counter()
    model = vision.load_model(backbone, runtime="torch" if mode == "torch" else "onnx", int8=mode == "int8", threads=threads)
    load_s = time.perf_counter() - started
    model.predict(paths[:16], batch_size=16)  # warm-up: allocations, kernel selection
    rates = {"load_s": load_s, "model_mb": model.model_path.stat().st_size / 2**20}
    for batch_size in (1, 16):
        best = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            model.predict(paths, batch_size=batch_size)
            best = max(best, len(paths) / (time.perf_counter() - start))
        rates[f"batch{batch_size}"] = best
    return rates


def run_mode(mode: str, backbone: str, threads: int, images: int, repeats: int) -> dict:
    paths = [path for path, _ in retail_photos()][:images]
    if mode == "article":
        result = article_rate(backbone, paths[:ARTICLE_IMAGES], threads)
    else:
        result = _model_rates(mode, backbone, paths, threads, 1 if mode == "torch" else repeats)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def speed(backbone: str, threads: int, images: int, repeats: int) -> dict:
    from skutag import vision
    # export and quantize before timing anything (cached under SKUTAG_HOME for the children too)
    vision.load_model(backbone, runtime="onnx", threads=threads)
    vision.load_model(backbone, runtime="onnx", int8=True, threads=threads)
    results = {}
    for mode in MODES:
        command = [sys.executable, "-m", "bench.bench_vision", "--child", mode, "--backbone", backbone,
                   "--threads", str(threads), "--images", str(images), "--repeats", str(repeats)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        output = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
        results[mode] = json.loads(output.strip().splitlines()[-1])
    base = results["article"]["batch1"]
    for mode, figures in results.items():
        figures["batch1_x"] = figures["batch1"] / base
        if "batch16" in figures:
            figures["batch16_x"] = figures["batch16"] / base
    return results


# --------------------------------------------------------------------------- accuracy


def accuracy(backbones: list[str], threads: int) -> dict:
    from skutag import vision
    photos = retail_photos()
    paths, truths = [p for p, _ in photos], [t for _, t in photos]
    report = {}
    for backbone in backbones:
        predictions = {}
        for name, kwargs in (("fp32", {}), ("int8", {"int8": True})):
            model = vision.load_model(backbone, threads=threads, **kwargs)
            results = model.predict(paths, top_k=5)
            predictions[name] = results
            report[f"{backbone} {name}"] = {
                "top1": sum(r.top_k[0].index == t for r, t in zip(results, truths)),
                "top5": sum(t in [s.index for s in r.top_k] for r, t in zip(results, truths)),
                "n": len(photos),
            }
        agree = sum(a.top_k[0].index == b.top_k[0].index for a, b in zip(predictions["fp32"], predictions["int8"]))
        report[f"{backbone} int8"]["top1_agrees_with_fp32"] = agree
    return report


# --------------------------------------------------------------------------- output


def print_speed(results: dict, backbone: str, threads: int, images: int) -> None:
    print(f"vision speed: {backbone}, {threads} threads, {images} photos (article mode: {ARTICLE_IMAGES} calls)")
    print(f"{'mode':<52} {'img/s b1':>9} {'x(a)':>6} {'img/s b16':>10} {'x(a)':>6} {'peak RSS MB':>12} "
          f"{'load s':>7} {'model MB':>9}")
    for mode, label in MODES.items():
        f = results[mode]
        b16 = f"{f['batch16']:>10.1f} {f['batch16_x']:>6.1f}" if "batch16" in f else f"{'-':>10} {'-':>6}"
        load = f"{f['load_s']:>7.2f}" if "load_s" in f else f"{'-':>7}"
        print(f"{label:<52} {f['batch1']:>9.2f} {f['batch1_x']:>6.1f} {b16} {f['peak_rss_mb']:>12.0f} {load} "
              f"{f['model_mb']:>9.1f}")


def print_accuracy(report: dict) -> None:
    print("vision accuracy on the 80 imagenet_retail photos")
    for name, f in report.items():
        agree = f" (top-1 agrees with fp32 on {f['top1_agrees_with_fp32']}/{f['n']})" if "top1_agrees_with_fp32" in f else ""
        print(f"  {name:<28} top-1 {f['top1']}/{f['n']} ({100 * f['top1'] / f['n']:.1f}%)  "
              f"top-5 {f['top5']}/{f['n']} ({100 * f['top5'] / f['n']:.1f}%){agree}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=48, help="photos per timed pass (max 80)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per batch size, best kept (torch: 1)")
    parser.add_argument("--accuracy", action="store_true", help="accuracy only")
    parser.add_argument("--all", action="store_true", help="speed and accuracy")
    parser.add_argument("--accuracy-backbones", default="efficientnet-lite0,efficientnet-lite2")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_mode(args.child, args.backbone, args.threads, args.images, args.repeats)))
        return 0
    report: dict = {"backbone": args.backbone, "threads": args.threads, "cpus": os.cpu_count(),
                    "load_average": os.getloadavg()}
    if not args.accuracy:
        report["speed"] = speed(args.backbone, args.threads, args.images, args.repeats)
    if args.accuracy or args.all:
        report["accuracy"] = accuracy(args.accuracy_backbones.split(","), args.threads)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    if "speed" in report:
        print_speed(report["speed"], args.backbone, args.threads, args.images)
        print(f"(load average at start {report['load_average'][0]:.1f} on {report['cpus']} CPUs: other work shares them)")
    if "accuracy" in report:
        print_accuracy(report["accuracy"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
