"""The HTTP API with a real (small) photo model on GroceryStore photos: tagging, duplicate cache,
corrections, resources, model versions, retraining, and a clear 4xx for every bad input."""

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
    val_rows,
)

from skutag.service.app import create_app
from skutag.service.config import ServiceConfig


def make_client(db, model_dir, tmp_path, **overrides) -> tuple[TestClient, dict]:
    settings = ServiceConfig(db_url=db, model_dir=str(model_dir), bundles_dir=str(tmp_path / "bundles"), **overrides)
    app = create_app(settings, tagger_factory=photo_tagger_factory(model_dir), retrainer=photo_retrainer)
    token = app.state.store.create_token("tests")
    return TestClient(app), {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(db_url, photo_model_dir, tmp_path):  # noqa: F811
    client, auth = make_client(db_url, photo_model_dir, tmp_path, min_corrections_to_retrain=5, min_holdout=3,
                               holdout_fraction=0.3, max_upload_bytes=2_000_000, max_request_bytes=4_000_000)
    with client:
        yield client, auth
    client.app.state.store.close()


def upload(client, auth, path_or_bytes, **fields):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return client.post("/v1/products", headers=auth, files={"image": ("photo.jpg", data, "image/jpeg")},
                       data={k: str(v) for k, v in fields.items()})


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


def test_a_batch_item_of_the_wrong_type_or_a_repeated_id_fails_alone(api):
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


def test_taxonomy_label_map_and_brand_edits_are_versioned(api, val_rows):  # noqa: F811
    client, auth = api
    taxonomy = client.get("/v1/taxonomy", headers=auth).json()
    assert taxonomy["version"] == 0 and sorted(taxonomy["paths"]) == sorted(TEST_CLASSES)  # the model's categories
    added = client.post("/v1/taxonomy/categories", headers=auth, json={"path": "Fruit>Banana >Organic-Banana"})
    assert added.status_code == 201 and added.json()["version"] == 1
    paths = client.get("/v1/taxonomy", headers=auth).json()["paths"]
    assert "Fruit > Banana > Organic-Banana" in paths and len(paths) == len(TEST_CLASSES) + 1
    assert client.delete("/v1/taxonomy/categories", headers=auth,
                         params={"path": "Fruit > Banana > Organic-Banana"}).json()["version"] == 2
    inner = client.delete("/v1/taxonomy/categories", headers=auth, params={"path": "Fruit > Banana"})
    assert inner.status_code == 409 and "is not a leaf" in inner.json()["detail"]
    assert client.delete("/v1/taxonomy/categories", headers=auth, params={"path": "Toys > Lego"}).status_code == 404
    assert client.put("/v1/label-map/%20", headers=auth, json={"path": TEST_CLASSES[0]}).status_code == 422

    result = upload(client, auth, val_rows[0].image, id="lm-1").json()
    target = next(c for c in TEST_CLASSES if c != result["path"])
    mapped = client.put(f"/v1/label-map/{result['label']}", headers=auth, json={"path": target})
    assert mapped.status_code == 200
    again = upload(client, auth, val_rows[0].image, id="lm-2").json()  # exact duplicate, label map applied on top
    assert again["path"] == target and any("label map" in r for r in again["reasons"])
    assert client.delete(f"/v1/label-map/{result['label']}", headers=auth).status_code == 200

    brand = client.put("/v1/brands/Oatly", headers=auth,
                       json={"aliases": ["OATLY", " Oatly Barista ", "oatly barista", "噢麦力"],
                             "categories": ["Packages > Oat-Milk > Oatly-Oat-Milk"]})
    assert brand.status_code == 200
    # brands match case-blind: spellings that differ only in case (or are the name itself) are kept once
    assert client.get("/v1/brands", headers=auth).json()["brands"]["Oatly"]["aliases"] == ["Oatly Barista", "噢麦力"]
    one = client.put("/v1/brands/Oatly", headers=auth, json={"aliases": ["O"]})
    assert one.status_code == 422 and "2-200 characters" in one.json()["detail"]
    assert client.put("/v1/brands/Nope", headers=auth, json={"categories": ["Toys > Lego"]}).status_code == 422
    clash = client.put("/v1/brands/Oatmeal", headers=auth, json={"aliases": ["Oatly"]})  # another brand's name
    assert clash.status_code == 422 and clash.json()["field"] == "aliases" and "Oatly" in clash.json()["detail"]
    assert client.put("/v1/brands/Long", headers=auth, json={"aliases": ["x" * 201]}).status_code == 422
    assert "Oatmeal" not in client.get("/v1/brands", headers=auth).json()["brands"]
    versions = client.get("/v1/taxonomy/versions", headers=auth, params={"kind": "lexicon"}).json()["versions"]
    assert [v["version"] for v in versions] == [1] and versions[0]["created_by"] == "token:tests"
    assert upload(client, auth, val_rows[1].image, id="after-clash").status_code == 200  # the service still tags


def test_taxonomy_update_renames_moves_and_retags_with_clear_errors(api, val_rows):  # noqa: F811
    client, auth = api
    store = client.app.state.store

    def put(**body):
        return client.put("/v1/taxonomy/categories", headers=auth, json=body)

    def taxonomy():
        return client.get("/v1/taxonomy", headers=auth).json()

    assert client.put("/v1/label-map/Banana", headers=auth, json={"path": "Fruit > Banana > Banana"}).status_code == 200
    store.save_resource("whitelist", {"paths": ["Fruit > Banana", "Vegetables"]}, who="tests")
    product = upload(client, auth, val_rows[0].image, id="tax-1").json()

    # rename an inner category: its leaf follows, and so do the label map and the whitelist
    renamed = put(path="Fruit > Banana", name="Bananas", keywords=["banan", " banan ", "plátano"])
    assert renamed.status_code == 200, renamed.text
    body = renamed.json()
    assert body["version"] == 1 and body["created_by"] == "token:tests" and body["note"] == "update Fruit > Banana"
    assert body["category"]["path"] == "Fruit > Bananas" and body["category"]["keywords"] == ["banan", "plátano"]
    assert body["category"]["renamed"] == {"Fruit > Banana": "Fruit > Bananas",
                                           "Fruit > Banana > Banana": "Fruit > Bananas > Banana"}
    now = taxonomy()
    assert now["version"] == 1 and len(now["paths"]) == len(TEST_CLASSES)
    assert "Fruit > Bananas > Banana" in now["paths"] and "Fruit > Banana > Banana" not in now["paths"]
    assert now["tags"] == {"Fruit > Bananas": {"keywords": ["banan", "plátano"], "synonyms": []}}
    assert client.get("/v1/label-map", headers=auth).json() == {"version": 2,
                                                               "labels": {"Banana": "Fruit > Bananas > Banana"}}
    assert store.resource("whitelist").content["paths"] == ["Fruit > Bananas", "Vegetables"]
    # corrections take the new path, not the old one
    old = client.post("/v1/products/tax-1/corrections", headers=auth, json={"category": "Fruit > Banana > Banana"})
    assert old.status_code == 422 and "not in the taxonomy" in old.json()["detail"]
    new = client.post("/v1/products/tax-1/corrections", headers=auth, json={"category": "Fruit > Bananas > Banana"})
    assert new.status_code == 201 and product["path"] in TEST_CLASSES

    # move to the top level, then under another category; tags survive adds and removes
    assert put(path="Packages > Juice", root=True).json()["category"]["path"] == "Juice"
    assert "Juice > Tropicana-Apple-Juice" in taxonomy()["paths"]
    moved = put(path="Juice", parent="Fruit").json()
    assert moved["version"] == 3 and moved["category"]["path"] == "Fruit > Juice"
    assert "Fruit > Juice > Tropicana-Apple-Juice" in taxonomy()["paths"]
    assert client.post("/v1/taxonomy/categories", headers=auth, json={"path": "Fruit > Bananas > Plantain"}
                       ).status_code == 201
    assert client.delete("/v1/taxonomy/categories", headers=auth, params={"path": "Fruit > Bananas > Plantain"}
                         ).status_code == 200
    assert taxonomy()["tags"] == {"Fruit > Bananas": {"keywords": ["banan", "plátano"], "synonyms": []}}
    retagged = put(path="Fruit > Bananas", keywords=[], synonyms=["banana"])
    assert retagged.json()["category"]["renamed"] == {}
    assert taxonomy()["tags"] == {"Fruit > Bananas": {"keywords": [], "synonyms": ["banana"]}}
    version = taxonomy()["version"]

    cases = [
        (put(path="Toys > Lego", name="Duplo"), 404, "not in the taxonomy"),
        (put(path="Fruit", parent="Fruit > Lemon"), 409, "inside it"),
        (put(path="Fruit > Lemon", parent="Fruit > Lemon"), 409, "inside it"),
        (put(path="Fruit > Lemon", name="Lime"), 409, "'Fruit > Lime' already exists"),
        (put(path="Vegetables > Carrots", parent="Fruit", name="Lime"), 409, "already exists"),
        (put(path="Fruit > Lemon", name="Citrus > Lemon"), 422, "no '>'"),
        (put(path="Fruit > Lemon", name="  "), 422, "1-100 characters"),
        (put(path="Fruit > Lemon"), 422, "nothing to change"),
        (put(path="Fruit > Lemon", parent="Citrus"), 422, "'Citrus' is not in the taxonomy"),
        (put(path="Fruit > Lemon", parent="Fruit", root=True), 422, "not both"),
        (put(path="Fruit >  > Lemon", name="X"), 422, "not a category path"),
        (client.put("/v1/taxonomy/categories", json={"path": "Fruit", "name": "X"}), 401, ""),
    ]
    for response, status, message in cases:
        assert response.status_code == status and message in response.json()["detail"], response.text
    assert taxonomy()["version"] == version  # nothing was stored by the refused edits


def test_a_renamed_category_is_followed_by_stored_products_new_answers_and_the_next_retraining(
        api, val_rows, photo_model_dir):  # noqa: F811
    from service_fixtures import PhotoTagger

    client, auth = api
    store = client.app.state.store
    old_leaf, new_leaf = "Fruit > Banana > Banana", "Fruit > Banane > Banana"
    bananas = [row for row in val_rows if row.path == old_leaf]
    first, later = [r for r in val_rows if r not in bananas[len(bananas) // 2:]], bananas[len(bananas) // 2:]
    before = {f"rn{i:02d}": (row, upload(client, auth, row.image, id=f"rn{i:02d}").json()) for i, row in enumerate(first)}
    filed_as_banana = [pid for pid, (_, body) in before.items() if body["path"] == old_leaf]
    assert filed_as_banana, "the photo model files no val banana under bananas"

    def put(**body):
        response = client.put("/v1/taxonomy/categories", headers=auth, json=body)
        assert response.status_code == 200, response.text

    assert client.put("/v1/brands/Chiquita", headers=auth, json={"aliases": ["CHIQUITA"],
                      "categories": [old_leaf]}).status_code == 200
    put(path="Fruit > Banana", name="Bananas")
    put(path="Fruit > Bananas", name="Banane")  # a second edit: the alias map stays one lookup deep
    assert client.get("/v1/brands", headers=auth).json()["brands"]["Chiquita"]["categories"] == [new_leaf]
    assert store.resource("path_aliases").content == {
        "Fruit > Banana": "Fruit > Banane", old_leaf: new_leaf,
        "Fruit > Bananas": "Fruit > Banane", "Fruit > Bananas > Banana": new_leaf}
    for pid in filed_as_banana:  # stored products moved with the category
        assert client.get(f"/v1/products/{pid}", headers=auth).json()["path"] == new_leaf

    # the served model still knows only the old name; its answers come out under the new one
    answers = [upload(client, auth, row.image, id=f"rn-later{i}").json() for i, row in enumerate(later)]
    assert all(a["path"] != old_leaf for a in answers)
    fresh = [a for a in answers if a["path"] == new_leaf]
    assert fresh and all(f"taxonomy: {old_leaf} is now {new_leaf}" in a["reasons"] for a in fresh)
    assert all(alt["path"] != old_leaf for a in answers for alt in a["alternatives"])

    # the operators confirm every product under today's names; the retrained model knows only those
    for pid, (row, _) in before.items():
        truth = new_leaf if row.path == old_leaf else row.path
        assert client.post(f"/v1/products/{pid}/corrections", headers=auth, json={"category": truth}).status_code == 201
    job = client.post("/v1/models:retrain?wait=true", headers=auth).json()
    assert job["state"] in {"promoted", "rejected"}, job
    candidate = next(m for m in client.get("/v1/models", headers=auth).json()["models"]
                     if m["version"] == job["candidate_version"])
    classes = PhotoTagger.load(candidate["model_dir"]).categories()
    assert new_leaf in classes and old_leaf not in classes
    # the served model is compared under today's names too: it is not marked down for the rename
    from skutag.catalog import Product
    from skutag.service.retrain import accuracy

    served = PhotoTagger.load(photo_model_dir)
    filed = [Product(id=pid, image=before[pid][0].image.read_bytes(), category=new_leaf) for pid in filed_as_banana]
    assert accuracy(served, filed, renames=store.resource("path_aliases").content) == (1.0, 1.0)
    assert accuracy(served, filed)[0] == 0.0


def test_category_update_keeps_an_emptied_parent_and_refuses_too_deep_paths():
    from skutag.service.categories import CategoryChange, update_category
    from skutag.policy.fields import InvalidInput

    stored = {"paths": ["A > B > C", "A > D"], "tags": {"A > B": {"keywords": ["b"], "synonyms": []}}}
    moved = update_category(stored, (), "A > B > C", CategoryChange(parent="A > D"))
    assert moved.content == {"paths": ["A > B", "A > D > C"], "tags": stored["tags"]}  # B stays, as a leaf
    assert moved.renamed == {"A > B > C": "A > D > C"} and moved.follow("A > D") == "A > D"
    deep = {"paths": [" > ".join("L" + str(i) for i in range(8)), "X"]}
    with pytest.raises(InvalidInput, match="deeper than 8 levels"):
        update_category(deep, (), "L0", CategoryChange(parent="X"))
    seeded = update_category({"paths": []}, ["A > B"], "A", CategoryChange(name="Z"))  # before one is stored
    assert seeded.content == {"paths": ["Z > B"]}


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


def test_openapi_schema_lists_the_endpoints(api):
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


def test_the_databases_taxonomy_goes_to_and_comes_from_the_command_line(api, db_url, val_rows, tmp_path, capsys):  # noqa: F811
    """`skutag taxonomy export/import --db`: the tree edited through the API becomes a file the command line
    manages, and a tree file becomes the service's taxonomy, unless stored products would lose their category."""
    from skutag.cli import main
    from skutag.taxonomy import CategoryTree

    client, auth = api
    assert main(["taxonomy", "export", str(tmp_path / "none.json"), "--db", db_url]) == 2
    assert "holds no edited taxonomy yet" in capsys.readouterr().err
    product = upload(client, auth, val_rows[0].image, id="tree-1").json()
    piped = client.put("/v1/taxonomy/categories", headers=auth, json={"path": "Fruit > Banana", "keywords": ["a|b"]})
    assert piped.status_code == 422 and "may not hold '|'" in piped.json()["detail"]
    assert client.put("/v1/taxonomy/categories", headers=auth,
                      json={"path": "Fruit > Banana", "name": "Bananas", "keywords": ["banan"]}).status_code == 200

    exported = tmp_path / "service-tree.json"
    assert main(["taxonomy", "export", str(exported), "--db", db_url]) == 0
    tree = CategoryTree.load(exported)
    assert tree.find_path("Fruit > Bananas > Banana") is not None and tree.find_path("Fruit > Banana") is None
    assert tree.find_path("Fruit > Bananas").keywords == ("banan",)
    managed = tmp_path / "managed.json"  # the command line's managed tree, here a file of its own
    assert main(["taxonomy", "--file", str(managed), "import", str(exported)]) == 0
    assert sorted(CategoryTree.load(managed).path_string(n) for n in CategoryTree.load(managed).leaves()) == sorted(
        client.get("/v1/taxonomy", headers=auth).json()["paths"])

    # back the other way: a file with one more category becomes the database's next version
    tree.add_path("Fruit > Bananas > Plantain")
    grown = tmp_path / "grown.json"
    tree.save(grown)
    capsys.readouterr()
    assert main(["taxonomy", "import", str(grown), "--db", db_url]) == 0
    assert "taxonomy version 2" in capsys.readouterr().out
    served = client.get("/v1/taxonomy", headers=auth).json()
    assert served["version"] == 2 and "Fruit > Bananas > Plantain" in served["paths"]
    assert served["tags"]["Fruit > Bananas"]["keywords"] == ["banan"]

    capsys.readouterr()
    assert main(["taxonomy", "import", str(grown), "--db", db_url]) == 0  # the same tree again: no new version
    assert "unchanged" in capsys.readouterr().out

    # what the database still uses must stay: the stored product's category, label-map targets; nothing is saved
    filed_under = client.get("/v1/products/tree-1", headers=auth).json()["path"]
    assert filed_under and filed_under.startswith(product["path"].split(" > ")[0])
    CategoryTree.from_paths([p for p in served["paths"] if p != filed_under]).save(tmp_path / "shrunk.json")
    assert main(["taxonomy", "import", str(tmp_path / "shrunk.json"), "--db", db_url]) == 2
    assert f"1 stored products are filed under {filed_under!r}, which is missing" in capsys.readouterr().err
    assert client.put("/v1/label-map/Plantain", headers=auth, json={"path": "Fruit > Bananas > Plantain"}).status_code == 200
    CategoryTree.from_paths([p for p in served["paths"] if p != "Fruit > Bananas > Plantain"]).save(tmp_path / "nop.json")
    assert main(["taxonomy", "import", str(tmp_path / "nop.json"), "--db", db_url]) == 2
    assert "the label map sends 'Plantain' to 'Fruit > Bananas > Plantain', which is missing" in capsys.readouterr().err
    # nor paths the service could not edit afterwards, nor an empty tree
    CategoryTree.from_paths([*served["paths"], " > ".join(f"L{i}" for i in range(10))]).save(tmp_path / "deep.json")
    assert main(["taxonomy", "import", str(tmp_path / "deep.json"), "--db", db_url]) == 2
    assert "at most 8 levels" in capsys.readouterr().err
    (tmp_path / "empty.csv").write_text("path\n", encoding="utf-8")
    assert main(["taxonomy", "import", str(tmp_path / "empty.csv"), "--db", db_url]) == 2
    assert "holds no categories" in capsys.readouterr().err
    assert client.get("/v1/taxonomy", headers=auth).json()["version"] == 2

    # a mistyped or empty URL is an error, never a new database nor the command line's own tree
    typo = tmp_path / "typo" / "skutag.db"
    assert main(["taxonomy", "import", str(grown), "--db", f"sqlite:///{typo}"]) == 2
    assert "no database at" in capsys.readouterr().err and not typo.parent.exists()
    assert main(["taxonomy", "export", str(tmp_path / "x.json"), "--db", ""]) == 2
    assert "--db needs a database URL" in capsys.readouterr().err
    assert main(["taxonomy", "export", str(tmp_path / "x.json"), "--db", "nosuchdb://x"]) == 2
    assert "unsupported database" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_the_databases_brand_lexicon_goes_to_and_comes_from_the_command_line(api, db_url, tmp_path, capsys):  # noqa: F811
    """`skutag brands export/import --db`: brands edited through the API become a CSV, and a CSV merges into
    the database's lexicon as its next version (before the first edit: into this machine's lexicon)."""
    from skutag.cli import main
    from skutag.taxonomy.brands import BrandLexicon

    client, auth = api
    assert main(["brands", "export", str(tmp_path / "none.csv"), "--db", db_url]) == 2
    assert "holds no edited lexicon yet" in capsys.readouterr().err
    incoming = tmp_path / "shop-brands.csv"
    incoming.write_text("brand,aliases,categories\nOatly,Oatly Barista|噢麦力,Packages > Oat-Milk > Oatly-Oat-Milk\n",
                        encoding="utf-8")
    assert main(["brands", "import", str(incoming), "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "into this machine's lexicon" in out and "lexicon version 1" in out
    served = client.get("/v1/brands", headers=auth).json()
    assert served["version"] == 1 and {"Oatly Barista", "噢麦力"} <= set(served["brands"]["Oatly"]["aliases"])
    assert "农夫山泉" in served["brands"]  # the lexicon it merged into is kept

    assert client.put("/v1/brands/Arla", headers=auth, json={"aliases": ["Arla Foods"], "categories": []}).status_code == 200
    exported = tmp_path / "db-brands.csv"
    assert main(["brands", "export", str(exported), "--db", db_url]) == 0
    lexicon = BrandLexicon.load(exported)
    assert lexicon.resolve("Arla Foods") == "Arla" and lexicon.resolve("噢麦力") == "Oatly"
    assert main(["brands", "import", str(exported), "--db", db_url]) == 0  # the same brands again: no new version
    assert "unchanged" in capsys.readouterr().out and client.get("/v1/brands", headers=auth).json()["version"] == 2

    bad = tmp_path / "bad.csv"
    bad.write_text("brand,aliases,categories\nValio,V,\n", encoding="utf-8")
    assert main(["brands", "import", str(bad), "--db", db_url]) == 2
    assert "alias 'V' needs 2-200 characters" in capsys.readouterr().err
    clash = tmp_path / "clash.csv"
    clash.write_text("brand,aliases,categories\nOat Co,Arla,\n", encoding="utf-8")  # another brand's name
    assert main(["brands", "import", str(clash), "--db", db_url]) == 2
    assert "Arla" in capsys.readouterr().err
    slash = tmp_path / "slash.csv"
    slash.write_text("brand,aliases,categories\nAC/DC,ACDC Brand,\n", encoding="utf-8")  # the API could not address it
    assert main(["brands", "import", str(slash), "--db", db_url]) == 2
    assert "no '/'" in capsys.readouterr().err
    # once the database has a taxonomy, a brand's categories must be in it, as for PUT /v1/brands
    assert client.post("/v1/taxonomy/categories", headers=auth, json={"path": "Fruit > Banana > Plantain"}).status_code == 201
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("brand,aliases,categories\nDole,Dole Co,Nowhere > Fake\n", encoding="utf-8")
    assert main(["brands", "import", str(elsewhere), "--db", db_url]) == 2
    assert "category: 'Nowhere > Fake' is not in the database's taxonomy" in capsys.readouterr().err
    assert client.get("/v1/brands", headers=auth).json()["version"] == 2

    elsewhere.write_text("brand,aliases,categories\nDole,Dole Co,Fruit > Banana > Plantain\n", encoding="utf-8")
    assert main(["brands", "import", str(elsewhere), "--db", db_url, "--replace"]) == 0
    assert "brands replaced by 1 added" in capsys.readouterr().out
    assert list(client.get("/v1/brands", headers=auth).json()["brands"]) == ["Dole"]
    assert main(["brands", "export", str(tmp_path), "--db", db_url]) == 2  # a folder
    assert "is a folder" in capsys.readouterr().err
    assert main(["brands", "export", "-", "--db", db_url]) == 0
    assert capsys.readouterr().out == "brand,aliases,categories\nDole,Dole Co,Fruit > Banana > Plantain\n"
