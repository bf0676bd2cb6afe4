"""Optional parts of skutag and the extra that installs each (``pip install 'skutag[service]'``).

The core (``skutag tag/train/eval/batch`` with the default OCR) needs none of them; a command that reaches a
missing one says which extra to install instead of a traceback (``skutag.cli.main``).
"""

from __future__ import annotations

# top-level module -> the extra that brings it
EXTRA_OF_MODULE = {
    "fastapi": "service", "starlette": "service", "uvicorn": "service", "multipart": "service",
    "python_multipart": "service", "psycopg": "service", "jinja2": "service", "itsdangerous": "service",
    "httpx": "service",
    "celery": "queue", "kombu": "queue", "redis": "queue",
    "matplotlib": "reports",
    "paddleocr": "paddleocr", "paddlex": "paddleocr",
}

WHAT_NEEDS = {
    "service": "the HTTP service and dashboard (skutag serve) and PostgreSQL databases",
    "queue": "Celery workers and brokers (skutag worker, skutag batch --broker)",
    "reports": "report plots (skutag eval --report)",
    "paddleocr": "the PaddleOCR pipeline (ocr.backend = paddleocr)",
}


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """What to install when ``exc`` is a missing optional package; None for anything else."""
    top = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return (f"{WHAT_NEEDS[extra]} needs the optional package {top!r}, which is not installed: "
            f"pip install 'skutag[{extra}]'")
