"""The stats page's drift and the retraining clock, on real models and real databases (SQLite and PostgreSQL):
the confidence histogram of this week's answers against the served bundle's out-of-fold training confidences
(a titles-only fusion bundle trained here), and ``service.retrain_every_hours`` starting a retraining in the
app's background thread when verdicts came in, and not when none did."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from fusion_fixtures import cn_titles_by_leaf, write_catalog
from service_fixtures import (  # noqa: F401  (fixtures)
    PhotoTagger,
    db_url,
    grocery_root,
    pg_url,
    photo_model_dir,
    photo_retrainer,
    photo_tagger_factory,
    val_rows,
)
from sqlalchemy import update

from skutag.config import ConfigError, SkutagConfig
from skutag.fusion import bundle as bundles
from skutag.fusion.drift import ConfidenceHistogram
from skutag.service.app import create_app
from skutag.service.config import ServiceConfig
from skutag.service.monitor import DRIFT_DAYS, charts, served_quality
from skutag.store.models import PredictionRow
from skutag.training import train_catalog

TRAIN_TITLES, ANSWER_TITLES = 20, 8  # per category
TICK_HOURS = 0.2 / 3600  # the test clock: a check every 0.2 s


@pytest.fixture(scope="module")
def title_bundle(tmp_path_factory):
    """A titles-only fusion bundle on 20 titles of each of the 6 largest cn_titles categories, and 8 other titles
    of each to answer."""
    by_leaf = cn_titles_by_leaf()
    leaves = sorted(by_leaf, key=lambda leaf: (-len(by_leaf[leaf]), leaf))[:6]
    rows = [{"id": f"t{i}-{j}", "title": title, "category": leaf}
            for i, leaf in enumerate(leaves) for j, title in enumerate(by_leaf[leaf][:TRAIN_TITLES])]
    folder = tmp_path_factory.mktemp("drift")
    config = SkutagConfig.load(environ={}, overrides={"fusion.cv": 3, "fusion.modalities": ("title",),
                                                      "decision.audit_rate": 0.0})
    train_catalog(write_catalog(folder / "train.jsonl", rows), folder / "model", config)
    answers = [title for leaf in leaves for title in by_leaf[leaf][TRAIN_TITLES:TRAIN_TITLES + ANSWER_TITLES]]
    return folder / "model", config, answers


def test_drift_compares_this_weeks_answers_of_the_served_model_with_its_training_confidences(
        db_url, title_bundle, tmp_path):  # noqa: F811
    model_dir, config, answers = title_bundle
    model, _, _ = bundles.load(model_dir)
    training = ConfidenceHistogram.of(model.oof_[1])  # the bundle's out-of-fold confidences on its rows
    app = create_app(ServiceConfig(db_url=db_url, model_dir=str(model_dir), bundles_dir=str(tmp_path / "b")),
                     config=config)
    store = app.state.store
    auth = {"Authorization": f"Bearer {store.create_token('drift')}"}
    with TestClient(app) as client:
        empty = client.get("/v1/stats", headers=auth).json()["quality"]["drift"]
        assert empty["training"] == training.to_json() and training.n == 6 * TRAIN_TITLES
        assert empty["this_week"]["n"] == 0 and empty["total_variation"] is None and empty["days"] == DRIFT_DAYS
        assert "no data yet" in charts(served_quality(app.state.service))["drift"]

        confidence = {}
        for i, title in enumerate(answers):
            response = client.post("/v1/products", headers=auth, data={"id": f"a{i}", "title": title})
            assert response.status_code == 200, response.text
            confidence[f"a{i}"] = response.json()["confidence"]
        # an answer of 8 days ago is not this week's; one of another model version is not the served model's
        with store.session() as session:
            session.execute(update(PredictionRow).where(PredictionRow.product_id == "a0").values(
                created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=8)))
            session.execute(update(PredictionRow).where(PredictionRow.product_id == "a1").values(
                model_version="older/v0001"))
        stats = client.get("/v1/stats", headers=auth).json()
        drift = stats["quality"]["drift"]
        week = ConfidenceHistogram.of([c for pid, c in confidence.items() if pid not in ("a0", "a1")])
        assert drift["model_version"] == stats["serving"] == app.state.service.model_version
        assert drift["this_week"] == week.to_json() and week.n == len(answers) - 2
        assert drift["training"] == training.to_json()
        by_hand = 0.5 * np.abs(np.subtract(week.fractions, training.fractions)).sum()
        assert drift["total_variation"] == pytest.approx(by_hand, abs=1e-4) and 0 < by_hand < 1
        per_day = stats["quality"]["per_day"]  # 30 days of every model's answers: a0 and a1 count there
        assert sum(day["answers"] for day in per_day) == len(answers) and per_day[-1]["answers"] == len(answers) - 1

        svg = charts(served_quality(app.state.service))["drift"]
        assert svg.count('class="hist week"') == sum(f > 0 for f in week.fractions)
        assert svg.count('class="hist training"') == sum(f > 0 for f in training.fractions)
        assert "no data yet" not in svg and "<script" not in svg and "style=" not in svg
    store.close()


def test_a_tagger_without_training_confidences_shows_why_the_drift_chart_is_empty(db_url, photo_model_dir,  # noqa: F811
                                                                                   tmp_path, val_rows):  # noqa: F811
    """A tagger that keeps no training confidences (``Tagger.training_confidences`` None, as the cold start's):
    this week's histogram and no drift number; the chart says why it is empty."""
    served = PhotoTagger.load(photo_model_dir)
    assert served.training_confidences is not None and served.training_confidences.n == 64
    bare = PhotoTagger(served.estimator, served.model_version, served.threshold)  # keeps none
    app = create_app(ServiceConfig(db_url=db_url, model_dir=str(photo_model_dir)), tagger_factory=lambda _: bare,
                     retrainer=photo_retrainer)
    auth = {"Authorization": f"Bearer {app.state.store.create_token('bare')}"}
    with TestClient(app) as client:
        client.post("/v1/products", headers=auth, files={"image": ("p.jpg", val_rows[0].image.read_bytes(),
                                                                   "image/jpeg")})
        drift = client.get("/v1/stats", headers=auth).json()["quality"]["drift"]
        assert drift["training"] is None and drift["total_variation"] is None and drift["this_week"]["n"] == 1
        svg = charts(served_quality(app.state.service))["drift"]
        assert "no data yet" in svg and "keeps no training confidences" in svg and 'class="hist' not in svg
    app.state.store.close()


# ------------------------------------------------------------------------------------------- the clock
def _clocked_app(db, model_dir, tmp_path, every_hours: float):
    settings = ServiceConfig(db_url=db, model_dir=str(model_dir), bundles_dir=str(tmp_path / "bundles"),
                             min_corrections_to_retrain=5, min_holdout=3, holdout_fraction=0.3,
                             retrain_every_hours=every_hours)
    app = create_app(settings, tagger_factory=photo_tagger_factory(model_dir), retrainer=photo_retrainer)
    schedule = app.state.service.retraining.schedule
    ticks = []
    check = schedule.check

    def counted():  # the clock's real check, counted
        ticks.append(time.monotonic())
        return check()

    schedule.check = counted
    return app, ticks


def _wait(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_clock_retrains_only_after_new_verdicts(db_url, photo_model_dir, tmp_path, val_rows):  # noqa: F811
    # no verdicts: the clock ticks and starts nothing
    app, ticks = _clocked_app(db_url, photo_model_dir, tmp_path, TICK_HOURS)
    service, store = app.state.service, app.state.store
    auth = {"Authorization": f"Bearer {store.create_token('clock')}"}
    with TestClient(app) as client:
        assert service.retraining.schedule.running
        for i, row in enumerate(val_rows[:24]):
            answer = client.post("/v1/products", headers=auth, data={"id": f"s{i:02d}"},
                                 files={"image": ("p.jpg", row.image.read_bytes(), "image/jpeg")}).json()
            assert answer["model_version"] == "photo-base"
        _wait(lambda: len(ticks) >= 3)
        assert service.retrain_job.state == "idle" and service.retraining.last_started is None
        cadence = client.get("/v1/stats", headers=auth).json()["retrain_cadence"]
        assert cadence["retrain_every_hours"] == TICK_HOURS and cadence["verdicts_since_last_retraining"] == 0
        assert dt.datetime.fromisoformat(cadence["next_scheduled_check"]) <= \
            dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    assert not service.retraining.schedule.running and service.retraining.schedule.next_at is None
    store.close()

    # the verdicts come in while no clock runs (so the retraining sees all of them) ...
    quiet = create_app(ServiceConfig(db_url=db_url, model_dir=str(photo_model_dir)),
                       tagger_factory=photo_tagger_factory(photo_model_dir), retrainer=photo_retrainer)
    with TestClient(quiet) as client:
        assert not quiet.state.service.retraining.schedule.running  # retrain_every_hours = 0
        for i, row in enumerate(val_rows[:24]):
            verdict = client.post(f"/v1/products/s{i:02d}/corrections", headers=auth, json={"category": row.path})
            assert verdict.status_code == 201, verdict.text
    quiet.state.store.close()

    # ... and the clock of the next start retrains once, with the not-worse check, and not again without new ones
    app, ticks = _clocked_app(db_url, photo_model_dir, tmp_path, TICK_HOURS)
    service, store = app.state.service, app.state.store
    with TestClient(app):
        _wait(lambda: service.retrain_job.state not in ("idle", "running"))
        job = service.retrain_job
        assert job.state in ("promoted", "rejected"), job
        assert service.retraining.last_started is not None  # the clock's start (retrain_after_verdicts is 0)
        assert job.comparison["train_n"] + job.comparison["holdout_n"] == 24
        assert (job.state == "promoted") == (job.comparison["candidate_accuracy"] >= job.comparison["current_accuracy"])
        seen = len(ticks)
        _wait(lambda: len(ticks) >= seen + 3)
        assert service.retrain_job is job  # no new verdicts since: nothing started
        versions = [m for m in store.list_models() if m.parent_version == "photo-base"]
        assert len(versions) == 1 and versions[0].version == job.candidate_version
    store.close()


def test_the_clocks_check_waits_for_a_running_retraining(tmp_path, photo_model_dir, val_rows):  # noqa: F811
    """Called directly (no thread, no waiting): with new verdicts but a retraining running, it starts nothing."""
    app, ticks = _clocked_app(f"sqlite:///{tmp_path / 'check.db'}", photo_model_dir, tmp_path, 24.0)
    service = app.state.service
    auth = {"Authorization": f"Bearer {app.state.store.create_token('check')}"}
    with TestClient(app) as client:
        schedule = service.retraining.schedule
        assert schedule.running and schedule.next_at > dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)
        assert service.retraining.on_schedule() is None  # nothing to learn from
        client.post("/v1/products", headers=auth, data={"id": "one"},
                    files={"image": ("p.jpg", val_rows[0].image.read_bytes(), "image/jpeg")})
        client.post("/v1/products/one/accept", headers=auth)
        with service.retraining.lock:  # as while a retraining runs
            assert service.retraining.on_schedule() is None
        assert service.retraining.last_started is None
        assert service.retraining.on_schedule() is None  # one verified product is too few: counted, not started
        assert service.retraining.last_started is not None and service.retrain_job.state == "idle"
        assert service.retraining.cadence()["verdicts_since_last_retraining"] == 0
    assert ticks == []  # the 24-hour clock never fired
    app.state.store.close()


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_retrain_every_hours_is_checked_like_the_other_settings(value):
    with pytest.raises(ConfigError, match="retrain_every_hours"):
        SkutagConfig.load(environ={"SKUTAG_SERVICE__RETRAIN_EVERY_HOURS": value})
    assert SkutagConfig.load(environ={"SKUTAG_SERVICE__RETRAIN_EVERY_HOURS": "1.5"}).service.retrain_every_hours == 1.5
