"""Does a larger input help the vision tail? One tail fit per input size, same process, GroceryStore val.

    .venv/bin/python -m bench.bench_tail_input_size --sizes 224:256,288:330 [--backbone efficientnet-lite0]

Each ``SIZE:SHORTER`` resizes the photo's shorter side to SHORTER and centre-crops SIZE (224:256 is the
backbone's own). For each size: cut activations of the centre crop, its mirror and 4 random views of every
train photo (ONNX Runtime, the frozen part exported for that size under a scratch ``SKUTAG_HOME``), one
``TailClassifier`` fit with the product's defaults, then val leaf accuracy of the tail's own head with mirror
TTA, overall and on the branded ``Packages`` slice, with the seconds each step took.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time

from bench.bench_vision_adapt import DATA, load_splits

VIEWS = ("center", "flip", "aug0", "aug1", "aug2", "aug3")


def run_size(backbone: str, cut: str, size: int, shorter: int, splits, threads: int, home: str) -> dict:
    from skutag.vision.tail.train import CutExtractor, TailClassifier

    os.environ["SKUTAG_HOME"] = os.path.join(home, f"size{size}")  # the cut graph is exported per input size
    train, val = splits["train"], splits["val"]
    started = time.perf_counter()
    extractor = CutExtractor(backbone, cut, threads=threads)
    extractor.spec = dataclasses.replace(extractor.spec, size=size, resize_shorter=shorter)
    train_acts = extractor.transform_views([str(p) for p in train.paths], VIEWS, [str(p) for p in train.paths])
    val_acts = extractor.transform_views([str(p) for p in val.paths], ("center", "flip"), [str(p) for p in val.paths])
    activations = time.perf_counter() - started
    started = time.perf_counter()
    tail = TailClassifier(backbone, cut, threads=threads).fit([train_acts[v] for v in VIEWS], train.labels)
    fit = time.perf_counter() - started
    right = tail.predict([val_acts["center"], val_acts["flip"]]) == val.labels
    return {"size": size, "resize_shorter": shorter, "leaf": round(float(right.mean()), 4),
            "packages": round(float(right[val.packages].mean()), 4),
            "activation_s": round(activations, 1), "fit_s": round(fit, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224:256,288:330", help="comma list of SIZE:SHORTER")
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--cut", default="5.1")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not (DATA / "manifest.csv").is_file():
        parser.error(f"GroceryStore not found at {DATA} (see ../shared/data/README.md)")
    splits, _ = load_splits(DATA)
    with tempfile.TemporaryDirectory(prefix="skutag-tail-size-") as home:
        for pair in args.sizes.split(","):
            size, shorter = (int(x) for x in pair.split(":"))
            print(json.dumps(run_size(args.backbone, args.cut, size, shorter, splits, args.threads, home)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
