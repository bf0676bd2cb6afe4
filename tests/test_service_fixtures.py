"""The test fixtures' own rule for missing services: skip on a developer machine, fail under CI."""

from __future__ import annotations

import pytest
from service_fixtures import free_port, in_ci, require_postgres

NOTHING_THERE = f"host=127.0.0.1 port={free_port()} dbname=test user=postgres"


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_postgres_down_fails_under_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match="(?s)unreachable.*CI is set: this must not skip"):
        require_postgres(NOTHING_THERE)


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_postgres_down_skips_outside_ci(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception, match="unreachable"):
        require_postgres(NOTHING_THERE)
