"""The review queue's clusters and the stats page's quality monitor in a real headless Chromium against a real
uvicorn server: a verdict applied to a near-duplicate cluster, undone, applied again; the SVG charts (the confidence
drift against the training rows included) with data and on an empty database, and the retraining schedule, under the
page's strict CSP. Screenshots go to test-artifacts/ (review-*.png)."""

from __future__ import annotations


import httpx
import pytest
from service_fixtures import (  # noqa: F401  (fixtures)
    CHROMIUM,
    TEST_CLASSES,
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
SHARED_TITLE = "Oatly oat drink 1L"



CHARTS = ("chart-quality", "chart-corrections", "chart-categories", "chart-drift")


def _app(tmp_path, name, model_dir, **settings_overrides):
    settings = ServiceConfig(db_url=f"sqlite:///{tmp_path / name}", model_dir=str(model_dir),
                             bundles_dir=str(tmp_path / "bundles"), **settings_overrides)
    config = SkutagConfig.load(environ={}, overrides={"decision.audit_rate": 0.0})
    app = create_app(settings, tagger_factory=photo_tagger_factory(model_dir), retrainer=photo_retrainer,
                     config=config)
    app.state.store.set_operator("ann", "s3cret-pass")
    return app


def _login(page, server, to="/review"):
    page.goto(server.url + to)
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", "s3cret-pass")
    page.click("button[type=submit]")
    page.wait_for_url("**" + to)


def _watch(page) -> list[str]:
    problems: list[str] = []
    # CSP violations and script errors show as console errors; failed loads are checked by their address
    page.on("console", lambda m: problems.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400
            and not r.url.endswith("/favicon.ico") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def test_cluster_verdict_apply_undo_apply_and_the_quality_charts(playwright_sync, tmp_path, photo_model_dir,  # noqa: F811
                                                                  val_rows, artifacts_dir):  # noqa: F811
    app = _app(tmp_path, "review.db", photo_model_dir, retrain_every_hours=24.0)
    store = app.state.store
    store.save_resource("whitelist", {"paths": sorted({c.split(" > ")[0] for c in TEST_CLASSES})}, who="test")
    auth = {"Authorization": f"Bearer {store.create_token('browser-test')}"}
    members = ["r1", "r3", "r5"]
    target = TEST_CLASSES[1]
    browser = launch_chromium(playwright_sync)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=auth, timeout=60) as api:
        for i, row in enumerate(val_rows[:6]):
            pid = f"r{i}"
            response = api.post("/v1/products", data={"id": pid, "title": SHARED_TITLE if pid in members else
                                                      f"product {i}", "price": "9"},
                                files={"image": (row.image.name, row.image.read_bytes(), "image/jpeg")})
            assert response.status_code == 200 and response.json()["status"] == "review", response.text
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        problems = _watch(page)
        _login(page, server)
        assert page.get_attribute("#order-informative", "aria-current") == "true"
        cluster = page.locator("section.cluster")
        assert cluster.count() == 1 and "3 near-duplicates" in cluster.inner_text()
        cluster_id = cluster.get_attribute("data-cluster")
        shown = page.eval_on_selector_all(f".item[data-cluster='{cluster_id}']", "els => els.map(e => e.dataset.id)")
        assert sorted(shown) == members
        page.screenshot(path=str(artifacts_dir / "review-cluster.png"), full_page=True)

        def apply_category():
            picker = cluster.locator("input.picker")
            picker.click()
            picker.type(target.split(" > ")[-1].lower())
            page.wait_for_selector("section.cluster ul.options li")
            options = cluster.locator("ul.options li").all_inner_texts()
            for _ in range(options.index(target)):
                page.keyboard.press("ArrowDown")
            with page.expect_navigation():
                page.keyboard.press("Enter")
            page.wait_for_selector(".flash")
            assert f"{target} for 3 products" in page.inner_text(".flash")

        apply_category()
        for pid in members:
            product = api.get(f"/v1/products/{pid}").json()
            assert product["path"] == target and product["corrections"][0]["who"] == "op:ann"
        assert not set(members) & set(page.eval_on_selector_all(".queue .item", "els => els.map(e => e.dataset.id)"))
        page.screenshot(path=str(artifacts_dir / "review-cluster-applied.png"))

        with page.expect_navigation():
            page.click("#undo-group")
        page.wait_for_selector(".flash:has-text('Undid group verdict')")
        for pid in members:
            product = api.get(f"/v1/products/{pid}").json()
            assert product["status"] == "review" and product["corrections"] == []
        assert page.locator("section.cluster").count() == 1

        cluster = page.locator("section.cluster")
        with page.expect_navigation():
            cluster.locator("form.cluster-accept button").click()  # again, accepting each one's suggestion
        page.wait_for_selector(".flash:has-text('their suggestions for 3 products')")
        assert {api.get(f"/v1/products/{pid}").json()["status"] for pid in members} == {"accepted"}

        page.goto(server.url + "/stats")
        for chart in CHARTS:
            assert page.locator(f"svg#{chart}").is_visible()
        assert page.locator("#chart-corrections rect.bar").count() == 1  # today: 3 verdicts (the undone ones gone)
        assert page.locator("#chart-corrections rect.bar title").text_content().endswith(": 3")
        assert page.locator("#chart-quality circle.dot.auto").count() == 1  # today's auto rate
        assert page.locator("#chart-quality text.empty-chart").count() == 0
        assert page.locator("#retrain-cadence").inner_text().startswith("Automatic retraining is off")
        schedule = page.locator("#retrain-schedule").inner_text()
        assert schedule.startswith("Retrains on a clock every 24 hours") and "next check" in schedule
        # this week's 6 answers over the photo model's out-of-fold training confidences, and their distance
        stats = api.get("/v1/stats").json()
        drift = stats["quality"]["drift"]
        assert drift["this_week"]["n"] == 6 and drift["training"]["n"] == 64
        assert page.locator("#chart-drift rect.hist.week").count() == sum(f > 0 for f in drift["this_week"]["fractions"])
        assert page.locator("#chart-drift rect.hist.training").count() == sum(f > 0 for f in drift["training"]["fractions"])
        assert page.locator("#chart-drift text.empty-chart").count() == 0
        assert page.inner_text("#drift-distance") == f"{drift['total_variation']:.2f}"
        box = page.locator("#chart-drift rect.hist.week").first.bounding_box()
        assert box["width"] > 5 and box["height"] > 0  # drawn, not collapsed by a missing style
        page.screenshot(path=str(artifacts_dir / "review-stats-charts.png"), full_page=True)
        assert stats["retrain_cadence"]["retrain_every_hours"] == 24.0
        assert stats["quality"]["per_day"][-1]["corrections"] == 3
        assert not problems, problems

    empty = _app(tmp_path, "empty.db", photo_model_dir)
    with LiveServer(empty) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        problems = _watch(page)
        _login(page, server, "/stats")
        for chart in CHARTS:
            assert page.locator(f"svg#{chart}").is_visible()
            assert page.locator(f"svg#{chart} text.empty-chart").count() == 1
        assert page.locator("#chart-drift rect").count() == 0 and page.locator("#drift-distance").count() == 0
        assert "no answers of photo-base" in page.text_content("#chart-drift")
        assert page.locator("#retrain-schedule").inner_text().startswith("No clock schedule")
        page.screenshot(path=str(artifacts_dir / "review-stats-empty.png"), full_page=True)
        assert not problems, problems
    empty.state.store.close()
    store.close()
    browser.close()
