"""Shared helpers for the store / service / dashboard tests and bench/bench_service.py.

``PhotoTagger`` is a small but real tagger: a scikit-learn logistic regression on colour
histograms and a coarse thumbnail of GroceryStore photos. It follows the ``Tagger`` protocol,
saves itself as a model folder, and can be retrained on corrections, so the service's whole loop
(tag -> review -> correct -> retrain -> not-worse check -> promote) runs without the full pipeline. Like a
fusion bundle it keeps the histogram of its out-of-fold confidences on its training rows (the drift chart's
reference).
"""

from __future__ import annotations

import io
import json
import pickle
import socket
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
from conftest import in_ci, skip_or_fail  # noqa: F401  (the one skip-or-fail rule)
from grocery import GroceryRow, grocery_manifest
from PIL import Image

from skutag.fusion.evidence import Evidence, VisionEvidence
from skutag.fusion.result import Alternative, Decision, TagResult
from skutag.catalog import Product
from skutag.fusion.drift import ConfidenceHistogram
from skutag.tagger import BrandlessTagger, TaggedBatch
from skutag.service.retrain import RetrainRequest
from skutag.vision.image import ImageError, load_image

TEST_CLASSES = (
    "Fruit > Banana > Banana",
    "Fruit > Lemon > Lemon",
    "Fruit > Lime > Lime",
    "Fruit > Melon > Watermelon",
    "Vegetables > Carrots > Carrots",
    "Vegetables > Pepper > Red-Bell-Pepper",
    "Packages > Oat-Milk > Oatly-Oat-Milk",
    "Packages > Juice > Tropicana-Apple-Juice",
)


def grocery_rows(root: Path, split: str, classes: Sequence[str] | None = None) -> list[GroceryRow]:
    """The photos of ``split`` whose category path is one of ``classes`` (all when None); ``root``: the
    GroceryStore folder the caller checked for."""
    return [row for row in grocery_manifest(split) if not classes or row.path in classes]


def features(source) -> np.ndarray:
    """4x4x4 RGB histogram + 6x6 thumbnail in RGB: 172 numbers in [0, 1]."""
    image = load_image(source)
    small = image.resize((48, 48), Image.BILINEAR)
    pixels = np.asarray(small, dtype=np.float32) / 255.0
    quantised = np.minimum((pixels * 4).astype(int), 3)
    codes = quantised[..., 0] * 16 + quantised[..., 1] * 4 + quantised[..., 2]
    histogram = np.bincount(codes.ravel(), minlength=64) / codes.size
    thumb = np.asarray(image.resize((6, 6), Image.BILINEAR), dtype=np.float32).ravel() / 255.0
    return np.concatenate([histogram * 4.0, thumb])


class PhotoTagger(BrandlessTagger):
    """``Tagger``: photo -> one of the fitted category paths, with a probability and a decision."""

    def __init__(self, estimator, version: str, threshold: float = 0.6,
                 training_confidences: ConfidenceHistogram | None = None):
        self.estimator = estimator
        self.model_version = version
        self.threshold = threshold
        self.paths = tuple(str(c) for c in estimator.classes_)
        self._training_confidences = training_confidences

    @property
    def training_confidences(self) -> ConfidenceHistogram | None:
        return self._training_confidences

    def categories(self) -> list[str]:
        return sorted(self.paths)

    def tag(self, products: Sequence[Product], *, audit: bool = True) -> TaggedBatch:
        """Results, and evidence whose vision embedding is the photo's features (the service keeps their look)."""
        results, vectors = self._tag(products)
        evidence = [Evidence(p.id, vision=VisionEvidence(embedding=vectors[i], model_id="photo-features"))
                    if i in vectors else None for i, p in enumerate(products)]
        return TaggedBatch(results, evidence)

    def tag_results(self, products: Sequence[Product]) -> list[TagResult]:
        return self._tag(products)[0]

    def _tag(self, products: Sequence[Product]) -> tuple[list[TagResult], dict[int, np.ndarray]]:
        results: list[TagResult | None] = [None] * len(products)
        rows, index = [], []
        for i, product in enumerate(products):
            if product.image is None:
                results[i] = TagResult.failed(product.id, "this model needs a photo")
                continue
            try:
                rows.append(features(product.image))
                index.append(i)
            except ImageError as exc:
                results[i] = TagResult.failed(product.id, str(exc))
        if rows:
            probabilities = self.estimator.predict_proba(np.vstack(rows))
            for i, proba in zip(index, probabilities):
                results[i] = self._result(products[i].id, proba)
        return results, dict(zip(index, rows))  # type: ignore[return-value]

    def _result(self, product_id: str, proba: np.ndarray) -> TagResult:
        order = np.argsort(proba)[::-1]
        best = self.paths[order[0]]
        confidence = float(proba[order[0]])
        decision = Decision.AUTO if confidence >= self.threshold else (
            Decision.REVIEW if confidence >= 0.3 else Decision.MANUAL)
        alternatives = tuple(Alternative(self.paths[j].split(" > ")[-1], self.paths[j], float(proba[j]))
                             for j in order[1:4])
        return TagResult(id=product_id, label=best.split(" > ")[-1], path=best, confidence=confidence,
                         decision=decision, alternatives=alternatives, contributions={"vision": 1.0},
                         reasons=(f"confidence {confidence:.2f} {'>=' if confidence >= self.threshold else '<'} "
                                  f"threshold {self.threshold:.2f}",),
                         model_version=self.model_version)

    def save(self, model_dir: Path, training: dict | None = None) -> Path:
        model_dir.mkdir(parents=True, exist_ok=False)
        held_out = self._training_confidences
        (model_dir / "model.pkl").write_bytes(pickle.dumps({"estimator": self.estimator,
                                                           "version": self.model_version,
                                                           "threshold": self.threshold,
                                                           "training": training or {},
                                                           "training_confidences": held_out.to_json()
                                                           if held_out else None}))
        (model_dir / "manifest.json").write_text(json.dumps({"version": self.model_version}))
        return model_dir

    @classmethod
    def load(cls, model_dir: str | Path) -> "PhotoTagger":
        data = pickle.loads((Path(model_dir) / "model.pkl").read_bytes())
        held_out = data["training_confidences"]
        tagger = cls(data["estimator"], data["version"], data["threshold"],
                     ConfidenceHistogram.from_json(held_out) if held_out else None)
        tagger.training = data["training"]
        return tagger


def _estimator():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))


def fit_estimator(X: np.ndarray, y: Sequence[str], classes: Sequence[str]):
    missing = [c for c in classes if c not in set(y)]  # a class without a row could never be answered
    if missing:
        raise ValueError(f"no training rows for {missing}")
    return _estimator().fit(X, list(y))


HELD_OUT_FOLDS = 3


def held_out_confidences(X: np.ndarray, y: Sequence[str]) -> np.ndarray | None:
    """Each training row's top-class probability from a model fitted without its fold (``HELD_OUT_FOLDS``
    stratified folds, as a fusion model's out-of-fold answers); None when a class has too few rows for them."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    _, counts = np.unique(np.asarray(y, dtype=object), return_counts=True)
    if counts.min() < HELD_OUT_FOLDS:
        return None
    folds = StratifiedKFold(HELD_OUT_FOLDS, shuffle=True, random_state=0)
    return cross_val_predict(_estimator(), X, list(y), cv=folds, method="predict_proba").max(axis=1)


def _held_out_histogram(X: np.ndarray, y: Sequence[str]) -> ConfidenceHistogram | None:
    confidences = held_out_confidences(X, y)
    return None if confidences is None else ConfidenceHistogram.of(confidences)


def train_photo_tagger(rows: Sequence[GroceryRow], version: str | None = None) -> tuple[PhotoTagger, dict]:
    X = np.vstack([features(row.image) for row in rows])
    y = [row.path for row in rows]
    estimator = fit_estimator(X, y, sorted(set(y)))
    training = {"X": X, "y": y}
    tagger = PhotoTagger(estimator, version or f"photo-{uuid.uuid4().hex[:8]}",
                         training_confidences=_held_out_histogram(X, y))
    tagger.training = training
    return tagger, training


def photo_tagger_factory(default_dir: Path):
    """``tagger_factory`` for create_app: None -> the base model folder."""
    cache: dict[str, PhotoTagger] = {}

    def load(model_dir: str | None) -> PhotoTagger:
        key = str(model_dir or default_dir)
        if key not in cache:
            cache[key] = PhotoTagger.load(key)
        return cache[key]

    return load


def photo_retrainer(request: RetrainRequest) -> Path:
    """``Retrainer``: the base model's training rows + the corrections (a correction of the same photo wins)."""
    base = PhotoTagger.load(request.base_model_dir)
    X_base = base.training["X"]
    y_base = [request.renames.get(path, path) for path in base.training["y"]]  # categories renamed since
    rows, labels = [], []
    for product in request.corrections:
        if product.image is None or not product.category:
            continue
        rows.append(features(product.image))
        labels.append(product.category)
    X = np.vstack([X_base] + rows) if rows else X_base
    # corrections count 3x: they are the freshest, human-checked evidence
    weights = np.concatenate([np.ones(len(y_base)), np.full(len(labels), 3.0)])
    y = y_base + labels
    estimator = _estimator().fit(X, y, logisticregression__sample_weight=weights)
    tagger = PhotoTagger(estimator, f"photo-{uuid.uuid4().hex[:8]}", base.threshold, _held_out_histogram(X, y))
    return tagger.save(request.out_dir, {"X": X, "y": y})


def reencode(path: Path, size: int = 256, quality: int = 70) -> bytes:
    """A resized, re-encoded copy of a photo (a near-duplicate)."""
    image = load_image(path)
    image = image.resize((size, size), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def huge_png(side: int = 6300) -> bytes:
    """A photo-sized PNG that compresses to little (131 KB at 6300 x 6300, 119 MB decoded): flat colour with a
    few boxes and a label. The memory test and bench/bench_service_load.py send it."""
    from PIL import ImageDraw

    image = Image.new("RGB", (side, side), (236, 232, 220))
    draw = ImageDraw.Draw(image)
    for i in range(6):
        draw.rectangle((400 + i * 900, 1200, 1000 + i * 900, 5000), fill=(40 * i, 90, 200 - 30 * i))
    draw.text((600, 600), "SKUTAG 1.5L", fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PG_BASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


def postgres_reachable(dsn: str = PG_DSN) -> str | None:
    """None when PostgreSQL answers at ``dsn``, else the reason."""
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=3):
            return None
    except Exception as exc:  # any connection problem means: skip (fail under CI) with this reason
        return f"PostgreSQL ({dsn}) unreachable ({type(exc).__name__}: {exc})"


def require_postgres(dsn: str = PG_DSN) -> None:
    """Skip without PostgreSQL; fail under CI (scripts/start_services.sh starts it there)."""
    reason = postgres_reachable(dsn)
    if reason:
        skip_or_fail(reason + "; scripts/start_services.sh starts it")


def create_pg_schema() -> tuple[str, str]:
    """A fresh schema for one test run: (schema, SQLAlchemy URL whose search_path is that schema)."""
    import psycopg

    schema = f"skutag_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema, f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"


def drop_pg_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# ---------------------------------------------------------------- pytest fixtures (import them by name)
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def pg_url():
    """A PostgreSQL URL on a fresh schema, dropped after the test session."""
    require_postgres()
    schema, url = create_pg_schema()
    yield url
    drop_pg_schema(schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """One database per test: a SQLite file, or the PostgreSQL test schema emptied first."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'skutag.db'}"
    url = request.getfixturevalue("pg_url")
    _empty_pg_schema(url)
    return url


def _empty_pg_schema(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [row[0] for row in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))]
        for table in tables:
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="session")
def grocery_root():
    from conftest import shared_path

    return shared_path("grocery")


@pytest.fixture(scope="session")
def photo_model_dir(grocery_root, tmp_path_factory):
    """A PhotoTagger trained on 8 photos of each of 8 GroceryStore classes, saved as a model folder."""
    import random

    rows = grocery_rows(grocery_root, "train", TEST_CLASSES)
    random.Random(0).shuffle(rows)
    base = [row for cls in TEST_CLASSES for row in [r for r in rows if r.path == cls][:8]]
    tagger, training = train_photo_tagger(base, version="photo-base")
    return tagger.save(tmp_path_factory.mktemp("models") / "base", training)


@pytest.fixture(scope="session")
def val_rows(grocery_root):
    return grocery_rows(grocery_root, "val", TEST_CLASSES)


class LiveServer:
    """A real uvicorn server for an app on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = None

    def __enter__(self) -> "LiveServer":
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


@pytest.fixture(scope="module")
def playwright_sync():
    """Playwright driving the real Chromium (Debian's package); CI always has it, so a skip there fails."""
    import os

    if not os.access(CHROMIUM, os.X_OK):
        skip_or_fail(f"{CHROMIUM} missing: apt-get install chromium chromium-driver (scripts/start_services.sh does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


def make_client(db, model_dir, tmp_path, **overrides):
    """A TestClient on a service with the photo model and a bearer token for it."""
    from fastapi.testclient import TestClient

    from skutag.service.app import create_app
    from skutag.service.config import ServiceConfig

    settings = ServiceConfig(db_url=db, model_dir=str(model_dir), bundles_dir=str(tmp_path / "bundles"), **overrides)
    app = create_app(settings, tagger_factory=photo_tagger_factory(model_dir), retrainer=photo_retrainer)
    token = app.state.store.create_token("tests")
    return TestClient(app), {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(db_url, photo_model_dir, tmp_path):  # noqa: F811
    """The API with small upload limits and a retraining that needs few corrections."""
    client, auth = make_client(db_url, photo_model_dir, tmp_path, min_corrections_to_retrain=5, min_holdout=3,
                               holdout_fraction=0.3, max_upload_bytes=2_000_000, max_request_bytes=4_000_000)
    with client:
        yield client, auth
    client.app.state.store.close()


def upload(client, auth, path_or_bytes, **fields):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return client.post("/v1/products", headers=auth, files={"image": ("photo.jpg", data, "image/jpeg")},
                       data={k: str(v) for k, v in fields.items()})
