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


def test_concurrent_uploads_of_one_photo_run_the_model_once(tmp_path, photo_model_dir, val_rows):  # noqa: F811
    """Single flight: while the first upload of a photo is in the model, the others wait for its answer (the
    duplicate cache exists to save exactly that work); 10 of 10 ran the model before."""
    import threading
    import time

    from service_fixtures import PhotoTagger

    class Counting(PhotoTagger):
        calls = 0
        lock = threading.Lock()

        def tag(self, products, *, audit=True):
            with Counting.lock:
                Counting.calls += len(products)
            time.sleep(0.5)  # long enough for every upload to arrive while the first is in the model
            return super().tag(products, audit=audit)

    base = PhotoTagger.load(photo_model_dir)
    counting = Counting(base.estimator, "counting-1")
    settings = ServiceConfig(db_url=f"sqlite:///{tmp_path / 'flight.db'}", tag_concurrency=4)
    app = create_app(settings, tagger_factory=lambda _: counting, retrainer=None)
    token = app.state.store.create_token("flight")
    data = val_rows[0].image.read_bytes()
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120,
                                                 headers={"Authorization": f"Bearer {token}"}) as client:
        def send(i):
            return client.post("/v1/products", data={"id": f"copy-{i}", "title": "Banana"},
                               files={"image": ("p.jpg", data, "image/jpeg")})

        with ThreadPoolExecutor(max_workers=10) as pool:
            responses = list(pool.map(send, range(10)))
        assert [r.status_code for r in responses] == [200] * 10
        paths = {r.json()["path"] for r in responses}
        assert len(paths) == 1 and Counting.calls == 1
        assert sum(r.json()["cache_hit"] == "exact" for r in responses) == 9
    app.state.store.close()


def test_the_service_prepares_a_tagger_before_serving_it(tmp_path, photo_model_dir):  # noqa: F811
    """Its sessions (and OCR's INT8 copies in a fresh SKUTAG_HOME) are built at start, before any upload."""
    from service_fixtures import PhotoTagger

    class Recording(PhotoTagger):
        prepared = 0

        def prepare(self):
            Recording.prepared += 1

    base = PhotoTagger.load(photo_model_dir)
    tagger = Recording(base.estimator, "recording-1")
    app = create_app(ServiceConfig(db_url=f"sqlite:///{tmp_path / 'p.db'}"), tagger_factory=lambda _: tagger,
                     retrainer=None)
    assert Recording.prepared == 0
    app.state.service.start()
    assert Recording.prepared == 1 and app.state.service.tagger is tagger
    app.state.store.close()
