"""The review dashboard in a real headless Chromium (Debian ``chromium`` via Playwright's
``executable_path``) against a real uvicorn server: login, the queue, keyboard navigation, the
searchable category picker, accept / correct, escaping of hostile titles, retrain-now.
Screenshots go to test-artifacts/ (dashboard-*.png)."""

from __future__ import annotations

import time

import httpx
import pytest
from service_fixtures import (  # noqa: F401  (fixtures)
    CHROMIUM,
    LiveServer,
    grocery_root,
    launch_chromium,
    photo_model_dir,
    photo_retrainer,
    photo_tagger_factory,
    playwright_sync,
    skip_or_fail,
    val_rows,
)

from skutag.config import SkutagConfig
from skutag.service.app import create_app
from skutag.service.config import ServiceConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EVIL_TITLE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> Tropicana & more'



@pytest.fixture
def live(tmp_path, photo_model_dir, val_rows):  # noqa: F811
    settings = ServiceConfig(db_url=f"sqlite:///{tmp_path / 'browser.db'}", model_dir=str(photo_model_dir),
                             bundles_dir=str(tmp_path / "bundles"), min_corrections_to_retrain=5, min_holdout=3,
                             holdout_fraction=0.3)
    config = SkutagConfig.load(environ={}, overrides={"decision.audit_rate": 0.0})
    app = create_app(settings, tagger_factory=photo_tagger_factory(photo_model_dir), retrainer=photo_retrainer,
                     config=config)
    store = app.state.store
    store.set_operator("ann", "s3cret-pass")
    auth = {"Authorization": f"Bearer {store.create_token('browser-test')}"}
    truth = {}
    with LiveServer(app) as server:
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as api:
            for i, row in enumerate(val_rows[::2]):
                pid = f"g{i:02d}"
                truth[pid] = row.path
                title = EVIL_TITLE if i == 0 else row.title
                response = api.post("/v1/products", data={"id": pid, "title": title, "price": "24.90"},
                                    files={"image": (row.image.name, row.image.read_bytes(), "image/jpeg")})
                assert response.status_code == 200, response.text
            yield server, api, truth
    store.close()


def _login(page, server):
    page.goto(server.url + "/review")
    assert "/login" in page.url
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", "s3cret-pass")
    page.click("button[type=submit]")
    page.wait_for_url("**/review")


def _item_ids(page) -> list[str]:
    return page.eval_on_selector_all(".queue .item", "items => items.map(i => i.dataset.id)")


def test_review_queue_correct_and_accept_with_the_keyboard(playwright_sync, live, artifacts_dir):  # noqa: F811
    server, api, truth = live
    browser = launch_chromium(playwright_sync)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _login(page, server)

    queue = _item_ids(page)
    assert queue, "the photo model sends some of these photos to review"
    assert page.evaluate("window.__pwned") is None and not dialogs
    page.click(".item:first-child details.why summary")  # show the "why" in the screenshot
    page.screenshot(path=str(artifacts_dir / "dashboard-queue.png"), full_page=False)
    page.goto(server.url + "/products/g00")  # the hostile title shows as text, runs nothing
    assert "<script>window.__pwned=2</script>" in page.inner_text("h1.title")
    assert page.evaluate("window.__pwned") is None and not dialogs
    page.goto(server.url + "/review")

    wrong = [pid for pid in queue if api.get(f"/v1/products/{pid}").json()["path"] != truth[pid]]
    right = [pid for pid in queue if pid not in wrong]
    assert wrong, "some queued suggestions are wrong with this small model"

    # correct the first wrong one: focus it with j/k, open the picker with c, search, pick with the keyboard
    target = wrong[0]
    for _ in range(queue.index(target)):  # the first item has the focus on load
        page.keyboard.press("j")
    assert page.evaluate("document.activeElement.dataset.id") == target
    page.keyboard.press("c")
    leaf = truth[target].split(" > ")[-1]
    page.keyboard.type(leaf.split("-")[0].lower())
    page.wait_for_selector(f".item[data-id='{target}'] ul.options li")
    options = page.eval_on_selector_all(f".item[data-id='{target}'] ul.options li", "ls => ls.map(l => l.textContent)")
    assert truth[target] in options, options
    for _ in range(options.index(truth[target])):
        page.keyboard.press("ArrowDown")
    page.screenshot(path=str(artifacts_dir / "dashboard-picker.png"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector(".flash")
    assert "→ " + truth[target] in page.inner_text(".flash")
    page.screenshot(path=str(artifacts_dir / "dashboard-corrected.png"))
    product = api.get(f"/v1/products/{target}").json()
    assert product["status"] == "corrected" and product["path"] == truth[target]
    assert product["corrections"][0]["who"] == "op:ann"

    # accept a right one with the 'a' key
    if right:
        queue = _item_ids(page)
        index = queue.index(right[0])
        for _ in range(index):
            page.keyboard.press("j")
        assert page.evaluate("document.activeElement.dataset.id") == right[0]
        with page.expect_navigation():
            page.keyboard.press("a")
        page.wait_for_selector(f".flash:has-text('Accepted {right[0]}')")
        assert api.get(f"/v1/products/{right[0]}").json()["status"] == "accepted"
    assert not dialogs and page.evaluate("window.__pwned") is None
    browser.close()


def test_correct_every_wrong_suggestion_then_retrain_now(playwright_sync, live, artifacts_dir):  # noqa: F811
    server, api, truth = live
    browser = launch_chromium(playwright_sync)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _login(page, server)
    # every product becomes human-verified: wrong ones corrected, right ones accepted (auto ones via the API)
    for _ in range(len(truth)):
        queue = _item_ids(page)
        if not queue:
            break
        pid = queue[0]
        suggested = api.get(f"/v1/products/{pid}").json()["path"]
        page.focus(f".item[data-id='{pid}']")
        if suggested == truth[pid]:
            with page.expect_navigation():
                page.keyboard.press("a")
        else:
            page.keyboard.press("c")
            page.keyboard.type(truth[pid])
            page.wait_for_selector(f".item[data-id='{pid}'] ul.options li[aria-selected=true]")
            with page.expect_navigation():
                page.keyboard.press("Enter")
    assert _item_ids(page) == []
    for pid, path in truth.items():
        product = api.get(f"/v1/products/{pid}").json()
        if product["status"] == "auto":
            verdict = api.post(f"/v1/products/{pid}/corrections", json={"category": path})
            assert verdict.status_code == 201
    page.goto(server.url + "/stats")
    page.click("#retrain")
    page.wait_for_selector(".flash:has-text('Retraining started')")
    deadline = time.monotonic() + 120
    while "running" in page.inner_text("#retrain-state") and time.monotonic() < deadline:
        time.sleep(1)
        page.goto(server.url + "/stats")
    state = page.inner_text("#retrain-state")
    page.screenshot(path=str(artifacts_dir / "dashboard-retrained.png"), full_page=True)
    assert "promoted" in state or "rejected" in state, state
    models = api.get("/v1/models").json()
    assert len(models["models"]) == 2
    browser.close()
