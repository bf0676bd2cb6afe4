"""OpenVINO against ONNX Runtime for the vision backbone, on the same GroceryStore val photos in one run.

    python -m bench.datasets grocery
    .venv/bin/python -m bench.bench_openvino [--threads 2] [--batch 16] [--json out.json]

The photos are decoded and preprocessed once; each runtime then runs the same float32 batches (so only the
network's own cost is compared). Rows: ONNX Runtime fp32 (skutag's default), ONNX Runtime static INT8
(``vision.int8``), OpenVINO with its CPU plugin at f32 and at bf16 inference precision, compiled as skutag
compiles it (``skutag.inference.openvino_model``). Each row gives seconds for all photos (the best of ``--repeats``), its speed against ONNX
Runtime fp32, and how far its answers are from fp32's: top-1 agreement, top-5 overlap and the cosine of the
embeddings (the fusion layer's input).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VAL = Path("/tmp/skutag-data/grocery_val_no_title.jsonl")


def _load_batch(limit: int | None):
    from PIL import Image

    from skutag.vision.backbones import get_backbone
    from skutag.vision.preprocess import preprocess_images

    import skutag.vision.networks  # noqa: F401  (registers the backbones)

    source = get_backbone("efficientnet-lite0").resolve()
    rows = [json.loads(line) for line in VAL.open(encoding="utf-8")][:limit]
    images = [Image.open(row["image"]).convert("RGB") for row in rows]
    return source, preprocess_images(images, source.preprocess)


def _run_all(run, x: np.ndarray, batch: int, repeats: int) -> tuple[float, np.ndarray, np.ndarray]:
    run(x[:batch])  # warm-up: first-call allocations and kernel choices
    best, outputs = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = [run(x[i:i + batch]) for i in range(0, len(x), batch)]
        best = min(best, time.perf_counter() - start)
    return best, np.vstack([o[0] for o in outputs]), np.vstack([o[1] for o in outputs])


def _openvino(model_path: Path, threads: int, precision: str):
    from skutag.inference import openvino_model

    compiled = openvino_model(model_path, threads, precision)
    request = compiled.create_infer_request()
    logits_out, embedding_out = compiled.outputs[0], compiled.outputs[1]

    def run(batch: np.ndarray):
        result = request.infer({0: batch})
        return result[logits_out], result[embedding_out]

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="first N val photos")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not VAL.is_file():
        print(f"{VAL} missing: run python -m bench.datasets grocery", file=sys.stderr)
        return 2
    try:
        import openvino  # noqa: F401
    except ImportError:
        print("openvino is not installed: .venv/bin/pip install openvino", file=sys.stderr)
        return 2
    from skutag.vision.runtime import OnnxRuntime

    source, x = _load_batch(args.limit)
    fp32 = OnnxRuntime(source, threads=args.threads)
    runs = {"onnxruntime fp32": fp32.run,
            "onnxruntime int8": OnnxRuntime(source, threads=args.threads, int8=True).run,
            "openvino f32": _openvino(fp32.model_path, args.threads, "f32"),
            "openvino bf16": _openvino(fp32.model_path, args.threads, "bf16")}
    results, reference = [], None
    for name, run in runs.items():
        seconds, logits, embedding = _run_all(run, x, args.batch, args.repeats)
        if reference is None:
            reference = (seconds, logits, embedding)
        base_seconds, base_logits, base_embedding = reference
        top5 = np.mean([len(set(np.argsort(-a)[:5]) & set(np.argsort(-b)[:5])) / 5
                        for a, b in zip(base_logits, logits)])
        cosine = np.sum(base_embedding * embedding, axis=1) / (
            np.linalg.norm(base_embedding, axis=1) * np.linalg.norm(embedding, axis=1))
        row = {"runtime": name, "photos": len(x), "seconds": round(seconds, 3),
               "x_onnxruntime_fp32": round(base_seconds / seconds, 2),
               "top1_agreement": round(float(np.mean(base_logits.argmax(1) == logits.argmax(1))), 3),
               "top5_overlap": round(float(top5), 3), "embedding_cosine_min": round(float(cosine.min()), 4)}
        print(json.dumps(row), flush=True)
        results.append(row)
    print("| runtime | s for all photos | x ONNX Runtime fp32 | top-1 agreement | top-5 overlap | embedding cosine (min) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in results:
        print(f"| {row['runtime']} | {row['seconds']} | {row['x_onnxruntime_fp32']} | {row['top1_agreement']} | "
              f"{row['top5_overlap']} | {row['embedding_cosine_min']} |")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "batch": args.batch, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
