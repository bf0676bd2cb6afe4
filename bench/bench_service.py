"""Service benchmark: the whole review loop through a real uvicorn server, plus request latency.

1. **Corrections loop** (``--uploads 50``): upload N GroceryStore val photos through ``POST /v1/products``;
   an operator (headless Chromium, Playwright) opens each product page and accepts the right suggestions
   and corrects the wrong ones with the category picker; "Retrain now" on the stats page trains a candidate
   from the corrections, compares it with the served model on the held-out share of the verified products
   and promotes it only if it is not worse. Then the rest of val is uploaded through the API and scored
   with the new version; the old version is scored on the same rest in the same process.
2. **Latency** of one ``POST /v1/products`` (client wall time, p50/p95), with OCR off
   (``fusion.ocr_gate=never``), with the default gate and with OCR on every photo (``always``), each on
   photos of its own (no cache carries over); and the
   **duplicate-cache hit path**: the same photos again (exact) and resized/re-encoded copies (near), with the
   hit rate, and never-seen photos (false hits).

Usage::

    .venv/bin/python bench/bench_service.py --make-train-subset /tmp/g10.jsonl   # 10 % of train, no titles
    skutag train /tmp/g10.jsonl --out /tmp/g10-model                             # the base model
    .venv/bin/python bench/bench_service.py --model /tmp/g10-model       # the real pipeline bundle
    .venv/bin/python bench/bench_service.py --photo-model                # a small colour-histogram model (quick)
    .venv/bin/python bench/bench_service.py --model M --skip-flow --latency-n 30 --json /tmp/bench_service.json

Photos are sent without titles by default (GroceryStore titles name the class); ``--with-titles`` sends them.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from service_fixtures import (  # noqa: E402
    LiveServer,
    grocery_rows,
    launch_chromium,
    photo_retrainer,
    photo_tagger_factory,
    reencode,
    train_photo_tagger,
)

from skutag.catalog import Product  # noqa: E402
from skutag.config import SkutagConfig  # noqa: E402
from skutag.service.app import create_app  # noqa: E402
from skutag.service.config import ServiceConfig  # noqa: E402
from skutag.service.retrain import accuracy  # noqa: E402

GROCERY = ROOT.parent / "shared" / "data" / "grocery"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(percentile(values, 0.5) * 1000, 1),
            "p95_ms": round(percentile(values, 0.95) * 1000, 1),
            "mean_ms": round(statistics.fmean(values) * 1000, 1) if values else None}


def shuffled_val(seed: int):
    rows = grocery_rows(GROCERY, "val")
    random.Random(seed).shuffle(rows)
    return rows


class Harness:
    """One app + live server + API client, with the tagger chosen by the command line."""

    def __init__(self, args, workdir: Path, name: str, overrides: dict | None = None, **settings):
        import httpx

        self.args = args
        db = args.db or f"sqlite:///{workdir / (name + '.db')}"
        config = SkutagConfig.load(overrides=overrides or {})
        base = dict(db_url=db, bundles_dir=str(workdir / "bundles"), audit_rate=0.0)
        base.update(settings)
        if args.photo_model:
            model_dir = args.photo_model_dir
            self.app = create_app(ServiceConfig(model_dir=str(model_dir), **base),
                                  tagger_factory=photo_tagger_factory(model_dir), retrainer=photo_retrainer)
        else:
            self.app = create_app(ServiceConfig(model_dir=args.model or "", **base), config=config)
        self.store = self.app.state.store
        self.store.set_operator("bench", "bench-pass-1")
        self.token = self.store.create_token("bench")
        self.server = LiveServer(self.app).__enter__()
        self.api = httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {self.token}"},
                                timeout=600)

    @property
    def service(self):
        return self.app.state.service

    def upload(self, pid: str, data: bytes, title: str | None = None) -> tuple[dict, float]:
        fields = {"id": pid}  # GroceryStore has no prices: none are invented (a constant would become a feature)
        if title:
            fields["title"] = title
        started = time.perf_counter()
        response = self.api.post("/v1/products", data=fields, files={"image": ("photo.jpg", data, "image/jpeg")})
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return response.json(), elapsed

    def close(self) -> None:
        self.api.close()
        self.server.__exit__(None, None, None)
        self.store.close()


# ------------------------------------------------------------------ latency
def run_latency(args, workdir: Path) -> dict:
    rows = shuffled_val(args.seed + 1)
    modes = [("photo-model", {})] if args.photo_model else [
        ("ocr_never", {"fusion.ocr_gate": "never"}), ("ocr_gate_default", {}),
        ("ocr_always", {"fusion.ocr_gate": "always"})]
    report = {}
    step = args.latency_n + args.latency_n // 2
    if step * len(modes) + 3 > len(rows):
        raise SystemExit(f"--latency-n {args.latency_n} needs {step * len(modes) + 3} val photos; there are {len(rows)}")
    for k, (name, overrides) in enumerate(modes):
        # fresh photos for each mode: the OCR engine and feature caches must not carry answers over
        seen, unseen = rows[k * step:k * step + args.latency_n], rows[k * step + args.latency_n:(k + 1) * step]
        harness = Harness(args, workdir, f"latency-{name}", overrides)
        try:
            for i, row in enumerate(rows[-3:]):  # warm-up (model caches, first-call costs)
                harness.upload(f"warm-{i}", row.image.read_bytes())
            times, correct = [], 0
            for i, row in enumerate(seen):
                body, elapsed = harness.upload(f"s{i}", row.image.read_bytes(), row.title if args.with_titles else None)
                times.append(elapsed)
                correct += body["path"] == row.path
            exact_times, near_times, hits_exact, hits_near = [], [], 0, 0
            for i, row in enumerate(seen):
                body, elapsed = harness.upload(f"x{i}", row.image.read_bytes())
                exact_times.append(elapsed)
                hits_exact += body["cache_hit"] == "exact"
                body, elapsed = harness.upload(f"n{i}", reencode(row.image, 256, 70))
                near_times.append(elapsed)
                hits_near += body["cache_hit"] == "near"
            false_hits = 0
            for i, row in enumerate(unseen):
                body, _ = harness.upload(f"u{i}", row.image.read_bytes())
                false_hits += body["cache_hit"] is not None
            report[name] = {
                "model_version": harness.service.model_version,
                "tag_request": summary_ms(times),
                "accuracy_on_these": round(correct / len(seen), 4),
                "cache_exact": {**summary_ms(exact_times), "hit_rate": round(hits_exact / len(seen), 4)},
                "cache_near_resized_256_q70": {**summary_ms(near_times), "hit_rate": round(hits_near / len(seen), 4)},
                "unseen_photos": {"n": len(unseen), "false_hits": false_hits},
                "speedup_exact_vs_tag_p50": round(percentile(times, .5) / percentile(exact_times, .5), 1),
            }
            gate = getattr(harness.service.tagger, "gate_stats", None)
            if gate is not None:
                report[name]["ocr_gate"] = gate.to_json()
            print(f"[latency] {name}: {json.dumps(report[name])}", flush=True)
        finally:
            harness.close()
    return report


# ------------------------------------------------------------ review loop
def run_flow(args, workdir: Path) -> dict:
    from playwright.sync_api import sync_playwright

    rows = shuffled_val(args.seed)
    first, rest = rows[:args.uploads], rows[args.uploads:]
    if args.rest_limit:
        rest = rest[:args.rest_limit]
    harness = Harness(args, workdir, "flow", min_corrections_to_retrain=5, min_holdout=5, holdout_fraction=0.2)
    report: dict = {"uploads": len(first), "rest": len(rest)}
    try:
        base_version = harness.service.model_version
        truth, suggested = {}, {}
        started = time.perf_counter()
        for i, row in enumerate(first):
            pid = f"u{i:03d}"
            body, _ = harness.upload(pid, row.image.read_bytes(), row.title if args.with_titles else None)
            truth[pid], suggested[pid] = row.path, body
        report["upload_seconds"] = round(time.perf_counter() - started, 1)
        wrong = [pid for pid in truth if suggested[pid]["path"] != truth[pid]]
        report["base_accuracy_on_uploads"] = round(1 - len(wrong) / len(truth), 4)
        report["decisions_on_uploads"] = {d: sum(1 for b in suggested.values() if b["decision"] == d)
                                          for d in ("auto", "review", "manual")}

        started = time.perf_counter()
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(harness.server.url + "/login")
            page.fill("input[name=username]", "bench")
            page.fill("input[name=password]", "bench-pass-1")
            with page.expect_navigation():
                page.click("button[type=submit]")
            if args.screens:
                page.screenshot(path=str(Path(args.screens) / "bench-queue.png"))
            for pid in truth:
                page.goto(f"{harness.server.url}/products/{pid}")
                if pid not in wrong:
                    with page.expect_navigation():
                        page.click("#accept")
                    continue
                picker = page.locator("input.picker")
                picker.click()
                picker.type(truth[pid].split(" > ")[-1])
                page.wait_for_selector("ul.options li")
                options = page.eval_on_selector_all("ul.options li", "ls => ls.map(l => l.textContent)")
                index = options.index(truth[pid])
                for _ in range(index):
                    page.keyboard.press("ArrowDown")
                with page.expect_navigation():
                    page.keyboard.press("Enter")
            report["browser_seconds"] = round(time.perf_counter() - started, 1)
            verified = [harness.api.get(f"/v1/products/{pid}").json() for pid in truth]
            report["corrected_in_browser"] = sum(1 for p in verified if p["status"] == "corrected")
            report["accepted_in_browser"] = sum(1 for p in verified if p["status"] == "accepted")
            assert all(p["path"] == truth[p["id"]] for p in verified), "a browser verdict did not stick"

            base_tagger = harness.service.tagger
            page.goto(harness.server.url + "/stats")
            started = time.perf_counter()
            with page.expect_navigation():
                page.click("#retrain")
            while True:
                page.goto(harness.server.url + "/stats")
                state = page.inner_text("#retrain-state")
                if "running" not in state:
                    break
                time.sleep(2)
            report["retrain_seconds_wall"] = round(time.perf_counter() - started, 1)
            if args.screens:
                page.screenshot(path=str(Path(args.screens) / "bench-retrained.png"), full_page=True)
            browser.close()
        job = harness.service.retrain_job
        report["retrain"] = job.to_json()
        print(f"[flow] retrain: {job.state}: {job.message}", flush=True)

        served = harness.service.tagger
        report["versions"] = {"before": base_version, "served_after_retrain": served.model_version,
                              "candidate": job.candidate_version}
        started = time.perf_counter()
        correct_served = 0
        for i, row in enumerate(rest):
            body, _ = harness.upload(f"r{i:03d}", row.image.read_bytes(), row.title if args.with_titles else None)
            correct_served += body["path"] == row.path
        report["rest_upload_seconds"] = round(time.perf_counter() - started, 1)
        # the version not served is scored on the same rest in this process, without the API
        if served.model_version == base_version and job.candidate_version:
            other_name = "candidate"
            other = harness.service.tagger_factory(harness.store.model(job.candidate_version).model_dir)
        else:
            other_name, other = "before", base_tagger
        products = [Product(id=f"o{i}", image=str(row.image), title=row.title if args.with_titles else None,
                            category=row.path) for i, row in enumerate(rest)]
        other_acc, _ = accuracy(other, products)
        served_name = "before" if other_name == "candidate" else "candidate"
        report["rest_accuracy"] = {"n": len(rest), served_name: round(correct_served / len(rest), 4),
                                   other_name: round(other_acc, 4), "served": served.model_version}
        print(f"[flow] {json.dumps(report)}", flush=True)
    finally:
        harness.close()
    return report


def write_train_subset(out: Path, share: float = 0.1, minimum: int = 5, seed: int = 7) -> int:
    """The base model's catalog: per class max(``minimum``, ``share`` of its train photos), no titles, no
    prices (GroceryStore has none). Written outside the repository."""
    by_class: dict[str, list] = {}
    for row in grocery_rows(GROCERY, "train"):
        by_class.setdefault(row.path, []).append(row)
    rng = random.Random(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with out.open("w", encoding="utf-8") as handle:
        for path, rows in sorted(by_class.items()):
            rows = sorted(rows, key=lambda r: r.image.name)
            rng.shuffle(rows)
            for row in rows[:max(minimum, round(share * len(rows)))]:
                handle.write(json.dumps({"id": row.image.stem, "image": str(row.image), "title": None,
                                         "category": path, "brand": row.brand}) + "\n")
                n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", help="model bundle folder (default: the cold-start pipeline)")
    which.add_argument("--photo-model", action="store_true", help="a small colour-histogram model trained here")
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file per phase)")
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--rest-limit", type=int, default=0, help="score only this many of the rest (0: all)")
    parser.add_argument("--latency-n", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with-titles", action="store_true")
    parser.add_argument("--skip-flow", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--screens", help="folder for screenshots")
    parser.add_argument("--workdir", help="keep databases and retrained bundles here (default: a temporary folder)")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--make-train-subset", metavar="OUT_JSONL",
                        help="only write the 10%% GroceryStore train catalog the base model is trained on, and exit")
    args = parser.parse_args(argv)
    if not GROCERY.is_dir():
        parser.error(f"GroceryStore not found at {GROCERY}")
    if args.make_train_subset:
        print(f"{write_train_subset(Path(args.make_train_subset))} rows -> {args.make_train_subset}")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.photo_model:
            train = grocery_rows(GROCERY, "train")
            random.Random(args.seed).shuffle(train)
            per_class: dict[str, list] = {}
            for row in train:
                per_class.setdefault(row.path, []).append(row)
            base = [r for rows in per_class.values() for r in rows[:10]]
            tagger, training = train_photo_tagger(base, version="photo-base")
            args.photo_model_dir = tagger.save(workdir / "photo-base", training)
        if args.screens:
            Path(args.screens).mkdir(parents=True, exist_ok=True)
        report = {"model": args.model or ("photo-model" if args.photo_model else "cold-start"),
                  "with_titles": args.with_titles}
        if not args.skip_latency:
            report["latency"] = run_latency(args, workdir)
        if not args.skip_flow:
            report["flow"] = run_flow(args, workdir)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        Path(args.json).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
