"""GroceryStore leaf accuracy without titles: ways to adapt a frozen EfficientNet-Lite on CPU.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_vision_adapt --backbone efficientnet-lite0 \
        [--aug-views 4] [--epochs 6] [--train-threads 1] [--cache /tmp/vision_adapt] [--json-out FILE]

Trained on the manifest's ``train`` split only, measured on ``val`` (296): leaf accuracy (81 fine
classes) and accuracy on the ``Packages`` slice. Variants:

a. baseline: L2-normalised penultimate embedding (centre crop) + LogisticRegression;
b. augmentation: train on the centre, flipped and ``--aug-views`` random-resized-crop/flip/colour-jitter
   views of every train photo; test-time averaging of probabilities over views (centre+flip, and
   centre+flip+whole-photo+flipped whole photo);
c. multi-stage pooled features: global-average-pooled outputs of the last stages concatenated with the
   embedding, each block L2-normalised (and scaled by 1/sqrt(blocks));
d. tail fine-tuning (``vision.tail.train.TailClassifier``): the network is frozen up to ``--cut`` (stage.block);
   that activation is cached for every train view, then the remaining blocks + conv_head + a new 81-way
   head are trained (AdamW, one-cycle, BN statistics frozen) from the cache; evaluated on val with and
   without flip TTA, and as the fusion would use it (LogisticRegression on the fine-tuned embedding).

Per-view features/activations are cached under ``--cache`` (keyed by backbone, split, view, cut), so a rerun
only recomputes what is missing. Seeds are fixed. Prints a JSON summary with wall seconds for every step.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "grocery"
SEED = 0
"""Seed of the augmented views (part of the cache: fixed); --seed changes only the training."""
TRAIN_SEED = 0


@dataclass
class Split:
    paths: list[Path]
    labels: np.ndarray
    packages: np.ndarray


@dataclass
class Score:
    name: str
    leaf_acc: float
    packages_acc: float
    seconds: float
    extra: dict = field(default_factory=dict)


def load_splits(data: Path) -> tuple[dict[str, Split], list[str]]:
    rows = list(csv.DictReader((data / "manifest.csv").open(encoding="utf-8")))
    classes = sorted({" > ".join([r["top_level"], r["coarse"], r["fine"]]) for r in rows})
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split in ("train", "val"):
        chosen = [r for r in rows if r["split"] == split]
        splits[split] = Split(
            paths=[data / r["image"] for r in chosen],
            labels=np.array([index[" > ".join([r["top_level"], r["coarse"], r["fine"]])] for r in chosen]),
            packages=np.array([r["top_level"] == "Packages" for r in chosen]),
        )
    return splits, classes


# ---------------------------------------------------------------- views


def _view_crop(image, view: str, spec, seed: int) -> np.ndarray:
    from PIL import Image

    from skutag.vision.preprocess import resize_crop

    if view == "center":
        return resize_crop(image, spec)
    if view == "flip":
        return resize_crop(image, spec)[:, ::-1]
    if view in ("full", "fullflip"):
        crop = np.asarray(image.resize((spec.size, spec.size), Image.Resampling.BICUBIC), dtype=np.uint8)
        return crop[:, ::-1] if view == "fullflip" else crop
    if view.startswith("aug"):
        from skutag.vision.tail.train import augmented_crop

        return augmented_crop(image, spec, seed)
    raise ValueError(view)


class Tapped:
    """Runs a timm EfficientNet block by block: embedding, pooled stage outputs, activation at the cut."""

    def __init__(self, model, cut: tuple[int, int], pooled_stages: tuple[int, ...]):
        self.model, self.cut, self.pooled_stages = model, cut, pooled_stages

    def __call__(self, x):
        m = self.model
        x = m.bn1(m.conv_stem(x))
        pooled, act = {}, None
        for s, stage in enumerate(m.blocks):
            for i, block in enumerate(stage):
                x = block(x)
                if (s, i) == self.cut:
                    act = x
            if s in self.pooled_stages:
                pooled[s] = x.mean((2, 3))
        embedding = m.forward_head(m.bn2(m.conv_head(x)), pre_logits=True)
        return embedding, pooled, act


def extract_view(network, split: Split, view: str, spec, tapped: Tapped, keep_act: bool, batch: int = 32) -> dict:
    import torch
    from PIL import Image

    from skutag.vision.preprocess import normalize_batch

    out: dict[str, list] = {"emb": [], **{f"gap{s}": [] for s in tapped.pooled_stages}, "act": []}
    view_seed = sum(ord(c) * 131 ** k for k, c in enumerate(view)) % 100_000
    for start in range(0, len(split.paths), batch):
        crops = []
        for k, path in enumerate(split.paths[start:start + batch]):
            with Image.open(path) as im:
                image = im.convert("RGB")
            crops.append(_view_crop(image, view, spec, SEED * 1_000_003 + view_seed * 10_007 + start + k))
        x = torch.from_numpy(normalize_batch(np.stack(crops), spec))
        with torch.inference_mode():
            emb, pooled, act = tapped(x)
        out["emb"].append(emb.numpy())
        for s, v in pooled.items():
            out[f"gap{s}"].append(v.numpy())
        if keep_act:
            out["act"].append(act.numpy().astype(np.float16))
    return {k: np.concatenate(v) for k, v in out.items() if v}


def cached_views(network, split_name: str, split: Split, views: list[str], spec, tapped: Tapped,
                 keep_act: set[str], cache: Path, tag: str, timings: dict) -> dict[str, dict]:
    result = {}
    for view in views:
        with_act = view in keep_act
        path = cache / f"{tag}_{split_name}_{view}{'_act' if with_act else ''}.npz"
        with_act_path = cache / f"{tag}_{split_name}_{view}_act.npz"
        if not with_act and with_act_path.is_file():  # a superset of what is asked for
            path = with_act_path
        if path.is_file():
            result[view] = dict(np.load(path))
            continue
        t0 = time.perf_counter()
        data = extract_view(network, split, view, spec, tapped, with_act)
        np.savez(path, **data)
        timings[f"extract_{split_name}_{view}"] = round(time.perf_counter() - t0, 1)
        print(f"  extracted {split_name}/{view}: {timings[f'extract_{split_name}_{view}']} s", flush=True)
        result[view] = data
    return result


# ---------------------------------------------------------------- linear classifiers


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def features(view: dict, blocks: tuple[str, ...]) -> np.ndarray:
    parts = [l2(view[b].astype(np.float32)) for b in blocks]
    return np.concatenate(parts, axis=1) / np.sqrt(len(parts))


def fit_lr(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=300, random_state=TRAIN_SEED).fit(x, y)


def score(name: str, proba: np.ndarray, classes_: np.ndarray, split: Split, seconds: float, **extra) -> Score:
    pred = classes_[proba.argmax(1)]
    ok = pred == split.labels
    return Score(name, round(float(ok.mean()), 4), round(float(ok[split.packages].mean()), 4), round(seconds, 1), extra)


def linear_variants(train: dict, val: dict, split_val: Split, y_train: np.ndarray, train_views: list[str],
                    blocks_c: tuple[str, ...], cs: list[float]) -> list[Score]:
    scores = []
    emb = ("emb",)
    tta2, tta4 = ["center", "flip"], ["center", "flip", "full", "fullflip"]

    def run(name, blocks, views, tests, c):
        t0 = time.perf_counter()
        x = np.concatenate([features(train[v], blocks) for v in views])
        y = np.concatenate([y_train] * len(views))
        clf = fit_lr(x, y, c)
        out = []
        for test_name, test_views in tests:
            proba = np.mean([clf.predict_proba(features(val[v], blocks)) for v in test_views], axis=0)
            out.append(score(f"{name}{test_name}", proba, clf.classes_, split_val, time.perf_counter() - t0,
                             C=c, train_rows=len(y), dim=x.shape[1]))
        for s in out:
            print(f"  {s.name} C={c}: leaf {s.leaf_acc} packages {s.packages_acc} ({s.seconds} s)", flush=True)
        return out

    center_only = [("", ["center"])]
    all_tests = [("", ["center"]), ("+tta2", tta2), ("+tta4", tta4)]
    for c in cs:  # cheap (2,640 rows): a C grid, reported in full
        scores += run("a_baseline", emb, ["center"], all_tests, c)
        scores += run("c_multistage", blocks_c, ["center"], center_only + [("+tta2", tta2)], c)
    base = [s for s in scores if s.name == "a_baseline"]
    c = max(base, key=lambda s: s.leaf_acc).extra["C"]  # the baseline's best C, reused as is below
    scores += run("b_flip_train", emb, ["center", "flip"], all_tests, c)
    scores += run("b_aug_train", emb, train_views, all_tests, c)
    scores += run("bc_multistage_aug", blocks_c, train_views, all_tests, c)
    return scores


# ---------------------------------------------------------------- tail fine-tuning (vision.tail)


def tail_variants(args, train: dict, val: dict, split_val: Split, y_train: np.ndarray, tag: str,
                  timings: dict) -> list[Score]:
    """(d): ``vision.tail.train.TailClassifier`` on the cached cut activations; also an LR on its fine-tuned
    embedding (what the fusion vision block would consume)."""
    import joblib

    from skutag.vision.tail.train import TailClassifier

    n_aug = args.aug_views if args.tail_aug_views is None else args.tail_aug_views
    tail_views = ["center", "flip"] + [f"aug{k}" for k in range(n_aug)]
    t0 = time.perf_counter()
    tail = TailClassifier(args.backbone, cut=args.cut, epochs=args.epochs, lr=args.lr, head_lr=args.head_lr,
                          batch_size=args.batch, threads=args.train_threads, random_state=TRAIN_SEED)
    tail.fit([train[v]["act"] for v in tail_views], y_train)
    timings["tail_train"] = round(time.perf_counter() - t0, 1)
    print(f"  tail losses per epoch: {[round(v, 4) for v in tail.history_]} ({timings['tail_train']} s)", flush=True)
    t1 = time.perf_counter()
    center, flip = val["center"]["act"], val["flip"]["act"]
    extra = {"epochs": args.epochs, "views": len(tail_views), "cut": args.cut,
             "losses": [round(v, 4) for v in tail.history_]}
    scores = [
        score("d_tail", tail.predict_proba(center), tail.classes_, split_val, timings["tail_train"], **extra),
        score("d_tail+tta2", tail.predict_proba([center, flip]), tail.classes_, split_val, timings["tail_train"], **extra),
    ]
    timings["tail_eval"] = round(time.perf_counter() - t1, 1)
    t2 = time.perf_counter()
    train_emb = np.concatenate([tail.embed(train[v]["act"]) for v in ("center", "flip")])
    clf = fit_lr(train_emb, np.concatenate([y_train, y_train]), 16.0)
    proba = np.mean([clf.predict_proba(tail.embed(v)) for v in (center, flip)], axis=0)
    scores.append(score("d_tail_embedding+LR+tta2", proba, clf.classes_, split_val, time.perf_counter() - t2, C=16.0))
    for s in scores:
        print(f"  {s.name}: leaf {s.leaf_acc} packages {s.packages_acc}", flush=True)
    joblib.dump(tail, args.cache / f"{tag}_tail_e{args.epochs}_v{len(tail_views)}_s{TRAIN_SEED}.joblib")
    return scores


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--aug-views", type=int, default=4)
    parser.add_argument("--tail-aug-views", type=int, default=None, help="aug views used by (d); default all")
    parser.add_argument("--cut", default="5.1", help="stage.block after which the network is frozen")
    parser.add_argument("--pooled-stages", default="4,5")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--head-lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train-threads", type=int, default=1)
    parser.add_argument("--cs", default="1,4,16,64")
    parser.add_argument("--skip", default="", help="comma list of: linear,tail")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vision_adapt"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0, help="training seed (LogisticRegression, tail)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    global TRAIN_SEED
    TRAIN_SEED = args.seed

    import torch

    torch.set_num_threads(1)
    torch.manual_seed(TRAIN_SEED)
    from skutag.vision.backbones import get_backbone

    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    splits, classes = load_splits(args.data)
    source = get_backbone(args.backbone).resolve()
    network = source.build_network().eval()
    model = network.model
    cut = tuple(int(v) for v in args.cut.split("."))
    pooled = tuple(int(v) for v in args.pooled_stages.split(","))
    tapped = Tapped(model, cut, pooled)
    args.cache.mkdir(parents=True, exist_ok=True)
    tag = f"{args.backbone}_cut{cut[0]}.{cut[1]}_p{''.join(map(str, pooled))}"

    train_views = ["center", "flip"] + [f"aug{k}" for k in range(args.aug_views)]
    val_views = ["center", "flip", "full", "fullflip"]
    skip = set(filter(None, args.skip.split(",")))
    keep_train_act = set() if "tail" in skip else set(train_views)
    t0 = time.perf_counter()
    train = cached_views(network, "train", splits["train"], train_views, source.preprocess, tapped,
                         keep_train_act, args.cache, tag, timings)
    val = cached_views(network, "val", splits["val"], val_views, source.preprocess, tapped,
                       set() if "tail" in skip else {"center", "flip"}, args.cache, tag, timings)
    timings["features_total"] = round(time.perf_counter() - t0, 1)

    scores: list[Score] = []
    y_train = splits["train"].labels
    blocks_c = tuple(f"gap{s}" for s in pooled) + ("emb",)
    if "linear" not in skip:
        t0 = time.perf_counter()
        scores += linear_variants(train, val, splits["val"], y_train, train_views, blocks_c,
                                  [float(c) for c in args.cs.split(",")])
        timings["linear_total"] = round(time.perf_counter() - t0, 1)
    if "tail" not in skip:
        scores += tail_variants(args, train, val, splits["val"], y_train, tag, timings)
    timings["total"] = round(time.perf_counter() - t_all, 1)
    summary = {
        "backbone": args.backbone, "seed": TRAIN_SEED, "train": len(y_train), "val": len(splits["val"].labels),
        "val_packages": int(splits["val"].packages.sum()), "classes": len(classes),
        "threads": {"extract": 1, "tail_train": args.train_threads},
        "scores": [asdict(s) for s in scores], "seconds": timings,
    }
    text = json.dumps(summary, indent=1, ensure_ascii=False)
    print(text)
    if args.json_out:
        args.json_out.write_text(text)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
