"""The OCR engine on the default backend (rapidocr, PP-OCRv6 small): real photos, rendered packages,
bad input in a batch, the content-hash cache, rotation passes, and no network at any point."""

from __future__ import annotations

import io
import socket
from dataclasses import replace

import numpy as np
import pytest

from skutag import ocr
from skutag.ocr.brands import extract_brands, read_brands
from skutag.ocr.config import OcrConfig
from skutag.ocr.engine import OcrEngine, _unrotate, backend_class
from skutag.ocr.result import OcrLine
from skutag.taxonomy.brands import BrandLexicon
from conftest import shared_path
from ocr_support import render


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return ocr.load_engine()


@pytest.fixture(scope="module")
def lexicon() -> BrandLexicon:
    return BrandLexicon.default()


def top_brand(engine, source, lexicon):
    (result, brands), = read_brands(engine, [source], lexicon)
    assert result.error is None
    return (brands[0].brand if brands else None), result


@pytest.mark.parametrize("photo, brand", [("农夫山泉.jpg", "农夫山泉"), ("怡宝.jpg", "怡宝"), ("可口可乐.jpg", "可口可乐")])
def test_real_bottle_photos_read_their_brand(engine, lexicon, photo, brand):
    found, result = top_brand(engine, shared_path("cn_bottles", "images", photo), lexicon)
    assert found == brand, [line.text for line in result.lines]
    assert result.width == 1080 or result.height == 1080


def test_lines_have_text_scores_and_boxes_inside_the_photo(engine):
    result = engine.read([shared_path("cn_bottles", "images", "农夫山泉.jpg")])[0]
    assert result.lines
    for line in result.lines:
        assert line.text.strip() and 0.5 <= line.score <= 1.0
        assert len(line.box) == 4
        assert all(-2 <= x <= result.width + 2 and -2 <= y <= result.height + 2 for x, y in line.box)
    payload = result.to_json()
    assert set(payload) >= {"image", "lines", "error"} and payload["lines"][0]["box"][0][0] >= 0


@pytest.mark.parametrize(
    "name, image, brand",
    [
        ("upright", lambda: render(["农夫山泉", "NONGFU SPRING"]), "农夫山泉"),
        ("turned 90", lambda: render(["农夫山泉", "NONGFU SPRING"], rotate=90), "农夫山泉"),
        ("turned 270", lambda: render(["怡宝", "C'estbon"], rotate=270), "怡宝"),
        ("tilted 15", lambda: render(["OATLY", "Havregurt"], rotate=15), "Oatly"),
        ("small text", lambda: render(["可口可乐 Coca-Cola"], size=(1600, 1200), font_px=24), "可口可乐"),
        ("low contrast", lambda: render(["伊利 纯牛奶"], bg=(120, 120, 120), fg=(150, 150, 150)), "伊利"),
    ],
)
def test_rendered_packages(engine, lexicon, name, image, brand):
    found, result = top_brand(engine, np.asarray(image()), lexicon)
    assert found == brand, (name, [line.text for line in result.lines])


@pytest.mark.parametrize("photo", ["Fruit/Apple/Golden-Delicious/Golden-Delicious_001.jpg",
                                   "Vegetables/Carrots/Carrots_003.jpg"])
def test_photos_without_text_skip_the_extra_passes(photo):
    """Nothing read on a fruit or vegetable photo: turning it cannot help, so auto pays one pass, not three
    (``auto_min_lines=0``: the old rule, every unread photo turned)."""
    path = shared_path("grocery", "images", "train", photo)
    result = ocr.load_engine(config=OcrConfig(rotate="auto", cache_size=0)).read([path])[0]
    assert result.error is None and result.meta["passes"] == [0]
    old = ocr.load_engine(config=OcrConfig(rotate="auto", auto_min_lines=0, cache_size=0)).read([path])[0]
    assert old.meta["passes"] == [0, 90, 270]


def test_turned_text_triggers_the_extra_passes_and_boxes_map_back(engine):
    image = render(["农夫山泉", "NONGFU SPRING"], rotate=90)
    result = ocr.load_engine(config=OcrConfig(rotate="auto")).read([np.asarray(image)])[0]
    assert result.meta["passes"] == [0, 90, 270]
    upright = [line for line in result.lines if line.text == "NONGFU SPRING"]
    assert upright and upright[0].height > upright[0].width  # found on a turned pass, box in the photo's frame
    assert all(0 <= x <= image.width and 0 <= y <= image.height for x, y in upright[0].box)


def test_unrotate_maps_points_back():
    height, width = 30, 50
    image = np.zeros((height, width, 3), np.uint8)
    image[5, 40] = 255  # a marked pixel at x=40, y=5
    for turns in (1, 3):
        turned = np.rot90(image, turns)
        y, x = map(int, np.argwhere(turned[:, :, 0] == 255)[0])
        marked = OcrLine("x", 1.0, ((x, y),) * 4)
        assert _unrotate(marked, turns, width, height).box[0] == (40, 5)


def test_bad_images_fail_alone_and_the_batch_goes_on(engine, tmp_path):
    truncated = io.BytesIO()
    render(["雪碧"]).save(truncated, format="JPEG")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    sources = [
        b"not an image",
        truncated.getvalue()[:200],
        empty,
        tmp_path / "missing.png",
        np.zeros((10, 10), np.float32),
        np.asarray(render(["可口可乐"])),
    ]
    results = engine.read(sources)
    assert [r.error is None for r in results] == [False, False, False, False, False, True]
    assert "not a recognised image format" in results[0].error
    assert "empty" in results[2].error and "missing.png" in results[3].error
    assert results[5].lines and "可口可乐" in results[5].text


def test_results_are_cached_by_content(engine):
    image = render(["七喜 7UP"])
    as_png, as_jpeg_array = io.BytesIO(), np.asarray(image)
    image.save(as_png, format="PNG")
    first = engine.read([as_png.getvalue()])[0]
    hits = engine.cache_hits
    second = engine.read([as_jpeg_array])[0]  # same pixels, other container: one cache entry
    assert engine.cache_hits == hits + 1
    assert second.lines == first.lines and second.image != first.image


def test_engines_are_built_once_per_settings():
    assert ocr.load_engine() is ocr.load_engine("rapidocr", OcrConfig())
    assert ocr.load_engine(config=OcrConfig(rotate="off")) is not ocr.load_engine()


def test_unknown_backend_and_bad_settings_are_clear_errors():
    with pytest.raises(ocr.OcrBackendError, match="unknown OCR backend 'tesseract'.*rapidocr"):
        ocr.load_engine("tesseract")
    with pytest.raises(ValueError, match="ocr.rotate"):
        OcrConfig(rotate="sometimes")


def test_no_network_is_ever_used(monkeypatch, lexicon):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    config = OcrConfig(rotate="always", use_angle_cls=True)  # every bundled model: det, cls, rec
    engine = OcrEngine(backend_class("rapidocr")(config), config)
    result = engine.read([np.asarray(render(["东方树叶"], rotate=90))])[0]
    assert result.error is None and extract_brands(result, lexicon)[0].brand == "东方树叶"


def test_config_section_is_registered():
    from skutag.config import SkutagConfig

    config = SkutagConfig.load(environ={"SKUTAG_OCR__DET_LIMIT_SIDE_LEN": "640", "SKUTAG_OCR__ROTATE": "off"})
    assert config.ocr.det_limit_side_len == 640 and config.ocr.rotate == "off" and config.ocr.backend == "rapidocr"


def test_small_photos_can_be_enlarged_and_boxes_stay_in_the_photos_pixels():
    image = render(["农夫山泉"], size=(320, 240), font_px=24)
    result = ocr.load_engine(config=OcrConfig(min_long_side=960, rotate="off")).read([np.asarray(image)])[0]
    assert "农夫山泉" in result.text
    assert (result.width, result.height) == (320, 240)
    assert all(0 <= x <= 320 and 0 <= y <= 240 for line in result.lines for x, y in line.box)


def test_workers_read_a_batch_side_by_side_with_the_same_answers_in_order():
    photos = sorted(shared_path("cn_bottles", "images").glob("*.jpg"))[:6]
    batch = [str(p) for p in photos[:3]] + [b"not a photo"] + [str(p) for p in photos[3:]]
    config = OcrConfig(rotate="off", min_long_side=0, cache_size=0)
    make = backend_class("rapidocr")
    alone = OcrEngine(make(config), config).read(batch)
    side_by_side = OcrEngine(make(config), replace(config, workers=2), make_backend=lambda: make(config))
    assert side_by_side.workers == 2
    together = side_by_side.read(batch)
    assert [r.image for r in together] == [r.image for r in alone]
    assert [r.text for r in together] == [r.text for r in alone] and any(r.text for r in together)
    assert together[3].error and not any(r.error for i, r in enumerate(together) if i != 3)
    assert side_by_side._built == 2 and len(side_by_side._idle) == 2  # every backend came back
    with pytest.raises(ValueError, match="ocr.workers"):
        OcrConfig(workers=-1)
