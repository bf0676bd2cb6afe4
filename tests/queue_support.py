"""Helpers for the queue tests: a light but real tagger, GroceryStore catalogs, worker processes.

``TitleTagger`` decodes each photo (``vision.image``; a broken photo fails that product), hashes
its bytes, and predicts the category from the title with a TF-IDF + logistic regression model
trained on GroceryStore *train* titles and loaded from a model folder, once per process. It is
fast enough for a 200-product batch with a worker killed in the middle to run in seconds.

Worker processes import it as ``queue_support:load_title_tagger`` (tests/ is put on PYTHONPATH).
Test knobs come from the environment so that they reach ``celery worker`` children:
``SKUTAG_TEST_DELAY`` (seconds per product), ``SKUTAG_TEST_EXEC_LOG`` (append
"load|start|end <SKUTAG_TEST_WORKER> <pid> <id>" lines), ``SKUTAG_TEST_FLAKY_DIR`` (titles with FLAKY raise
ConnectionError on their first two tries), ``SKUTAG_TEST_CRASH`` (titles with CRASH kill the
process).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from skutag.fusion.result import Alternative, Decision, TagResult
from grocery import grocery_manifest
from skutag.catalog import Product
from skutag.tagger import BrandlessTagger
from skutag.vision.image import load_rgb_array

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
MODEL_FILE = "title_model.pkl"


def grocery_rows(manifest: Path, split: str, limit: int | None = None, step: int = 1) -> list[dict]:
    """Catalog rows of every ``step``-th photo of ``split`` (``manifest``: the GroceryStore manifest the caller
    checked for, ``shared_path("grocery", "manifest.csv")``)."""
    rows = [row.catalog_row(f"{split}-{i:04d}") for i, row in enumerate(grocery_manifest(split))][::step]
    return rows[:limit] if limit else rows


def write_catalog(rows: Sequence[dict], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def train_title_model(rows: Sequence[dict], model_dir: Path) -> Path:
    """Fit TF-IDF (char n-grams) + logistic regression on titles -> category; pickle it into ``model_dir``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=1),
        LogisticRegression(max_iter=300, C=5.0),
    )
    model.fit([r["title"] for r in rows], [r["category"] for r in rows])
    model_dir.mkdir(parents=True, exist_ok=True)
    with (model_dir / MODEL_FILE).open("wb") as handle:
        pickle.dump(model, handle)
    return model_dir


def cached_title_model(manifest: Path) -> Path:
    """The title model trained once on GroceryStore train (every 4th row), kept under SKUTAG_HOME."""
    import sklearn

    from skutag.paths import artifact_dir

    folder = artifact_dir("test-queue") / f"title-model-sklearn{sklearn.__version__}"
    if not (folder / MODEL_FILE).exists():
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        train_title_model(grocery_rows(manifest, "train", step=4), tmp)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process made it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


class TitleTagger(BrandlessTagger):
    """A real (small) tagger: photo decoded and hashed, category predicted from the title."""

    def __init__(self, model, model_version: str):
        self.model = model
        self.model_version = model_version
        self.delay = float(os.environ.get("SKUTAG_TEST_DELAY", "0") or 0)
        self.exec_log = os.environ.get("SKUTAG_TEST_EXEC_LOG")
        self.flaky_dir = os.environ.get("SKUTAG_TEST_FLAKY_DIR")
        self.crash = os.environ.get("SKUTAG_TEST_CRASH") == "1"

    def categories(self) -> list[str]:
        return sorted(str(c) for c in self.model.classes_)

    def tag_results(self, products: Sequence[Product]) -> list[TagResult]:
        for product in products:
            self._log("start", product.id)
            self._maybe_fail(product)
        titles = [p.title or "" for p in products]
        proba = self.model.predict_proba(titles)
        results = []
        for product, row in zip(products, proba):
            if product.image is not None:
                pixels = load_rgb_array(product.image)  # ImageError on a broken photo
                digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:12]
            else:
                digest = "-"
            order = np.argsort(row)[::-1][:3]
            paths = [self.model.classes_[i] for i in order]
            confidence = float(row[order[0]])
            results.append(TagResult(
                id=product.id,
                label=paths[0].split(" > ")[-1],
                path=paths[0],
                confidence=confidence,
                decision=Decision.AUTO if confidence >= 0.6 else Decision.REVIEW,
                alternatives=tuple(Alternative(p.split(" > ")[-1], p, float(row[i])) for p, i in zip(paths, order)),
                contributions={"title": 1.0},
                reasons=(f"pixels:{digest}",),
                model_version=self.model_version,
            ))
            if self.delay:
                time.sleep(self.delay)
            self._log("end", product.id)
        return results

    def _maybe_fail(self, product: Product) -> None:
        title = product.title or ""
        if self.crash and "CRASH" in title:
            os._exit(17)
        if self.flaky_dir and "FLAKY" in title:
            marker = Path(self.flaky_dir) / f"{product.id}.tries"
            tries = int(marker.read_text()) if marker.exists() else 0
            marker.write_text(str(tries + 1))
            if tries < 2:
                raise ConnectionError(f"image share not reachable (try {tries + 1})")

    def _log(self, event: str, product_id: str) -> None:
        if self.exec_log:
            with open(self.exec_log, "a", encoding="utf-8") as handle:
                handle.write(f"{event} {os.environ.get('SKUTAG_TEST_WORKER', '-')} {os.getpid()} {product_id}\n")


def load_title_tagger(model_dir: str | None = None, config=None) -> TitleTagger:
    """Tagger factory (``queue_support:load_title_tagger``): loads the pickled title model once."""
    if model_dir is None:
        raise FileNotFoundError("load_title_tagger needs model_dir (a folder with title_model.pkl)")
    path = Path(model_dir) / MODEL_FILE
    with path.open("rb") as handle:
        model = pickle.load(handle)
    tagger = TitleTagger(model, model_version=f"title-tfidf-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}")
    tagger._log("load", "-")  # tests count model loads per process
    return tagger


# --- processes --------------------------------------------------------------------------

def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("SKUTAG_QUEUE__RESULT_EXPIRES", "3600")  # test results leave the backend within the hour
    env.update(extra)
    return env


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def start_worker(broker: str, queue: str, model_dir: Path | None, name: str, log_path: Path, *,
                 backend: str | None = None,
                 concurrency: int = 1, pool: str = "prefork", env: dict | None = None,
                 extra_args: Sequence[str] = ()) -> subprocess.Popen:
    """A real ``skutag worker`` (Celery worker) process in its own process group."""
    cmd = [sys.executable, "-m", "skutag", "worker", "--broker", broker, "--queue", queue,
           "--concurrency", str(concurrency), "--pool", pool, "--hostname", f"{name}@%h", "--loglevel", "INFO"]
    if model_dir is not None:  # the light title tagger; None = the real pipeline (cold start)
        cmd += ["--tagger", "queue_support:load_title_tagger", "--model", str(model_dir)]
    if backend:
        cmd += ["--backend", backend]
    cmd += list(extra_args)
    log = log_path.open("w")
    return subprocess.Popen(cmd, cwd=ROOT, env=env or subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_process_group(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- brokers ----------------------------------------------------------------------------

BROKERS = {
    # name: (broker URL, result backend URL, port that must be open)
    "redis": ("redis://127.0.0.1:6379/11", "redis://127.0.0.1:6379/11", 6379),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", "redis://127.0.0.1:6379/12", 5672),
}
# Redis broker: redeliver a dead worker's task after 6 s (default 300 s), sweep every second
FAST_REDELIVERY_ENV = {"SKUTAG_QUEUE__VISIBILITY_TIMEOUT": "6", "SKUTAG_QUEUE__RESTORE_INTERVAL": "1"}


def require_broker(name: str) -> tuple[str, str]:
    import pytest

    broker, backend, port = BROKERS[name]
    for needed in {port, 6379}:
        if not port_open(needed):
            pytest.fail(f"{name}: nothing listens on 127.0.0.1:{needed} (scripts/start_services.sh starts it)")
    return broker, backend


def delete_queue(broker: str, queue: str) -> None:
    from kombu import Connection

    with Connection(broker, connect_timeout=5) as connection:
        try:
            connection.default_channel.queue_delete(queue)
        except Exception:  # already gone
            pass


def wait_until_ready(log_path: Path, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        if " ready." in text:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{text[-3000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"worker not ready after {timeout} s:\n{log_path.read_text(errors='replace')[-3000:]}")
