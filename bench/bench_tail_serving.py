"""What the fine-tuned vision tail costs at serving time, as a ratio to the plain vision stage, same process.

Vision evidence (top-k labels + embedding) for the same photos, no feature cache, in batches:

* ``plain``: the backbone on the runtime ``vision.runtime = auto`` gives beside a tail (ONNX Runtime), so the
  ratios below compare like with like;
* ``tail``: what serving runs: one run of the tail's one ONNX graph per batch gives the labels, the plain
  embedding and the tuned embedding, every view through the frozen part once (centre crop, its mirror with
  ``vision.tail_tta``, the whole photo with ``vision.tail_full_view``);
* ``tail-two-graphs``: the plain backbone for the labels, then the tail's graph for the tuned embedding only
  (the centre crop through the frozen part twice: how serving ran before labels came from the tail's graph);
* ``tail-centre``: the tail's graph on the centre crop only;
* ``tail-crops``: the tail's graph on the centre crop and its mirror, without the whole photo
  (``vision.tail_full_view = false``; only when the bundle's tail serves the whole photo);
* ``plain-int8`` / ``tail-int8``: the plain stage and serving with ``vision.int8`` (static INT8 copies of
  the backbone and of the tail's graph, calibrated on ``models/calibration``);
* ``plain-openvino`` / ``tail-openvino``: the plain stage and serving with ``vision.runtime = openvino`` (the tail's
  graph there too; bf16 where the CPU computes it). ``plain-openvino`` is what ``auto`` runs for a bundle without
  a tail on such a CPU;
* ``plain`` again, to see how much the shared machine drifted during the run.

(Serving runs the graph a bundle's tail keeps where the plain network runs; the tail as trained, eager PyTorch,
is no longer something serving can run, so it is not timed here.)

Each variant is timed ``--passes`` times (default 2) and the best pass counts.

Usage (a bundle trained with ``skutag train --vision-tail``, and a catalog with photos)::

    python -m bench.bench_tail_serving --model /tmp/runs/g_tail_v --catalog /tmp/skutag-data/grocery_val.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from copy import copy
from dataclasses import replace
from pathlib import Path

import numpy as np


def _photos_per_second(collector, products, batch: int, passes: int = 2) -> float:
    """The best of ``passes`` timed passes: a first pass can pay one-off costs (an INT8 session's first
    full batches ran at about half speed here)."""
    best = float("inf")
    for _ in range(max(1, passes)):
        started = time.perf_counter()
        for start in range(0, len(products), batch):
            collector.collect(products[start:start + batch], ocr=False)
        best = min(best, time.perf_counter() - started)
    return len(products) / best


def main(argv: list[str] | None = None) -> int:
    from skutag.fusion import bundle as bundles
    from skutag.catalog_io import read_catalog
    from skutag.config import SkutagConfig
    from skutag.evidence import EvidenceCollector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model directory trained with --vision-tail")
    parser.add_argument("--catalog", type=Path, required=True, help="catalog with photos")
    parser.add_argument("--n", type=int, default=96, help="photos timed per variant")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--passes", type=int, default=2, help="timed passes per variant; the best counts")
    args = parser.parse_args(argv)

    tail = bundles.load_tail(bundles.resolve(args.model))
    if tail is None:
        parser.error(f"{args.model} has no vision tail; train it with `skutag train --vision-tail`")
    backbone = bundles.resolve(args.model).manifest()["stages"]["vision"]["backbone"]
    config = SkutagConfig.load(overrides={"vision.backbone": backbone})
    int8 = SkutagConfig.load(overrides={"vision.backbone": backbone, "vision.int8": True})
    openvino = SkutagConfig.load(overrides={"vision.backbone": backbone, "vision.runtime": "openvino"})
    products = [p for p in read_catalog(args.catalog).products if p.image is not None][:args.n]
    quantized, on_openvino = copy(tail), copy(tail)
    warm = {}  # model loads, ONNX exports and INT8 quantization outside the timings
    for settings, chosen in ((int8, quantized), (openvino, on_openvino), (config, tail)):
        warm[settings] = EvidenceCollector(settings, use_cache=False, tail=chosen)
        warm[settings].collect(products[:args.batch], ocr=False)
        chosen.embed([p.image for p in products[:2]])
    centre = copy(tail)
    centre.views = ("center",)
    separate = copy(tail)
    separate.joint = False
    crops = replace(tail, views=tuple(v for v in tail.views if v != "full"))
    crops.embed([p.image for p in products[:2]])  # its own digest: its sessions are opened here, not timed
    variants = [("plain", None, config), ("tail", tail, config), ("tail-two-graphs", separate, config),
                ("tail-centre", centre, config)] + ([("tail-crops", crops, config)] if "full" in tail.views else []) + [
                ("plain-int8", None, int8), ("tail-int8", quantized, int8),
                ("plain-openvino", None, openvino), ("tail-openvino", on_openvino, openvino),
                ("plain-again", None, config)]
    rates = {}
    for name, chosen, settings in variants:
        collector = EvidenceCollector(settings, use_cache=False, tail=chosen)
        collector._vision = warm[settings].vision_model
        rates[name] = _photos_per_second(collector, products, args.batch, args.passes)
        print(f"{name}: {rates[name]:.1f} photos/s", flush=True)
    base = float(np.mean([rates["plain"], rates["plain-again"]]))
    report = {"photos": len(products), "batch": args.batch, "backbone": backbone,
              "photos_per_s": {k: round(v, 2) for k, v in rates.items()},
              "cost_vs_plain": {k: round(base / v, 2) for k, v in rates.items() if not k.startswith("plain")},
              "int8_speedup": {"plain": round(rates["plain-int8"] / base, 2),
                               "tail": round(rates["tail-int8"] / rates["tail"], 2)},
              "openvino_over_default": {"plain": round(rates["plain-openvino"] / base, 2),
                                        "tail": round(rates["tail-openvino"] / rates["tail"], 2)},
              "runtime": warm[config].vision_model.engine.answers}
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
