"""The HTTP API with a real (small) photo model on GroceryStore photos: tagging, duplicate cache,
corrections, model versions, retraining, and a clear 4xx for every bad input (the taxonomy and brand
lexicon: test_service_taxonomy_api.py)."""

from __future__ import annotations

import base64

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
    api,
    make_client,
    upload,
    val_rows,
)

from skutag.service.app import create_app
from skutag.service.config import ServiceConfig


def test_tag_read_and_correct_a_product(api, val_rows):  # noqa: F811
    client, auth = api
    row = val_rows[0]
    response = upload(client, auth, row.image, id="sku-1", title="Banan <script>alert(1)</script>", price="12.90")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "sku-1" and body["path"] in TEST_CLASSES and body["label"] == body["path"].split(" > ")[-1]
    assert 0.0 <= body["confidence"] <= 1.0 and body["decision"] in {"auto", "review", "manual"}
    assert body["model_version"] == "photo-base" and body["cache_hit"] is None

    product = client.get("/v1/products/sku-1", headers=auth).json()
    assert product["title"] == "Banan <script>alert(1)</script>" and product["price"] == 12.9
    assert product["prediction"]["contributions"] == {"vision": 1.0}

    empty = client.post("/v1/products/sku-1/corrections", headers=auth, json={"category": " "})
    assert empty.status_code == 422 and empty.json()["field"] == "category"
    wrong = next(c for c in TEST_CLASSES if c != body["path"])
    fixed = client.post("/v1/products/sku-1/corrections", headers=auth, json={"category": wrong})
    assert fixed.status_code == 201 and fixed.json()["old_path"] == body["path"] and fixed.json()["who"] == "token:tests"
    product = client.get("/v1/products/sku-1", headers=auth).json()
    assert product["status"] == "corrected" and product["path"] == wrong and len(product["corrections"]) == 1
    photo = client.get("/v1/products/sku-1/image", headers=auth)
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert photo.content == row.image.read_bytes()


def test_duplicate_cache_reuses_exact_and_near_copies(api, val_rows):  # noqa: F811
    client, auth = api
    row = val_rows[3]
    first = upload(client, auth, row.image, id="orig").json()
    exact = upload(client, auth, row.image, id="copy-exact").json()
    near = upload(client, auth, reencode(row.image, 240, 60), id="copy-near").json()
    other = upload(client, auth, val_rows[20].image, id="other").json()
    assert exact["cache_hit"] == "exact" and exact["path"] == first["path"] and exact["confidence"] == first["confidence"]
    assert near["cache_hit"] == "near" and near["path"] == first["path"]
    assert any("duplicate of product orig" in r for r in near["reasons"])
    assert other["cache_hit"] is None
    # after a human correction, duplicates get the human's category
    target = next(c for c in TEST_CLASSES if c != first["path"])
    client.post("/v1/products/orig/corrections", headers=auth, json={"category": target})
    again = upload(client, auth, reencode(row.image, 300, 80), id="copy-after-fix").json()
    assert again["path"] == target and again["decision"] == "auto" and again["confidence"] == 1.0
    # the same photo under another product's title (a placeholder shot) is asked of the model
    placeholder = upload(client, auth, row.image, id="placeholder", title="华为 Mate60 手机 512GB").json()
    assert placeholder["cache_hit"] is None and placeholder["confidence"] != 1.0
    titled = upload(client, auth, row.image, id="titled-copy", title="  华为 mate60 手机   512GB").json()
    assert titled["cache_hit"] == "exact" and titled["path"] == placeholder["path"]  # same title, spacing aside
    stats = client.get("/v1/stats", headers=auth).json()
    assert stats["cache_hits"] == {"exact": 2, "near": 2}


def test_batch_tags_good_items_and_reports_bad_ones(api, val_rows):  # noqa: F811
    client, auth = api
    items = [{"id": f"b{i}", "title": f"item {i}", "price": 3.5,
              "image_base64": base64.b64encode(row.image.read_bytes()).decode()} for i, row in enumerate(val_rows[5:8])]
    items.insert(1, {"id": "bad-b64", "image_base64": "@@not base64@@"})
    items.insert(2, {"id": "not-image", "image_base64": base64.b64encode(b"GIF89a nope").decode()})
    items.append({"id": "title-only", "title": "Oatly oat drink"})
    response = client.post("/v1/products:batch", headers=auth, json={"products": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r.get("id") for r in results] == ["b0", None, None, "b1", "b2", "title-only"]
    assert "base64" in results[1]["error"]["message"]
    assert results[2]["error"]["field"] == "image" and "not a recognised image" in results[2]["error"]["message"]
    assert results[5]["status"] == "error" and "needs a photo" in results[5]["error"]  # the model's own error
    assert response.json()["errors"] == 2


def test_a_batch_item_of_the_wrong_type_or_a_repeated_id_fails_alone(api):  # noqa: F811
    client, auth = api
    items = [{"id": "typed-ok", "title": "Oatly oat drink", "price": "¥1,299.00"},
             {"id": "typed-price", "title": "Oatly", "price": "abc"},
             {"id": "typed-title", "title": 123},
             {"id": 42, "title": "Arla milk", "price": 12},
             {"id": "typed-ok", "title": "a different product"},
             {"id": "ambiguous", "title": "Oatly", "price": "1,299"}]
    response = client.post("/v1/products:batch", headers=auth, json={"products": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["id"] == "typed-ok" and results[3]["id"] == "42"
    assert [r["error"]["field"] for r in results if isinstance(r.get("error"), dict)] == [
        "products[1].price", "products[2].title", "products[4].id", "products[5].price"]
    assert "repeats the id of products[0]" in results[4]["error"]["message"]
    assert "ambiguous" in results[5]["error"]["message"]
    stored = client.get("/v1/products/typed-ok", headers=auth).json()
    assert stored["title"] == "Oatly oat drink" and stored["price"] == 1299.0


BAD_INPUTS = [
    ("no token", dict(headers={}), 401, "Authorization: Bearer"),
    ("wrong token", dict(headers={"Authorization": "Bearer skt_nope"}), 401, "unknown or revoked"),
    ("non-image", dict(files={"image": ("x.jpg", b"<html>hello</html>", "image/jpeg")}), 415, "not a recognised image"),
    ("truncated", dict(truncate=True), 415, "corrupt or truncated"),
    ("empty form", dict(data={}), 422, "send a photo, a title, or both"),
    ("bad price", dict(data={"title": "x", "price": "cheap"}), 422, "price"),
    ("negative price", dict(data={"title": "x", "price": "-3"}), 422, "price"),
    ("ambiguous price", dict(data={"title": "x", "price": "1,299"}), 422, "ambiguous"),
    ("json body", dict(json={"title": "x"}), 415, "multipart/form-data"),
    ("huge price", dict(data={"title": "x", "price": "2e9"}), 422, "must be a number from 0 to 1e9"),
    ("bad id", dict(data={"title": "x", "id": "../etc/passwd"}), 422, "id"),
    ("long title", dict(data={"title": "x" * 600}), 422, "title"),
    ("photo over limit", dict(files={"image": ("x.jpg", b"\xff" * 2_500_000, "image/jpeg")}), 413, "limit"),
    ("body over limit", dict(files={"image": ("x.jpg", b"\xff" * 4_500_000, "image/jpeg")}), 413, "limit"),
    ("form field over limit", dict(files={"title": (None, "x" * 1_500_000)}), 413, "limit"),
    ("urlencoded field over limit", dict(data={"title": "x" * 1_500_000}), 413, "limit"),
]


@pytest.mark.parametrize("name,kwargs,status,needle", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_uploads_get_a_clear_4xx(api, val_rows, name, kwargs, status, needle):  # noqa: F811
    client, auth = api
    kwargs = dict(kwargs)
    headers = kwargs.pop("headers", auth)
    if kwargs.pop("truncate", False):
        kwargs["files"] = {"image": ("x.jpg", val_rows[0].image.read_bytes()[:3000], "image/jpeg")}
    if "files" not in kwargs and "data" not in kwargs and "json" not in kwargs:
        kwargs["files"] = {"image": ("x.jpg", val_rows[0].image.read_bytes(), "image/jpeg")}
    response = client.post("/v1/products", headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]


def test_other_bad_requests_are_4xx(api, val_rows):  # noqa: F811
    client, auth = api
    upload(client, auth, val_rows[0].image, id="p1")
    cases = [
        client.get("/v1/products/missing", headers=auth),
        client.post("/v1/products/missing/corrections", headers=auth, json={"category": TEST_CLASSES[0]}),
        client.post("/v1/products/p1/corrections", headers=auth, json={"category": "Toys > Lego"}),
        client.post("/v1/products/p1/corrections", headers=auth, json={"category": " > "}),
        client.post("/v1/products/p1/corrections", headers=auth, json={}),
        client.post("/v1/products/p1/corrections", headers=auth, content=b"{not json", ),
        client.post("/v1/products:batch", headers=auth, json={"products": []}),
        client.post("/v1/products:batch", headers=auth, json={"products": "nope"}),
        client.get("/v1/products?status=bogus", headers=auth),
        client.post("/v1/models/none-such/promote", headers=auth),
        client.post("/v1/models:rollback", headers=auth),
        client.post("/v1/models:retrain?wait=true", headers=auth),
        client.delete("/v1/brands/Nobody", headers=auth),
        client.post("/v1/products", headers={**auth, "Content-Type": "multipart/form-data; boundary=zzz"},
                    content=b"--zzz\r\ngarbage"),
    ]
    statuses = [r.status_code for r in cases]
    assert statuses == [404, 404, 422, 422, 422, 422, 422, 422, 422, 404, 409, 409, 404, 422], statuses
    assert "not in the taxonomy" in cases[2].json()["detail"]
    assert "need at least" in cases[11].json()["detail"]


def test_retrain_from_corrections_promotes_only_if_not_worse_then_rolls_back(api, val_rows):  # noqa: F811
    client, auth = api
    truth = {}
    for i, row in enumerate(val_rows):
        pid = f"v{i:02d}"
        truth[pid] = row.path
        result = upload(client, auth, row.image, id=pid).json()
        if result["path"] != row.path:
            client.post(f"/v1/products/{pid}/corrections", headers=auth, json={"category": row.path})
        else:
            client.post(f"/v1/products/{pid}/accept", headers=auth)
    job = client.post("/v1/models:retrain?wait=true", headers=auth)
    assert job.status_code == 202, job.text
    job = job.json()
    assert job["state"] in {"promoted", "rejected"}, job
    metrics = job["comparison"]
    assert metrics["holdout_n"] >= 3 and metrics["train_n"] + metrics["holdout_n"] == len(val_rows)
    models = client.get("/v1/models", headers=auth).json()
    candidate = next(m for m in models["models"] if m["version"] == job["candidate_version"])
    if metrics["candidate_accuracy"] >= metrics["current_accuracy"]:
        assert job["state"] == "promoted" and models["active"] == job["candidate_version"]
        assert candidate["status"] == "active"
        assert client.post("/v1/models:rollback", headers=auth).json()["active"] == "photo-base"
        assert client.get("/healthz").json()["model_version"] == "photo-base"
    else:
        assert job["state"] == "rejected" and models["active"] == "photo-base" and candidate["status"] == "rejected"
        assert client.post(f"/v1/models/{candidate['version']}/promote", headers=auth).status_code == 409


def test_openapi_schema_lists_the_endpoints(api):  # noqa: F811
    client, _ = api
    schema = client.get("/openapi.json").json()
    for path in ["/v1/products", "/v1/products:batch", "/v1/products/{product_id}",
                 "/v1/products/{product_id}/corrections", "/v1/taxonomy", "/v1/taxonomy/categories",
                 "/v1/label-map/{label}",
                 "/v1/brands/{name}", "/v1/models", "/v1/models/{version}/promote", "/v1/models:rollback",
                 "/v1/models:retrain"]:
        assert path in schema["paths"], path
    assert {"post", "put", "delete"} <= set(schema["paths"]["/v1/taxonomy/categories"])
    body = schema["paths"]["/v1/products"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    fields = schema["components"]["schemas"][body.rsplit("/", 1)[-1]]["properties"]
    assert {"image", "title", "price", "id"} <= set(fields)
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert schema["paths"]["/v1/products"]["post"]["security"] == [{"HTTPBearer": []}]


def test_copies_within_one_batch_go_to_the_model_once(api, val_rows):  # noqa: F811
    client, auth = api
    photo = val_rows[9].image
    copies = [photo.read_bytes(), photo.read_bytes(), reencode(photo, 250, 65), val_rows[30].image.read_bytes()]
    items = [{"id": f"dup{i}", "image_base64": base64.b64encode(data).decode()} for i, data in enumerate(copies)]
    results = client.post("/v1/products:batch", headers=auth, json={"products": items}).json()["results"]
    assert [r["cache_hit"] for r in results] == [None, "exact", "near", None]
    assert results[0]["path"] == results[1]["path"] == results[2]["path"]


def test_a_product_that_breaks_the_model_is_isolated(tmp_path, photo_model_dir, val_rows):  # noqa: F811
    """The model raising on one product of a batch: that product gets an error and goes to review, the
    others are tagged."""
    from service_fixtures import PhotoTagger

    class Fragile(PhotoTagger):
        def tag(self, products, *, audit=True):
            if any(p.title == "boom" for p in products):
                raise MemoryError("simulated out of memory in the model")
            return super().tag(products, audit=audit)

    base = PhotoTagger.load(photo_model_dir)
    fragile = Fragile(base.estimator, "fragile-1")
    settings = ServiceConfig(db_url=f"sqlite:///{tmp_path / 'fragile.db'}")
    app = create_app(settings, tagger_factory=lambda _: fragile, retrainer=None)
    auth = {"Authorization": f"Bearer {app.state.store.create_token('t')}"}
    items = [{"id": f"f{i}", "title": "boom" if i == 1 else "fine",
              "image_base64": base64.b64encode(row.image.read_bytes()).decode()} for i, row in enumerate(val_rows[:3])]
    with TestClient(app) as client:
        results = client.post("/v1/products:batch", headers=auth, json={"products": items}).json()["results"]
        assert [r["status"] for r in results][1] == "error" and "simulated out of memory" in results[1]["error"]
        assert results[0]["path"] and results[2]["path"] and results[0]["status"] != "error"
        queue = client.get("/v1/products", headers=auth, params={"status": "error"}).json()
        assert [p["id"] for p in queue["products"]] == ["f1"]
    app.state.store.close()


def test_resending_a_verified_product_keeps_the_human_verdict_until_its_content_changes(api, val_rows):  # noqa: F811
    client, auth = api
    first = upload(client, auth, val_rows[2].image, id="keep-1", title="same title").json()
    target = next(c for c in TEST_CLASSES if c != first["path"])
    client.post("/v1/products/keep-1/corrections", headers=auth, json={"category": target})
    again = upload(client, auth, val_rows[2].image, id="keep-1", title="same title", price="3.5").json()
    assert again["status"] == "corrected" and again["path"] == target
    changed = upload(client, auth, val_rows[25].image, id="keep-1", title="same title").json()
    assert changed["status"] in {"auto", "review", "manual"} and changed["cache_hit"] is None
    history = client.get("/v1/products/keep-1", headers=auth).json()
    assert history["price"] is None and len(history["corrections"]) == 1


def test_retrain_compares_on_a_fixed_holdout_catalog_too(db_url, photo_model_dir, tmp_path, val_rows):  # noqa: F811
    import json

    catalog = tmp_path / "holdout.jsonl"
    catalog.write_text("".join(json.dumps({"id": f"h{i}", "image": str(row.image), "category": row.path}) + "\n"
                               for i, row in enumerate(val_rows[20:32])), encoding="utf-8")
    client, auth = make_client(db_url, photo_model_dir, tmp_path, min_corrections_to_retrain=5, min_holdout=12,
                               holdout_fraction=0.05, holdout_catalog=str(catalog))
    with client:
        for i, row in enumerate(val_rows[:10]):
            upload(client, auth, row.image, id=f"t{i}")
            client.post(f"/v1/products/t{i}/corrections", headers=auth, json={"category": row.path})
        job = client.post("/v1/models:retrain?wait=true", headers=auth).json()
        assert job["state"] in {"promoted", "rejected"}, job
        assert job["comparison"]["holdout_n"] >= 12  # the 12 catalog rows (+ any verified ones held out)
        broken = ServiceConfig(holdout_catalog=str(tmp_path / "missing.jsonl"))
        client.app.state.service.settings = broken
        refused = client.post("/v1/models:retrain?wait=true", headers=auth)
        assert refused.status_code == 409 and "holdout_catalog" in refused.json()["detail"]
    client.app.state.store.close()


def test_near_duplicates_of_photos_stored_by_another_process_are_found(db_url, photo_model_dir, tmp_path,  # noqa: F811
                                                                        val_rows):
    """A second service instance (or a batch worker) on the same database: its photos join the index."""
    first, auth = make_client(db_url, photo_model_dir, tmp_path)
    second, auth2 = make_client(db_url, photo_model_dir, tmp_path)
    with first, second:
        original = upload(first, auth, val_rows[4].image, id="from-first").json()
        second.app.state.service._index_synced_at = float("-inf")  # as if the sync interval had passed
        copy = upload(second, auth2, reencode(val_rows[4].image, 230, 60), id="at-second").json()
        assert copy["cache_hit"] == "near" and copy["path"] == original["path"]
    first.app.state.store.close()
    second.app.state.store.close()
