"""The review dashboard over HTTP (no browser): login, CSRF, escaping, accept / correct, audit,
whitelist, stats and retrain-now. The browser itself is driven in test_dashboard_browser.py."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from service_fixtures import (  # noqa: F401  (fixtures)
    TEST_CLASSES,
    grocery_root,
    photo_model_dir,
    photo_retrainer,
    photo_tagger_factory,
    val_rows,
)

from skutag.config import SkutagConfig
from skutag.service.app import create_app
from skutag.service.config import ServiceConfig

EVIL_TITLE = '<img src=x onerror="alert(1)"><script>alert("t")</script> Banana & co'


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def dash(tmp_path, photo_model_dir, val_rows):  # noqa: F811
    settings = ServiceConfig(db_url=f"sqlite:///{tmp_path / 'dash.db'}", model_dir=str(photo_model_dir),
                             bundles_dir=str(tmp_path / "bundles"), min_corrections_to_retrain=5,
                             min_holdout=3, holdout_fraction=0.3)
    config = SkutagConfig.load(environ={}, overrides={"decision.audit_rate": 0.5})
    app = create_app(settings, tagger_factory=photo_tagger_factory(photo_model_dir), retrainer=photo_retrainer,
                     config=config)
    store = app.state.store
    store.set_operator("ann", "s3cret-pass")
    auth = {"Authorization": f"Bearer {store.create_token('uploader')}"}
    with TestClient(app, base_url="http://testserver") as client:
        for i, row in enumerate(val_rows[:12]):
            client.post("/v1/products", headers=auth, files={"image": ("p.jpg", row.image.read_bytes(), "image/jpeg")},
                        data={"id": f"d{i:02d}", "title": EVIL_TITLE if i == 0 else row.title, "price": "19.9"})
        yield client, auth
    store.close()


def login(client) -> str:
    page = client.get("/login")
    response = client.post("/login", data={"username": "ann", "password": "s3cret-pass", "csrf_token": csrf_of(page.text),
                                           "next": "/review"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/review"
    return csrf_of(client.get("/review").text)


def test_pages_need_a_login_and_wrong_passwords_fail(dash):
    client, _ = dash
    for page in ["/review", "/audit", "/stats", "/whitelist", "/products/d00"]:
        response = client.get(page, headers={"Accept": "text/html"}, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), page
    form = client.get("/login").text
    bad = client.post("/login", data={"username": "ann", "password": "nope", "csrf_token": csrf_of(form)})
    assert "Wrong username or password" in bad.text and "Review queue" not in bad.text
    no_csrf = client.post("/login", data={"username": "ann", "password": "s3cret-pass"})
    assert no_csrf.status_code == 403


def test_password_guessing_is_throttled(dash, monkeypatch):
    from skutag.service import dashboard
    from skutag.service.auth import LoginThrottle

    monkeypatch.setattr(dashboard, "throttle", LoginThrottle(limit=3, window_s=60))
    client, _ = dash
    for _ in range(3):
        page = client.post("/login", data={"username": "ann", "password": "guess",
                                           "csrf_token": csrf_of(client.get("/login").text)})
        assert "Wrong username or password" in page.text
    page = client.post("/login", data={"username": "ann", "password": "s3cret-pass",
                                       "csrf_token": csrf_of(client.get("/login").text)})
    assert "Too many failed logins" in page.text and "Review queue" not in page.text


def _whitelist_edit(client, cookie: str, csrf: str):
    """A state-changing dashboard request made with a copied session cookie."""
    return client.post("/whitelist", data={"csrf_token": csrf, "path": "Fruit > Banana > Banana", "action": "add"},
                       headers={"Accept": "text/html", "Cookie": f"skutag_session={cookie}"}, follow_redirects=False)


@pytest.mark.parametrize("ending", ["logout", "password change", "operator removed"])
def test_a_copied_session_cookie_dies_with_the_session(dash, ending):
    """After logout (or a password change, or `skutag operator remove`) the old cookie is refused: it was
    used to change the whitelist after logout before."""
    client, _ = dash
    csrf = login(client)
    cookie = client.cookies.get("skutag_session")
    assert client.get("/review", headers={"Accept": "text/html"}, follow_redirects=False).status_code == 200
    store = client.app.state.store
    if ending == "logout":
        client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    elif ending == "password change":
        store.set_operator("ann", "a-new-pass-456")
    else:
        assert store.remove_operator("ann")
    client.cookies.clear()
    replay = _whitelist_edit(client, cookie, csrf)
    assert replay.status_code in (303, 401, 403) and replay.headers.get("location", "/login").startswith("/login")
    assert "Fruit > Banana > Banana" not in (store.resource("whitelist").content.get("paths", [])
                                             if store.resource("whitelist") else [])
    page = client.get("/review", headers={"Accept": "text/html", "Cookie": f"skutag_session={cookie}"},
                      follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def _try_login(client, username, password, headers=None):
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_of(client.get("/login").text)}, headers=headers or {})


def test_failed_logins_of_one_name_never_lock_out_another_operator_behind_the_same_address(dash, monkeypatch):
    from skutag.service import dashboard
    from skutag.service.auth import LoginThrottle

    monkeypatch.setattr(dashboard, "throttle", LoginThrottle(limit=3, client_limit=50, window_s=60))
    client, _ = dash
    client.app.state.store.set_operator("bob", "bobs-pass-123")
    for name in ("mallory", "root", "admin", "ann"):
        for _ in range(3):
            assert "Wrong username or password" in _try_login(client, name, "guess").text
    assert "Too many failed logins" in _try_login(client, "ann", "s3cret-pass").text  # ann's guesses, here
    assert "Review queue" in _try_login(client, "bob", "bobs-pass-123").text  # bob, same address: fine


def test_a_client_cannot_pick_its_address_with_x_forwarded_for(dash, monkeypatch):
    """Without configured proxies the header is ignored: rotating it does not dodge the throttle."""
    from skutag.service import dashboard
    from skutag.service.auth import LoginThrottle

    monkeypatch.setattr(dashboard, "throttle", LoginThrottle(limit=3, window_s=60))
    client, _ = dash
    for i in range(3):
        _try_login(client, "ann", "guess", headers={"X-Forwarded-For": f"10.0.0.{i}"})
    page = _try_login(client, "ann", "s3cret-pass", headers={"X-Forwarded-For": "10.0.0.99"})
    assert "Too many failed logins" in page.text


def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled_on_its_own(tmp_path, photo_model_dir, monkeypatch):  # noqa: F811
    from skutag.service import dashboard
    from skutag.service.auth import LoginThrottle

    monkeypatch.setattr(dashboard, "throttle", LoginThrottle(limit=3, window_s=60))
    settings = ServiceConfig(db_url=f"sqlite:///{tmp_path / 'proxy.db'}", model_dir=str(photo_model_dir),
                             trusted_proxies=("testclient",))  # TestClient's peer address plays the proxy
    app = create_app(settings, tagger_factory=photo_tagger_factory(photo_model_dir), retrainer=photo_retrainer)
    app.state.store.set_operator("ann", "s3cret-pass")
    with TestClient(app) as client:
        for _ in range(3):
            _try_login(client, "ann", "guess", headers={"X-Forwarded-For": "203.0.113.7"})
        assert "Too many failed logins" in _try_login(client, "ann", "s3cret-pass",
                                                      headers={"X-Forwarded-For": "203.0.113.7"}).text
        page = _try_login(client, "ann", "s3cret-pass", headers={"X-Forwarded-For": "198.51.100.2"})
        assert "Review queue" in page.text  # ann from her own machine
    app.state.store.close()


def test_titles_are_escaped_and_pages_carry_a_strict_csp(dash):
    client, _ = dash
    login(client)
    html = client.get("/review").text + client.get("/products/d00").text
    assert "<script>alert" not in html and '<img src=x onerror' not in html
    assert "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt; Banana &amp; co" in html
    policy = client.get("/review").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


def test_accept_and_correct_need_csrf_and_leave_an_audit_trail(dash):
    client, auth = dash
    csrf = login(client)
    queue = client.get("/review").text
    ids = re.findall(r'data-id="([^"]+)"', queue)
    assert ids, "the queue should not be empty with this model"
    first, second = ids[0], ids[1] if len(ids) > 1 else None
    forged = client.post(f"/review/{first}/accept", data={"csrf_token": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    cross = client.post(f"/review/{first}/accept", data={"csrf_token": csrf}, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    done = client.post(f"/review/{first}/accept", data={"csrf_token": csrf}, follow_redirects=True)
    assert f"Accepted {first}" in done.text
    if second:
        before = client.get(f"/v1/products/{second}", headers=auth).json()["path"]
        target = next(c for c in TEST_CLASSES if c != before)
        client.post(f"/review/{second}/correct", data={"csrf_token": csrf, "category": target})
        product = client.get(f"/v1/products/{second}", headers=auth).json()
        assert product["status"] == "corrected" and product["path"] == target
        assert product["corrections"][0]["who"] == "op:ann" and product["corrections"][0]["old_path"] == before
        bad = client.post(f"/review/{second}/correct", data={"csrf_token": csrf, "category": "Nope > Nothing"},
                          follow_redirects=True)
        assert "not in the taxonomy" in bad.text
    remaining = re.findall(r'data-id="([^"]+)"', client.get("/review").text)
    assert first not in remaining and (second is None or second not in remaining)


def test_audit_whitelist_and_stats(dash, val_rows):  # noqa: F811
    client, auth = dash
    csrf = login(client)
    audit_ids = re.findall(r'data-id="([^"]+)"', client.get("/audit").text)
    assert audit_ids, "decision.audit_rate=0.5 should sample some auto-tagged products"
    client.post(f"/audit/{audit_ids[0]}/ok", data={"csrf_token": csrf})
    stats = client.get("/v1/stats", headers=auth).json()
    assert stats["audited"] == 1 and stats["audited_precision"] == 1.0

    # find a photo the model tags automatically, whitelist its top level, send the photo again
    for i, row in enumerate(val_rows[12:], start=12):
        first = client.post("/v1/products", headers=auth, data={"id": f"wl-{i}"},
                            files={"image": ("b.jpg", row.image.read_bytes(), "image/jpeg")}).json()
        if first["decision"] == "auto":
            break
    assert first["decision"] == "auto"
    top = first["path"].split(" > ")[0]
    client.post("/whitelist", data={"csrf_token": csrf, "action": "add", "path": top})
    assert f"<td>{top}</td>" in client.get("/whitelist").text
    again = client.post("/v1/products", headers=auth, data={"id": "wl-again"},
                        files={"image": ("b.jpg", row.image.read_bytes(), "image/jpeg")}).json()
    assert again["path"] == first["path"] and again["decision"] == "review"
    assert f"whitelist: {top} is always reviewed" in again["reasons"]
    client.post("/whitelist", data={"csrf_token": csrf, "action": "remove", "path": top})
    assert f"<td>{top}</td>" not in client.get("/whitelist").text
    page = client.get("/stats").text
    assert "auto-tagged" in page and "photo-base" in page and 'id="retrain"' in page


def test_retrain_now_from_the_dashboard(dash, val_rows):  # noqa: F811
    client, auth = dash
    csrf = login(client)
    for i in range(12):
        truth = val_rows[i].path
        client.post(f"/review/d{i:02d}/correct", data={"csrf_token": csrf, "category": truth})
    page = client.post("/retrain", data={"csrf_token": csrf}, follow_redirects=True).text
    assert "Retraining started" in page
    service = client.app.state.service
    service.retraining.lock.acquire(timeout=60)  # wait for the background job
    service.retraining.lock.release()
    job = service.retrain_job
    assert job.state in {"promoted", "rejected"}, job.message
    stats = client.get("/stats").text
    assert job.candidate_version in stats and job.state in stats


def test_ocr_text_and_vision_labels_are_shown_escaped(dash):
    from skutag.fusion.result import Decision, TagResult

    client, _ = dash
    store = client.app.state.store
    result = TagResult(id="ocr-1", label="Oatly-Oat-Milk", path="Packages > Oat-Milk > Oatly-Oat-Milk",
                       confidence=0.42, decision=Decision.REVIEW, reasons=("confidence 0.42 < 0.60",))
    store.save_tagging("ocr-1", title="oat drink", price=None, brand=None, image_id=None, result=result,
                       model_version="photo-base", modalities={
                           "present": ["vision", "ocr"], "vision": {"labels": [["牛奶", 0.61], ["<b>盒</b>", 0.2]]},
                           "ocr": {"lines": [["OATLY", 0.99], ["<script>alert(1)</script>", 0.9]],
                                   "brands": [["Oatly", 0.97]]}})
    login(client)
    html = client.get("/review").text + client.get("/products/ocr-1").text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<strong>Oatly</strong>" in html and "牛奶 61%" in html and "&lt;b&gt;盒&lt;/b&gt;" in html


def test_the_stats_page_and_api_hold_audited_precision_against_the_target(dash):
    """Audits that fall below decision.target_precision are flagged on the stats page and in /v1/stats."""
    client, auth = dash
    login(client)
    assert "No audits yet" in client.get("/stats").text
    store = client.app.state.store
    from skutag.policy.rules import audit_check

    assert audit_check(0, 0, 0.95)["status"] == "none"
    assert audit_check(19, 20, 0.95)["status"] == "uncertain"  # 95% observed, 20 audits: cannot tell
    assert audit_check(60, 100, 0.95)["status"] == "below"
    assert audit_check(1000, 1000, 0.95)["status"] == "meets"
    listed = client.get("/v1/products", headers=auth, params={"limit": 500}).json()["products"]
    auto = [p for p in listed if p["status"] == "auto"][:4]
    assert auto, "the fixture's model auto-tags some products"
    for product in auto:  # every audit says the auto-tag was wrong
        other = next(c for c in TEST_CLASSES if c != product["path"])
        store.add_correction(product["id"], other, "ann", kind="audit_fix")
    check = client.get("/v1/stats", headers=auth).json()["precision_check"]
    assert check["status"] == "below" and check["audited"] == len(auto) and check["audited_precision"] == 0.0
    assert "below the target" in client.get("/stats").text
