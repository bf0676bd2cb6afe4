"""The article's way of running the classifier, shared by bench_vision (mode a) and bench_batch (config d).

Per image: build the network and load its weights, preprocess with torchvision, torch eager forward at batch 1,
softmax top-5. It answers ImageNet labels, not shop categories: a speed baseline, with no leaf accuracy.

    python -m bench.article_way --paths FILE [--backbone NAME] [--threads N]   # FILE: one photo path a line

prints one JSON line: images/s (``batch1``), seconds, model MB. The rate is timed inside the process (the
interpreter start and the torch import are not in it; building the network per image is).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def article_rate(backbone: str, paths: list[str], threads: int) -> dict:
    """Per image: build the network, load the weights, preprocess with torchvision, forward, softmax top-5."""
    import torch
    from skutag.vision.image import load_image
    from torchvision import transforms

    from skutag import vision

    torch.set_num_threads(threads)
    entry = vision.get_backbone(backbone)
    spec = entry.resolve().preprocess
    transform = transforms.Compose([
        transforms.Resize(spec.resize_shorter, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(spec.size),
        transforms.ToTensor(),
        transforms.Normalize([m / 255 for m in spec.mean], [s / 255 for s in spec.std]),
    ])
    start = time.perf_counter()
    for path in paths:
        network = entry.resolve().build_network()  # what the article does on every call
        with torch.inference_mode():
            logits, _ = network(transform(load_image(path)).unsqueeze(0))
        torch.softmax(logits, dim=1).topk(5)
    seconds = time.perf_counter() - start
    return {"batch1": len(paths) / seconds, "seconds": seconds,
            "model_mb": entry.resolve().weights_path.stat().st_size / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=Path, required=True, help="text file, one photo path a line")
    parser.add_argument("--backbone", help="vision backbone (default: the configured vision.backbone)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.backbone is None:
        from skutag.config import SkutagConfig

        args.backbone = SkutagConfig.load().vision.backbone
    paths = [line for line in args.paths.read_text(encoding="utf-8").splitlines() if line]
    print(json.dumps({"backbone": args.backbone, **article_rate(args.backbone, paths, args.threads)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
