"""The review queue over HTTP with a real photo model and a real database (SQLite and PostgreSQL): informative
and arrival order (stable, documented in /openapi.json), near-duplicate clusters, one verdict for a cluster and
its undo, the retraining cadence; and the order's own rules (margin, entropy, the random share)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_fixtures import (  # noqa: F401  (fixtures)
    TEST_CLASSES,
    db_url,
    grocery_root,
    pg_url,
    photo_model_dir,
    photo_retrainer,
    photo_tagger_factory,
    reencode,
    val_rows,
)

from skutag.looks import Look, look_of
from skutag.service import review_queue
from skutag.service.app import create_app
from skutag.service.config import ServiceConfig

SHARED_TITLE = "Oatly  oat drink 1L"


@pytest.fixture
def queue_api(db_url, photo_model_dir, tmp_path, val_rows):  # noqa: F811
    settings = ServiceConfig(db_url=db_url, model_dir=str(photo_model_dir), bundles_dir=str(tmp_path / "bundles"),
                             retrain_after_verdicts=3, min_corrections_to_retrain=50, review_random_share=0.25)
    app = create_app(settings, tagger_factory=photo_tagger_factory(photo_model_dir), retrainer=photo_retrainer)
    store = app.state.store
    store.save_resource("whitelist", {"paths": sorted({c.split(" > ")[0] for c in TEST_CLASSES})}, who="test")
    auth = {"Authorization": f"Bearer {store.create_token('tests')}"}
    with TestClient(app) as client:
        for i, row in enumerate(val_rows[:8]):
            title = SHARED_TITLE.lower() if i in (1, 4) else SHARED_TITLE if i == 6 else f"product {i}"
            response = client.post("/v1/products", headers=auth, data={"id": f"q{i}", "title": title, "price": "9"},
                                   files={"image": ("p.jpg", row.image.read_bytes(), "image/jpeg")})
            assert response.status_code == 200 and response.json()["status"] == "review", response.text
        yield client, auth
    store.close()


def test_the_order_is_stable_documented_and_arrival_is_the_old_one(queue_api):
    client, auth = queue_api
    first = client.get("/v1/review?order=informative", headers=auth)
    assert first.status_code == 200, first.text
    again = client.get("/v1/review", params={"order": "informative"}, headers=auth)
    assert first.json() == again.json()
    body = first.json()
    assert body["order"] == "informative" and body["total"] == 8
    assert [i["rank"] for i in body["items"]] == list(range(8))
    shared = next(c for c in body["clusters"] if "q1" in c["products"])
    assert sorted(shared["products"]) == ["q1", "q4", "q6"]  # same title, case and spacing aside
    informative = [i for i in body["items"] if i["pick"] == "informative"]
    assert [i["score"] for i in informative] == sorted((i["score"] for i in informative), reverse=True)
    # typicality and novelty of the photos' looks only lower a product's value
    assert all(0 < i["score"] <= i["uncertainty"] * i["cluster_size"] + 1e-9 for i in body["items"])
    pending = client.app.state.store.pending_review()
    assert len(pending) == 8 and all(Look.from_json(p.look) is not None for p in pending)  # kept with the prediction
    assert [i["pick"] == "random" for i in body["items"]] == [False, False, False, True] * 2  # 1 place in 4

    arrival = client.get("/v1/review?order=arrival&limit=3&offset=2", headers=auth).json()
    old = client.get("/v1/products", params={"status": ["review", "manual", "error"], "limit": 50}, headers=auth)
    oldest_first = [p["id"] for p in reversed(old.json()["products"])]
    assert [i["id"] for i in arrival["items"]] == oldest_first[2:5] == ["q2", "q3", "q4"]

    assert client.get("/v1/review?order=sideways", headers=auth).status_code == 422
    assert client.get("/v1/review?order=arrival").status_code == 401

    schema = client.get("/openapi.json").json()
    review = schema["paths"]["/v1/review"]["get"]
    order = next(p for p in review["parameters"] if p["name"] == "order")
    enum_schema = order["schema"].get("anyOf", [order["schema"]])[0]
    enum = schema["components"]["schemas"][enum_schema["$ref"].split("/")[-1]]["enum"] if "$ref" in enum_schema \
        else enum_schema["enum"]
    assert enum == ["informative", "arrival"]
    assert review["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ReviewListing")
    assert review["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    apply = schema["paths"]["/v1/review/clusters/{cluster_id}:apply"]["post"]
    assert apply["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/GroupActionResponse")
    assert "/v1/review/actions/{action_id}:undo" in schema["paths"]


def test_a_cluster_verdict_counts_once_per_product_and_undoes(queue_api):
    client, auth = queue_api
    store = client.app.state.store
    listing = client.get("/v1/review", headers=auth).json()
    cluster = next(c for c in listing["clusters"] if "q1" in c["products"])
    untrained = store.untrained_correction_count()
    before = {pid: client.get(f"/v1/products/{pid}", headers=auth).json() for pid in cluster["products"]}
    target = TEST_CLASSES[0]

    assert client.post(f"/v1/review/clusters/{cluster['id']}:apply", headers=auth,
                       json={"category": "No > Such > Path"}).status_code == 422
    assert client.post("/v1/review/clusters/cnothere:apply", headers=auth, json={}).status_code == 404
    applied = client.post(f"/v1/review/clusters/{cluster['id']}:apply", headers=auth, json={"category": target})
    assert applied.status_code == 201, applied.text
    action = applied.json()
    assert action["action"] == "apply" and sorted(p["product_id"] for p in action["products"]) == cluster["products"]
    assert store.untrained_correction_count() == untrained + 3  # one correction per product
    assert len(store.reviewed_looks()) == 3  # their ground now counts as covered in the informative order
    for pid in cluster["products"]:
        product = client.get(f"/v1/products/{pid}", headers=auth).json()
        assert product["path"] == target and product["status"] in ("corrected", "accepted")
        assert len(product["corrections"]) == 1 and product["corrections"][0]["who"] == "token:tests"
    left = client.get("/v1/review", headers=auth).json()
    assert left["total"] == 5 and not set(cluster["products"]) & {i["id"] for i in left["items"]}
    stats = client.get("/v1/stats", headers=auth).json()
    assert stats["retrain_cadence"]["retrain_after_verdicts"] == 3
    # the cadence tried (3 verdicts) but 3 verified products are too few to train on: it waits for 3 more
    assert client.app.state.service.retraining.last_started is not None
    assert client.app.state.service.retrain_job.state == "idle"

    undone = client.post(f"/v1/review/actions/{action['action_id']}:undo", headers=auth)
    assert undone.status_code == 200, undone.text
    assert client.get(f"/v1/review/actions/{action['action_id']}", headers=auth).json()["undone"] is True
    assert store.untrained_correction_count() == untrained
    for pid, old in before.items():
        product = client.get(f"/v1/products/{pid}", headers=auth).json()
        assert (product["status"], product["path"], product["corrections"]) == (old["status"], old["path"], [])
    assert client.get("/v1/review", headers=auth).json() == listing  # the same queue, the same order
    assert client.post(f"/v1/review/actions/{action['action_id']}:undo", headers=auth).status_code == 409
    assert client.post("/v1/review/actions/999999:undo", headers=auth).status_code == 404

    again = client.post(f"/v1/review/clusters/{cluster['id']}:apply", headers=auth, json={})  # accept each one's own
    assert again.status_code == 201 and again.json()["kind"] == "accept"
    for pid, old in before.items():
        assert client.get(f"/v1/products/{pid}", headers=auth).json()["status"] == "accepted"
    client.post(f"/v1/products/{cluster['products'][0]}/corrections", headers=auth, json={"category": target})
    conflict = client.post(f"/v1/review/actions/{again.json()['action_id']}:undo", headers=auth)
    assert conflict.status_code == 409 and "judged again" in conflict.json()["detail"]


def test_uncertainty_clusters_and_the_random_share():
    assert review_queue.uncertainty(0.9, (0.05,)) == pytest.approx(0.15)
    assert review_queue.uncertainty(0.5, (0.5,)) == 1.0 and review_queue.uncertainty(None) == 1.0
    assert review_queue.uncertainty(0.5, (0.5,), "entropy") == pytest.approx(1.0)
    assert review_queue.uncertainty(1.0, (), "entropy") == 0.0
    far = (1 << 40) - 1  # 40 bits away from 0
    candidates = [review_queue.Candidate(f"p{i:02d}", f"2024-01-{i + 1:02d}", 0.5 + i / 100, (0.3,),
                                         phash=0 if i < 3 else far if i < 5 else None, title=None)
                  for i in range(20)]
    ranked = review_queue.order(candidates, random_share=0.1)
    assert ranked == review_queue.order(list(reversed(candidates)), random_share=0.1)  # input order does not matter
    assert [r.pick for r in ranked].count("random") == 2 and ranked[9].pick == ranked[19].pick == "random"
    by_id = {r.id: r for r in ranked}
    assert by_id["p00"].cluster_size == 3 and by_id["p03"].cluster_id == by_id["p04"].cluster_id != by_id["p00"].cluster_id
    assert ranked[0].id == "p00"  # the most uncertain of the largest cluster
    assert [r.id for r in review_queue.order(candidates, "arrival")] == [c.id for c in candidates]
    assert [r.pick for r in review_queue.order(candidates, random_share=0.0)].count("random") == 0


def test_informative_order_spreads_picks_over_the_predicted_paths():
    # six doubtful products all answered "a", three less doubtful ones answered "b", "c", "d"
    doubtful = [review_queue.Candidate(f"a{i}", confidence=0.5, alternatives=(0.45 - i / 100,), answer="a")
                for i in range(6)]
    others = [review_queue.Candidate(f"{k}0", confidence=0.6, alternatives=(0.3,), answer=k) for k in "bcd"]
    spread = [r.id for r in review_queue.order(doubtful + others, random_share=0.0)]
    assert spread[:5] == ["a0", "b0", "c0", "d0", "a1"]  # one of "a", then the other answers, then "a" again
    flat = [r.id for r in review_queue.order(doubtful + others, random_share=0.0, class_decay=1.0)]
    assert flat[:6] == [f"a{i}" for i in range(6)]  # without spreading, "a" fills the head
    unanswered = [review_queue.Candidate(f"n{i}", confidence=0.5, alternatives=(0.45,)) for i in range(3)]
    assert [r.id for r in review_queue.order(unanswered, random_share=0.0)] == ["n0", "n1", "n2"]
    with pytest.raises(ValueError, match="review_class_decay"):
        ServiceConfig(review_class_decay=0.0)


def _look_alikes():
    """Eight photos around one look, four around another, one unlike both; all equally doubtful."""
    rng = np.random.RandomState(0)
    a, b, odd = rng.standard_normal((3, 300))
    groups = [("a", a, 8), ("b", b, 4), ("odd", odd, 1)]
    return [review_queue.Candidate(f"{name}{k}", confidence=0.5, alternatives=(0.4,),
                                   look=look_of(centre + 0.3 * rng.standard_normal(300), "m"))
            for name, centre, n in groups for k in range(n)]


def test_looks_put_typical_photos_of_new_ground_first():
    candidates = _look_alikes()
    ranked = [r.id for r in review_queue.order(candidates, random_share=0.0)]
    assert ranked[0].startswith("a") and ranked[1].startswith("b")  # the densest ground, then the next one
    assert ranked.index("odd0") >= 2  # a photo like no other teaches about itself only: after the groups' first picks
    assert ranked == [r.id for r in review_queue.order(list(reversed(candidates)), random_share=0.0)]
    middle = np.mean([c.look.vector for c in candidates if c.id.startswith("a")], axis=0)
    covered = [Look(candidates[0].look.space, middle / np.linalg.norm(middle))]  # a verified photo like the "a"s
    assert review_queue.order(candidates, random_share=0.0, reviewed=covered)[0].id.startswith("b")
    def relooked(members, look):
        return [review_queue.Candidate(c.id, confidence=c.confidence, alternatives=c.alternatives, look=look(c))
                for c in members]

    other_space = relooked(candidates[:3], lambda c: look_of(c.look.vector, "other"))
    mixed = review_queue.order(other_space + candidates[3:], random_share=0.0)  # two spaces: the minority's is unread
    assert mixed == review_queue.order(relooked(candidates[:3], lambda c: None) + candidates[3:], random_share=0.0)
    flat = review_queue.order(candidates, random_share=0.0, look_pool=0)
    assert [r.id for r in flat] == sorted(c.id for c in candidates)  # equal values: id order
    assert Look.from_json({"space": "m", "f16": "not base64!"}) is None and Look.from_json(None) is None
    assert Look.from_json(candidates[0].look.to_json()).vector == pytest.approx(candidates[0].look.vector, abs=1e-3)


def test_the_power_of_typicality_weighs_a_crowd_of_look_alikes_against_a_more_doubtful_few():
    rng = np.random.RandomState(2)
    crowd, few = rng.standard_normal((2, 300))

    def group(name, centre, n, confidence, second):
        return [review_queue.Candidate(f"{name}{k}", confidence=confidence, alternatives=(second,),
                                       look=look_of(centre + 0.3 * rng.standard_normal(300), "m")) for k in range(n)]

    # eight look-alikes the model is fairly sure of (uncertainty 0.1), three it doubts six times more (0.6)
    candidates = group("crowd", crowd, 8, 0.95, 0.05) + group("few", few, 3, 0.7, 0.3)
    first = {power: review_queue.order(candidates, random_share=0.0, typicality=power)[0].id
             for power in (0.0, 2.0)}
    assert first[0.0].startswith("few")  # typicality not counted: the most doubtful first
    assert first[2.0].startswith("crowd")  # the default: an answer among many look-alikes teaches more
    assert review_queue.order(candidates, random_share=0.0)[0].id == first[ServiceConfig().review_typicality]
    with pytest.raises(ValueError, match="review_typicality must be 0 to 4"):
        ServiceConfig(review_typicality=5.0)
    with pytest.raises(ValueError, match="review_typicality"):
        ServiceConfig(review_typicality=float("nan"))


def test_products_without_looks_are_still_spread_and_merged_by_score():
    # the queue while looks roll out: old predictions without looks, two new ones with looks (worth less)
    doubtful = [review_queue.Candidate(f"a{i}", confidence=0.5, alternatives=(0.45 - i / 100,), answer="a")
                for i in range(6)]
    others = [review_queue.Candidate(f"{k}0", confidence=0.6, alternatives=(0.3,), answer=k) for k in "bcd"]
    rng = np.random.RandomState(1)
    new = [review_queue.Candidate(f"n{i}", confidence=0.9, alternatives=(0.05,), answer="n",
                                  look=look_of(rng.standard_normal(64), "m")) for i in range(2)]
    ranked = review_queue.order(doubtful + others + new, random_share=0.0)
    assert [r.id for r in ranked if not r.id.startswith("n")][:5] == ["a0", "b0", "c0", "d0", "a1"]
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)

    looked = _look_alikes()  # a pool smaller than the queue: the rest is merged in by score, not put after it
    small_pool = review_queue.order(looked, random_share=0.0, look_pool=3)
    assert [r.score for r in small_pool] == sorted((r.score for r in small_pool), reverse=True)
    assert small_pool[0].id == "a0" and small_pool[1].id not in ("a1", "a2")  # a0's look-alikes in the pool wait
    with pytest.raises(ValueError, match="review_look_pool"):
        ServiceConfig(review_look_pool=10001)
