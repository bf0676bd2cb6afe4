"""The API fuzzed from its own OpenAPI document (bench/fuzz_api.py: schemathesis + Hypothesis), on SQLite and
on PostgreSQL: no 5xx, and every response in the documented status codes, content types and schemas.
SKUTAG_FUZZ_EXAMPLES sets the examples per operation (default 5 here; the full run in the notes uses 30)."""

from __future__ import annotations

import os

import pytest
from fastapi.testclient import TestClient
from service_fixtures import (  # noqa: F401  (fixtures)
    _empty_pg_schema,
    grocery_root,
    pg_url,
    photo_model_dir,
    photo_retrainer,
    photo_tagger_factory,
)

from bench.fuzz_api import fuzz_app
from skutag.service.app import create_app
from skutag.service.config import ServiceConfig

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("SKUTAG_FUZZ_EXAMPLES", "5"))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_no_5xx_and_every_response_as_documented(backend, request, tmp_path, photo_model_dir):  # noqa: F811
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        _empty_pg_schema(url)
    settings = ServiceConfig(db_url=url, model_dir=str(photo_model_dir), bundles_dir=str(tmp_path / "b"), max_batch=4)
    app = create_app(settings, tagger_factory=photo_tagger_factory(photo_model_dir), retrainer=photo_retrainer)
    headers = {"Authorization": f"Bearer {app.state.store.create_token('fuzz')}"}
    with TestClient(app):
        report = fuzz_app(app, headers, EXAMPLES)
    app.state.store.close()
    assert report.operations >= 20 and report.requests >= report.operations
    assert report.server_errors == 0 and report.schema_violations == 0, "\n".join(report.failures[:20])
