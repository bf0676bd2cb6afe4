"""Each photo is read, hashed (SHA-256) and decoded once on the tagging path: the pipeline of a vision + OCR bundle,
the evidence collector, and the service (duplicate fingerprint, vision, OCR). Decodes are counted at the one
function that turns a photo's bytes into pixels (``skutag.vision.image.decode_bytes``). Real GroceryStore photos."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from skutag.catalog import Product
from skutag.config import SkutagConfig
from fusion_fixtures import grocery_rows, write_catalog

pytestmark = pytest.mark.slow


def config(**overrides):
    return SkutagConfig.load(environ={}, overrides={"vision.threads": 2, **overrides})


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """The name of every photo decoded from here on, once per decode."""
    import skutag.vision.image as images

    seen: list[str] = []
    decode = images.decode_bytes

    def counted(data, name, *args, **kwargs):
        seen.append(name)
        return decode(data, name, *args, **kwargs)

    monkeypatch.setattr(images, "decode_bytes", counted)
    return seen


@pytest.fixture
def hashed(monkeypatch) -> list[int]:
    """The length of every byte string SHA-256 is computed of from here on (``hashlib.sha256(data)``)."""
    seen: list[int] = []
    sha256 = hashlib.sha256

    def counted(data=b"", **kwargs):
        seen.append(len(data))
        return sha256(data, **kwargs)

    monkeypatch.setattr(hashlib, "sha256", counted)
    return seen


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A vision + OCR bundle trained on 3 photos of each of 4 GroceryStore classes (two branded milks, two
    fruits)."""
    from skutag.training import train_catalog

    root = tmp_path_factory.mktemp("decode-once")
    train = write_catalog(root / "train.jsonl", grocery_rows("train", per_class=3))
    version, _, _ = train_catalog(train, root / "model", config(**{"fusion.modalities": ("vision", "ocr"),
                                                                   "fusion.cv": 3}))
    return version.store


@pytest.fixture(scope="module")
def products() -> list[Product]:
    """A val photo of each class, the last one given as bytes, and a product whose photo is not one."""
    rows = grocery_rows("val", per_class=1)
    chosen = [Product(id=r["id"], image=r["image"], title=r.get("title")) for r in rows]
    last = chosen[-1]
    with open(last.image, "rb") as handle:
        chosen[-1] = Product(id=last.id, image=handle.read(), title=last.title)
    return chosen + [Product(id="junk", image=b"not a photo", title="Arla 牛奶")]


@pytest.mark.parametrize("gate", ["always", "auto"])
def test_a_vision_and_ocr_bundle_decodes_and_hashes_each_photo_once(bundle, products, gate, decodes, hashed):
    from skutag.pipeline import load_pipeline

    pipeline = load_pipeline(config(**{"fusion.cache_features": False, "ocr.cache_size": 0}), bundle)
    assert "ocr" in pipeline.model.modalities_
    evidence = pipeline.gather(products, ocr_gate=gate)
    photos = len(products)
    assert len(decodes) == photos, decodes  # the junk bytes too: one failed decode, its error given to every stage
    assert sorted(decodes) == sorted(set(decodes))
    sizes = {len(p.image) if isinstance(p.image, bytes) else len(open(p.image, "rb").read()) for p in products}
    assert sum(size in sizes for size in hashed) == photos, "SHA-256 of each photo's bytes once"
    read = [ev for ev in evidence[:-1] if ev.ocr is not None]
    assert all(ev.vision is not None for ev in evidence[:-1])
    if gate == "always":  # every photo read, the junk one too (it fails, from the one failed decode)
        assert pipeline.gate_stats.ran == photos and len(read) == photos - 1
    else:  # the photos the gate chose
        assert pipeline.gate_stats.candidates == photos - 1 and len(read) == pipeline.gate_stats.ran
    assert evidence[-1].vision is None and any(e.startswith("image:") for e in evidence[-1].errors)
    assert all(r.error is None for r in pipeline.tag_evidence(evidence, audit=False)[:-1])


def test_the_collector_reads_vision_and_ocr_from_one_decode_with_the_same_answers(bundle, products, decodes):
    from skutag.evidence import EvidenceCollector

    settings = config(**{"ocr.cache_size": 0})
    collector = EvidenceCollector(settings, use_cache=False)
    readable = products[:-1]
    evidence = collector.collect(readable, ocr=True)
    assert len(decodes) == len(readable) and collector.stats["ocr_run"] == len(readable)
    # the same answers as each stage decoding the photo itself (GroceryStore photos are smaller than either size)
    del decodes[:]
    alone = collector.vision_model.predict([p.image for p in readable], top_k=5)
    read = collector.ocr_engine.read([p.image for p in readable])
    assert len(decodes) == 2 * len(readable)
    for ev, own, lines in zip(evidence, alone, read):
        assert ev.vision.labels[0][1] == own.top_k[0].index
        assert np.allclose(ev.vision.embedding, own.embedding, atol=1e-6)
        assert [text for text, _ in ev.ocr.lines] == [line.text for line in lines.lines]


def test_the_service_decodes_an_upload_once_for_its_fingerprint_vision_and_ocr(tmp_path, shared_data, decodes, hashed):
    from fastapi.testclient import TestClient

    from skutag.service.app import create_app
    from skutag.service.config import ServiceConfig

    settings = ServiceConfig(db_url=f"sqlite:///{tmp_path / 'decode.db'}")
    # the cold-start pipeline (vision, OCR, title) reading OCR for every photo, nothing from the feature cache
    app = create_app(settings, config=config(**{"fusion.ocr_gate": "always", "fusion.cache_features": False}))
    auth = {"Authorization": f"Bearer {app.state.store.create_token('decode')}"}
    photo = (shared_data / "grocery" / "images" / "val" / "Packages" / "Oat-Milk" / "Oatly-Oat-Milk" /
             "Oatly-Oat-Milk_002.jpg").read_bytes()
    with TestClient(app) as client:
        del decodes[:], hashed[:]
        answer = client.post("/v1/products", headers=auth, data={"id": "oat", "title": "燕麦饮"},
                             files={"image": ("o.jpg", photo, "image/jpeg")})
        assert answer.status_code == 200, answer.text
        seen = client.get("/v1/products/oat", headers=auth).json()["prediction"]["modalities"]
    app.state.store.close()
    assert "vision" in seen["present"] and "ocr" in seen["present"]
    assert len(decodes) == 1, decodes
    assert hashed.count(len(photo)) == 1, "SHA-256 of the upload's bytes once"
