"""Where skutag keeps derived artifacts (ONNX exports, quantized models, trained bundles).

Derived artifacts never go into the repository: they live under ``SKUTAG_HOME``
(default: ``$XDG_CACHE_HOME/skutag`` or ``~/.cache/skutag``).
"""

from __future__ import annotations

from pathlib import Path

REPO_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def skutag_home() -> Path:
    """The root for derived artifacts; created on first use."""
    from skutag.taxonomy.home import skutag_home_dir

    home = skutag_home_dir()
    home.mkdir(parents=True, exist_ok=True)
    return home


def artifact_dir(kind: str) -> Path:
    """A sub-folder of the home for one kind of artifact (``onnx``, ``ocr``, ``bundles`` ...)."""
    path = skutag_home() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path
