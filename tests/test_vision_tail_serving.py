"""Serving a bundle with a fine-tuned vision tail needs ONNX Runtime only: a fresh process loads the
bundle, tags GroceryStore photos and embeds them with the tail, and never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fusion_fixtures import tail_catalogs, train_tail_bundle

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

SERVE = r"""
import json, sys

from skutag.catalog import Product
from skutag.config import SkutagConfig
from skutag.pipeline import load_pipeline

model_dir, rows = sys.argv[1], json.loads(sys.argv[2])
# nothing read back from the feature cache: every photo goes through the tail's graphs here
config = SkutagConfig.load(environ={}, overrides={"fusion.cache_features": False, "vision.threads": 2})
pipeline = load_pipeline(config, model_dir=model_dir)
products = [Product(id=r["id"], image=r["image"], title=r["title"]) for r in rows]
evidence = pipeline.gather(products, ocr_gate="never")
results = pipeline.tag_evidence(evidence, audit=False)
tail = pipeline.collector.tail
embedded = tail.embed([p.image for p in products])  # the tail alone (photos cached for vision, not for it)
print(json.dumps({
    "torch": "torch" in sys.modules,
    "tail": type(tail).__module__ + "." + type(tail).__name__,
    "paths": [r.path for r in results],
    "tail_run": pipeline.collector.stats["tail_run"],
    "embedded": sum(e is not None for e in embedded),
}))
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tail-serving")
    catalogs = tail_catalogs(folder)
    version, _ = train_tail_bundle(catalogs["train"], folder / "shop")
    return version, catalogs["val_rows"]


def test_a_fresh_process_serves_a_tail_bundle_without_importing_torch(bundle):
    version, val_rows = bundle
    rows = val_rows[::2]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SERVE, str(version.store), json.dumps(rows)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tail"] == "skutag.vision.tail.serve.VisionTail"
    assert report["tail_run"] == len(rows) and report["embedded"] == len(rows)
    assert sum(path == row["category"] for path, row in zip(report["paths"], rows)) >= len(rows) - 2, report
    assert report["torch"] is False, "serving a tail bundle imported torch"
