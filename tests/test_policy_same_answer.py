"""The same bad field gets the same answer from the HTTP API, `skutag tag` and `skutag batch --db`: the API's 422
``detail`` is the text the CLI reports after the row's line number and the text a batch writes as the row's error,
and nothing is stored for it (``skutag.policy.fields``)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from queue_support import cached_title_model, grocery_rows, read_rows
from service_fixtures import grocery_root, photo_model_dir, photo_retrainer, photo_tagger_factory  # noqa: F401

from conftest import shared_path
from skutag.cli import main
from skutag.queue.config import QueueConfig
from skutag.queue.runner import BatchRequest, run_batch
from skutag.service.app import create_app
from skutag.service.config import ServiceConfig

BAD_FIELDS = {  # name -> (catalog row fields, expected answer)
    "long brand": ({"title": "Arla mjölk", "brand": "B" * 201}, "brand: longer than 200 characters"),
    "NaN price": ({"title": "Arla mjölk", "price": "NaN"}, "price: must be a number from 0 to 1e9, got 'NaN'"),
    "empty photo": ({"title": "Arla mjölk", "image": "empty.jpg"}, "image: the photo is empty (0 bytes)"),
    "NUL title": ({"title": "Arla\u0000mjölk"}, "title: contains a NUL character"),
}


@pytest.fixture
def catalog(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    rows = [{"id": f"bad-{i}", **fields} for i, (fields, _) in enumerate(BAD_FIELDS.values())]
    good = grocery_rows(shared_path("grocery", "manifest.csv"), "val", limit=1)[0]
    rows.append({"id": "good", "title": good["title"], "image": good["image"]})
    path = tmp_path / "catalog.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _api_answers(tmp_path, model_dir) -> dict[str, str]:
    settings = ServiceConfig(db_url=f"sqlite:///{tmp_path / 'api.db'}", model_dir=str(model_dir))
    app = create_app(settings, tagger_factory=photo_tagger_factory(model_dir), retrainer=photo_retrainer)
    auth = {"Authorization": f"Bearer {app.state.store.create_token('t')}"}
    answers = {}
    with TestClient(app) as client:
        for i, (name, (fields, _)) in enumerate(BAD_FIELDS.items()):
            form = {k: v for k, v in fields.items() if k != "image"}
            files = {"image": ("empty.jpg", b"", "image/jpeg")} if "image" in fields else None
            response = client.post("/v1/products", headers=auth, data={"id": f"bad-{i}", **form}, files=files)
            assert response.status_code == 422, (name, response.text)
            body = response.json()
            assert body["field"] == answers.setdefault(name, body["detail"]).split(":")[0]
            assert client.get(f"/v1/products/bad-{i}", headers=auth).status_code == 404  # nothing stored
    app.state.store.close()
    return answers


def test_the_api_the_cli_and_a_batch_give_the_same_answer_to_the_same_bad_field(tmp_path, catalog,
                                                                                 photo_model_dir, capsys):  # noqa: F811
    api = _api_answers(tmp_path, photo_model_dir)
    assert api == {name: expected for name, (_, expected) in BAD_FIELDS.items()}

    code = main(["tag", str(catalog), "--out", str(tmp_path / "tagged.jsonl")])
    err = capsys.readouterr().err
    assert code == 1, err  # some rows failed
    for i, expected in enumerate(api.values()):
        assert f"line {i + 1}: {expected} (row skipped)" in err

    db = tmp_path / "shop.db"
    config = QueueConfig(tagger_factory="queue_support:load_title_tagger",
                         model_dir=str(cached_title_model(shared_path("grocery", "manifest.csv"))), workers=1)
    summary = run_batch(BatchRequest(catalog, tmp_path / "batch.jsonl", config, progress=False, store_url=str(db)))
    errors = {row["id"]: row["error"] for row in read_rows(tmp_path / "batch.jsonl")}
    assert summary.failed == len(BAD_FIELDS) and errors["good"] is None
    for i, expected in enumerate(api.values()):
        assert errors[f"bad-{i}"].endswith(expected)

    from skutag.store import NotFound, Store

    store = Store.open(str(db))
    try:
        for i in range(len(BAD_FIELDS)):
            with pytest.raises(NotFound):
                store.get_product(f"bad-{i}")
        assert store.get_product("good").status != "error"
    finally:
        store.close()
