"""``rapidocr``: PaddleOCR's PP-OCRv6 small det/rec (+ the mobile angle classifier) as ONNX on ONNX Runtime.

The PyPI wheel ``rapidocr`` 3.10 bundles these three models. Every model is passed by explicit path,
so rapidocr never reaches its download code (it downloads only when ``model_path`` is empty or a model
it does not bundle is chosen); a missing file is an error naming it. With ``ocr.int8`` the detector and
recognizer are INT8 copies of the bundled files (``ocr/quantize.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config import OcrConfig
from ..result import OcrLine
from ..quantize import int8_enabled, int8_models
from .common import package_dir, require_files, to_lines

DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"
CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"
DET_MEAN = DET_STD = (0.5, 0.5, 0.5)  # rapidocr's config.yaml for the PP-OCR detectors


def bundled_models() -> dict[str, str]:
    models = package_dir("rapidocr", 'pip install "rapidocr==3.10.*"') / "models"
    paths = {"det": models / DET_MODEL, "rec": models / REC_MODEL, "cls": models / CLS_MODEL}
    require_files(paths.values(), "rapidocr")
    return {task: str(path) for task, path in paths.items()}


def rapidocr_params(config: OcrConfig | None, models: dict[str, str]) -> dict:
    """RapidOCR parameters for ``config``; ``None`` = the library's own defaults (bundled files still pinned)."""
    params = {
        "Global.log_level": "error",
        "Det.model_path": models["det"],
        "Rec.model_path": models["rec"],
        "Cls.model_path": models["cls"],
    }
    if config is None:
        return params
    threads = config.threads if config.threads > 0 else -1
    params.update({
        "Global.use_cls": config.use_angle_cls,
        "Global.text_score": 0.0,  # every line: the engine applies min_score
        "Det.limit_side_len": config.det_limit_side_len,
        "Det.limit_type": config.det_limit_type,
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1 if threads > 0 else -1,
    })
    return params


def detector_input(config: OcrConfig):
    """The detector's input for a BGR photo as rapidocr prepares it (size limit, multiples of 32, its mean/std)."""
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    return DetPreProcess(config.det_limit_side_len, config.det_limit_type, DET_MEAN, DET_STD)


class RapidOcrBackend:
    name = "rapidocr"

    def __init__(self, config: OcrConfig, library_defaults: bool = False):
        from rapidocr import RapidOCR

        models = bundled_models()
        if not library_defaults and int8_enabled(config):
            det, rec = int8_models(Path(models["det"]), Path(models["rec"]), config, detector_input(config))
            models = {**models, "det": str(det), "rec": str(rec)}
        params = rapidocr_params(None if library_defaults else config, models)
        self._ocr = RapidOCR(params=params)
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)

    def recognize(self, bgr: np.ndarray) -> list[OcrLine]:
        output = self._ocr(bgr)
        return to_lines(getattr(output, "boxes", None), getattr(output, "txts", None), getattr(output, "scores", None))
