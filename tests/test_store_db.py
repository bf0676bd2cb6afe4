"""The product database on SQLite and PostgreSQL: migrations, products, predictions, corrections,
resource and model versions, tokens and operator logins."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from service_fixtures import db_url, pg_url  # noqa: F401  (fixtures)

from skutag.fusion.result import Alternative, Decision, TagResult
from skutag.store import Conflict, NotFound, Store, current_revision, head_revision, normalise_url, upgrade
from skutag.store.db import DatabaseUrlError, open_engine
from skutag.store.dedup import fingerprint
from skutag.store.models import Base


@pytest.fixture
def store(db_url):  # noqa: F811
    store = Store.open(db_url)
    yield store
    store.close()


def _result(pid: str, path: str, confidence: float = 0.9, decision: Decision = Decision.AUTO) -> TagResult:
    return TagResult(id=pid, label=path.split(" > ")[-1], path=path, confidence=confidence, decision=decision,
                     alternatives=(Alternative("Lime", "Fruit > Lime > Lime", 0.05),),
                     contributions={"vision": 0.7, "title": 0.3}, reasons=("confidence 0.90 >= 0.60",))


def test_migrations_create_the_models_schema_and_are_idempotent(db_url):  # noqa: F811
    engine = open_engine(db_url)
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision()
    assert upgrade(engine) == head_revision()  # second run: nothing to do
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    engine.dispose()


def test_url_normalisation_picks_psycopg3_and_refuses_other_databases(tmp_path):
    assert normalise_url("postgresql://u@h/db").startswith("postgresql+psycopg://")
    assert normalise_url("postgres://u@h/db").startswith("postgresql+psycopg://")
    assert normalise_url(str(tmp_path / "x.db")).startswith("sqlite:///")
    with pytest.raises(DatabaseUrlError, match="unsupported database 'mysql'"):
        normalise_url("mysql://u@h/db")


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_product_prediction_and_correction_history(store, grocery_photo):
    fp = fingerprint(grocery_photo)
    image_id, created = store.add_image(fp, grocery_photo)
    assert created and store.add_image(fp, grocery_photo) == (image_id, False)
    view = store.save_tagging("sku-1", title="Oatly <b>oat</b> drink", price=21.5, brand="Oatly", image_id=image_id,
                              result=_result("sku-1", "Packages > Juice > Bravo-Apple-Juice", 0.4, Decision.REVIEW),
                              model_version="m1", latency_ms=12.5)
    assert view.status == "review" and view.prediction.model_version == "m1"
    assert view.prediction.outputs["alternatives"][0]["path"] == "Fruit > Lime > Lime"
    assert [p.id for p in store.review_queue()] == ["sku-1"]

    correction = store.add_correction("sku-1", "Packages > Oat-Milk > Oatly-Oat-Milk", who="ann")
    assert (correction.old_path, correction.new_path, correction.who) == (
        "Packages > Juice > Bravo-Apple-Juice", "Packages > Oat-Milk > Oatly-Oat-Milk", "ann")
    product = store.get_product("sku-1")
    assert product.status == "corrected" and product.label == "Oatly-Oat-Milk"
    assert store.review_queue() == []
    [example] = store.training_examples()
    assert example.path == "Packages > Oat-Milk > Oatly-Oat-Milk" and example.image == grocery_photo
    store.mark_trained([example.correction_id], "m2")
    assert store.corrections("sku-1")[0].trained_in == "m2" and store.untrained_correction_count() == 0
    with pytest.raises(NotFound):
        store.add_correction("nope", "A > B", who="ann")
    with pytest.raises(ValueError, match="kind must be one of"):
        store.add_correction("sku-1", "A > B", who="ann", kind="shrug")


def test_exact_duplicate_reuses_the_latest_prediction_of_the_same_model(store, grocery_photo):
    fp = fingerprint(grocery_photo)
    image_id, _ = store.add_image(fp, grocery_photo)
    store.save_tagging("a", title=None, price=None, brand=None, image_id=image_id,
                       result=_result("a", "Fruit > Banana > Banana"), model_version="m1")
    prediction, source = store.reusable_prediction(image_id, "m1")
    assert (source.id, prediction.path) == ("a", "Fruit > Banana > Banana")
    assert store.reusable_prediction(image_id, "m2") is None  # another model: tag again
    store.add_correction("a", "Fruit > Lemon > Lemon", who="bob")
    prediction, source = store.reusable_prediction(image_id, "m2")  # a human's answer holds for any model
    assert source.status == "corrected" and source.path == "Fruit > Lemon > Lemon"


def test_stats_auto_rate_audited_precision_and_corrections_per_day(store):
    for i, decision in enumerate([Decision.AUTO, Decision.AUTO, Decision.AUTO, Decision.REVIEW]):
        store.save_tagging(f"p{i}", title=f"t{i}", price=1.0, brand=None, image_id=None,
                           result=_result(f"p{i}", "Fruit > Kiwi > Kiwi", decision=decision), model_version="m1",
                           audit=i < 2)
    assert [p.id for p in store.audit_queue()] == ["p0", "p1"]
    store.add_correction("p0", None, who="ann", kind="audit_ok")
    store.add_correction("p1", "Fruit > Lime > Lime", who="ann", kind="audit_fix")
    store.add_correction("p3", None, who="ann", kind="accept")
    stats = store.stats()
    assert stats.products == 4 and stats.auto_rate == pytest.approx(0.75)
    assert (stats.audited, stats.audited_correct, stats.audited_precision) == (2, 1, 0.5)
    assert sum(n for _, n in stats.corrections_per_day) == 3
    assert store.audit_queue() == []


def test_resource_versions_only_grow(store):
    assert store.resource("taxonomy") is None
    first = store.save_resource("taxonomy", {"paths": ["A > B"]}, who="ann")
    second = store.save_resource("taxonomy", {"paths": ["A > B", "A > C"]}, who="bob", note="add C")
    assert (first.version, second.version) == (1, 2)
    assert store.resource("taxonomy").content == {"paths": ["A > B", "A > C"]}
    assert [v.version for v in store.resource_history("taxonomy")] == [2, 1]
    with pytest.raises(ValueError, match="resource kind"):
        store.save_resource("recipes", {}, who="ann")


def test_model_versions_promote_and_roll_back(store):
    store.register_model("v1", "/models/v1", status="active")
    store.register_model("v2", "/models/v2", parent_version="v1", metrics={"holdout_n": 10})
    assert store.active_model().version == "v1"
    store.promote("v2")
    assert store.active_model().version == "v2" and store.model("v1").status == "retired"
    assert store.rollback().version == "v1"
    assert store.active_model().version == "v1" and store.model("v2").status == "rolled_back"
    with pytest.raises(Conflict, match="no earlier promoted"):
        store.rollback()
    with pytest.raises(NotFound):
        store.promote("v9")


def test_tokens_and_operator_passwords_are_stored_hashed(store):
    token = store.create_token("ci")
    assert token.startswith("skt_") and store.check_token(token) == "ci"
    assert store.check_token(token + "x") is None and store.check_token("") is None
    assert store.revoke_tokens("ci") == 1 and store.check_token(token) is None
    store.set_operator("ann", "correct horse")
    assert store.check_operator("ann", "correct horse")
    assert not store.check_operator("ann", "wrong horse") and not store.check_operator("eve", "correct horse")
    with pytest.raises(ValueError, match="at least 8"):
        store.set_operator("bob", "short")
    assert store.setting("secret", lambda: "s1") == "s1" and store.setting("secret", lambda: "s2") == "s1"


@pytest.fixture(scope="module")
def grocery_photo():
    from conftest import shared_path

    return shared_path("grocery", "images", "val", "Fruit", "Banana", "Banana_001.jpg").read_bytes()


def test_an_answer_with_a_note_is_stored_under_its_decision_and_a_failure_as_an_error(store):
    import dataclasses

    noted = dataclasses.replace(_result("n1", "Fruit > Banana > Banana", 0.5, Decision.REVIEW),
                                error="image: cannot read n1.jpg")
    view = store.save_tagging("n1", title="banan", price=None, brand=None, image_id=None, result=noted,
                              model_version="m1")
    assert view.status == "review" and view.path == "Fruit > Banana > Banana"
    assert view.prediction.error == "image: cannot read n1.jpg"
    failed = store.save_tagging("n2", title=None, price=None, brand=None, image_id=None,
                                result=TagResult.failed("n2", "image: not a photo"), model_version="m1")
    assert failed.status == "error" and failed.path is None


def test_a_photos_earlier_answer_is_lent_only_to_products_that_fit(store, grocery_photo):
    image_id, _ = store.add_image(fingerprint(grocery_photo), grocery_photo)
    store.save_tagging("phone", title="华为 手机", price=None, brand=None, image_id=image_id,
                       result=_result("phone", "Phones > Mobile > Huawei"), model_version="m1")
    store.save_tagging("fruit", title="香蕉", price=None, brand=None, image_id=image_id,
                       result=_result("fruit", "Fruit > Banana > Banana"), model_version="m1")
    assert store.reusable_prediction(image_id, "m1")[1].id == "fruit"  # the latest answer
    prediction, source = store.reusable_prediction(image_id, "m1", fits=lambda p: p.title == "华为 手机")
    assert source.id == "phone" and prediction.path == "Phones > Mobile > Huawei"
    assert store.reusable_prediction(image_id, "m1", fits=lambda p: False) is None
