"""Where skutag keeps derived artifacts (ONNX exports, quantized models, trained bundles, feature caches) and
the user's edited tables: ``SKUTAG_HOME`` (default ``$XDG_CACHE_HOME/skutag`` or ``~/.cache/skutag``), never
the repository. A leaf module (it imports nothing of the project): the one rule every package uses.
"""

from __future__ import annotations

import os
from pathlib import Path


def skutag_home_dir() -> Path:
    """``$SKUTAG_HOME``, else ``$XDG_CACHE_HOME/skutag``, else ``~/.cache/skutag`` (not created here)."""
    home = os.environ.get("SKUTAG_HOME")
    if home:
        return Path(home).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skutag"


def skutag_home() -> Path:
    """The root for derived artifacts; created on first use."""
    home = skutag_home_dir()
    home.mkdir(parents=True, exist_ok=True)
    return home


def artifact_dir(kind: str) -> Path:
    """A sub-folder of the home for one kind of artifact (``onnx``, ``ocr``, ``bundles`` ...)."""
    path = skutag_home() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path
