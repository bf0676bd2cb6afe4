"""INT8 OCR (``ocr.int8``): quantized copies of the bundled rapidocr models, made once and reused, reading the
same brands as the fp32 models on real photos; the setting's modes and its part in the OCR feature key."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from skutag.config import SkutagConfig
from skutag.evidence import EvidenceCollector
from skutag.ocr.backends.rapidocr_backend import RapidOcrBackend, bundled_models, detector_input
from skutag.ocr.brands import read_brands
from skutag.ocr.config import OcrConfig
from skutag.ocr.engine import OcrEngine
from skutag.ocr import quantize
from skutag.ocr.quantize import DEFAULT_OCR_CALIBRATION_DIR, int8_enabled, int8_models
from skutag.taxonomy.brands import BrandLexicon
from conftest import shared_path


def op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def weight_matmuls(path: Path) -> int:
    """MatMul nodes multiplying by a stored weight (products of two activations, attention's, have none)."""
    graph = onnx.load(str(path)).graph
    weights = {init.name for init in graph.initializer}
    return sum(node.op_type == "MatMul" and bool(set(node.input) & weights) for node in graph.node)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> tuple[Path, Path, Path]:
    models = bundled_models()
    folder = tmp_path_factory.mktemp("int8")
    config = OcrConfig(int8="on")
    det, rec = int8_models(Path(models["det"]), Path(models["rec"]), config, detector_input(config), folder)
    return folder, det, rec


def test_detector_is_static_int8_and_recognizer_dynamic_int8(quantized):
    _, det, rec = quantized
    det_ops, rec_ops = op_types(det), op_types(rec)
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= det_ops
    assert "DynamicQuantizeLinear" in rec_ops and "MatMulInteger" in rec_ops
    assert weight_matmuls(Path(bundled_models()["rec"])) > 0
    assert weight_matmuls(rec) == 0  # every product with a weight matrix runs in INT8


def test_copies_are_made_once_and_reused(quantized):
    folder, det, rec = quantized
    stamps = (det.stat().st_mtime_ns, rec.stat().st_mtime_ns)
    models = bundled_models()
    config = OcrConfig(int8="on")
    again = int8_models(Path(models["det"]), Path(models["rec"]), config, detector_input(config), folder)
    assert again == (det, rec)
    assert (det.stat().st_mtime_ns, rec.stat().st_mtime_ns) == stamps
    assert sorted(p.name for p in folder.iterdir()) == sorted([det.name, rec.name])  # no temporary files left


def test_detector_copy_follows_its_calibration_and_size(quantized, tmp_path):
    folder, det, _ = quantized
    models = bundled_models()
    photos = sorted(DEFAULT_OCR_CALIBRATION_DIR.glob("*.jpg"))
    for photo in photos[:4]:
        (tmp_path / photo.name).write_bytes(photo.read_bytes())
    fewer = OcrConfig(int8="on", calibration_dir=str(tmp_path))
    other, _ = int8_models(Path(models["det"]), Path(models["rec"]), fewer, detector_input(fewer), folder)
    assert other != det and other.is_file()
    smaller = OcrConfig(int8="on", det_limit_side_len=640)
    assert int8_models(Path(models["det"]), Path(models["rec"]), smaller, detector_input(smaller), folder)[0] not in (det, other)


def test_missing_calibration_photos_name_the_folder(tmp_path):
    models = bundled_models()
    config = OcrConfig(int8="on", calibration_dir=str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match="none"):
        int8_models(Path(models["det"]), Path(models["rec"]), config, detector_input(config), tmp_path)


@pytest.mark.parametrize("photo, brand", [("农夫山泉.jpg", "农夫山泉"), ("怡宝.jpg", "怡宝"), ("可口可乐.jpg", "可口可乐")])
def test_int8_reads_the_brands_fp32_reads(photo, brand):
    lexicon = BrandLexicon.default()
    path = shared_path("cn_bottles", "images", photo)
    found = {}
    for mode in ("off", "on"):
        config = OcrConfig(int8=mode, cache_size=0)
        (result, brands), = read_brands(OcrEngine(RapidOcrBackend(config), config), [path], lexicon)
        assert result.error is None
        found[mode] = (brands[0].brand if brands else None, result.text)
    assert found["off"][0] == found["on"][0] == brand
    assert len(found["on"][1]) >= 0.7 * len(found["off"][1])


def test_int8_modes(monkeypatch):
    with pytest.raises(ValueError, match="ocr.int8"):
        OcrConfig(int8="yes")
    assert int8_enabled(OcrConfig(int8="on")) and not int8_enabled(OcrConfig(int8="off"))
    monkeypatch.setenv("SKUTAG_INT8_SCHEME", "u8s8-7bit")  # an x86 CPU without VNNI
    monkeypatch.setattr(quantize, "cpu_flags", lambda: frozenset({"sse4_2", "avx"}))
    assert not int8_enabled(OcrConfig())  # no AVX2: ONNX Runtime's INT8 kernels gain nothing, fp32 stays
    monkeypatch.setattr(quantize, "cpu_flags", lambda: frozenset({"sse4_2", "avx", "avx2"}))
    assert int8_enabled(OcrConfig())  # AVX2: 7-bit INT8
    monkeypatch.setenv("SKUTAG_INT8_SCHEME", "u8s8")
    monkeypatch.setattr(quantize, "cpu_flags", lambda: frozenset({"avx512_vnni", "avx2"}))
    assert int8_enabled(OcrConfig())


def test_ocr_feature_key_tells_int8_from_fp32(monkeypatch):
    monkeypatch.setenv("SKUTAG_INT8_SCHEME", "u8s8")
    keys = {}
    for mode in ("auto", "on", "off"):
        config = SkutagConfig.defaults().with_overrides({"ocr.int8": mode})
        keys[mode] = EvidenceCollector(config).ocr_key()
    assert keys["auto"] == keys["on"] != keys["off"]


def test_a_prepared_pipeline_has_made_the_int8_copies_before_any_product(tmp_path, monkeypatch):
    """In a fresh SKUTAG_HOME the first OCR read would make the copies (seconds, inside one upload);
    ``prepare`` (the service calls it before serving a model) makes them first."""
    from skutag.pipeline import Pipeline

    monkeypatch.setenv("SKUTAG_HOME", str(tmp_path / "home"))
    config = SkutagConfig.defaults().with_overrides(
        {"ocr.int8": "on", "ocr.cache_size": 17, "fusion.modalities": ["vision", "ocr"]})  # an engine of its own
    pipeline = Pipeline(config)
    assert not (tmp_path / "home" / "ocr" / "int8").exists()
    pipeline.prepare()
    assert len(list((tmp_path / "home" / "ocr" / "int8").glob("*.onnx"))) == 2

