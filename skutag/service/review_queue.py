"""The review queue's order and its near-duplicate clusters, apart from HTTP and the database.

Informative order: the expected value of a human answer is the stored prediction's uncertainty (one minus the
margin between the top two alternatives' calibrated confidences, or their normalised entropy) times the number of
pending products that look like it (its near-duplicate cluster: photos within the near-duplicate distance of the
perceptual hash, or the same normalised title). Where the predictions keep the photos' looks (``skutag.looks``),
the ``look_pool`` most valuable products with looks are ordered greedily by that value times how typical the photo
is among them, squared by default (``typicality``: mean similarity to its nearest looks: an answer there teaches
about many products, an outlier's about one) times how new its ground is (distance to the nearest of the given
verified looks, and to each product already placed before it: an answer next to one already given teaches little),
which spreads the picks. The other products are spread over the model's answers instead (the k-th product of one
predicted category counts ``class_decay ** k`` of its value) and merged in by score. A deterministic share of the
places goes to picks drawn by a hash of the product id, so audits of the queue stay unbiased. Everything is
computed from the candidates and the verified looks, and ties break on the product id: the same queue gives the
same order (on one machine: near-ties of float32 similarities may fall either way on another CPU).

Arrival order is the old one: oldest first (``updated_at``, then id).
"""

from __future__ import annotations

import hashlib
import heapq
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from skutag.looks import Look
from skutag.service.config import REVIEW_TYPICALITY
from skutag.store.dedup import band_slices, hamming

ORDERS = ("informative", "arrival")
MIN_TYPICAL = 0.01  # typicality floor: a look unlike the others still keeps its value's rank among its peers
VERIFIED_LOOKS = 2000  # the most recently verified products whose looks count as covered ground
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Candidate:
    """What the order needs of one pending product."""

    id: str
    arrival: str = ""  # sorts in arrival order (an ISO time); ties on the id
    confidence: float | None = None  # the answer's calibrated confidence
    alternatives: tuple[float, ...] = ()  # the other alternatives' confidences
    phash: int | None = None
    title: str | None = None
    answer: str | None = None  # the predicted category path: picks are spread over the answers
    look: Look | None = field(default=None, compare=False)  # the photo's look (``skutag.looks``)


@dataclass(frozen=True)
class Ranked:
    id: str
    rank: int
    score: float
    uncertainty: float
    cluster_id: str
    cluster_size: int
    pick: str  # informative | random | arrival


@dataclass
class Cluster:
    id: str
    members: list[str] = field(default_factory=list)  # in queue order

    def to_json(self) -> dict:
        return {"id": self.id, "size": len(self.members), "products": list(self.members)}


def uncertainty(confidence: float | None, alternatives: Sequence[float] = (), method: str = "margin") -> float:
    """1 for a product without an answer; else 1 - (p1 - p2) (margin) or the normalised entropy of the answer
    and its alternatives (the rest of the mass as one more outcome)."""
    if confidence is None or not math.isfinite(confidence):
        return 1.0
    probs = sorted([max(0.0, min(1.0, float(confidence)))] + [max(0.0, float(a)) for a in alternatives], reverse=True)
    if method == "entropy":
        rest = max(0.0, 1.0 - sum(probs))
        mass = [p for p in probs + [rest] if p > 0]
        total = sum(mass)
        if total <= 0 or len(mass) < 2:
            return 0.0
        entropy = -sum((p / total) * math.log(p / total) for p in mass)
        return round(entropy / math.log(len(mass)), 9)
    second = probs[1] if len(probs) > 1 else 0.0
    return round(1.0 - (probs[0] - second), 9)


def normalise_title(title: str | None) -> str:
    return " ".join((title or "").split()).casefold()


def clusters(candidates: Sequence[Candidate], max_bits: int, *, titles: bool = True) -> dict[str, str]:
    """Product id -> cluster id. Photos within ``max_bits`` of each other (any chain of them) and products with
    the same normalised title form one cluster. The id is a digest of the sorted member ids, so it stays the same
    while the members do."""
    parent = list(range(len(candidates)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    hashed = [(i, c.phash & _MASK64) for i, c in enumerate(candidates) if c.phash is not None]
    for start, width in band_slices(max_bits + 1):  # two hashes within max_bits agree on at least one band
        buckets: dict[int, list[tuple[int, int]]] = {}
        for i, value in hashed:
            buckets.setdefault((value >> start) & ((1 << width) - 1), []).append((i, value))
        for members in buckets.values():
            for k, (i, a) in enumerate(members):
                for j, b in members[k + 1:]:
                    if find(i) != find(j) and hamming(a, b) <= max_bits:
                        union(i, j)
    if titles:
        first: dict[str, int] = {}
        for i, c in enumerate(candidates):
            key = normalise_title(c.title)
            if key:
                union(i, first.setdefault(key, i))
    groups: dict[int, list[str]] = {}
    for i, c in enumerate(candidates):
        groups.setdefault(find(i), []).append(c.id)
    out: dict[str, str] = {}
    for members in groups.values():
        cid = "c" + hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:16]
        out.update((m, cid) for m in members)
    return out


def _draw_key(product_id: str) -> str:
    return hashlib.sha256(b"skutag-review-draw:" + product_id.encode()).hexdigest()


def order(candidates: Sequence[Candidate], how: str = "informative", *, max_bits: int = 6,
          random_share: float = 0.1, method: str = "margin", titles: bool = True,
          cluster_of: dict[str, str] | None = None, class_decay: float = 0.5, reviewed: Sequence[Look] = (),
          look_pool: int = 2000, look_neighbours: int = 10, typicality: float = REVIEW_TYPICALITY) -> list[Ranked]:
    """The queue in ``how`` order (``informative`` or ``arrival``), each product with its score, uncertainty and
    cluster. In informative order every ``round(1 / random_share)``-th place is a random pick (by a hash of the
    id, so the same queue always draws the same products). ``cluster_of``: clusters found elsewhere (product id ->
    cluster id) instead of the photo hash and title ones. ``class_decay`` in (0, 1]: the weight of each further
    product with the same predicted category, outside the products ordered by their looks (1: no spreading).
    ``reviewed``: looks of verified products (their ground is covered); ``look_pool``: how many of the most
    valuable products with looks are ordered by them (0 or 1: none); ``look_neighbours``: how many nearest looks
    measure how typical a photo is; ``typicality``: the power its typicality is raised to (0: not counted)."""
    if how not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {how!r}")
    if cluster_of is None:
        cluster_of = clusters(candidates, max_bits, titles=titles)
    size: dict[str, int] = {}
    for cid in cluster_of.values():
        size[cid] = size.get(cid, 0) + 1
    info = {c.id: uncertainty(c.confidence, c.alternatives, method) for c in candidates}
    value = {c.id: info[c.id] * size[cluster_of[c.id]] for c in candidates}
    answer = {c.id: c.answer for c in candidates}
    if how == "arrival":
        score = _spread(value, answer, class_decay)
        ids = [c.id for c in sorted(candidates, key=lambda c: (c.arrival, c.id))]
        picks = {i: "arrival" for i in ids}
    else:
        best, score = _informative(candidates, value, answer, class_decay, reviewed, look_pool, look_neighbours,
                                   typicality)
        ids, picks = _interleave(best, sorted(score, key=lambda i: (_draw_key(i), i)), random_share)
    return [Ranked(i, rank, score[i], info[i], cluster_of[i], size[cluster_of[i]], picks[i])
            for rank, i in enumerate(ids)]


def _informative(candidates: Sequence[Candidate], value: dict[str, float], answer: dict[str, str | None],
                 class_decay: float, reviewed: Sequence[Look], look_pool: int, neighbours: int,
                 typicality: float) -> tuple[list[str], dict[str, float]]:
    """(the ids in informative order before the random picks, each one's score). The ``look_pool`` most valuable
    products with a look of the most common space are ordered by ``_by_looks``; the others are spread over their
    answers (``_spread``), weighted by the pool's mean typicality (and as new as can be), and merged in by score."""
    space = _main_space(candidates)
    pool = sorted((c.id for c in candidates if c.look is not None and c.look.space == space),
                  key=lambda i: (-value[i], i))[:look_pool] if look_pool >= 2 else []
    if len(pool) < 2:
        score = _spread(value, answer, class_decay)
        return sorted(score, key=lambda i: (-score[i], i)), score
    in_pool = set(pool)
    vectors = {c.id: c.look.vector for c in candidates if c.id in in_pool}
    head, score, typical = _by_looks(pool, value, vectors, [r.vector for r in reviewed if r.space == space],
                                     neighbours, typicality)
    rest = _spread({i: v for i, v in value.items() if i not in in_pool}, answer, class_decay)
    score.update({i: round(v * typical, 9) for i, v in rest.items()})
    others = sorted(rest, key=lambda i: (-score[i], i))
    return list(heapq.merge(head, others, key=lambda i: (-score[i], i))), score  # both fall in score


def _main_space(candidates: Sequence[Candidate]) -> str | None:
    """The look space most candidates have (ties: the first by name); looks of other spaces are not compared."""
    count: dict[str, int] = {}
    for c in candidates:
        if c.look is not None:
            count[c.look.space] = count.get(c.look.space, 0) + 1
    return min(count, key=lambda s: (-count[s], s)) if count else None


def _spread(value: dict[str, float], answer: dict[str, str | None], decay: float) -> dict[str, float]:
    """Each product's value times ``decay ** k``, k = how many products with the same answer have a higher value
    (ties on the id). A product without an answer is alone in its group."""
    seen: dict[str, int] = {}
    out: dict[str, float] = {}
    for pid in sorted(value, key=lambda i: (-value[i], i)):
        key = answer[pid]
        k = 0 if key is None else seen.get(key, 0)
        if key is not None:
            seen[key] = k + 1
        out[pid] = round(value[pid] * decay ** k, 9)
    return out


def _by_looks(pool: list[str], value: dict[str, float], vectors: dict[str, np.ndarray], reviewed: Sequence[np.ndarray],
              neighbours: int, power: float) -> tuple[list[str], dict[str, float], float]:
    """``pool`` (2 or more products, each with a look) in greedy order of value x typicality ** ``power`` x novelty,
    each one's score when it was placed, and the pool's mean typicality weight. Typicality: the mean similarity to
    the ``neighbours`` nearest looks of the pool (at least ``MIN_TYPICAL``); novelty: the distance to the nearest
    ``reviewed`` look and to every product placed before (1 at most: opposite looks are no newer than unrelated
    ones)."""
    m = len(pool)
    matrix = np.stack([vectors[pid] for pid in pool]).astype(np.float32)
    sims = matrix @ matrix.T
    np.fill_diagonal(sims, -np.inf)
    near = min(neighbours, m - 1)
    typical = np.clip(np.partition(sims, m - near, axis=1)[:, m - near:].mean(axis=1, dtype=np.float64),
                      MIN_TYPICAL, 1.0)
    novelty = np.ones(m)
    if len(reviewed):
        novelty = 1.0 - (matrix @ np.stack(reviewed).astype(np.float32).T).max(axis=1).astype(np.float64)
    np.clip(novelty, 1e-6, 1.0, out=novelty)
    distance = np.subtract(1.0, sims, out=sims)  # the similarities are not needed again: distances in place
    np.fill_diagonal(distance, 0.0)
    np.clip(distance, 1e-6, 1.0, out=distance)
    weight = typical ** float(power)
    base = np.array([value[pid] for pid in pool]) * weight
    current = base * novelty
    order_: list[str] = []
    scores: dict[str, float] = {}
    for _ in range(m):
        k = int(np.argmax(current))  # ties: the first, the pool is in (value, id) order
        pid = pool[k]
        order_.append(pid)
        scores[pid] = round(float(current[k]), 9)
        base[k] = -np.inf  # placed: never again
        np.minimum(novelty, distance[k], out=novelty)
        np.multiply(base, novelty, out=current)
    return order_, scores, float(weight.mean())


def _interleave(best: list[str], drawn: list[str], share: float) -> tuple[list[str], dict[str, str]]:
    every = round(1 / share) if share > 0 else 0
    out: list[str] = []
    picks: dict[str, str] = {}
    best_iter, drawn_iter = iter(best), iter(drawn)
    while len(out) < len(best):
        random_slot = every > 0 and len(out) % every == every - 1
        source, kind = (drawn_iter, "random") if random_slot else (best_iter, "informative")
        for pid in source:
            if pid not in picks:
                picks[pid] = kind
                out.append(pid)
                break
    return out, picks


def grouped(ranked: Sequence[Ranked]) -> list[Cluster]:
    """Clusters in the order of their first member in ``ranked``; members keep the queue order."""
    found: dict[str, Cluster] = {}
    for r in ranked:
        found.setdefault(r.cluster_id, Cluster(r.cluster_id)).members.append(r.id)
    return list(found.values())


def cluster_members(ranked: Iterable[Ranked], cluster_id: str) -> list[str]:
    return [r.id for r in ranked if r.cluster_id == cluster_id]


# ------------------------------------------------------------- the service's queue
@dataclass(frozen=True)
class Queue:
    """The review queue of a store, in one order: ``ranked`` (whole queue) and the pending products by id."""

    how: str
    ranked: list[Ranked]
    pending: dict

    def clusters(self, min_size: int = 1) -> list[Cluster]:
        return [c for c in grouped(self.ranked) if len(c.members) >= min_size]

    def members(self, cluster_id: str) -> list[str]:
        return cluster_members(self.ranked, cluster_id)


def queue(store, settings, how: str | None = None) -> Queue:
    """The store's pending products (``Store.pending_review``) in ``how`` order (default
    ``service.review_order``), with the service's near-duplicate distance, uncertainty and random share."""
    how = how or settings.review_order
    pending = {p.id: p for p in store.pending_review()}
    candidates = [Candidate(p.id, p.updated_at, p.confidence, p.alternatives, p.phash, p.title, p.path,
                            Look.from_json(p.look)) for p in pending.values()]
    with_looks = any(c.look is not None for c in candidates)
    reviewed = [look for look in map(Look.from_json, store.reviewed_looks(VERIFIED_LOOKS)) if look is not None] \
        if how == "informative" and with_looks and settings.review_look_pool >= 2 else []
    ranked = order(candidates, how, max_bits=settings.near_duplicate_bits, random_share=settings.review_random_share,
                   method=settings.review_uncertainty, class_decay=settings.review_class_decay, reviewed=reviewed,
                   look_pool=settings.review_look_pool, typicality=settings.review_typicality)
    return Queue(how, ranked, pending)
