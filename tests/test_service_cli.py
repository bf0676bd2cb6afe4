"""``skutag db upgrade``, ``skutag token create|revoke``, ``skutag operator add`` and ``skutag serve``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import httpx
import pytest
from service_fixtures import free_port

from skutag.cli import main
from skutag.store import Store, head_revision


def test_db_upgrade_token_and_operator_commands(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["db", "upgrade", "--db", url]) == 0
    assert f"at revision {head_revision()}" in capsys.readouterr().out
    assert main(["token", "create", "--name", "shop-sync", "--db", url]) == 0
    token = capsys.readouterr().out.strip()
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-long-password\n"))
    assert main(["operator", "add", "ann", "--password-stdin", "--db", url]) == 0
    store = Store.open(url)
    assert store.check_token(token) == "shop-sync" and store.check_operator("ann", "a-long-password")
    assert main(["token", "revoke", "shop-sync", "--db", url]) == 0
    assert store.check_token(token) is None
    store.close()
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["operator", "add", "bob", "--password-stdin", "--db", url]) == 2
    assert "at least 8 characters" in capsys.readouterr().err


def test_commands_explain_bad_databases_and_models(tmp_path, capsys):
    assert main(["db", "upgrade", "--db", "mysql://u@h/db"]) == 2
    assert "unsupported database 'mysql'" in capsys.readouterr().err
    assert main(["token", "create", "--db", "postgresql://nobody@127.0.0.1:1/none"]) == 2
    assert "cannot open the database" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path / "no-such-model"), "--db", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert "no such model folder" in capsys.readouterr().err


@pytest.mark.slow
def test_skutag_serve_answers_with_the_default_pipeline(tmp_path, shared_data):
    """`skutag serve` with the cold-start pipeline: health, auth, a real photo tagged."""
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    assert main(["db", "upgrade", "--db", url]) == 0
    store = Store.open(url)
    token = store.create_token("serve-test")
    store.close()
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "skutag", "serve", "--db", url, "--port", str(port),
                                "--log-level", "warning"], env=dict(os.environ), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                health = httpx.get(base + "/healthz", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "skutag serve did not come up in 180 s"
            time.sleep(0.5)
        assert health.json()["model_version"].startswith("cold-start")
        photo = shared_data / "grocery" / "images" / "val" / "Fruit" / "Banana" / "Banana_001.jpg"
        assert httpx.post(base + "/v1/products", files={"image": photo.read_bytes()}).status_code == 401
        response = httpx.post(base + "/v1/products", headers={"Authorization": f"Bearer {token}"}, timeout=120,
                              files={"image": ("b.jpg", photo.read_bytes(), "image/jpeg")},
                              data={"title": "香蕉 进口 1kg", "price": "9.9", "id": "banana-1"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == "banana-1" and body["path"] and body["decision"] in {"auto", "review", "manual"}
        assert httpx.get(base + "/openapi.json").json()["info"]["title"] == "skutag"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_names_the_database_file_it_uses_by_its_absolute_path(tmp_path, monkeypatch):
    """`sqlite:///shop.db` is relative to the working directory: the service says which file that is."""
    from sqlalchemy.engine import make_url

    from skutag.commands.service import describe_database

    monkeypatch.chdir(tmp_path)
    said = describe_database(make_url("sqlite:///shop.db"))
    assert said == f"SQLite file {tmp_path / 'shop.db'} (relative to this folder)"
    assert describe_database(make_url(f"sqlite:///{tmp_path}/abs.db")) == f"SQLite file {tmp_path}/abs.db"
    assert describe_database(make_url("postgresql+psycopg://shop:S3cret@db/skutag")) == \
        "postgresql+psycopg://shop:***@db/skutag"
