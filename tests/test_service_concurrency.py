"""Many uploads at once against a real uvicorn server, on SQLite (WAL) and PostgreSQL: the same photo
and the same product id sent concurrently never give a 500, and every product ends up stored once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from service_fixtures import (  # noqa: F401  (fixtures)
    LiveServer,
    db_url,
    grocery_root,
    pg_url,
    photo_model_dir,
    photo_retrainer,
    photo_tagger_factory,
    val_rows,
)

from skutag.service.app import create_app
from skutag.service.config import ServiceConfig


def test_concurrent_uploads_of_the_same_photo_and_id(db_url, tmp_path, photo_model_dir, val_rows):  # noqa: F811
    settings = ServiceConfig(db_url=db_url, model_dir=str(photo_model_dir), tag_concurrency=2)
    app = create_app(settings, tagger_factory=photo_tagger_factory(photo_model_dir), retrainer=photo_retrainer)
    token = app.state.store.create_token("load")
    photos = [row.image.read_bytes() for row in val_rows[:6]]
    jobs = []
    for round_ in range(4):
        for i, data in enumerate(photos):
            jobs.append((f"same-{i}", data))  # the same id and photo, 4 times
            jobs.append((f"r{round_}-p{i}", data))  # the same photo under new ids
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120,
                                                 headers={"Authorization": f"Bearer {token}"}) as client:
        def send(job):
            pid, data = job
            return client.post("/v1/products", data={"id": pid},
                               files={"image": ("p.jpg", data, "image/jpeg")})

        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(send, jobs))
        assert [r.status_code for r in responses] == [200] * len(jobs), [r.text for r in responses if r.status_code != 200]
        listed = client.get("/v1/products", params={"limit": 500}).json()
        assert listed["total"] == len(photos) + 4 * len(photos)
        hits = client.get("/v1/stats").json()["cache_hits"]
        # the first upload of each photo always needs the model; the others may race past the cache
        assert sum(hits.values()) <= len(jobs) - len(photos)
        for i in range(len(photos)):
            product = client.get(f"/v1/products/same-{i}").json()
            assert product["path"] and product["prediction"]["model_version"] == "photo-base"
    app.state.store.close()
