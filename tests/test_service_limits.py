"""Bad requests get a 4xx in the service's error format, the same on SQLite and PostgreSQL, and leave nothing
half-stored: NUL characters anywhere, offsets beyond 64 bits, and an OpenAPI document that says so."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from service_fixtures import (  # noqa: F401  (fixtures)
    db_url,
    grocery_root,
    pg_url,
    photo_model_dir,
    photo_retrainer,
    photo_tagger_factory,
    val_rows,
)
from sqlalchemy import func, select

from skutag.service.app import create_app
from skutag.service.config import ServiceConfig
from skutag.store.models import ImageRow, ProductRow


@pytest.fixture
def api(db_url, photo_model_dir, tmp_path):  # noqa: F811
    settings = ServiceConfig(db_url=db_url, model_dir=str(photo_model_dir), bundles_dir=str(tmp_path / "bundles"))
    app = create_app(settings, tagger_factory=photo_tagger_factory(photo_model_dir), retrainer=photo_retrainer)
    auth = {"Authorization": f"Bearer {app.state.store.create_token('limits')}"}
    with TestClient(app) as client:
        yield client, auth
    app.state.store.close()


def _counts(client) -> tuple[int, int]:
    store = client.app.state.store
    with store.session() as session:
        return (int(session.scalar(select(func.count()).select_from(ImageRow))),
                int(session.scalar(select(func.count()).select_from(ProductRow))))


def test_a_nul_character_anywhere_is_a_422_and_stores_nothing(api, val_rows):  # noqa: F811
    client, auth = api
    photo = val_rows[0].image.read_bytes()
    before = _counts(client)
    answers = [
        client.post("/v1/products", headers=auth, data={"title": "Arla\x00mjölk"},
                    files={"image": ("a.jpg", photo, "image/jpeg")}),
        client.post("/v1/products", headers=auth, data={"title": "Arla", "brand": "Ar\x00la"},
                    files={"image": ("a.jpg", photo, "image/jpeg")}),
        client.post("/v1/products", headers=auth, data={"title": "Arla", "id": "sku\x00-1"}),
        client.get("/v1/products/%00", headers=auth),
        client.get("/v1/products?status=%00", headers=auth),
        client.post("/v1/taxonomy/categories", headers=auth, json={"path": "Fruit > Ba\u0000nana > X"}),
        client.put("/v1/label-map/ban%00ana", headers=auth, json={"path": "Fruit > Banana > Banana"}),
        client.put("/v1/brands/Ar%00la", headers=auth, json={"aliases": ["arla"]}),
        client.put("/v1/brands/Arla", headers=auth, json={"aliases": ["ar\u0000la"]}),
    ]
    for response in answers:
        assert response.status_code == 422, (response.request.url, response.text)
        body = response.json()
        assert "NUL" in body["detail"] and body["field"]
    assert _counts(client) == before  # no image row without its product


def test_each_batch_item_stands_alone_and_a_nul_title_fails_only_its_item(api, val_rows):  # noqa: F811
    client, auth = api
    photo = base64.b64encode(val_rows[1].image.read_bytes()).decode()
    response = client.post("/v1/products:batch", headers=auth, json={"products": [
        {"id": "nul", "title": "Arla\u0000mjölk", "image_base64": photo},
        {"id": "bad", "title": "Arla mjölk", "brand": "B" * 201, "image_base64": photo},
        {"id": "good", "title": "Arla mjölk", "image_base64": photo},
    ]})
    assert response.status_code == 200, response.text
    nul, long_brand, good = response.json()["results"]
    assert nul["error"] == {"field": "products[0].title", "message": "contains a NUL character"}
    assert long_brand["error"] == {"field": "products[1].brand", "message": "longer than 200 characters"}
    assert good["id"] == "good" and good["status"] in ("auto", "review", "manual")
    for missing in ("nul", "bad"):
        assert client.get(f"/v1/products/{missing}", headers=auth).status_code == 404


@pytest.mark.parametrize("query", ["offset=9223372036854775808", "offset=99999999999999999999999",
                                   "limit=9223372036854775808", "offset=-1"])
def test_offsets_and_limits_out_of_range_are_a_422(api, query):
    client, auth = api
    response = client.get(f"/v1/products?{query}", headers=auth)
    assert response.status_code == 422 and response.json()["detail"]


def test_the_openapi_document_describes_the_errors_the_api_answers(api):
    client, _ = api
    spec = client.get("/openapi.json").json()
    error_schema = spec["components"]["schemas"]["ErrorBody"]
    assert set(error_schema["properties"]) == {"detail", "field"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method, operation in operations.items():
            for status in ("401", "404", "413", "422"):
                response = operation["responses"].get(status)
                assert response, (method, path, status)
                assert response["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


def test_an_unexpected_error_is_a_json_500_in_the_services_format(api, monkeypatch):
    client, auth = api
    store = client.app.state.store

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "count_products", broken)
    with TestClient(client.app, raise_server_exceptions=False) as quiet:
        response = quiet.get("/v1/products", headers=auth)
    assert response.status_code == 500 and response.json() == {"detail": "internal error (logged on the server)"}
