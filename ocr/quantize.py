"""INT8 copies of the OCR models, made once per model file and cached under ``$SKUTAG_HOME/ocr/int8``.

* detection (a convnet at up to ``det_limit_side_len`` pixels, most of a photo's OCR time): *static* INT8, QDQ,
  per-channel weights, uint8 activations calibrated on product photos preprocessed exactly as the backend feeds
  the detector (the engine's enlargement of small photos included). Each activation's range is the moving
  average of the photos' minima and maxima, not their extremes: one photo's outliers otherwise coarsen the
  steps for all, and small print's boxes are the first to move (ocr/README.md, INT8);
* recognition (text lines at 48 px high, the transformer's matrix products): *dynamic* INT8 of ``MatMul``
  (per-channel weights, activations quantized per call), so no calibration crops are needed.

The INT8 scheme follows the vision stage's (``vision.export.int8_scheme``: 7-bit weights on x86 CPUs without
VNNI); ``OcrConfig.int8 = "auto"`` turns INT8 on where it reads faster at the same brand accuracy: the full
8-bit scheme, and the 7-bit one on AVX2. Files are written to a
private name and renamed into place, so several workers or processes quantizing at once never see a
half-written model. Figures: ocr/README.md, "INT8".
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from skutag.paths import artifact_dir
from skutag.vision.export import calibration_images, cpu_flags, int8_scheme, temporary_path, write_static_int8
from skutag.vision.labels import PROJECT_MODELS_DIR

from .config import OcrConfig
from .engine import enlarged

DEFAULT_OCR_CALIBRATION_DIR = PROJECT_MODELS_DIR / "calibration" / "ocr"
OPSET = 17
DET_SETTINGS = "det-qdq-perchannel-u8s8-minmax-movingaverage-v2"
REC_SETTINGS = "rec-dynamic-matmul-perchannel-s8-v1"
log = logging.getLogger(__name__)
_LOCK = threading.Lock()


def int8_enabled(config: OcrConfig) -> bool:
    """``ocr.int8``: ``on``, ``off``, or ``auto`` = on where the CPU runs the full 8-bit scheme, or the 7-bit one
    with AVX2 (both read faster than fp32 at its brand accuracy: ocr/README.md, "INT8"); off on an x86 CPU
    without AVX2."""
    if config.int8 == "auto":
        return int8_scheme() == "u8s8" or "avx2" in cpu_flags()
    return config.int8 == "on"


def int8_models(det: Path, rec: Path, config: OcrConfig, det_input: Callable[[np.ndarray], np.ndarray],
                cache_dir: str | Path | None = None) -> tuple[Path, Path]:
    """INT8 copies of the detector ``det`` and recognizer ``rec`` (quantized on first use).

    ``det_input(bgr)`` turns a BGR photo, as the engine hands it to the backend, into the detector's input
    tensor. Calibration photos: ``config.calibration_dir``, else the package's ``models/calibration/ocr``."""
    folder = Path(cache_dir) if cache_dir else artifact_dir("ocr") / "int8"
    folder.mkdir(parents=True, exist_ok=True)
    photos = calibration_images(config.calibration_dir or DEFAULT_OCR_CALIBRATION_DIR)
    det_key = _key(det, DET_SETTINGS, config.min_long_side, config.det_limit_side_len, config.det_limit_type,
                   *photos)
    det_out = folder / f"{det.stem}.int8-{det_key}.onnx"
    rec_out = folder / f"{rec.stem}.int8-{_key(rec, REC_SETTINGS)}.onnx"
    with _LOCK:  # one quantization per process; other processes are kept apart by the rename
        if not det_out.is_file():
            log.info("quantizing the OCR detector to INT8 once (%s)", det_out)
            _quantize_detector(det, det_out, _calibration_inputs(photos, config.min_long_side, det_input))
        if not rec_out.is_file():
            _quantize_recognizer(rec, rec_out)
    return det_out, rec_out


def _key(model: Path, settings: str, *parts) -> str:
    """What a quantized copy depends on: the model's bytes, the settings, the scheme and the calibration."""
    digest = hashlib.sha256(settings.encode())
    digest.update(int8_scheme().encode())
    digest.update(hashlib.sha256(model.read_bytes()).digest())
    for part in parts:
        if isinstance(part, Path):
            digest.update(part.name.encode())
            digest.update(hashlib.sha256(part.read_bytes()).digest())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()[:12]


def _calibration_inputs(photos: list[Path], min_long_side: int,
                        det_input: Callable[[np.ndarray], np.ndarray]) -> Iterator[np.ndarray]:
    import cv2

    for photo in photos:
        bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        tensor = det_input(enlarged(bgr, min_long_side)[0])  # as the engine hands photos to the backend
        if tensor is not None:
            yield tensor


def _prepared(model: Path, out: Path) -> None:
    """``model`` at opset 17 (per-channel QDQ needs 13 or later; the PP-OCR exports are opset 11), shapes inferred."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    converted = temporary_path(out.with_name(f"{out.stem}.opset.onnx"))
    try:
        onnx.save(version_converter.convert_version(onnx.load(str(model)), OPSET), str(converted))
        quant_pre_process(str(converted), str(out), skip_symbolic_shape=True)
    finally:
        converted.unlink(missing_ok=True)


def _write_quantized(model: Path, path: Path, quantize: Callable[[Path, Path], None]) -> None:
    """``quantize(prepared, out)`` on ``model`` prepared, written to ``path`` through a private name."""
    prepared = temporary_path(path.with_name(f"{path.stem}.prep.onnx"))
    tmp = temporary_path(path)
    try:
        _prepared(model, prepared)
        quantize(prepared, tmp)
        os.replace(tmp, path)
    finally:
        for leftover in (prepared, tmp):
            leftover.unlink(missing_ok=True)


def _quantize_detector(model: Path, path: Path, inputs: Iterator[np.ndarray]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader

    def quantize(prepared: Path, out: Path) -> None:
        input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name

        class Reader(CalibrationDataReader):
            def get_next(self):
                tensor = next(inputs, None)
                return None if tensor is None else {input_name: tensor}

        write_static_int8(prepared, out, Reader(), moving_average=True)

    _write_quantized(model, path, quantize)


def _quantize_recognizer(model: Path, path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def quantize(prepared: Path, out: Path) -> None:
        quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], reduce_range=int8_scheme() == "u8s8-7bit")

    _write_quantized(model, path, quantize)
