"""The service on the real default pipeline (cold start: bundled taxonomy, label map and brand lexicon):
tagging a real photo, the duplicate cache, and brand-lexicon edits reaching the model's brand readers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from skutag.service.app import create_app
from skutag.service.config import ServiceConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    settings = ServiceConfig(db_url=f"sqlite:///{tmp_path_factory.mktemp('real') / 'real.db'}")
    app = create_app(settings)  # default tagger_factory: skutag.pipeline.load_pipeline
    auth = {"Authorization": f"Bearer {app.state.store.create_token('real')}"}
    with TestClient(app) as client:
        yield client, auth
    app.state.store.close()


def test_real_photo_is_tagged_and_its_duplicate_reuses_the_answer(real, shared_data):
    client, auth = real
    photo = (shared_data / "grocery" / "images" / "val" / "Packages" / "Oat-Milk" / "Oatly-Oat-Milk" /
             "Oatly-Oat-Milk_001.jpg").read_bytes()
    first = client.post("/v1/products", headers=auth, data={"id": "oat-1", "title": "Oatly 燕麦奶 1L", "price": "25"},
                        files={"image": ("o.jpg", photo, "image/jpeg")})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["model_version"].startswith("cold-start") and " > " in body["path"]
    assert body["reasons"] and body["decision"] in {"auto", "review", "manual"}
    stored = client.get("/v1/products/oat-1", headers=auth).json()["prediction"]
    assert set(stored["contributions"]) and stored["alternatives"]
    seen = stored["modalities"]  # what each modality saw, kept with the prediction
    assert "vision" in seen["present"] and len(seen["vision"]["labels"]) >= 1
    assert seen["title_brands"] == ["Oatly"]  # the title names the brand
    assert seen["present"][:1] == ["vision"] and "title" in seen["present"]
    again = client.post("/v1/products", headers=auth, data={"id": "oat-2"}, files={"image": ("o.jpg", photo, "image/jpeg")})
    assert again.json()["cache_hit"] == "exact" and again.json()["path"] == body["path"]
    assert client.get("/v1/products/oat-2", headers=auth).json()["prediction"]["modalities"] == seen
    categories = client.get("/v1/taxonomy", headers=auth).json()["paths"]
    assert body["path"] in categories and len(categories) > 100  # the bundled JD-style tree


def test_brand_edits_reach_the_served_pipeline(real):
    """A brand added through the API is read in titles and votes for its category in the cold start's answer;
    removed, it no longer does."""
    client, auth = real
    service = client.app.state.service
    before = client.get("/v1/brands", headers=auth).json()
    assert before["version"] == 0 and len(before["brands"]) > 10  # the model's bundled lexicon
    path = client.get("/v1/taxonomy", headers=auth).json()["paths"][0]

    def tag(product_id: str) -> dict:
        answer = client.post("/v1/products", headers=auth, data={"id": product_id, "title": "斯库塔格 特惠装"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert tag("brand-before")["path"] != path
    response = client.put("/v1/brands/Skutagtestbrand", headers=auth,
                          json={"aliases": ["斯库塔格"], "categories": [path]})
    assert response.status_code == 200, response.text
    lexicon = service.tagger.collector.lexicon
    assert "Skutagtestbrand" in lexicon and lexicon.categories_of("Skutagtestbrand") == (path,)
    assert len(lexicon) == len(before["brands"]) + 1
    answer = tag("brand-added")
    assert answer["path"] == path, answer
    assert client.delete("/v1/brands/Skutagtestbrand", headers=auth).status_code == 200
    assert "Skutagtestbrand" not in service.tagger.collector.lexicon
    assert tag("brand-removed")["path"] != path


def test_a_service_instance_follows_lexicon_edits_made_by_another(real):
    """Two instances on one database: a brand edited through one reaches the other's tagger on its next batch."""
    client, auth = real
    url = client.app.state.store.engine.url.render_as_string(hide_password=False)
    other = create_app(ServiceConfig(db_url=url))
    with TestClient(other) as second:
        path = second.get("/v1/taxonomy", headers=auth).json()["paths"][1]
        response = client.put("/v1/brands/Skutagzweite", headers=auth, json={"aliases": ["斯库二号"], "categories": [path]})
        assert response.status_code == 200, response.text
        answer = second.post("/v1/products", headers=auth, data={"id": "other-instance", "title": "斯库二号 新品"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["path"] == path
        assert "Skutagzweite" in other.state.service.tagger.collector.lexicon
    other.state.store.close()
    assert client.delete("/v1/brands/Skutagzweite", headers=auth).status_code == 200


def test_first_model_from_corrections_replaces_the_cold_start(tmp_path, shared_data):
    """New categories added to the taxonomy, photos verified by a human, retrain: the first trained bundle
    is compared with the cold start on held-out products and promoted."""
    import random

    from service_fixtures import TEST_CLASSES, grocery_rows

    classes = TEST_CLASSES[:4]
    rows = grocery_rows(shared_data / "grocery", "train", classes)
    random.Random(0).shuffle(rows)
    chosen = [row for cls in classes for row in [r for r in rows if r.path == cls][:8]]
    settings = ServiceConfig(db_url=f"sqlite:///{tmp_path / 'first.db'}", bundles_dir=str(tmp_path / "bundles"),
                             min_holdout=3, holdout_fraction=0.25)
    app = create_app(settings)
    auth = {"Authorization": f"Bearer {app.state.store.create_token('first')}"}
    with TestClient(app) as client:
        for cls in classes:
            assert client.post("/v1/taxonomy/categories", headers=auth, json={"path": cls}).status_code == 201
        assert client.get("/v1/taxonomy", headers=auth).json()["paths"].count(classes[0]) == 1
        for i, row in enumerate(chosen):
            client.post("/v1/products", headers=auth, data={"id": f"c{i}"},
                        files={"image": ("p.jpg", row.image.read_bytes(), "image/jpeg")})
            fixed = client.post(f"/v1/products/c{i}/corrections", headers=auth, json={"category": row.path})
            assert fixed.status_code == 201, fixed.text
        job = client.post("/v1/models:retrain?wait=true", headers=auth).json()
        assert job["state"] == "promoted", job
        assert job["comparison"]["candidate_accuracy"] > job["comparison"]["current_accuracy"]
        served = client.get("/v1/models", headers=auth).json()
        assert served["active"] == job["candidate_version"] and not served["active"].startswith("cold-start")
        fresh = grocery_rows(shared_data / "grocery", "val", classes)[:4]
        answers = [client.post("/v1/products", headers=auth, files={"image": ("p.jpg", r.image.read_bytes(), "image/jpeg")}
                               ).json()["path"] for r in fresh]
        assert all(a in classes for a in answers), answers
    app.state.store.close()


def test_served_trained_bundle_is_retrained_from_corrections_by_the_default_retrainer(tmp_path):
    """A trained (titles-only) fusion bundle is served; products of a category it never saw are corrected
    through the API; the default retrainer (``skutag.pipeline.retrain_from_corrections``) trains a new
    version on top of it, which is promoted, served, and now answers the corrected products right."""
    from skutag.fusion import bundle as bundles
    from skutag.config import SkutagConfig
    from skutag.training import train_catalog
    from fusion_fixtures import grocery_rows, write_catalog

    config = SkutagConfig.load(environ={}, overrides={"fusion.cv": 3, "fusion.modalities": ("title",)})
    known = ("Banana", "Lemon", "Lime", "Watermelon")
    base_rows = grocery_rows("train", known, per_class=6)
    base_dir = tmp_path / "model"
    base_version, _, _ = train_catalog(write_catalog(tmp_path / "train.jsonl", base_rows, drop=("image",)),
                                       base_dir, config)
    new = ("Oatly-Oat-Milk", "Tropicana-Apple-Juice")  # categories the served bundle never saw
    corrected = grocery_rows("train", new, per_class=10)
    settings = ServiceConfig(db_url=f"sqlite:///{tmp_path / 'svc.db'}", model_dir=str(base_dir),
                             bundles_dir=str(tmp_path / "bundles"), min_corrections_to_retrain=5, min_holdout=2,
                             holdout_fraction=0.25)
    app = create_app(settings, config=config.with_overrides({"decision.audit_rate": 0.0}))  # default tagger factory and default retrainer
    auth = {"Authorization": f"Bearer {app.state.store.create_token('retrain')}"}
    with TestClient(app) as client:
        base = client.get("/v1/models", headers=auth).json()["active"]
        assert base == f"{base_dir.name}/{base_version.name}"
        for path in sorted({r["category"] for r in corrected}):
            assert client.post("/v1/taxonomy/categories", headers=auth, json={"path": path}).status_code == 201
        for row in corrected:
            tagged = client.post("/v1/products", headers=auth, data={"id": row["id"], "title": row["title"]})
            assert tagged.status_code == 200, tagged.text
            assert tagged.json()["path"] != row["category"]  # the served model cannot know these
            fixed = client.post(f"/v1/products/{row['id']}/corrections", headers=auth, json={"category": row["category"]})
            assert fixed.status_code == 201, fixed.text
        response = client.post("/v1/models:retrain?wait=true", headers=auth)
        job = response.json()
        assert response.status_code == 202 and job["state"] == "promoted", job
        assert job["comparison"]["candidate_accuracy"] > job["comparison"]["current_accuracy"]
        served = client.get("/v1/models", headers=auth).json()
        assert served["active"] == job["candidate_version"] != base
        assert client.app.state.service.model_version == job["candidate_version"]
        manifest = bundles.resolve(app.state.store.model(job["candidate_version"]).model_dir).manifest()
        assert manifest["training_data"]["parent"]["version"] == base_version.name  # on top of the served bundle
        assert manifest["training_data"]["corrections"]["added"] == job["comparison"]["train_n"]
        again = [client.post("/v1/products", headers=auth, data={"id": f"again-{row['id']}", "title": row["title"]})
                 .json() for row in corrected]
        assert all(a["model_version"] == job["candidate_version"] for a in again)
        assert [a["path"] for a in again] == [row["category"] for row in corrected]
    app.state.store.close()


def test_a_brand_edit_makes_the_duplicate_cache_ask_the_model_again(real, shared_data):
    """An answer read with another brand lexicon is not lent to a copy of its photo; one read with today's is."""
    client, auth = real
    photo = (shared_data / "grocery" / "images" / "val" / "Packages" / "Juice" / "Bravo-Apple-Juice" /
             "Bravo-Apple-Juice_001.jpg").read_bytes()

    def tag(product_id: str) -> dict:
        answer = client.post("/v1/products", headers=auth, data={"id": product_id, "title": "Bravo äppeljuice 1L"},
                             files={"image": ("b.jpg", photo, "image/jpeg")})
        assert answer.status_code == 200, answer.text
        return answer.json()

    tag("bravo-1")
    assert tag("bravo-2")["cache_hit"] == "exact"
    path = client.get("/v1/taxonomy", headers=auth).json()["paths"][2]
    assert client.put("/v1/brands/Skutagdrei", headers=auth, json={"aliases": ["斯库三号"], "categories": [path]}
                      ).status_code == 200
    assert tag("bravo-3")["cache_hit"] is None  # read again with the edited lexicon
    assert tag("bravo-4")["cache_hit"] == "exact"
    assert client.delete("/v1/brands/Skutagdrei", headers=auth).status_code == 200
