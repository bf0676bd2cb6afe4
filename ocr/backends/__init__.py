"""OCR backends, one module each, imported lazily by ``ocr.engine.backend_class``."""
