"""Which review order teaches the model fastest: a reviewer answers from the truth column, the model is retrained
after every step, and val leaf accuracy is recorded per ordering.

    python -m bench.bench_review_order --split /tmp/skutag-data/grocery_train_no_title.jsonl --start 0.1 \
        --split-out /tmp/skutag-review            # writes start.jsonl (10%) and pool.jsonl (the rest, shuffled)
    SKUTAG_OCR__ROTATE=off python bench/bench_review_order.py /tmp/skutag-review/start.jsonl \
        /tmp/skutag-review/pool.jsonl /tmp/skutag-data/grocery_val_no_title.jsonl --budget 200 --step 50 --json \
        --plot /tmp/skutag-review/review_order.png [--seed 1: another random ordering]

Orderings (each starts from the model fitted on TRAIN_CATALOG, and is re-ranked with the current model at every
step):
* arrival: the pool file's order;
* random: a seeded permutation of the pool; with ``--random-draws K`` (default 5) the mean of K permutations,
  each draw's curve kept under ``random_draws``. The goal compares with the mean: one draw's accuracy at the
  budget moves by several val photos from draw to draw, so a single draw is a noisy target;
* informative: ``skutag.service.review_queue.order`` (uncertainty x near-duplicate cluster size x how typical the
  photo's look is x how new its ground is, spread over the predicted paths, with its share of random picks), one
  product per answer. The looks are those the service keeps with each prediction (``skutag.looks``); the covered
  ground is the products answered so far (the service's verified products: the training catalog is not in its
  database). ``--no-looks``: predictions without looks (the order before them); ``--class-decay``,
  ``--look-pool``: the ``service.review_*`` settings;
* clusters: the same order, but a verdict on the first product of a cluster is applied to every pending member of
  its cluster (the reviewer's answer for that product: members whose truth differs get a wrong label), each member
  counting as one correction.

Clusters in the bench are photos within ``--bits`` of the perceptual hash, as the service forms them (titles are not
used: the catalogs here have none), and with ``--similarity S`` also photos whose backbone embeddings are at least S
alike. The model is refitted on cached
evidence (``FusionModel.fit``, as ``bench_fusion corrections``), not through ``retrain_bundle``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: python bench/bench_review_order.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skutag.catalog_io import read_catalog  # noqa: E402
from skutag.config import SkutagConfig  # noqa: E402
from skutag.evidence import EvidenceCollector  # noqa: E402
from skutag.fusion.model import FusionModel  # noqa: E402
from skutag.looks import look_of  # noqa: E402
from skutag.service import review_queue  # noqa: E402
from skutag.service.config import REVIEW_TYPICALITY  # noqa: E402
from skutag.store.dedup import fingerprint  # noqa: E402
from skutag.training import collect_training_set  # noqa: E402

ORDERINGS = ("arrival", "random", "informative", "clusters")


def split(path: Path, start: float, out: Path, seed: int) -> dict[str, str]:
    rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    n = int(round(start * len(rows)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "start.jsonl").write_text("\n".join(rows[:n]) + "\n", encoding="utf-8")
    (out / "pool.jsonl").write_text("\n".join(rows[n:]) + "\n", encoding="utf-8")
    return {"start": str(out / "start.jsonl"), "pool": str(out / "pool.jsonl"), "start_rows": n,
            "pool_rows": len(rows) - n}


def _phash(product) -> int | None:
    try:
        return fingerprint(Path(product.image).read_bytes()).phash
    except Exception:  # noqa: BLE001 - a photo that cannot be read has no hash; it is its own cluster
        return None


def _embedding_pairs(evidence, similarity: float) -> list[tuple[int, int]]:
    rows = [i for i, ev in enumerate(evidence) if ev.vision is not None and ev.vision.embedding is not None]
    if not rows:
        return []
    matrix = np.stack([np.asarray(evidence[i].vision.embedding, dtype=np.float32) for i in rows])
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    sims = matrix @ matrix.T
    a, b = np.nonzero(np.triu(sims >= similarity, k=1))
    return [(rows[i], rows[j]) for i, j in zip(a, b)]


def pool_clusters(phashes, pairs, ids, bits: int) -> dict[str, str]:
    """Cluster id per pool product: near photo hashes (``review_queue.clusters``) joined with embedding pairs."""
    by_hash = review_queue.clusters([review_queue.Candidate(i, phash=h) for i, h in zip(ids, phashes)], bits,
                                    titles=False)
    parent = {i: by_hash[i] for i in ids}
    root = {c: c for c in parent.values()}

    def find(c):
        while root[c] != c:
            root[c] = root[root[c]]
            c = root[c]
        return c

    for a, b in pairs:
        ca, cb = find(parent[ids[a]]), find(parent[ids[b]])
        if ca != cb:
            root[max(ca, cb)] = min(ca, cb)
    return {i: find(parent[i]) for i in ids}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("catalogs", nargs="*", help="TRAIN_CATALOG POOL_CATALOG VAL_CATALOG")
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--step", type=int, default=50)
    parser.add_argument("--modalities", default="vision,ocr")
    parser.add_argument("--random-share", type=float, default=0.1)
    parser.add_argument("--class-decay", type=float, default=0.5,
                        help="weight of each further product with the same predicted path (service.review_class_decay)")
    parser.add_argument("--look-pool", type=int, default=2000, help="service.review_look_pool (0: no looks)")
    parser.add_argument("--no-looks", action="store_true", help="predictions without the photos' looks")
    parser.add_argument("--typicality", type=float, default=REVIEW_TYPICALITY,
                        help="service.review_typicality: the power of how typical a photo is (default: the service's)")
    parser.add_argument("--uncertainty", default="margin", choices=("margin", "entropy"))
    parser.add_argument("--orderings", default=",".join(ORDERINGS), help="comma list of the orderings to run")
    parser.add_argument("--bits", type=int, default=6, help="near-duplicate distance of the photo hash")
    parser.add_argument("--similarity", type=float, default=None,
                        help="also join photos whose backbone embeddings are this alike (e.g. 0.9); default: photo "
                             "hash only, as the service clusters")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-draws", type=int, default=5,
                        help="permutations the random ordering is averaged over (1: a single draw, the seed's)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--plot", type=Path, help="write the accuracy curves (PNG)")
    parser.add_argument("--split", type=Path, help="write a start/pool split of this catalog and stop")
    parser.add_argument("--start", type=float, default=0.1)
    parser.add_argument("--split-out", type=Path, default=Path("/tmp/skutag-review"))
    parser.add_argument("--cost", help="time and peak memory of one informative order of this many pending "
                                       "products with looks (comma list, e.g. 500,2000,10000,50000), and stop")
    args = parser.parse_args(argv)
    if args.cost:
        for n in (int(x) for x in args.cost.split(",")):
            print(json.dumps(order_cost(n, args.look_pool)), flush=True)
        return 0
    if args.split:
        print(json.dumps(split(args.split, args.start, args.split_out, args.seed)))
        return 0
    if len(args.catalogs) != 3:
        parser.error("give TRAIN_CATALOG POOL_CATALOG VAL_CATALOG (or --split CATALOG)")
    result = run(args)
    if args.plot:
        plot(result, args.plot)
    print(json.dumps(result, indent=None if args.json else 1))
    return 0


def run(args) -> dict:
    config = SkutagConfig.load(overrides={"fusion.modalities": tuple(m for m in args.modalities.split(",") if m)})
    collector = EvidenceCollector(config)
    sets = []
    for path in args.catalogs:
        catalog = read_catalog(path, require_category=True)
        sets.append((catalog, collect_training_set(collector, catalog.products, config)))
    (_, train), (pool_catalog, pool), (_, val) = sets
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    log(f"train {len(train.evidence)}, pool {len(pool.evidence)}, val {len(val.evidence)}")
    ids = list(pool.ids)
    started = time.perf_counter()
    phashes = [_phash(p) for p in pool_catalog.products]
    pairs = _embedding_pairs(pool.evidence, args.similarity) if args.similarity else []
    cluster_of = pool_clusters(phashes, pairs, ids, args.bits)
    sizes = {}
    for c in cluster_of.values():
        sizes[c] = sizes.get(c, 0) + 1
    log(f"pool clusters: {len(sizes)} (largest {max(sizes.values())}), {time.perf_counter() - started:.0f}s")

    def fit(rows_ev, rows_paths, rows_brands):
        return FusionModel(config.fusion).fit(rows_ev, rows_paths, rows_brands)

    def accuracy(model) -> float:
        predicted, _ = model.score(val.evidence).best()
        return round(float(np.mean(predicted == np.asarray(val.paths, dtype=object))), 4)

    looks = [look_of(ev.vision.embedding, ev.vision.model_id) if ev.vision is not None and not args.no_looks
             else None for ev in pool.evidence]
    base = fit(list(train.evidence), list(train.paths), list(train.brands))
    base_acc = accuracy(base)
    steps = list(range(args.step, args.budget + 1, args.step))
    curves: dict[str, list[float]] = {}
    purity: dict[str, float] = {}
    # draw 0 is the permutation a single-draw run used (seed + 1), so its curve stays comparable
    permutations = [[int(i) for i in np.random.RandomState(args.seed + 1 + 1000 * d).permutation(len(ids))]
                    for d in range(max(1, args.random_draws))]
    random_draws: list[list[float]] = []

    def walk(how: str, permutation: list[int]) -> tuple[list[float], float]:
        model, answered, labels = base, [], {}
        curve = [base_acc]
        for target in steps:
            pending = [i for i in range(len(ids)) if i not in labels]
            need = target - len(answered)
            chosen = _choose(how, model, pool, ids, pending, need, permutation, cluster_of, args, looks,
                             [looks[i] for i in answered if looks[i] is not None])
            for i, label in chosen:
                labels[i] = label
                answered.append(i)
            model = fit(list(train.evidence) + [pool.evidence[i] for i in answered],
                        list(train.paths) + [labels[i] for i in answered],
                        list(train.brands) + [pool.brands[i] for i in answered])
            curve.append(accuracy(model))
            log(f"{how} {len(answered)}: {curve[-1]}")
        return curve, round(float(np.mean([labels[i] == pool.paths[i] for i in answered])), 4)

    for how in args.orderings.split(","):
        if how == "random":
            random_draws = [walk(how, permutation)[0] for permutation in permutations]
            curves[how] = [round(float(a), 4) for a in np.mean(random_draws, axis=0)]
            purity[how] = 1.0
        else:
            curves[how], purity[how] = walk(how, permutations[0])
    return {"orderings": curves, "steps": [0] + steps, "right_labels": purity, "random_draws": random_draws,
            "start_rows": len(train.evidence), "pool_rows": len(ids), "val_rows": len(val.evidence),
            "pool_clusters": len(sizes), "modalities": list(base.modalities_), "goal": _goal(curves, [0] + steps),
            **({"goal_single_draw": _goal({**curves, "random": random_draws[0]}, [0] + steps)}
               if len(random_draws) > 1 else {})}


def _choose(how, model, pool, ids, pending, need, permutation, cluster_of, args, looks,
            reviewed) -> list[tuple[int, str]]:
    """``need`` (row, label) answers in ``how`` order (clusters: a verdict covers the cluster's pending members).
    ``looks``: each pool photo's look, as its stored prediction keeps it; ``reviewed``: the looks of the products
    answered so far (the service's verified products; the training catalog is not in the service's database)."""
    if how == "arrival":
        return [(i, pool.paths[i]) for i in pending[:need]]
    if how == "random":
        left = set(pending)
        return [(i, pool.paths[i]) for i in permutation if i in left][:need]
    scores = model.score([pool.evidence[i] for i in pending])
    answers, _ = scores.best()
    candidates = []
    for row, i in enumerate(pending):
        top = np.sort(scores.proba[row])[::-1][:5]
        candidates.append(review_queue.Candidate(ids[i], confidence=float(top[0]),
                                                 alternatives=tuple(float(p) for p in top[1:]),
                                                 answer=str(answers[row]), look=looks[i]))
    index = {ids[i]: i for i in pending}
    clusters = {ids[i]: cluster_of[ids[i]] for i in pending}  # sizes count pending members only
    sequence = [r.id for r in review_queue.order(candidates, "informative", random_share=args.random_share,
                                                 cluster_of=clusters, class_decay=args.class_decay,
                                                 method=args.uncertainty, reviewed=reviewed,
                                                 look_pool=args.look_pool, typicality=args.typicality)]
    out: list[tuple[int, str]] = []
    taken: set[int] = set()
    for pid in sequence:
        i = index[pid]
        if i in taken:
            continue
        if how == "informative":
            out.append((i, pool.paths[i]))
            taken.add(i)
        else:
            verdict = pool.paths[i]
            members = [index[m] for m in sorted(index) if clusters[m] == clusters[pid]]
            members = [i] + [m for m in members if m != i and m not in taken]
            for m in members[:need - len(out)]:
                out.append((m, verdict))
                taken.add(m)
        if len(out) >= need:
            break
    return out


def order_cost(n: int, look_pool: int, verified: int = 2000) -> dict:
    """Seconds and peak traced memory (numpy's and Python's allocations) of ``review_queue.order`` over ``n``
    pending products with looks and ``verified`` verified looks, as ``GET /v1/review`` computes it."""
    import tracemalloc

    rng = np.random.RandomState(0)
    centres = rng.standard_normal((max(2, n // 20), 64))

    def look(i):
        return look_of(centres[i % len(centres)] + 0.5 * rng.standard_normal(64), "bench")

    candidates = [review_queue.Candidate(f"p{i:07d}", confidence=float(c), alternatives=(float(c) / 2,),
                                         answer=f"path {i % 300}", look=look(i))
                  for i, c in enumerate(rng.uniform(0.2, 0.9, n))]
    reviewed = [look(i) for i in range(verified)]
    started = time.perf_counter()
    review_queue.order(candidates, look_pool=look_pool, reviewed=reviewed)
    seconds = time.perf_counter() - started
    tracemalloc.start()  # a second run, traced (tracing slows it down)
    review_queue.order(candidates, look_pool=look_pool, reviewed=reviewed)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"pending": n, "look_pool": look_pool, "verified": verified, "seconds": round(seconds, 3),
            "peak_traced_mb": round(peak / 1e6, 1)}


def _goal(curves: dict[str, list[float]], steps: list[int]) -> dict:
    """Fewest corrections at which each ordering reaches random's accuracy at the full budget."""
    if "random" not in curves:
        return {}
    target = curves["random"][-1]
    reach = {how: next((s for s, a in zip(steps, curve) if a >= target), None) for how, curve in curves.items()}
    return {"random_at_budget": target, "corrections_to_reach_it": reach,
            **{f"{how}_within_half": reach[how] is not None and reach[how] <= steps[-1] / 2
               for how in ("informative", "clusters") if how in reach}}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for how, curve in result["orderings"].items():
        ax.plot(result["steps"], [a * 100 for a in curve], marker="o", label=how)
    ax.set_xlabel("corrections (verdicts from the review queue)")
    ax.set_ylabel("val leaf accuracy (%)")
    ax.set_title(f"review order: start {result['start_rows']} rows, pool {result['pool_rows']}")
    ax.grid(alpha=.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
