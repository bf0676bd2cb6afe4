"""Where the brand-span model learned from a shop's titles lives (``skutag brands learn``), and loading it.

``text.brand_model``: empty = ``$SKUTAG_HOME/taxonomy/brand_spans.joblib`` when it exists, ``off`` = none,
otherwise a path (a missing file there is an error naming it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from skutag.paths import artifact_dir

FILE_NAME = "brand_spans.joblib"


def default_brand_model_path() -> Path:
    return artifact_dir("taxonomy") / FILE_NAME


def brand_model_path(setting: str | None) -> Path | None:
    """The file the setting names, or None when no model is to be used."""
    setting = (setting or "").strip()
    if setting.lower() == "off":
        return None
    if not setting:
        path = default_brand_model_path()
        return path if path.is_file() else None
    path = Path(setting).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"text.brand_model names {path}, which does not exist; learn one with "
                                "`skutag brands learn CATALOG --out FILE` or set text.brand_model = off")
    return path


def load_brand_model(setting: str | None) -> tuple[Any, str | None]:
    """(the fitted ``BrandSpanModel`` or None, a short digest of its file for manifests)."""
    path = brand_model_path(setting)
    if path is None:
        return None, None
    import joblib

    data = path.read_bytes()
    model = joblib.load(path)
    if not hasattr(model, "find"):
        raise ValueError(f"{path} is not a brand-span model (made by `skutag brands learn`)")
    return model, hashlib.sha256(data).hexdigest()[:16]
