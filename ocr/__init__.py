"""OCR stage: PaddleOCR PP-OCR models read package text offline; brand text becomes a brand with evidence.

    engine = ocr.load_engine()                 # rapidocr backend, settings from OcrConfig
    results = engine.read(["a.jpg", b"..."])   # list[OcrResult], one per image, errors per image
    ocr.extract_brands(results[0], lexicon)    # list[BrandMatch]
"""

from __future__ import annotations

from .config import OcrConfig
from .engine import BACKENDS, OcrBackendError, OcrEngine, load_engine
from .result import OcrLine, OcrResult

__all__ = [
    "BACKENDS",
    "BrandMatch",
    "OcrBackendError",
    "OcrConfig",
    "OcrEngine",
    "OcrLine",
    "OcrResult",
    "extract_brands",
    "load_engine",
]


def __getattr__(name: str):
    if name in ("BrandMatch", "extract_brands"):
        from . import brands

        return getattr(brands, name)
    raise AttributeError(f"module 'ocr' has no attribute {name!r}")
